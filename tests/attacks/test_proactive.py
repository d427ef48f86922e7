"""The proactive objectives are bounded, and the proactive game shields the input.

The first in-game objective (``CE - lambda * attacker loss``) was unbounded: the encoder was
paid for making the frozen decoder's output anti-correlated with the input, which a fresh
attacker simply flips back.  The bounded decoder game (``game="decoder"``) still barely
moved a fresh attacker; the default game (``"dcor"``) penalises the distance correlation
between the features and what the class label does not explain.  These tests pin both
leakages at their ends and check that proactive training lowers a fresh attacker's SSIM at
LeNet's partition 3 by issue 15's margin.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from privacysplit.attacks import evaluate_split
from privacysplit.attacks.metrics import ssim_torch
from privacysplit.attacks.retraining import (
    DEFAULT_GAME,
    GAME_OBJECTIVES,
    PROACTIVE_VERSION,
    RIDGE_KERNELS,
    BatchStandardizer,
    _distillation,
    base_schedule,
    class_residual,
    constant_floor,
    distance_correlation,
    game_epochs,
    game_leakage,
    inversion_leakage,
    property_leakage,
    ridge_leakage,
)
from privacysplit.fidelity import get_fidelity
from privacysplit.models import split
from privacysplit.training import pretrained_base


@pytest.fixture(scope="module")
def digits(mnist):
    return mnist.val.x[:64]


def _floor(x: torch.Tensor) -> torch.Tensor:
    return constant_floor(x, "ssim")


def test_inversion_leakage_is_one_for_a_copy_and_zero_for_a_constant(digits):
    floor = _floor(digits)
    assert floor.shape == (64,) and 0.0 < float(floor.mean()) < 0.5
    assert float(inversion_leakage(digits, digits, "ssim", floor)) == pytest.approx(1.0, abs=1e-5)
    mean = digits.mean(0, keepdim=True).expand_as(digits).contiguous()
    assert float(inversion_leakage(mean, digits, "ssim", floor)) == pytest.approx(0.0, abs=1e-4)


def test_inversion_leakage_does_not_reward_anti_correlation(digits):
    # the unbounded objective paid for this; a fresh attacker inverts it back
    floor = _floor(digits)
    flipped = 1.0 - digits
    assert float(ssim_torch(flipped, digits)) < 0.0
    assert float(inversion_leakage(flipped, digits, "ssim", floor)) == 0.0
    mse_mean = constant_floor(digits, "mse")
    mean = digits.mean(0, keepdim=True).expand_as(digits).contiguous()
    assert float(inversion_leakage(mean, digits, "mse", mse_mean)) == pytest.approx(0.0, abs=1e-6)
    assert float(inversion_leakage(flipped, digits, "mse", mse_mean)) == 0.0
    assert float(inversion_leakage(digits, digits, "mse", mse_mean)) == pytest.approx(1.0)


def test_inversion_leakage_gradient_is_finite_and_vanishes_below_the_floor(digits):
    floor = _floor(digits)
    noisy = (digits + 0.1 * torch.randn(digits.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    recon = noisy.clone().requires_grad_(True)
    inversion_leakage(recon, digits, "ssim", floor).backward()
    assert torch.isfinite(recon.grad).all() and recon.grad.abs().sum() > 0
    below = (1.0 - digits).requires_grad_(True)
    inversion_leakage(below, digits, "ssim", floor).backward()
    assert below.grad is None or float(below.grad.abs().sum()) == 0.0


def test_property_leakage_is_certainty_not_correctness():
    k = 10
    uniform = torch.zeros(8, k)
    assert float(property_leakage(uniform, k)) == pytest.approx(0.0, abs=1e-6)
    right = torch.full((8, k), -50.0)
    right[:, 3] = 50.0
    wrong = torch.full((8, k), -50.0)
    wrong[:, 7] = 50.0
    # a confidently wrong attacker leaks as much (a relabelling away from a right one)
    assert float(property_leakage(right, k)) == pytest.approx(1.0, abs=1e-6)
    assert float(property_leakage(wrong, k)) == pytest.approx(1.0, abs=1e-6)
    half = torch.log(torch.tensor([[0.5, 0.5] + [1e-9] * (k - 2)]))
    assert float(property_leakage(half, k)) == pytest.approx(1 - math.log(2) / math.log(k), abs=1e-4)


def test_batch_standardizer_ignores_feature_scale():
    f = torch.randn(32, 4, 5, 5, generator=torch.Generator().manual_seed(1))
    s = BatchStandardizer()
    assert torch.allclose(s(f), s(1000.0 * f + 3.0), atol=1e-4)


def test_distance_correlation_is_one_for_a_similarity_and_small_for_independence():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(64, 20, generator=g)
    rot = torch.linalg.qr(torch.randn(20, 20, generator=g))[0]
    assert float(distance_correlation(a, a)) == pytest.approx(1.0, abs=1e-4)
    assert float(distance_correlation(a, 3.0 * a @ rot + 5.0)) == pytest.approx(1.0, abs=1e-4)
    # independent samples: small in low dimension; the (V-statistic) estimate is biased
    # upwards in high dimension at small n, still clearly below a dependence
    assert float(distance_correlation(torch.randn(256, 2, generator=g), torch.randn(256, 2, generator=g))) < 0.3
    assert float(distance_correlation(a, torch.randn(64, 20, generator=g))) < 0.9
    # a relation the Pearson correlation misses
    b = torch.randn(256, 1, generator=g)
    assert float(distance_correlation(b, b.pow(2))) > 0.3 > abs(float(torch.corrcoef(torch.cat([b, b.pow(2)], 1).T)[0, 1]))


def test_game_leakage_is_bounded_with_finite_gradients(digits):
    g = torch.Generator().manual_seed(1)
    labels = torch.arange(64) % 10
    residual = class_residual(digits, labels, 10)
    for feats in (torch.randn(64, 16, 8, 8, generator=g), 1e4 * torch.randn(64, 3, generator=g),
                  torch.zeros(64, 5), digits.clone(), residual.clone()):
        f = feats.clone().requires_grad_(True)
        game_leakage(f, residual).backward()  # its ends, 1 and 0, are pinned below
        assert torch.isfinite(f.grad).all()
    assert float(game_leakage(residual, residual)) == pytest.approx(1.0, abs=1e-4)
    assert float(game_leakage(torch.zeros(64, 5), residual)) < 1e-3  # a constant release leaks nothing
    # repeated rows (zero distances) keep the gradient finite
    f = torch.ones(64, 4).requires_grad_(True)
    game_leakage(f, residual).backward()
    assert torch.isfinite(f.grad).all()


def test_ridge_leakage_reads_what_its_kernel_can_and_nothing_from_noise():
    g = torch.Generator().manual_seed(2)
    z = torch.randn(128, 3, generator=g)
    linear, square = z @ torch.randn(3, 50, generator=g), z[:, :1].pow(2).repeat(1, 10)
    assert float(ridge_leakage(z, linear, "linear")) > 0.95  # held out: the relation, not the rows
    assert float(ridge_leakage(z, linear, "rbf")) > 0.8
    assert float(ridge_leakage(z, square, "linear")) < 0.05 < 0.8 < float(ridge_leakage(z, square, "rbf"))
    for kernel in RIDGE_KERNELS:
        assert float(ridge_leakage(z, torch.randn(128, 50, generator=g), kernel)) < 0.05
        assert float(ridge_leakage(torch.zeros(128, 4), linear, kernel)) == 0.0  # a constant release
        f = (1e3 * z).requires_grad_(True)
        leak = ridge_leakage(f, linear, kernel)
        leak.backward()
        assert 0.0 <= float(leak) <= 1.0 and torch.isfinite(f.grad).all() and f.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="valid: linear, rbf"):
        ridge_leakage(z, linear, "poly")


def test_class_residual_removes_what_the_label_says(digits):
    labels = torch.arange(64) % 10
    residual = class_residual(digits, labels, 10)
    assert residual.shape == digits.shape
    for c in range(10):
        assert float(residual[labels == c].mean(0).abs().max()) < 1e-5
    # a signal the label determines has no residual (a one-hot of the label itself)
    onehot = torch.nn.functional.one_hot(labels, 10).float()
    assert float(class_residual(onehot, labels, 10).abs().max()) == 0.0


def test_unknown_game_is_refused_and_the_game_is_reported(mnist, cache_root):
    base = pretrained_base("lenet", mnist, fidelity="smoke", cache=cache_root)[0]
    enc, cloud = split(copy.deepcopy(base), 3)
    with pytest.raises(ValueError, match="valid: dcor, dcor_kd, dcor_ridge, decoder"):
        evaluate_split(enc, cloud, mnist, fidelity="smoke", threat="proactive", game="nopeek")
    assert DEFAULT_GAME == "dcor" and set(GAME_OBJECTIVES) == {"dcor", "dcor_kd", "dcor_ridge", "decoder"}
    assert game_epochs("cpu") == 24 and game_epochs("cpu", "decoder") == 4  # 1.5 n_p (n_ec + n_d), n_p n_ec
    assert game_epochs("cpu", "dcor_kd") == 24 and base_schedule("cpu", "dcor_kd") == base_schedule("cpu", "dcor")
    with pytest.raises(ValueError, match="valid: dcor, dcor_kd, dcor_ridge, decoder"):
        game_epochs("cpu", "nopeek")
    for game in GAME_OBJECTIVES:
        enc, cloud = split(copy.deepcopy(base), 3)
        out = evaluate_split(enc, cloud, mnist, fidelity="smoke", threat="proactive", game=game)
        assert out["game"] == game and math.isfinite(out["ssim"]) and 0.0 <= out["accuracy"] <= 1.0
    enc, cloud = split(copy.deepcopy(base), 3)
    assert "game" not in evaluate_split(enc, cloud, mnist, fidelity="smoke", game="decoder")


def test_proactive_cache_key_carries_the_game_version(cache_root, tmp_path):
    from privacysplit.envs.evaluator import Evaluator

    reactive = Evaluator("lenet", fidelity="smoke", cache=False).config()
    proactive = Evaluator("lenet", fidelity="smoke", threat="proactive", cache=False).config()
    assert "proactive_version" not in reactive
    assert proactive["proactive_version"] == PROACTIVE_VERSION
    assert {k: v for k, v in proactive.items() if k not in ("threat", "proactive_version")} == {
        k: v for k, v in reactive.items() if k != "threat"}


def test_a_game_other_than_the_default_enters_the_proactive_keys_only(cache_root):
    """``game="dcor_kd"`` must not read the default game's cached numbers, and the default
    game's keys (and every table measured with it) must stay what they were."""
    from privacysplit.envs.evaluator import Evaluator

    default = Evaluator("lenet", fidelity="smoke", threat="proactive", cache=False)
    kd = Evaluator("lenet", fidelity="smoke", threat="proactive", game="dcor_kd", cache=False)
    assert "game" not in default.config() and "game" not in default.seed_config()
    assert kd.config() == {**default.config(), "game": "dcor_kd"}
    assert kd.seed_config() == {**default.seed_config(), "game": "dcor_kd"}
    assert Evaluator("lenet", fidelity="smoke", game="dcor_kd", cache=False).config() == \
        Evaluator("lenet", fidelity="smoke", cache=False).config()  # reactive plans play no game
    with pytest.raises(ValueError, match="valid: dcor, dcor_kd, dcor_ridge, decoder"):
        Evaluator("lenet", fidelity="smoke", threat="proactive", game="nopeek", cache=False)


def test_distillation_is_zero_on_the_teachers_logits_and_grows_away_from_them():
    g = torch.Generator().manual_seed(0)
    teacher = torch.randn(16, 10, generator=g)
    assert float(_distillation(teacher, teacher)) == pytest.approx(0.0, abs=1e-6)
    near, far = teacher + 0.1 * torch.randn(16, 10, generator=g), torch.randn(16, 10, generator=g)
    assert 0 < float(_distillation(near, teacher)) < float(_distillation(far, teacher))


def test_bad_lambda_is_refused(mnist, cache_root):
    base = pretrained_base("lenet", mnist, fidelity="smoke", cache=cache_root)[0]
    enc, cloud = split(copy.deepcopy(base), 3)
    with pytest.raises(ValueError, match="adv_lambda"):
        evaluate_split(enc, cloud, mnist, fidelity="smoke", threat="proactive", adv_lambda=-1.0)


def _reactive_against_proactive(mnist, cache_root, fid, *, noise=0.0, game=None, lam=None, prior=True) -> dict:
    """The reactive plan (no noise) and the proactive one at LeNet partition 3, seed 0."""
    base = pretrained_base("lenet", mnist, fidelity=fid, cache=cache_root)[0]
    out = {}
    for threat, feature_noise in (("reactive", 0.0), ("proactive", noise)):
        enc, cloud = split(copy.deepcopy(base), 3)
        extra = {"prior_encoder": base.sub(0, 4), "prior_cache": cache_root} if prior else {}
        out[threat] = evaluate_split(enc, cloud, mnist, fidelity=fid, threat=threat, feature_noise=feature_noise,
                                     adv_lambda=lam if threat == "proactive" else None, game=game, seed=0, **extra)
    if game is not None:
        assert out["proactive"]["game"] == game
    return out


