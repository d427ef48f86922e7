"""A user's own data: tensors, ``torch.utils.data.Dataset`` pairs, torchvision datasets.

Everything ends as a :class:`UserDataset` (a :class:`~.base.Dataset`): inputs as float32,
the task label ``y`` and, optionally, a private attribute ``p`` for property inference (P2).

* Shapes are kept: 1x28x28, 3x64x64, 5x40x40 or flat feature vectors all work; nothing is
  resized to 32x32 (the pool's networks need at least 32x32, a user's own network takes
  whatever it takes).
* Images (``N x C x H x W``, or ``N x H x W`` for one channel) must lie in ``[0, 1]``, or be
  ``uint8`` (divided by 255): the attacker reconstructs them and SSIM assumes a data range
  of 1.  Integer labels ``0 .. K-1``.
* Normalisation: by default none (``mean=0``, ``std=1``): the network sees your tensors as
  they are, which is what a model you trained on them expects.  Pass ``mean``/``std`` (per
  channel) when your model was trained on standardised inputs, or ``normalize="stats"`` to
  standardise with the training split's statistics (the built-in datasets' choice).
* Splits: your ``test`` split is kept for final reports; the validation split that accuracy
  and privacy are measured on during a search is ``val_fraction`` of your training split,
  stratified by label, seed 0.

Labels: the task label is ``coarse`` and the private attribute ``fine``, the convention of
the built-in datasets for property inference (:mod:`.base`).  With an inversion metric
(``mse``/``ssim``) the task is trained on ``fine``, so :func:`task_view` makes ``fine`` the
task label too; :func:`resolve_dataset` does that for the evaluator.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from privacysplit.data.base import Dataset, make_dataset, stats

#: what ``dataset=`` may be, for error messages
ACCEPTED = (
    "a dataset name (privacysplit.data.list_datasets()), 'torchvision:<Class>' with data_root, "
    "a .pt file holding x_train, y_train, x_test, y_test (and optionally p_train, p_test), a "
    "privacysplit Dataset, a (train, test) pair of torch.utils.data.Dataset, or a 4-tuple of "
    "tensors (x_train, y_train, x_test, y_test)"
)


@dataclass
class UserDataset(Dataset):
    """A :class:`~.base.Dataset` built from a user's data.

    Attributes:
        has_private: whether a private attribute was given (``fine`` holds it, ``coarse``
            the task); without one ``fine`` and ``coarse`` are both the task label.
    """

    has_private: bool = False


def _images(x, what: str) -> torch.Tensor:
    t = torch.as_tensor(x)
    if t.dtype == torch.uint8:
        t = t.float() / 255.0
    elif not t.is_floating_point():
        raise ValueError(f"{what} must be float (images in [0, 1]) or uint8, got {t.dtype}")
    t = t.detach().to(torch.float32).contiguous()
    if t.dim() == 3:  # N x H x W: one channel
        t = t.unsqueeze(1)
    if t.dim() not in (2, 4):
        raise ValueError(f"{what} must be N x C x H x W images, N x H x W or N x F features, got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{what} holds NaN or infinite values")
    if t.dim() == 4:
        lo, hi = float(t.min()), float(t.max())
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise ValueError(
                f"{what} holds values in [{lo:.3g}, {hi:.3g}]; pass images scaled to [0, 1] (the attacker "
                "reconstructs them and SSIM assumes a range of 1) and give your model's "
                "normalisation as mean=/std="
            )
    return t


def _labels(y, n: int, what: str) -> torch.Tensor:
    t = torch.as_tensor(y)
    if t.is_floating_point() and not torch.equal(t, t.round()):
        raise ValueError(f"{what} must hold integer class labels, got {t.dtype} with fractions")
    t = t.detach().to(torch.int64).reshape(-1)
    if len(t) != n:
        raise ValueError(f"{what} has {len(t)} labels for {n} inputs")
    if len(t) and int(t.min()) < 0:
        raise ValueError(f"{what} holds negative labels; use 0 .. K-1")
    return t


def from_tensors(
    x_train,
    y_train,
    x_test,
    y_test,
    *,
    private: tuple | None = None,
    name: str = "tensors",
    val_fraction: float = 0.1,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    normalize: str = "none",
    description: str = "",
) -> UserDataset:
    """A dataset from tensors (or arrays): ``(x_train, y_train, x_test, y_test)``.

    Args:
        private: ``(p_train, p_test)``, a private attribute per sample for P2 (property
            inference); the task stays ``y``.
        name: shown in results (the cache key holds a hash of the contents as well).
        val_fraction: share of the training split held out for validation.
        mean, std: per-channel normalisation your model expects (default none).
        normalize: ``none`` (default) or ``stats`` (standardise with the training split's
            per-channel statistics); ignored when ``mean``/``std`` are given.

    Raises:
        ValueError: for mismatched lengths or shapes, non-integer labels, images outside
            ``[0, 1]``, or a validation split that would leave no training data.
    """
    if normalize not in ("none", "stats"):
        raise ValueError(f"unknown normalize {normalize!r}; valid: none, stats")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction!r}")
    x = _images(x_train, "x_train")
    tx = _images(x_test, "x_test")
    if x.shape[1:] != tx.shape[1:]:
        raise ValueError(f"x_train has inputs of shape {tuple(x.shape[1:])} but x_test {tuple(tx.shape[1:])}")
    y = _labels(y_train, len(x), "y_train")
    ty = _labels(y_test, len(tx), "y_test")
    if private is not None:
        if not isinstance(private, (tuple, list)) or len(private) != 2:
            raise ValueError("private must be a pair (p_train, p_test) of label tensors")
        p = _labels(private[0], len(x), "p_train")
        tp = _labels(private[1], len(tx), "p_test")
    else:
        p, tp = y, ty
    n_val = max(1, math.floor(val_fraction * len(x)))
    if len(x) - n_val < 1:
        raise ValueError(f"{len(x)} training samples leave none for training after validation")
    num_task = int(max(y.max(), ty.max())) + 1 if len(ty) else int(y.max()) + 1
    num_private = int(max(p.max(), tp.max())) + 1 if len(tp) else int(p.max()) + 1
    # make_dataset stratifies by ``fine`` (the private attribute when there is one).
    ds = make_dataset(name, x, p, y, num_fine=num_private, num_coarse=num_task, n_val=n_val,
                      n_test=0, test=(tx, tp, ty), description=description)
    channels = x.shape[1] if x.dim() == 4 else 1
    if mean is not None or std is not None:
        m = _per_channel(mean if mean is not None else 0.0, channels, "mean")
        s = _per_channel(std if std is not None else 1.0, channels, "std")
        if min(s) <= 0:
            raise ValueError(f"std must be positive, got {s}")
    elif normalize == "stats":
        m, s = stats(ds.train.x)
    else:
        m, s = (0.0,) * channels, (1.0,) * channels
    fields = {f.name: getattr(ds, f.name) for f in dataclasses.fields(Dataset) if f.init}
    fields.update(mean=m, std=s, description=description or _describe(x, num_task, private is not None))
    return UserDataset(**fields, has_private=private is not None)


def _per_channel(value, channels: int, what: str) -> tuple[float, ...]:
    values = [float(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
    if len(values) == 1:
        values *= channels
    if len(values) != channels:
        raise ValueError(f"{what} needs {channels} values (one per channel), got {len(values)}")
    return tuple(values)


def _describe(x: torch.Tensor, classes: int, private: bool) -> str:
    shape = "x".join(map(str, x.shape[1:]))
    extra = "; fine = private attribute, coarse = task" if private else "; fine = coarse = task label"
    return f"user tensors {shape}, {classes} classes{extra}"


def task_view(data: Dataset) -> Dataset:
    """``data`` with the task label in ``fine`` as well, for inversion metrics.

    A :class:`UserDataset` with a private attribute keeps the task in ``coarse``; inversion
    attacks train the task on ``fine``, so they get this view.  Other datasets are returned
    unchanged.
    """
    if not isinstance(data, UserDataset) or not data.has_private:
        return data

    def swap(split):
        return dataclasses.replace(split, fine=split.coarse)

    return dataclasses.replace(
        data, train=swap(data.train), val=swap(data.val), test=swap(data.test),
        num_fine=data.num_coarse, has_private=False,
        description=data.description + " (task view: fine = task)",
    )


# ----------------------------------------------------------------------------- datasets


def _sample_input(item, what: str) -> torch.Tensor:
    if isinstance(item, torch.Tensor):
        return item
    if isinstance(item, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(item))
    from PIL import Image  # pillow comes with torchvision

    if isinstance(item, Image.Image):
        arr = np.asarray(item)
        arr = arr[:, :, None] if arr.ndim == 2 else arr
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
    raise ValueError(f"{what}: samples must be tensors, arrays or PIL images, got {type(item).__name__}")


def _materialise(ds, what: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    try:
        n = len(ds)
    except TypeError as err:
        raise ValueError(f"{what} must be a map-style torch.utils.data.Dataset (with len())") from err
    if n == 0:
        raise ValueError(f"{what} is empty")
    xs, ys, ps = [], [], []
    for i in range(n):
        item = ds[i]
        if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
            raise ValueError(f"{what}[{i}] must be (x, y) or (x, y, private), got {type(item).__name__}")
        xs.append(_sample_input(item[0], f"{what}[{i}]"))
        ys.append(int(item[1]))
        if len(item) == 3:
            ps.append(int(item[2]))
    shapes = {tuple(x.shape) for x in xs}
    if len(shapes) > 1:
        raise ValueError(
            f"{what} holds inputs of {len(shapes)} different shapes (e.g. {sorted(shapes)[:2]}); give the "
            "dataset a transform that resizes them to one size"
        )
    if ps and len(ps) != n:
        raise ValueError(f"{what}: some samples have a private attribute and some do not")
    x = torch.stack(xs)
    if x.dtype == torch.uint8 and x.dim() == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        x = x.permute(0, 3, 1, 2)  # N x H x W x C arrays (torchvision's raw CIFAR layout)
    return x, torch.tensor(ys), (torch.tensor(ps) if ps else None)


def from_datasets(train, test, *, name: str | None = None, **options) -> UserDataset:
    """A dataset from a ``(train, test)`` pair of ``torch.utils.data.Dataset``.

    Each sample is ``(x, y)`` or ``(x, y, private)``; ``x`` a tensor, array or PIL image
    (converted to ``C x H x W``; ``uint8`` divided by 255).  Works for torchvision datasets
    read from a local root (``ImageFolder``, ``MNIST(root, download=False)``, ...): give them
    a ``transform`` when their images differ in size.  ``options`` go to :func:`from_tensors`.
    """
    x, y, p = _materialise(train, "train dataset")
    tx, ty, tp = _materialise(test, "test dataset")
    if (p is None) != (tp is None):
        raise ValueError("the private attribute must be given in both the train and the test dataset")
    private = (p, tp) if p is not None else None
    label = name or type(train).__name__.lower()
    return from_tensors(x, y, tx, ty, private=private, name=label, **options)


def from_torchvision(cls_name: str, root: str | Path | None, **options) -> UserDataset:
    """``torchvision.datasets.<cls_name>`` read from ``root``, never downloaded.

    Tries ``cls(root, train=True/False)`` and then ``cls(root, split="train"/"test")``.
    """
    import torchvision.datasets as tvd

    if root is None:
        raise ValueError(f"torchvision:{cls_name} is read from disk: pass data_root (the folder that holds its files)")
    cls = getattr(tvd, cls_name, None)
    if not isinstance(cls, type):
        names = sorted(n for n in dir(tvd) if isinstance(getattr(tvd, n), type) and n[0].isupper())
        raise ValueError(f"unknown torchvision dataset {cls_name!r}; valid: {', '.join(names)}")
    parts = []
    for train, split in ((True, "train"), (False, "test")):
        try:
            try:
                parts.append(cls(str(root), train=train, download=False))
            except TypeError:
                parts.append(cls(str(root), split=split, download=False))
        except RuntimeError as err:  # torchvision: "Dataset not found or corrupted..."
            raise FileNotFoundError(f"torchvision {cls_name} not found under {root}: {err}") from err
    return from_datasets(parts[0], parts[1], name=cls_name.lower(), **options)


def load_tensor_file(path: str | Path, **options) -> UserDataset:
    """A ``.pt`` file holding a dict ``x_train, y_train, x_test, y_test`` (and optionally
    ``p_train, p_test``), read with ``weights_only=True``; what ``--dataset file.pt`` reads."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no dataset file {path}")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    keys = ("x_train", "y_train", "x_test", "y_test")
    if not isinstance(blob, dict) or any(k not in blob for k in keys):
        have = sorted(blob) if isinstance(blob, dict) else type(blob).__name__
        raise ValueError(f"{path} must hold a dict with {', '.join(keys)} (and optionally p_train, p_test); it has {have}")
    private = (blob["p_train"], blob["p_test"]) if "p_train" in blob else None
    return from_tensors(*(blob[k] for k in keys), private=private, name=options.pop("name", path.stem), **options)


