"""Where the base network comes from: the pool, a user's module, a factory file; its weights.

:func:`resolve_base` turns the evaluator's ``base=`` and ``weights=`` into a
:class:`BaseSource`:

* a pool name (``"lenet"``) builds the pool's network, trained by the library as before;
* an ``nn.Module`` (or ``"path/to/file.py:factory"`` / ``"package.module:factory"``, called
  with no arguments) is converted into a layer table (:mod:`privacysplit.models.convert`).
  The module is copied first, so the caller's object is never trained or pruned.  Without
  ``weights`` its parameters are re-initialised from ``seed`` (every submodule's
  ``reset_parameters``) and it is trained like a pool network; with ``weights`` it starts
  from them and is not trained at all: A_base and every plan start from the user's model.

Every technique of Table 2 that the spec allows is then *tried* on each layer of a user's
network (on a copy, with a forward pass), and the layer's spec records the ones that work
(:attr:`~privacysplit.models.LayerSpec.allowed`), so the search never proposes a plan that
fails to build (a depthwise convolution cannot become a depthwise-separable one; W2 does not
know the internal channels of a block it has never seen).

The source's name carries a fingerprint of the layer table and the starting weights, so
cache keys and cached base weights never mix two different networks.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import importlib.util
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from privacysplit._fsutil import atomic_torch_save, ensure_dir, file_lock, safe_name
from privacysplit.compression import COMPRESSORS, CompressionSettings
from privacysplit.data import Dataset
from privacysplit.fidelity import Fidelity, base_fields
from privacysplit.models import Network, build, list_models
from privacysplit.models.convert import fingerprint, from_module
from privacysplit.training import (
    accuracy,
    base_weights_dir,
    pretrained_base,
    train_classifier,
)

#: bump when user-network training changes its numbers (part of the base weights' file key)
USER_TRAINING_VERSION = 1


@dataclass
class BaseSource:
    """The base network of an evaluator and how to get it trained.

    Attributes:
        name: the pool name, or ``<class>-<fingerprint[:12]>`` for a user's network.
        structure: the network before training (pool, or a user's re-initialised network),
            or with the user's weights loaded.
        user: whether the network is a user's (not from the pool).
        weights: where the starting weights came from (``None``: trained by the library).
        fingerprint: hash of the layer table and starting weights (user networks).
    """

    name: str
    structure: Network
    user: bool = False
    weights: str | None = None
    fingerprint: str | None = None


# ----------------------------------------------------------------------------- modules


def load_factory(spec: str) -> nn.Module:
    """The module returned by ``"path/to/file.py:factory"`` or ``"package.module:factory"``.

    Raises:
        ValueError: when the text has no ``:factory`` part, the factory does not exist, or
            it returns something other than an ``nn.Module``.
        FileNotFoundError: when the file does not exist.
    """
    if ":" not in spec:
        raise ValueError(f"expected 'file.py:factory' or 'package.module:factory', got {spec!r}")
    where, _, attr = spec.rpartition(":")
    if where.endswith(".py"):
        path = Path(where)
        if not path.exists():
            raise FileNotFoundError(f"no Python file {path} (from --base {spec})")
        mod_name = f"_privacysplit_user_{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]}"
        loader = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(loader)
        sys.modules[mod_name] = module  # so classes defined there pickle and deep-copy
        loader.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as err:
            raise ValueError(f"cannot import {where!r} (from {spec!r}): {err}") from err
    factory = getattr(module, attr, None)
    if factory is None:
        names = sorted(n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n)))
        raise ValueError(f"{where} has no {attr!r}; callables there: {', '.join(names[:20])}")
    made = factory() if callable(factory) and not isinstance(factory, nn.Module) else factory
    if not isinstance(made, nn.Module):
        raise ValueError(f"{spec} returned {type(made).__name__}, not a torch.nn.Module")
    return made


def _state_dict(weights) -> tuple[Mapping[str, torch.Tensor], str]:
    if isinstance(weights, Mapping):
        return weights, "a state_dict"
    path = Path(weights)
    if not path.exists():
        raise FileNotFoundError(f"no weights file {path}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - name the file and why
        raise ValueError(f"cannot read weights {path} with weights_only=True: {type(err).__name__}: {err}") from err
    if isinstance(blob, Mapping) and "state_dict" in blob and isinstance(blob["state_dict"], Mapping):
        blob = blob["state_dict"]
    if not isinstance(blob, Mapping):
        raise ValueError(f"{path} holds a {type(blob).__name__}; save model.state_dict() instead")
    return blob, str(path)


def load_weights(module: nn.Module, weights) -> str:
    """Load a state_dict (a path, read with ``weights_only=True``, or a mapping) strictly.

    Returns where the weights came from.

    Raises:
        ValueError: naming the first key that is missing, unexpected or of another shape.
    """
    state, origin = _state_dict(weights)
    own = module.state_dict()
    for key, tensor in own.items():
        if key not in state:
            missing = [k for k in own if k not in state]
            raise ValueError(
                f"weights {origin} do not fit: key {key!r} of the network is missing from them "
                f"({len(missing)} missing in all)"
            )
        theirs = state[key]
        if not isinstance(theirs, torch.Tensor) or tuple(theirs.shape) != tuple(tensor.shape):
            shape = tuple(theirs.shape) if isinstance(theirs, torch.Tensor) else type(theirs).__name__
            raise ValueError(
                f"weights {origin} do not fit: {key!r} has shape {shape} there but "
                f"{tuple(tensor.shape)} in the network"
            )
    extra = [k for k in state if k not in own]
    if extra:
        raise ValueError(
            f"weights {origin} do not fit: key {extra[0]!r} is not in the network "
            f"({len(extra)} unexpected in all)"
        )
    module.load_state_dict(state, strict=True)
    return origin


def _reset(module: nn.Module, seed: int) -> None:
    torch.manual_seed(seed)
    for m in module.modules():
        if hasattr(m, "reset_parameters") and callable(m.reset_parameters):
            m.reset_parameters()


# ----------------------------------------------------------------------------- probing


def probe_techniques(net: Network, settings: CompressionSettings | None = None) -> Network:
    """Record in each layer's spec the techniques that really work on it.

    Each technique the spec admits is applied to a copy of the layer (with the layers up to
    the next weighted one, which W2 shrinks) and run forward; it counts when it builds and
    keeps the output shape.  Returns ``net`` with updated specs (modules untouched).
    """
    settings = settings or CompressionSettings()
    was = net.training
    net.eval()
    try:
        with torch.no_grad():
            h = torch.rand(2, *net.input_shape, generator=torch.Generator().manual_seed(0))
            inputs = []
            for i in range(len(net)):
                inputs.append(h)
                h = net.forward_range(h, i, i + 1)
            for i, spec in enumerate(net.layers):
                candidates = [name for name, c in COMPRESSORS.items() if name != "none" and c.applies_to(spec)]
                if not candidates:
                    continue
                stop = next((j for j in range(i + 1, len(net)) if net.layers[j].type in ("conv", "linear", "block")), len(net) - 1)
                # only W2 reaches past its layer (it shrinks the next weighted one)
                works = tuple(name for name in candidates
                              if _works(net, i, stop if name == "W2" else i, name, inputs[i], settings))
                net.layers[i] = replace(spec, allowed=works)
    finally:
        net.train(was)
    return net


def _works(net: Network, i: int, stop: int, name: str, x: torch.Tensor, settings: CompressionSettings) -> bool:
    module = net.body[i]
    if type(module) is nn.Linear and net.layers[i].type == "linear" or type(module) is nn.Conv2d and name == "W1":
        # what the pool's layers are made of: known to work, and a trial factorisation of
        # a 25088 x 4096 matrix (torchvision's VGG) would cost more than the evaluation
        return True
    part = copy.deepcopy(net.sub(i, stop + 1))
    part.offset = 0
    try:
        expected = part(x).shape
        COMPRESSORS[name].apply(part, 0, settings)
        part.eval()
        return part(x).shape == expected
    except Exception:  # noqa: BLE001 - any failure means the technique does not apply here
        return False


# ----------------------------------------------------------------------------- sources


def resolve_base(
    base,
    data: Dataset,
    labels: str,
    *,
    weights=None,
    seed: int = 0,
    settings: CompressionSettings | None = None,
) -> BaseSource:
    """The :class:`BaseSource` for ``base`` (a pool name, an ``nn.Module`` or a factory).

    Raises:
        ValueError: for an unknown name, a module that is not a chain of layers, an output
            narrower than the task's classes, or weights that do not fit.
    """
    num_classes = data.num_classes(labels)
    if isinstance(base, str) and ":" not in base:
        if base not in list_models():
            raise ValueError(
                f"unknown network {base!r}; valid networks: {', '.join(list_models())}, an "
                "nn.Module, or 'file.py:factory'"
            )
        # seeded and on a forked RNG: the structure (costs, shapes; the trained base is built
        # by pretrained_base) is the same in every process, and building an evaluator does not
        # advance the caller's global RNG
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = build(base, num_classes=num_classes, input_shape=data.input_shape)
        if weights is None:
            return BaseSource(base, net)
        origin = load_weights(net, weights)
        digest = fingerprint(net)
        return BaseSource(f"{base}-{digest[:12]}", net, weights=origin, fingerprint=digest)
    if isinstance(base, str):
        module = load_factory(base).cpu()
        label = base.rpartition(":")[2].lower()
    elif isinstance(base, nn.Module):
        module = copy.deepcopy(base).cpu()  # trained and moved to ``device`` later, as a copy
        label = type(base).__name__.lower()
    else:
        raise ValueError(
            f"base must be a network name ({', '.join(list_models())}), an nn.Module or "
            f"'file.py:factory', got {type(base).__name__}"
        )
    origin = None
    if weights is not None:
        origin = load_weights(module, weights)
    else:
        _reset(module, seed)
    net = from_module(module, data.input_shape, name=safe_name(label))
    if net.num_classes < num_classes:
        raise ValueError(
            f"{label} gives {net.num_classes} outputs but the task has {num_classes} classes; "
            "build it with at least as many outputs"
        )
    probe_techniques(net, settings)
    digest = fingerprint(net)
    return BaseSource(f"{safe_name(label)}-{digest[:12]}", net, user=True, weights=origin, fingerprint=digest)


def pretrained(
    source: BaseSource,
    data: Dataset,
    *,
    labels: str,
    fidelity: Fidelity,
    seed: int,
    device: torch.device,
    cache=None,
) -> tuple[Network, float]:
    """The trained base network and its validation accuracy before any retraining.

    Pool networks go through :func:`~privacysplit.training.pretrained_base`.  A network
    with the user's weights is used as it is: its accuracy is the user model's on the
    validation images.  A user's network without weights is trained like a pool network
    and cached under ``base/`` beside ``cache``.
    """
    if not source.user and source.weights is None:
        return pretrained_base(source.name, data, labels=labels, fidelity=fidelity, seed=seed,
                               device=device, cache=cache)
    net = copy.deepcopy(source.structure).to(device)
    val = data.val.take(fidelity.n_val, seed)
    if source.weights is not None:
        acc = accuracy(net, val.x.to(device), data.labels(val, labels).to(device), data.normalize)
        return net, acc
    key = json.dumps([source.name, data.fingerprint(), labels, base_fields(fidelity), seed, USER_TRAINING_VERSION],
                     sort_keys=True)
    path = ensure_dir(base_weights_dir(cache), "base-weights folder") / (
        f"{safe_name(source.name)}-{labels}-e{fidelity.base_epochs}-n{fidelity.n_train}-s{seed}-"
        f"{hashlib.sha256(key.encode()).hexdigest()[:10]}.pt"
    )
    with file_lock(path.with_name(path.name + ".lock")):
        if path.exists():
            blob = torch.load(path, map_location="cpu", weights_only=True)
            net.load_state_dict(blob["state_dict"])
            return net.to(device), float(blob["accuracy"])
        torch.manual_seed(seed)
        train = data.train.take(fidelity.n_train, seed)
        train_classifier(
            net, train.x.to(device), data.labels(train, labels).to(device), epochs=fidelity.base_epochs,
            batch_size=fidelity.batch_size, lr=fidelity.base_lr, generator=torch.Generator().manual_seed(seed),
            preprocess=data.normalize,
        )
        acc = accuracy(net, val.x.to(device), data.labels(val, labels).to(device), data.normalize)
        atomic_torch_save({"state_dict": net.state_dict(), "accuracy": acc}, path)
    return net, acc




def layers_report(base, input_shape, *, weights=None, num_classes: int = 10) -> str:
    """The layer table of ``base`` as markdown: index, layer, output shape, parameters and
    the techniques that apply (what ``privacysplit layers`` prints).

    ``base`` is a pool name, an ``nn.Module`` or ``"file.py:factory"``; ``input_shape``
    e.g. ``(1, 28, 28)``.  Plans for that network use these indices.
    """
    from privacysplit.compression import applicable
    from privacysplit.models.convert import layer_table

    shape = tuple(int(s) for s in input_shape)
    if isinstance(base, str) and ":" not in base:
        if base not in list_models():
            raise ValueError(f"unknown network {base!r}; valid networks: {', '.join(list_models())}, or 'file.py:factory'")
        net = build(base, num_classes=num_classes, input_shape=shape)
        if weights is not None:
            load_weights(net, weights)
    else:
        module = load_factory(base) if isinstance(base, str) else copy.deepcopy(base)
        module = module.cpu()
        if weights is not None:
            load_weights(module, weights)
        label = base.rpartition(":")[2] if isinstance(base, str) else type(module).__name__
        net = probe_techniques(from_module(module, shape, name=safe_name(label.lower())))
    lines = [
        f"{net.name}: {len(net)} layers, input {'x'.join(map(str, shape))}; a plan reads "
        "'PARTITION | LAYER:TECHNIQUE ...', e.g. "
        f"'{len(net) // 2} | none'",
        "",
        "| index | layer | module | output | params | techniques |",
        "|---:|---|---|---|---:|---|",
    ]
    for row, spec in zip(layer_table(net), net.layers, strict=True):
        techniques = ", ".join(applicable(spec)[1:]) or "-"
        output = "x".join(map(str, row["output"]))
        lines.append(f"| {row['index']} | {row['layer']} | {row['module']} | {output} | {row['params']:,d} | {techniques} |")
    return "\n".join(lines)


__all__ = [
    "BaseSource", "layers_report", "load_factory", "load_weights", "pretrained", "probe_techniques", "resolve_base",
]