@pytest.mark.slow
def test_proactive_with_feature_noise_shields_at_lenet_partition_3(mnist, cache_root):
    # issue 15's target at cpu fidelity against evaluation version 7's attacker (whitened on the
    # noise-free reactive release, standardised on the noisy proactive one, the whole split at
    # the full epochs), against the reactive plan without noise, seed 0: dcor_ridge at lambda 16
    # with noise of 0.3 x the features' std on the release, SSIM 0.978 -> 0.785 at 2.8 points of
    # accuracy (dcor_kd: 0.832, 0.146 below; README, "Proactive trade-off").
    out = _reactive_against_proactive(mnist, cache_root, get_fidelity("cpu"), noise=0.3, game="dcor_ridge", lam=16.0)
    assert out["proactive"]["ssim"] <= out["reactive"]["ssim"] - 0.15, out
    assert out["proactive"]["accuracy"] >= out["reactive"]["accuracy"] - 0.03, out


#: a small fidelity for the default suite: half the images, no attack prior (scratch decoders)
SMALL = get_fidelity("cpu").with_(name="small", n_train=1000, n_val=250, n_d=4, prior_epochs=0)


def test_proactive_game_at_small_fidelity(mnist, cache_root):
    """The default suite's end-to-end proactive check (the ``cpu`` one above is ``slow``): at
    LeNet partition 3 with noise 0.3, ``dcor_ridge`` at lambda 16 lowers a fresh attacker's
    SSIM 0.15 below the reactive plan's at under 3 points of accuracy, and more than
    ``dcor_kd`` at the same lambda (measured under evaluation version 7: reactive 0.963 at
    accuracy 0.916; ``dcor_ridge`` 0.794 at 0.908, ``dcor_kd`` 0.814 at 0.904); the attacker
    reads the noisy release standardised (``cpu``'s ``attack_input="auto"``)."""
    out = _reactive_against_proactive(mnist, cache_root, SMALL, noise=0.3, game="dcor_ridge", lam=16.0, prior=False)
    assert out["proactive"]["ssim"] <= out["reactive"]["ssim"] - 0.15, out
    assert out["proactive"]["accuracy"] >= out["reactive"]["accuracy"] - 0.03, out
    assert "attack_input" not in out["proactive"] and out["reactive"]["attack_input"] == "whiten"
    kd = _reactive_against_proactive(mnist, cache_root, SMALL, noise=0.3, game="dcor_kd", lam=16.0, prior=False)
    assert out["proactive"]["ssim"] <= kd["proactive"]["ssim"] - 0.01, (out, kd)


