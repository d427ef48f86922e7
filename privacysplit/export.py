"""Export a found split for deployment: the paper's online phase.

The plan is retrained exactly as during the search (same seed), then the device part and
the cloud part are written as separate TorchScript files (and ONNX where the exporter
handles the layers), with a JSON manifest saying what the device part expects (input shape,
normalisation) and what crosses the network (feature shape and dtype).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from privacysplit import __version__


def export_plan(evaluator, plan, out_dir: str | Path, onnx: bool = True) -> dict:
    """Retrain ``plan`` with ``evaluator``'s settings and write it to ``out_dir``.

    Returns the manifest (also written as ``manifest.json``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    encoder, cloud, metrics = evaluator.train_plan(plan)
    encoder, cloud = encoder.cpu().eval(), cloud.cpu().eval()
    data = evaluator.data
    example = data.normalize(data.val.x[:2])
    with torch.no_grad():
        features = encoder(example)
        device_ts = torch.jit.trace(encoder, example)
        cloud_ts = torch.jit.trace(cloud, features)
    device_ts.save(str(out / "device.pt"))
    cloud_ts.save(str(out / "cloud.pt"))
    files = {"device_torchscript": "device.pt", "cloud_torchscript": "cloud.pt"}
    onnx_status = {}
    if onnx:
        for name, module, arg in (("device", encoder, example), ("cloud", cloud, features)):
            try:
                torch.onnx.export(module, (arg,), str(out / f"{name}.onnx"), dynamo=False,
                                  input_names=["input"], output_names=["output"],
                                  dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
                files[f"{name}_onnx"] = f"{name}.onnx"
            except Exception as err:  # noqa: BLE001 - ONNX is best effort, TorchScript is the contract
                onnx_status[name] = f"not exported: {type(err).__name__}: {str(err).splitlines()[0][:200]}"
    manifest = {
        "plan": str(plan),
        "base": evaluator.base_name,
        "dataset": data.name,
        "privacysplit_version": __version__,
        "input": {
            "shape": list(data.input_shape),
            "dtype": "float32",
            "range": [0.0, 1.0],
            "normalization": {"mean": list(data.mean), "std": list(data.std),
                              "formula": "(x - mean) / std per channel, applied before device.pt"},
        },
        "features": {"shape": list(features.shape[1:]), "dtype": str(features.dtype).replace("torch.", "")},
        "output": {"classes": evaluator.data.num_classes(evaluator.labels), "labels": evaluator.labels},
        "files": files,
        "onnx": onnx_status or "exported",
        "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float, str)) and k != "traceback"},
        "fidelity": evaluator.fidelity.to_dict(),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest
