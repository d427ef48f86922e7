"""Export a found split for deployment: the paper's online phase.

The device part and the cloud part are written as separate TorchScript files (and ONNX
where the exporter handles the layers), with a JSON manifest saying how to prepare an input
for the device part (resize or pad, scale, normalise), what crosses the network (feature
shape and dtype) and what comes back.

Where the weights come from: a search keeps its best measured plan's trained encoder and
cloud in its folder (``best_weights.pt``, see :mod:`privacysplit.search_run`); exporting that
plan with the same settings loads them, so nothing is retrained.  Any other plan is
retrained exactly as the search evaluated it (same seed, derived from the cache key).
"""

from __future__ import annotations

import argparse
import json
import shutil
import warnings
from pathlib import Path

#: how each dataset's raw inputs become the device part's input, before normalisation
PREPARE = {
    "mnist": "a 28x28 grayscale digit (white on black) scaled to [0, 1], zero-padded by 2 pixels on every side to 32x32",
    "digits": "an 8x8 grayscale digit scaled to [0, 1] (scikit-learn's 0..16 divided by 16), upsampled 4x (nearest) to 32x32",
    "cifar10": "a 32x32 RGB image scaled to [0, 1] (uint8 / 255), channels first",
    "cifar100": "a 32x32 RGB image scaled to [0, 1] (uint8 / 255), channels first",
    "tinyimagenet": "an RGB image resized to 32x32 (bilinear), scaled to [0, 1], channels first",
    "imagefolder": "an RGB image resized to 32x32 (bilinear, no crop), scaled to [0, 1], channels first",
    "purchase100": "a binary feature vector (600 purchase indicators) as float32",
}

#: ``export --run``: the evaluator settings read back from a search's ``run.json``
_RUN_FIELDS = ("base", "dataset", "fidelity", "threat", "privacy", "resource", "thresholds",
               "techniques", "partitions", "seed")


def run_settings(args: argparse.Namespace) -> None:
    """Fill ``args`` from the search folder ``args.run``: its settings, its cache and (unless
    ``--plan`` is given) its best plan.

    Raises:
        FileNotFoundError: ``args.run`` holds no finished search.
    """
    run = Path(args.run)
    run_file, best_file = run / "run.json", run / "best_plan.txt"
    if not run_file.exists() or not best_file.exists():
        raise FileNotFoundError(f"{run} holds no finished search (run.json and best_plan.txt are written by "
                                "`privacysplit search --out FOLDER`)")
    recorded = json.loads(run_file.read_text())
    for key in _RUN_FIELDS:
        if key in recorded["settings"]:
            setattr(args, key, recorded["settings"][key])
    for key in ("data_root", "profile", "weights"):
        if recorded.get(key) is not None:
            setattr(args, key, recorded[key])
    if args.cache is None and recorded.get("cache"):
        args.cache = recorded["cache"]
    if args.plan is None:
        args.plan = best_file.read_text().strip()


def load_kept_weights(evaluator, plan, run_dir: str | Path | None):
    """The encoder, cloud and measured metrics a search kept for ``plan`` in ``run_dir``,
    or ``None``.

    ``None`` when the folder kept no weights, kept another plan's, or kept them under other
    settings (the cache key differs).  The compressed structure is rebuilt from the cached
    base network (no distillation, no training) and the kept state_dicts are loaded into it.
    """
    if run_dir is None:
        return None
    from privacysplit.search_run import WEIGHTS_FILE, WEIGHTS_INFO

    run = Path(run_dir)
    info_file, weights = run / WEIGHTS_INFO, run / WEIGHTS_FILE
    if not info_file.exists() or not weights.exists():
        return None
    import torch

    from privacysplit.compression import apply_plan

    plan = evaluator.space.validate(plan)
    info = json.loads(info_file.read_text())
    if info.get("plan") != str(plan) or info.get("key") != evaluator.key(plan):
        return None
    state = torch.load(weights, weights_only=True, map_location="cpu")
    base, _ = evaluator.base()
    encoder, cloud = apply_plan(base, plan, evaluator.settings, distill_steps=0)
    encoder.load_state_dict(state["encoder"])
    cloud.load_state_dict(state["cloud"])
    return encoder, cloud, info.get("metrics", {})


def export_plan(evaluator, plan, out_dir: str | Path, onnx: bool = True, run_dir: str | Path | None = None) -> dict:
    """Write ``plan`` with ``evaluator``'s settings to ``out_dir``.

    Uses the weights a search kept in ``run_dir`` when they are this plan's (no retraining);
    otherwise retrains the plan.  Returns the manifest (also written as ``manifest.json``).
    """
    import torch

    from privacysplit import __version__
    from privacysplit._fsutil import ensure_dir

    out = ensure_dir(out_dir, "output folder")  # a file in the way is one ValueError
    kept = load_kept_weights(evaluator, plan, run_dir)
    if kept is not None:
        encoder, cloud, metrics = kept  # the numbers the search measured with these weights
        source = f"kept by the search in {Path(run_dir) / 'best_weights.pt'} (not retrained)"
    else:
        encoder, cloud, metrics = evaluator.train_plan(plan)
        source = "retrained for this export (same seed as the search's evaluation)"
    encoder, cloud = encoder.cpu().eval(), cloud.cpu().eval()
    data = evaluator.data
    example = data.normalize(data.val.x[:2])
    with torch.no_grad(), warnings.catch_warnings():
        # TorchScript and the TorchScript-based ONNX exporter are deprecated upstream in
        # favour of torch.export; they still produce the files users load, so their
        # deprecation notices are not shown to users who cannot act on them
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
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
    shape = list(data.input_shape)
    kept_image = Path(run_dir) / "best_reconstruction.png" if kept is not None else None
    if kept_image is not None and kept_image.exists():
        shutil.copyfile(kept_image, out / "reconstruction.png")
        files["reconstruction_png"] = "reconstruction.png"
    elif metrics.get("reconstruction"):
        from privacysplit.reporting import save_reconstruction

        save_reconstruction(metrics["reconstruction"], out / "reconstruction.png")
        files["reconstruction_png"] = "reconstruction.png"
    manifest = {
        "plan": str(plan),
        "base": evaluator.base_name,
        "dataset": data.name,
        "privacysplit_version": __version__,
        "weights": source,
        "input": {
            "shape": shape,
            "dtype": "float32",
            "range": [0.0, 1.0],
            "prepare": PREPARE.get(data.name, data.description),
            "normalization": {"mean": list(data.mean), "std": list(data.std),
                              "formula": "(x - mean) / std per channel, applied before device.pt / device.onnx"},
            "steps": [
                PREPARE.get(data.name, data.description),
                f"subtract mean {list(data.mean)} and divide by std {list(data.std)} per channel",
                f"batch it: a float32 array of shape [N, {', '.join(map(str, shape))}] is the input of device.pt / device.onnx",
            ],
        },
        "features": {"shape": list(features.shape[1:]), "dtype": str(features.dtype).replace("torch.", ""),
                     "note": "device output: what is sent to the cloud (the attacker sees this)"},
        "output": {"classes": evaluator.data.num_classes(evaluator.labels), "labels": evaluator.labels,
                   "note": "cloud output: class logits (argmax is the prediction)"},
        "files": files,
        "onnx": onnx_status or "exported",
        "metrics": {k: v for k, v in metrics.items()
                    if isinstance(v, (int, float, str)) and k not in ("traceback", "reconstruction")},
        "fidelity": evaluator.fidelity.to_dict(),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest
