"""Training loops shared by base-network training, retraining and attacks.

Data sit in memory as tensors, so batching is a seeded permutation and a slice: at LeNet's
size a DataLoader's per-batch overhead would cost more than the network.

Base networks are trained once per (network, dataset, label kind, the fidelity's
base-training fields, seed) and cached on disk (``weights_only=True`` loads), so every plan
starts from trained weights and A_base is known.  Processes that need the same base network at once take turns under a file
lock: the first trains it and writes it atomically (unique temporary name, then
``os.replace``), the others load it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from privacysplit._fsutil import atomic_torch_save, ensure_dir, file_lock, safe_name
from privacysplit.data import Dataset, load_dataset
from privacysplit.fidelity import Fidelity, base_fields, get_fidelity
from privacysplit.models import Network, build

#: bump when training code changes in a way that changes numbers
TRAINING_VERSION = 1


def cache_dir(path: str | Path | None = None) -> Path:
    """The cache folder: ``path``, else ``$PRIVACYSPLIT_CACHE``, else ``~/.cache/privacysplit``.

    Nothing is created here; :func:`base_weights_dir` and the evaluation cache create what
    they write, with one-line errors naming a path that cannot be created.
    """
    if path is not None:
        return Path(path)
    env = os.environ.get("PRIVACYSPLIT_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "privacysplit"


def base_weights_dir(cache: str | Path | None = None) -> Path:
    """Where trained base networks are stored: ``<cache folder>/base``.

    ``cache`` is the cache folder (``None``: :func:`cache_dir`), or an evaluation-cache file
    (``*.sqlite``), whose base networks then go beside it: everything a run writes lives
    where the user pointed ``--cache``.
    """
    if cache is None:
        return cache_dir() / "base"
    folder = Path(cache)
    if folder.is_file() or (folder.suffix in (".sqlite", ".sqlite3", ".db") and not folder.is_dir()):
        folder = folder.parent
    return folder / "base"


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/``"auto"`` picks CUDA when present; anything else must be a valid device."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"invalid device {device!r}; use 'cpu', 'cuda', 'cuda:N' or 'auto'") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for but CUDA is not available; use 'cpu'")
    return dev


def batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Shuffled index batches covering ``0..n-1`` once."""
    perm = torch.randperm(n, generator=generator)
    for i in range(0, n, batch_size):
        yield perm[i : i + batch_size]


def adam(params: list[nn.Parameter] | Iterator[nn.Parameter], lr: float) -> torch.optim.Adam:
    """Adam with the multi-tensor (``foreach``) update on every device.

    Why: torch picks the multi-tensor update by default only for CUDA tensors; on the CPU it
    loops over parameters, seven small kernels each.  Measured on one CPU thread, one step of
    a generic decoder's 760k parameters took 3.0 ms looped and 1.2 ms multi-tensor -- about
    a sixth of an attacker's training step.  Same arithmetic in the same order, so the same
    numbers to the bit (``tests/test_training.py``); ``fused=True`` is faster still (0.6 ms)
    but rounds differently, which would move every cached number.
    """
    return torch.optim.Adam(params, lr=lr, foreach=True)


def train_epochs(
    params: list[nn.Parameter] | Iterator[nn.Parameter],
    step_loss: Callable[[torch.Tensor], torch.Tensor],
    n: int,
    epochs: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
) -> float:
    """Run Adam over ``epochs`` passes; ``step_loss(idx)`` returns the loss of a batch.

    Returns the last batch loss (NaN if training diverged, so callers can report it).
    """
    params = [p for p in params if p.requires_grad]
    if not params or epochs == 0:
        return 0.0
    opt = adam(params, lr)
    loss = torch.tensor(0.0)
    for _ in range(epochs):
        for idx in batches(n, batch_size, generator):
            opt.zero_grad(set_to_none=True)
            loss = step_loss(idx)
            if not torch.isfinite(loss):
                return float("nan")
            loss.backward()
            opt.step()
    return float(loss.detach())


def train_classifier(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
    preprocess: Callable[[torch.Tensor], torch.Tensor] = lambda t: t,
    params: list[nn.Parameter] | None = None,
) -> float:
    """Cross-entropy training of ``model`` on in-memory tensors (already on its device)."""
    model.train()

    def step(idx: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(preprocess(x[idx])), y[idx])

    return train_epochs(
        params if params is not None else list(model.parameters()),
        step, len(x), epochs, batch_size, lr, generator,
    )


@torch.no_grad()
def accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    preprocess: Callable[[torch.Tensor], torch.Tensor] = lambda t: t,
    batch_size: int = 512,
) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)`` in eval mode."""
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += int((model(preprocess(x[i : i + batch_size])).argmax(1) == y[i : i + batch_size]).sum())
    model.train(was_training)
    return correct / max(len(x), 1)


def _base_key(name: str, dataset: str, labels: str, fidelity: Fidelity, seed: int) -> str:
    blob = json.dumps([name, dataset, labels, base_fields(fidelity), seed, TRAINING_VERSION], sort_keys=True)
    readable = safe_name(f"{name}-{dataset}-{labels}-e{fidelity.base_epochs}-n{fidelity.n_train}-s{seed}")
    return f"{readable}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


def pretrained_base(
    name: str,
    dataset: str | Dataset = "mnist",
    *,
    labels: str = "fine",
    fidelity: str | Fidelity = "cpu",
    seed: int = 0,
    device: str | torch.device | None = "cpu",
    cache: str | Path | None = None,
    data_root: str | Path | None = None,
    progress: bool = False,
) -> tuple[Network, float]:
    """The base network trained on ``dataset``, and its validation accuracy A_base.

    Trained once per (network, dataset, labels, the fidelity's :data:`~privacysplit.fidelity.BASE_FIELDS`, seed) and cached under
    :func:`base_weights_dir` of ``cache`` (a folder, or an evaluation-cache file to store
    them beside); later calls load the weights (``weights_only=True``).  Concurrent callers
    wait for the first one's training instead of repeating it.  ``cache=False`` disables
    the disk cache.
    """
    fid = get_fidelity(fidelity)
    dev = resolve_device(device)
    data = dataset if isinstance(dataset, Dataset) else load_dataset(dataset, data_root)
    if cache is False:
        return _train_base(name, data, labels, fid, seed, dev, progress)
    folder = ensure_dir(base_weights_dir(cache), "base-weights folder")
    path = folder / f"{_base_key(name, data.name, labels, fid, seed)}.pt"
    with file_lock(path.with_name(path.name + ".lock")):
        if path.exists():
            net = build(name, num_classes=data.num_classes(labels), input_shape=data.input_shape)
            try:
                blob = torch.load(path, map_location="cpu", weights_only=True)
                net.load_state_dict(blob["state_dict"])
                return net.to(dev), float(blob["accuracy"])
            except Exception as err:  # noqa: BLE001 - report which file is broken
                raise RuntimeError(
                    f"cached base weights {path} are unreadable ({err}); delete the file to retrain"
                ) from err
        net, acc = _train_base(name, data, labels, fid, seed, dev, progress)
        atomic_torch_save({"state_dict": net.state_dict(), "accuracy": acc}, path)
    return net, acc


def _train_base(
    name: str, data: Dataset, labels: str, fid: Fidelity, seed: int, dev: torch.device, progress: bool
) -> tuple[Network, float]:
    """Train the base network from ``seed``; its validation accuracy."""
    torch.manual_seed(seed)
    net = build(name, num_classes=data.num_classes(labels), input_shape=data.input_shape).to(dev)
    train = data.train.take(fid.n_train, seed)
    val = data.val.take(fid.n_val, seed)
    x, y = train.x.to(dev), data.labels(train, labels).to(dev)
    gen = torch.Generator().manual_seed(seed)
    if progress:
        print(f"training base {name} on {data.name} ({fid.base_epochs} epochs, {len(x)} images)")
    train_classifier(
        net, x, y, epochs=fid.base_epochs, batch_size=fid.batch_size, lr=fid.base_lr,
        generator=gen, preprocess=data.normalize,
    )
    acc = accuracy(net, val.x.to(dev), data.labels(val, labels).to(dev), data.normalize)
    return net, acc
