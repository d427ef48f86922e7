"""Attack strength on LeNet/mnist: leakage falls with depth, and no weak-decoder artefacts.

The issue's two failure modes are what these guard: a weak decoder that ranks early layers
as *more* private than late ones (order reversed), and a decoder that collapses to a
constant image (the same SSIM at every depth).
"""

from __future__ import annotations

import copy

import pytest

from privacysplit.attacks import evaluate_split
from privacysplit.fidelity import get_fidelity
from privacysplit.models import split
from privacysplit.training import pretrained_base
from tests.attacks.conftest import QUICK

#: conv1, pool1, pool2, fc120, fc84 (after its ReLU)
DEPTHS = (0, 2, 5, 6, 9)
NOISE = 0.03


def _ssim_by_depth(mnist, cache_root, fidelity, threat="reactive") -> dict[int, float]:
    base = pretrained_base("lenet", mnist, fidelity="cpu", cache=cache_root)[0]
    out = {}
    for p in DEPTHS:
        enc, cloud = split(copy.deepcopy(base), p)
        out[p] = evaluate_split(enc, cloud, mnist, fidelity=fidelity, threat=threat)["ssim"]
    return out


def _check_trend(ssim: dict[int, float], first_at_least: float) -> None:
    values = [ssim[p] for p in DEPTHS]
    assert values[0] >= first_at_least, ssim
    assert values[0] >= values[-1] + 0.15, ssim  # clearly higher than after the last FC layer
    for a, b in zip(values, values[1:], strict=False):
        assert b <= a + NOISE, ssim  # never rises with depth by more than noise
    assert max(values) - min(values) > 0.15, ssim  # not a collapse to one constant level


def test_ssim_falls_with_depth_quick(mnist, cache_root):
    _check_trend(_ssim_by_depth(mnist, cache_root, QUICK), 0.9)


@pytest.mark.slow
def test_ssim_falls_with_depth_cpu_fidelity(mnist, cache_root):
    # He et al. 2019 report 0.989 after LeNet's first layer; the cpu attacker reaches ~0.97
    _check_trend(_ssim_by_depth(mnist, cache_root, get_fidelity("cpu")), 0.95)


@pytest.mark.slow
def test_proactive_training_lowers_leakage(mnist, cache_root):
    fid = get_fidelity("cpu")
    reactive = _ssim_by_depth(mnist, cache_root, fid)
    proactive = _ssim_by_depth(mnist, cache_root, fid, threat="proactive")
    # the fresh measuring attacker still finds less than against the reactive encoder
    assert sum(proactive.values()) < sum(reactive.values()), (reactive, proactive)


def test_fast_attacker_is_within_tolerance_of_the_reference_on_lenet_conv1(mnist, cache_root):
    """The search's attacker (the partition's prior, fine-tuned one epoch) against the
    reference (scratch mirror and generic decoders plus the prior fine-tuned longer, best
    held-out epoch of each, best of all) on the same features: within 0.02 SSIM."""
    from privacysplit.attacks import invert
    from privacysplit.attacks.fitting import release
    from privacysplit.attacks.prior import prior_state

    base = pretrained_base("lenet", mnist, fidelity="smoke", cache=cache_root)[0]
    enc = base.sub(0, 1)
    state = prior_state(enc, mnist, metric="ssim", epochs=1, batch_size=128, lr=3e-3, cache=False)
    x, xv = mnist.train.x[:512], mnist.val.x[:128]
    f, fv = release(enc, x, mnist.normalize), release(enc, xv, mnist.normalize)
    kw = dict(metric="ssim", batch_size=64, lr=3e-3, seed=0)
    fast = invert(enc, f, x, fv, xv, epochs=1, prior=state, prior_epochs=1, **kw)
    ref = invert(enc, f, x, fv, xv, epochs=3, prior=state, prior_epochs=3, selection="full", **kw)
    assert set(ref.scores) == {"prior", "prior_tuned", "mirror", "generic"}
    assert set(fast.scores) == {"prior", "prior_tuned"}  # no scratch decoder when a prior fits
    assert ref.ssim >= max(ref.scores.values()) - 1e-3  # the reference reports its best candidate
    assert fast.ssim > 0.9, fast
    assert ref.ssim - fast.ssim <= 0.02, (fast.scores, ref.scores)