def test_the_whitened_attacker_reads_what_the_noise_free_game_hides(mnist, cache_root):
    """Why ``cpu`` whitens noise-free features (since evaluation version 6): the default dCor
    game without noise fools a standardised attacker (SSIM 0.957 -> 0.888 at LeNet partition 3
    here, under version 7's attacker on the whole split; 0.910 -> 0.814 under version 6's, 0.686
    on the 2,000-image subset of version 5) much more than a whitened one on the same encoder
    (0.963 -> 0.949): the game leaves the input's detail in directions of small variance, which
    whitening restores."""
    plain = _reactive_against_proactive(mnist, cache_root, SMALL.with_(name="small", attack_input="standardize"),
                                        prior=False)
    white = _reactive_against_proactive(mnist, cache_root, SMALL, prior=False)
    assert white["proactive"]["accuracy"] == plain["proactive"]["accuracy"]  # one encoder, two attackers
    assert plain["proactive"]["ssim"] <= plain["reactive"]["ssim"] - 0.05, plain
    assert white["proactive"]["ssim"] >= plain["proactive"]["ssim"] + 0.05, (white, plain)
    assert white["proactive"]["ssim"] >= white["reactive"]["ssim"] - 0.03, white


def test_the_env_plays_the_game_it_is_given(cache_root):
    import gymnasium as gym

    import privacysplit  # noqa: F401  (registers the env)

    env = gym.make("PrivacySplit-v0", base="lenet", fidelity="smoke", threat="proactive", game="dcor_kd",
                   cache=str(cache_root) + "/game.sqlite")
    info = env.unwrapped.evaluate("3 | none")
    assert info["game"] == "dcor_kd" and env.unwrapped.evaluator.config()["game"] == "dcor_kd"


def test_retraining_does_not_depend_on_whether_the_attack_prior_was_cached(mnist, tmp_path):
    """With feature noise, retraining draws from torch's global generator; training the attack
    prior (a cache miss) draws from it too, reading it (a hit) does not.  The same evaluation
    must come out the same whether its prior is trained, in memory or on disk (it did not:
    0.964 / 0.962 / 0.960 accuracy at ``cpu``)."""
    from privacysplit.attacks import prior as prior_module

    fid = SMALL.with_(prior_epochs=1, n_d=1)
    base = pretrained_base("lenet", mnist, fidelity=fid, cache=str(tmp_path))[0]

    def run() -> tuple[float, float]:
        enc, cloud = split(copy.deepcopy(base), 3)
        out = evaluate_split(enc, cloud, mnist, fidelity=fid, feature_noise=0.3, seed=3,
                             prior_encoder=base.sub(0, 4), prior_cache=str(tmp_path))
        return out["accuracy"], out["privacy_loss"]

    trained = run()  # the prior is trained and written
    in_memory = run()
    prior_module._MEMO.clear()
    on_disk = run()
    assert trained == in_memory == on_disk
