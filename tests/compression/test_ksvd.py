"""F2 is a real K-SVD: OMP-sparse codes, unit-norm atoms, an error that never rises."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import orthogonal_mp
from torch import nn

from privacysplit.compression import CompressionSettings, apply_plan, get
from privacysplit.compression.lowrank import _keep_largest, ksvd, nonzeros_for
from privacysplit.models import LayerSpec, build, count_params


def _matrix(m: int = 48, n: int = 90, seed: int = 0) -> torch.Tensor:
    """A matrix with a decaying spectrum, like a trained layer's."""
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(m, m, generator=g))
    v, _ = torch.linalg.qr(torch.randn(n, m, generator=g))
    s = torch.logspace(0, -1.5, m)
    return (u * s) @ v.T + 0.01 * torch.randn(m, n, generator=g)


def test_codes_are_sparse_atoms_unit_norm_and_the_error_never_rises():
    w = _matrix()
    result = ksvd(w, rank=16, nonzeros=4, iterations=4)
    assert result.codes.shape == (16, 90) and result.dictionary.shape == (48, 16)
    assert int((result.codes != 0).sum(0).max()) <= 4
    assert torch.allclose(result.dictionary.norm(dim=0), torch.ones(16), atol=1e-5)
    errors = result.errors
    assert len(errors) == 5
    assert all(b <= a + 1e-12 for a, b in zip(errors, errors[1:], strict=False))
    assert errors[-1] < errors[0] - 0.01  # the iterations do something
    recon = result.dictionary @ result.codes
    assert float((w - recon).norm() / w.norm()) == pytest.approx(errors[-1], rel=1e-4)


def test_the_first_coding_is_omp_over_the_orthonormal_svd_dictionary():
    w = _matrix(30, 50, seed=1).double().numpy()
    u = np.linalg.svd(w, full_matrices=False)[0][:, :10]
    closed = _keep_largest(u.T @ w, 3)
    omp = orthogonal_mp(u, w, n_nonzero_coefs=3, precompute=True)
    np.testing.assert_allclose(closed, omp, atol=1e-10)


def test_more_nonzeros_fit_better_and_k_svd_beats_the_svd_at_equal_nonzeros():
    w = _matrix()
    sparse, denser = ksvd(w, 16, 4, 3), ksvd(w, 16, 8, 3)
    assert denser.errors[-1] < sparse.errors[-1]
    # F2 at k = 16, s = 8 stores 48 x 16 + 8 x 90 = 1,488 non-zeros; a truncated SVD of the
    # same size keeps rank 1,488 / (48 + 90) = 10
    s = torch.linalg.svdvals(w)
    svd_error = float(s[10:].pow(2).sum().sqrt() / s.pow(2).sum().sqrt())
    assert denser.errors[-1] < svd_error


@pytest.mark.parametrize(("rank", "nonzeros", "iterations", "message"), [
    (0, 1, 1, "rank must lie in 1..48"),
    (16, 17, 1, "nonzeros must lie in 1..16"),
    (16, 4, -1, "iterations must be >= 0"),
])
def test_invalid_arguments_are_refused(rank, nonzeros, iterations, message):
    with pytest.raises(ValueError, match=message):
        ksvd(_matrix(), rank, nonzeros, iterations)


def test_nonzeros_follow_the_sparsity_setting():
    assert nonzeros_for(256, 0.75) == 64
    assert nonzeros_for(30, 0.75) == 8
    assert nonzeros_for(3, 0.99) == 1  # never an empty code
    assert nonzeros_for(10, 0.0) == 10


def test_f2_layer_keeps_its_codes_sparse_through_training():
    torch.manual_seed(0)
    linear = nn.Linear(60, 40)
    settings = CompressionSettings(rank_fraction=0.5, f2_sparsity=0.75, f2_iterations=2)
    layer = get("F2").transform(linear, LayerSpec("linear", 0, 0, 0, 60, 40), settings)
    k, s = 20, 5
    assert layer[0].weight.shape == (k, 60) and int((layer[0].weight != 0).sum(0).max()) <= s
    assert torch.allclose(layer[1].weight.norm(dim=0), torch.ones(k), atol=1e-5)
    assert count_params(layer) == 40 * k + s * 60 + 40
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    layer(torch.randn(8, 60)).pow(2).sum().backward()
    opt.step()
    assert int((layer[0].weight != 0).sum(0).max()) <= s  # the mask holds


def test_f2_on_lenet_reconstructs_the_trained_matrix_as_its_errors_say():
    net = build("lenet", in_channels=1).eval()
    encoder, _ = apply_plan(net, "6 | 6:F2")
    w = net.body[6].weight.detach()
    approx = encoder.body[6][1].weight.detach() @ encoder.body[6][0].weight.detach()
    direct = ksvd(w, 30, 8, CompressionSettings().f2_iterations)
    assert float((w - approx).norm() / w.norm()) == pytest.approx(direct.errors[-1], rel=1e-4)


def test_factorisations_are_remembered_and_handed_out_as_copies(monkeypatch):
    from privacysplit.compression import lowrank

    calls = []
    real = lowrank.ksvd
    monkeypatch.setattr(lowrank, "ksvd", lambda *a: calls.append(a) or real(*a))
    w = _matrix(20, 30, seed=7)
    first = lowrank.cached_ksvd(w, 5, 2, 2)
    first.codes.zero_()
    second = lowrank.cached_ksvd(w, 5, 2, 2)
    assert len(calls) == 1 and int((second.codes != 0).sum()) > 0
    lowrank.cached_ksvd(w + 1e-3, 5, 2, 2)  # other weights: a new factorisation
    assert len(calls) == 2