def resolve_dataset(dataset, data_root: str | Path | None = None, *, privacy: str = "ssim") -> Dataset:
    """Whatever ``dataset=`` was given, as a :class:`~.base.Dataset` for one privacy metric.

    Raises:
        ValueError: for anything else (the message lists what is accepted), or property
            inference on user data without a private attribute.
    """
    from privacysplit.data import load_dataset

    if isinstance(dataset, Dataset):
        data = dataset
    elif isinstance(dataset, (str, Path)):
        text = str(dataset)
        if text.startswith("torchvision:"):
            data = from_torchvision(text.split(":", 1)[1], data_root)
        elif text.endswith((".pt", ".pth")):
            data = load_tensor_file(text)
        else:
            data = load_dataset(text, data_root)
    elif isinstance(dataset, (tuple, list)) and len(dataset) == 4:
        data = from_tensors(*dataset)
    elif isinstance(dataset, (tuple, list)) and len(dataset) == 2 and all(
        isinstance(d, torch.utils.data.Dataset) for d in dataset
    ):
        data = from_datasets(*dataset)
    else:
        raise ValueError(f"cannot use {type(dataset).__name__} as dataset; give {ACCEPTED}")
    if privacy == "property":
        if isinstance(data, UserDataset) and not data.has_private:
            raise ValueError(
                "privacy 'property' needs a private attribute: pass private=(p_train, p_test) to "
                "from_tensors, or samples (x, y, private) in your datasets"
            )
        return data
    return task_view(data)


__all__ = [
    "ACCEPTED", "UserDataset", "from_datasets", "from_tensors", "from_torchvision",
    "load_tensor_file", "resolve_dataset", "task_view",
]
