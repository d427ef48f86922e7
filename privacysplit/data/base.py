"""In-memory datasets with a task label and a private attribute.

Every dataset is held as float tensors in ``[0, 1]`` (images ``N x C x H x W``, tabular
``N x F``), which is what the inversion attacker reconstructs and what SSIM's
``data_range=1`` assumes.  Normalisation (per-channel mean and std) is applied by the
training code in front of the encoder, and recorded for export.

Each sample carries two labels:

* ``fine`` — the finest label (the digit, the CIFAR-100 class, the Purchase100 class);
* ``coarse`` — a coarser grouping (parity, CIFAR-100 superclass, ...).

Inversion attacks (P0/P1) train the task on ``fine``.  Property inference (P2) mirrors the
paper's CIFAR-100 setup: the task is ``coarse`` and the private attribute is ``fine``, the
information the features should not carry beyond the task.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class Split:
    """One split of a dataset: inputs, fine labels and coarse labels."""

    x: torch.Tensor
    fine: torch.Tensor
    coarse: torch.Tensor

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def take(self, n: int | None, seed: int = 0) -> Split:
        """A deterministic seeded subset of ``n`` samples (all of them when ``n`` is None)."""
        if n is None or n >= len(self):
            return self
        idx = torch.from_numpy(np.random.default_rng(seed).permutation(len(self))[:n])
        return Split(self.x[idx], self.fine[idx], self.coarse[idx])


@dataclass
class Dataset:
    """A dataset ready for training: three splits plus what the models need to know.

    Attributes:
        name: registry name.
        train, val, test: the splits.  ``val`` measures accuracy and privacy during search;
            ``test`` is for final reports only.
        num_fine, num_coarse: class counts of the two labels.
        mean, std: per-channel normalisation statistics of the training split.
        description: what the labels mean.
    """

    name: str
    train: Split
    val: Split
    test: Split
    num_fine: int
    num_coarse: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    description: str = ""
    _fingerprint: str | None = field(default=None, init=False, repr=False, compare=False)

    def fingerprint(self) -> str:
        """A content hash of every split's inputs and labels (computed once, then kept).

        Part of every cache key: two datasets under one name (files replaced under
        ``data_root``, a user's own tensors) never share cached numbers.  Hashing the loaded
        tensors rather than file sizes and times also covers in-memory datasets and survives
        copying the files elsewhere; BLAKE2b reads about 1 GB/s, so even CIFAR-10 costs
        well under a second, once per process.
        """
        if self._fingerprint is None:
            digest = hashlib.blake2b(digest_size=16)
            digest.update(repr((self.name, self.num_fine, self.num_coarse)).encode())
            for split in (self.train, self.val, self.test):
                for tensor in (split.x, split.fine, split.coarse):
                    array = tensor.detach().cpu().contiguous().numpy()
                    digest.update(repr((array.dtype.str, array.shape)).encode())
                    digest.update(memoryview(array).cast("B"))
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])

    @property
    def channels(self) -> int:
        return self.input_shape[0]

    @property
    def image_size(self) -> int:
        return self.input_shape[-1] if len(self.input_shape) == 3 else 1

    @property
    def is_image(self) -> bool:
        return len(self.input_shape) == 3

    def labels(self, split: Split, kind: str) -> torch.Tensor:
        if kind not in ("fine", "coarse"):
            raise ValueError(f"unknown label kind {kind!r}; valid: fine, coarse")
        return split.fine if kind == "fine" else split.coarse

    def num_classes(self, kind: str) -> int:
        return self.num_fine if kind == "fine" else self.num_coarse

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Standardise a batch with the training statistics (on the batch's device)."""
        shape = (1, -1, 1, 1) if x.dim() == 4 else (1, -1)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(shape)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(shape)
        if x.dim() == 2 and mean.numel() == 1:
            mean, std = mean.view(1, 1), std.view(1, 1)
        return (x - mean) / std


def stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (one value for tabular data)."""
    if x.dim() == 4:
        mean = x.mean(dim=(0, 2, 3))
        std = x.std(dim=(0, 2, 3)).clamp_min(1e-6)
        return tuple(mean.tolist()), tuple(std.tolist())
    return (float(x.mean()),), (max(float(x.std()), 1e-6),)


def make_dataset(
    name: str,
    x: torch.Tensor,
    fine: torch.Tensor,
    coarse: torch.Tensor,
    *,
    num_fine: int,
    num_coarse: int,
    n_val: int,
    n_test: int,
    seed: int = 0,
    description: str = "",
    test: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
) -> Dataset:
    """Split arrays into train/val/test with a fixed seed (stratified by ``fine``).

    When ``test`` is given (a dataset with an official test split), only the validation split
    is carved out of ``x``.
    """
    rng = np.random.default_rng(seed)
    labels = fine.numpy()
    val_idx, test_idx, train_idx = [], [], []
    classes = np.unique(labels)
    for c in classes:
        idx = rng.permutation(np.flatnonzero(labels == c))
        nv = round(n_val * len(idx) / len(labels))
        nt = 0 if test is not None else round(n_test * len(idx) / len(labels))
        val_idx.extend(idx[:nv])
        test_idx.extend(idx[nv : nv + nt])
        train_idx.extend(idx[nv + nt :])

    def part(idx: list[int]) -> Split:
        t = torch.as_tensor(rng.permutation(np.asarray(idx, dtype=np.int64)))
        return Split(x[t], fine[t], coarse[t])

    train = part(train_idx)
    test_split = Split(*test) if test is not None else part(test_idx)
    mean, std = stats(train.x)
    return Dataset(
        name=name,
        train=train,
        val=part(val_idx),
        test=test_split,
        num_fine=num_fine,
        num_coarse=num_coarse,
        mean=mean,
        std=std,
        description=description,
    )
