"""Reconstruction samples: packed into one string, unpacked exactly, laid out as a grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from privacysplit.attacks.samples import decode_samples, encode_samples, sample_grid


def test_round_trip_is_exact_at_8_bits():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 8, 6, generator=gen)
    rec = torch.rand(4, 3, 8, 6, generator=gen) * 1.5 - 0.2  # clamped to [0, 1]
    both = decode_samples(encode_samples(x, rec))
    assert both.shape == (2, 4, 3, 8, 6) and both.dtype == np.uint8
    np.testing.assert_array_equal(both[0], (x * 255).round().numpy().astype(np.uint8))
    np.testing.assert_array_equal(both[1], (rec.clamp(0, 1) * 255).round().numpy().astype(np.uint8))
    grid = sample_grid(encode_samples(x, rec))
    assert grid.shape == (3, 16, 24)  # originals on top, the four images side by side
    np.testing.assert_array_equal(grid[:, 8:, 6:12], both[1, 1])


def test_bad_input_is_a_value_error():
    with pytest.raises(ValueError, match="one shape"):
        encode_samples(torch.zeros(2, 1, 4, 4), torch.zeros(3, 1, 4, 4))
    with pytest.raises(ValueError, match="not a reconstruction sample"):
        decode_samples("garbage")


def test_mnist_sample_is_small():
    x = torch.rand(4, 1, 28, 28)
    assert len(encode_samples(x, x)) < 9000
