"""evaluate_split: options, label conventions, determinism, read-only attacks, edge cases."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from privacysplit.attacks import evaluate_split, invert
from privacysplit.attacks.fitting import release
from privacysplit.attacks.metrics import ssim_loss, ssim_skimage
from privacysplit.attacks.samples import decode_samples
from privacysplit.attacks.whitening import read_as
from privacysplit.data import make_dataset
from privacysplit.fidelity import get_fidelity
from privacysplit.models import LayerSpec, Network, build, split
from privacysplit.training import pretrained_base
from tests.attacks.conftest import QUICK, constant_split, identity_split

SMOKE = get_fidelity("smoke")


@pytest.fixture(scope="module")
def lenet(mnist, cache_root):
    return pretrained_base("lenet", mnist, fidelity="smoke", cache=cache_root)[0]


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_bad_options_list_the_valid_ones(mnist, lenet):
    enc, cloud = split(copy.deepcopy(lenet), 2)
    with pytest.raises(ValueError, match="reactive, proactive"):
        evaluate_split(enc, cloud, mnist, fidelity=SMOKE, threat="passive")
    with pytest.raises(ValueError, match="mse, ssim, property"):
        evaluate_split(enc, cloud, mnist, fidelity=SMOKE, privacy="psnr")
    with pytest.raises(ValueError, match="non-negative"):
        evaluate_split(enc, cloud, mnist, fidelity=SMOKE, feature_noise=-1.0)


def test_smoke_result_keys_and_ranges(mnist, lenet):
    enc, cloud = split(copy.deepcopy(lenet), 5)
    out = evaluate_split(enc, cloud, mnist, fidelity=SMOKE, return_attacker=True)
    for key in ("accuracy", "privacy_loss", "ssim", "mse", "mse_norm", "inv_mse", "attacker",
                "train_seconds", "attack_seconds"):
        assert key in out
    assert "error" not in out
    assert 0 <= out["accuracy"] <= 1 and 0 <= out["privacy_loss"] <= 1
    assert out["privacy_loss"] == pytest.approx(max(out["ssim"], 0.0))
    assert out["inv_mse"] == pytest.approx(1 / out["mse"])
    x = mnist.val.x[:8]
    feats = release(enc, x, mnist.normalize)
    with torch.no_grad():
        recon = out["attacker_model"](feats)
    assert recon.shape == x.shape and float(recon.min()) >= 0 and float(recon.max()) <= 1


def test_same_seed_same_numbers(mnist, lenet):
    results = []
    for _ in range(2):
        enc, cloud = split(copy.deepcopy(lenet), 2)
        out = evaluate_split(enc, cloud, mnist, fidelity=SMOKE, threat="proactive", seed=3)
        results.append({k: v for k, v in out.items() if not k.endswith("_seconds")})
    assert results[0] == results[1]


def test_reactive_attack_leaves_the_encoder_bit_identical(mnist, lenet):
    enc, cloud = split(copy.deepcopy(lenet), 9)
    before = _state(enc)
    # N_ec = 0: no retraining, so every change would come from the attack
    out = evaluate_split(enc, cloud, mnist, fidelity=SMOKE.with_(n_ec=0))
    assert "error" not in out
    after = _state(enc)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_attack_alone_is_read_only_with_batch_norm(mnist):
    torch.manual_seed(0)
    net = build("vgg11", num_classes=10, input_shape=(1, 32, 32))
    enc, _ = split(net, 2)  # conv, bn, relu: running statistics must not move
    enc.train()
    before = _state(enc)
    x = mnist.train.x[:64]
    feats = release(enc, x, mnist.normalize)
    invert(enc, feats, x, feats[:16], x[:16], metric="mse", epochs=1, batch_size=32, lr=3e-3, seed=0)
    assert all(torch.equal(before[k], v) for k, v in _state(enc).items())
    assert enc.training  # release() restores the mode


def test_identity_encoder_is_inverted_almost_perfectly(mnist):
    enc, cloud = identity_split()
    out = evaluate_split(enc, cloud, mnist, fidelity=get_fidelity("cpu").with_(n_ec=0))
    assert out["ssim"] >= 0.95, out
    assert out["privacy_loss"] >= 0.95


def _best_constant_ssim(train_x: torch.Tensor, val_x: torch.Tensor, steps: int = 300) -> float:
    """SSIM of the single image that maximises mean SSIM over the training images."""
    torch.manual_seed(0)
    logit = torch.logit(train_x.mean(0, keepdim=True).clamp(0.01, 0.99)).requires_grad_(True)
    opt = torch.optim.Adam([logit], lr=0.05)
    for _ in range(steps):
        idx = torch.randint(0, len(train_x), (128,))
        opt.zero_grad()
        ssim_loss(torch.sigmoid(logit).expand(128, -1, -1, -1), train_x[idx]).backward()
        opt.step()
    image = torch.sigmoid(logit.detach()).expand_as(val_x)
    return float(ssim_skimage(image, val_x).mean())


def test_input_independent_encoder_leaks_nothing(mnist):
    enc, cloud = constant_split()
    out = evaluate_split(enc, cloud, mnist, fidelity=QUICK, privacy="ssim")
    train = mnist.train.take(QUICK.n_train, 0)
    val = mnist.val.take(QUICK.n_val, 0)
    best_constant = _best_constant_ssim(train.x, val.x)
    # a blind attacker can at best answer the SSIM-optimal constant image (~0.29 on mnist,
    # above the mean image's ~0.15), and it must not do better than that
    assert out["ssim"] <= best_constant + 0.02, (out, best_constant)
    assert out["ssim"] >= out["ssim_mean"]
    enc, cloud = constant_split()
    out = evaluate_split(enc, cloud, mnist, fidelity=QUICK, privacy="mse")
    assert out["privacy_loss"] <= 0.05, out
    assert out["mse_norm"] >= 0.95


def test_property_inference_raw_beats_deep_and_constant_is_chance(mnist, cache_root):
    fid = QUICK.with_(n_ec=0)
    enc, cloud = identity_split(classes=2)
    raw = evaluate_split(enc, cloud, mnist, fidelity=fid, privacy="property")
    coarse_lenet = pretrained_base("lenet", mnist, labels="coarse", fidelity="smoke", cache=cache_root)[0]
    enc, cloud = split(copy.deepcopy(coarse_lenet), 9)
    deep = evaluate_split(enc, cloud, mnist, fidelity=fid, privacy="property")
    enc, cloud = constant_split(classes=2)
    blind = evaluate_split(enc, cloud, mnist, fidelity=fid, privacy="property")
    assert raw["property_chance"] == pytest.approx(0.1, abs=0.03)  # ten balanced digits
    assert raw["property_accuracy"] >= 0.8, raw
    assert raw["property_accuracy"] >= deep["property_accuracy"] - 0.02, (raw, deep)
    assert blind["property_accuracy"] <= blind["property_chance"] + 0.05, blind
    assert raw["privacy_loss"] == raw["property_accuracy"]


def test_feature_noise_costs_accuracy_and_privacy_loss(mnist, lenet):
    clean = evaluate_split(*split(copy.deepcopy(lenet), 5), mnist, fidelity=SMOKE, privacy="mse")
    noisy = evaluate_split(*split(copy.deepcopy(lenet), 5), mnist, fidelity=SMOKE, privacy="mse",
                           feature_noise=10.0)
    assert noisy["privacy_loss"] < clean["privacy_loss"]
    assert noisy["accuracy"] < clean["accuracy"]


def test_divergence_is_reported_not_raised(mnist):
    class Explode(nn.Module):
        def forward(self, x):
            return x * float("nan")

    enc = Network([LayerSpec("dropout")], [Explode()], input_shape=(1, 32, 32))
    _, cloud = identity_split()
    out = evaluate_split(enc, cloud, mnist, fidelity=SMOKE)
    assert "error" in out and out["accuracy"] == 0.0
    assert all(math.isfinite(v) for v in out.values() if isinstance(v, float))


def _tabular():
    g = torch.Generator().manual_seed(0)
    fine = torch.randint(0, 4, (600,), generator=g)
    x = (torch.rand(600, 30, generator=g) < (0.2 + 0.15 * fine.view(-1, 1))).float()
    return make_dataset("tab", x, fine, fine % 2, num_fine=4, num_coarse=2, n_val=100, n_test=100)


def test_tabular_data_inverts_with_mse_and_refuses_ssim():
    data = _tabular()
    net = build("fcn", num_classes=4, input_shape=(30,))
    enc, cloud = split(net, 1)
    with pytest.raises(ValueError, match="privacy='mse'"):
        evaluate_split(enc, cloud, data, fidelity=SMOKE, privacy="ssim")
    out = evaluate_split(enc, cloud, data, fidelity=SMOKE, privacy="mse")
    assert 0 <= out["privacy_loss"] <= 1 and math.isnan(out["ssim"])
    out = evaluate_split(enc, cloud, data, fidelity=SMOKE, privacy="property", threat="proactive")
    assert 0 <= out["property_accuracy"] <= 1


def test_proactive_restarts_apply_under_the_proactive_threat_only(mnist, lenet):
    """``proactive_restarts`` gives the shifted-prior attacker warm restarts against proactive
    encoders (here the prior no longer fits them, so restarts run); reactive evaluations never
    restart, so their numbers are exactly those without the option."""
    spec = "smoke:prior_epochs=1:n_d=3:shift_attack=prior"
    p = 5

    def run(fid, threat):
        enc, cloud = split(copy.deepcopy(lenet), p)
        return evaluate_split(enc, cloud, mnist, fidelity=get_fidelity(fid), threat=threat, seed=0,
                              prior_encoder=lenet.sub(0, p + 1), prior_cache=False)

    proactive = run(spec + ":proactive_restarts=2", "proactive")
    assert proactive["attack_fallback"] == 1 and proactive["attack_restarts"] >= 1
    plain, with_restarts = run(spec, "reactive"), run(spec + ":proactive_restarts=2", "reactive")
    assert with_restarts["attack_restarts"] == 0
    assert (with_restarts["privacy_loss"], with_restarts["accuracy"]) == (plain["privacy_loss"], plain["accuracy"])


def test_proactive_aux_split_attacks_proactive_encoders_with_the_whole_training_split(mnist, lenet):
    """``proactive_aux="split"`` hands the measuring attacker every training image under the
    proactive threat, on the encoder the same retraining produced (accuracy unchanged); a
    reactive evaluation is exactly the one without the option."""
    spec = "smoke:n_d=2"
    p = 2

    def run(fid, threat):
        enc, cloud = split(copy.deepcopy(lenet), p)
        return evaluate_split(enc, cloud, mnist, fidelity=get_fidelity(fid), threat=threat, seed=0)

    subset = run(spec, "proactive")
    whole = run(spec + ":proactive_aux=split", "proactive")
    assert (subset["attack_images"], whole["attack_images"]) == (SMOKE.n_train, len(mnist.train))
    assert whole["accuracy"] == subset["accuracy"]
    assert whole["privacy_loss"] != subset["privacy_loss"]
    plain, split_option = run(spec, "reactive"), run(spec + ":proactive_aux=split", "reactive")
    assert split_option["attack_images"] == SMOKE.n_train
    assert (split_option["privacy_loss"], split_option["accuracy"]) == (plain["privacy_loss"], plain["accuracy"])


def test_whitened_attack_input_reads_the_same_encoder_through_a_whitener(mnist, lenet):
    """``attack_input="whiten"`` changes the attacker only: the same retrained encoder
    (accuracy equal), a prior of its own (trained on whitened base features), a different
    privacy loss; ``"both"`` is the better of the two attacks, exactly; the attacker handed
    back reads raw released features and reproduces the reconstructions the evaluation kept."""
    p = 5

    def run(fid):
        enc, cloud = split(copy.deepcopy(lenet), p)
        out = evaluate_split(enc, cloud, mnist, fidelity=get_fidelity(fid), seed=0, return_attacker=True,
                             prior_encoder=lenet.sub(0, p + 1), prior_cache=False)
        return enc, out

    _, plain = run("smoke:prior_epochs=1:n_d=2")
    enc, white = run("smoke:prior_epochs=1:n_d=2:attack_input=whiten")
    assert white["attack_input"] == "whiten" and "attack_input" not in plain
    assert white["accuracy"] == plain["accuracy"]
    assert white["prior_expected"] != plain["prior_expected"]
    assert white["privacy_loss"] != plain["privacy_loss"]
    _, both = run("smoke:prior_epochs=1:n_d=2:attack_input=both")  # each input its attacker; the better counts
    assert both["privacy_loss"] == max(plain["privacy_loss"], white["privacy_loss"])
    winner = white if white["privacy_loss"] > plain["privacy_loss"] else plain
    assert both["attack_input_won"] == ("whiten" if winner is white else "standardize")
    assert (both["ssim"], both["prior_expected"]) == (winner["ssim"], winner["prior_expected"])
    assert both["attack_steps"] == plain["attack_steps"] + white["attack_steps"]  # its compute: both attackers
    kept = torch.from_numpy(decode_samples(white["reconstruction"])[1].astype("float32"))
    shown = mnist.val.take(SMOKE.n_val, 0).x[:len(kept)]
    with torch.no_grad():
        recon = white["attacker_model"](release(enc, shown, mnist.normalize)).clamp(0, 1).mul(255).round()
    assert (recon - kept).abs().max() <= 1.0


@pytest.mark.parametrize("noise", [0.0, 0.5])
def test_whitened_attacker_discounts_the_release_noise_it_knows(mnist, lenet, noise, monkeypatch):
    """Under ``feature_noise`` the whitening attacker fits its whitener with the release's
    noise variance, ``(noise x the clean features' std)^2`` (the Wiener gain of
    :class:`FeatureWhitener`), so it does not blow noise-only directions up; without noise it is
    the plain whitener."""
    import privacysplit.attacks.retraining as retraining

    seen = []

    def spy(kind, feats, feats_val, noise_var=0.0):
        seen.append(noise_var)
        return read_as(kind, feats, feats_val, noise_var)

    monkeypatch.setattr(retraining, "read_as", spy)
    p = 5
    enc, cloud = split(copy.deepcopy(lenet), p)
    evaluate_split(enc, cloud, mnist, fidelity=get_fidelity("smoke:prior_epochs=1:n_d=1:attack_input=whiten"),
                   seed=0, feature_noise=noise, prior_encoder=lenet.sub(0, p + 1), prior_cache=False)
    clean = release(enc, mnist.train.take(SMOKE.n_train, 0).x, mnist.normalize)
    assert seen == [pytest.approx((noise * float(clean.std())) ** 2, rel=1e-6)]
    assert (seen[0] > 0) == (noise > 0)


def test_split_steps_attacks_proactive_encoders_with_the_whole_split_at_the_subsets_epochs(
        mnist, lenet, monkeypatch):
    """``proactive_aux="split_steps"``: under the proactive threat the measuring attacker
    reads the whole training split for the epochs ``Fidelity.attack_epochs`` scales down
    (``n_d`` 4 with a fine-tune of 2 on 128 images: on the split, a fine-tune of 1 and the one
    epoch past it that is always left); the same retrained encoder as ``"split"``."""
    import privacysplit.attacks.retraining as retraining

    calls = []

    def spy(*args, **kwargs):
        calls.append((len(args[2]), kwargs["epochs"], kwargs["prior_epochs"]))
        return invert(*args, **kwargs)

    monkeypatch.setattr(retraining, "invert", spy)
    p = 5

    def run(fid):
        enc, cloud = split(copy.deepcopy(lenet), p)
        return evaluate_split(enc, cloud, mnist, fidelity=get_fidelity(fid), threat="proactive", seed=0,
                              prior_encoder=lenet.sub(0, p + 1), prior_cache=False)

    whole = run("smoke:prior_epochs=1:n_d=4:prior_finetune=2:proactive_aux=split")
    steps = run("smoke:prior_epochs=1:n_d=4:prior_finetune=2:proactive_aux=split_steps")
    n = len(mnist.train)
    assert calls == [(n, 4, 2), (n, 2, 1)]
    assert whole["attack_images"] == steps["attack_images"] == n
    assert whole["accuracy"] == steps["accuracy"]


def test_proactive_shift_tolerance_decides_whether_the_proactive_attacker_trains_on(mnist, lenet, monkeypatch):
    """``proactive_shift_tolerance`` reaches the proactive attacker alone: at 0 it trains the
    fine-tuned prior on (``prior_long``) whenever it is short of its base score; a tolerance no
    fine-tuned prior can miss stops it at ``prior_tuned``; the reactive attacker keeps 0.03."""
    import privacysplit.attacks.retraining as retraining

    seen = []

    def spy(*args, **kwargs):
        seen.append(kwargs["shift_tolerance"])
        return invert(*args, **kwargs)

    monkeypatch.setattr(retraining, "invert", spy)
    p = 5

    def run(tolerance, threat="proactive"):
        enc, cloud = split(copy.deepcopy(lenet), p)
        fid = get_fidelity(f"smoke:prior_epochs=1:n_d=3:prior_finetune=1:shift_attack=prior:"
                           f"proactive_shift_tolerance={tolerance}")
        return evaluate_split(enc, cloud, mnist, fidelity=fid, threat=threat, seed=0,
                              prior_encoder=lenet.sub(0, p + 1), prior_cache=False)

    eager, patient_never = run(0), run(10)
    run(0, "reactive")
    assert seen == [0.0, 10.0, 0.03]
    assert "score_prior_long" in eager and eager["attack_fallback"] == 1
    assert "score_prior_long" not in patient_never and patient_never["attack_fallback"] == 0
    assert eager["accuracy"] == patient_never["accuracy"]  # the same encoder, attacked two ways
    assert eager["score_prior_tuned"] == patient_never["score_prior_tuned"]  # then one trained on
