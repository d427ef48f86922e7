"""One footing for every evaluation: shared data subsets, A_base, complete cache keys."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from privacysplit.attacks.retraining import game_epochs
from privacysplit.compression import CompressionSettings
from privacysplit.data.base import Split
from privacysplit.envs import evaluator as evaluator_module
from privacysplit.envs.evaluator import Evaluator
from privacysplit.models.profiles import DeviceProfile


def _evaluator(tmp_path, **kwargs) -> Evaluator:
    kwargs.setdefault("fidelity", "smoke")
    kwargs.setdefault("cache", str(tmp_path / "evals.sqlite"))
    return Evaluator("lenet", **kwargs)


def test_full_uncompressed_plan_scores_exactly_a_base(cache_root, tmp_path):
    ev = _evaluator(tmp_path, cache=False)
    info = ev.evaluate(ev.full_plan())
    assert str(ev.full_plan()) == "10 | none"
    assert info["accuracy"] == info["accuracy_base"]
    assert info["R_A"] == 1.0


def test_a_base_does_not_depend_on_the_first_plan(cache_root, tmp_path):
    first = _evaluator(tmp_path, cache=False)
    a = first.evaluate("3 | 0:C3 3:C1")["accuracy_base"]
    second = _evaluator(tmp_path, cache=False)
    b = second.evaluate("10 | none")["accuracy_base"]
    third = _evaluator(tmp_path, cache=False)
    third.evaluate("6 | 0:W2 3:W1 6:F1")
    assert a == b == third.base()[1]


def test_every_plan_trains_and_measures_on_the_same_images(cache_root, tmp_path, monkeypatch):
    seeds: list[tuple[int | None, int]] = []
    original = Split.take

    def spy(self, n, seed=0):
        seeds.append((n, seed))
        return original(self, n, seed)

    ev = _evaluator(tmp_path, cache=False, seed=7)
    ev.base()
    monkeypatch.setattr(Split, "take", spy)
    for plan in ("3 | 0:C3", "6 | 0:W1 3:W2", "10 | none"):
        ev.evaluate(plan)
    sizes = {ev.fidelity.n_train, ev.fidelity.n_val}
    used = {seed for n, seed in seeds if n in sizes}
    assert used == {7}, seeds


def test_proactive_a_base_trains_as_many_epochs_as_a_proactive_plan(cache_root, tmp_path, monkeypatch):
    calls = []
    original = evaluator_module.evaluate_split

    def spy(*args, **kwargs):
        f = kwargs["fidelity"]
        calls.append((f.n_ec, f.batch_size, kwargs.get("attack", True), kwargs["threat"]))
        return original(*args, **kwargs)

    monkeypatch.setattr(evaluator_module, "evaluate_split", spy)
    fid = evaluator_module.get_fidelity("smoke").with_(n_ec=2, n_p=3)
    _evaluator(tmp_path, cache=False, threat="proactive", fidelity=fid).base()
    # the dCor game: 1.5 x n_p x (n_ec + n_d) = 1.5 x 3 x (2 + 1) -> 14 joint epochs, in batches twice as large
    assert game_epochs(fid) == 14
    assert calls == [(14, 2 * fid.batch_size, False, "reactive")]


@pytest.mark.parametrize(
    "change",
    [
        {"profile": DeviceProfile(name="slow-uplink", uplink_bps=1e4)},
        {"settings": CompressionSettings(w1_sparsity=0.8)},
    ],
    ids=["profile", "settings"],
)
def test_every_input_that_changes_a_number_is_in_the_cache_key(cache_root, tmp_path, change):
    plan = "3 | 0:W1 3:W1"
    first = _evaluator(tmp_path).evaluate(plan)
    again = _evaluator(tmp_path).evaluate(plan)
    assert again["cache_hit"] and again["latency_s"] == first["latency_s"]
    changed = _evaluator(tmp_path, **change).evaluate(plan)
    assert not changed["cache_hit"]
    if "profile" in change:
        assert changed["latency_s"] > first["latency_s"]
    else:
        assert changed["params"] < first["params"]


def _write_images(root, shade: int) -> None:
    rng = np.random.default_rng(shade)
    for split, n in (("train", 12), ("test", 4)):
        for label in ("a", "b"):
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for j in range(n):
                pixels = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) // 2 + (shade if label == "a" else 0)
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{j}.png")


def test_changed_files_under_data_root_are_a_cache_miss(cache_root, tmp_path):
    root = tmp_path / "images"
    _write_images(root, shade=100)
    plan = "3 | 0:W1"
    first = _evaluator(tmp_path, dataset="imagefolder", data_root=root).evaluate(plan)
    assert _evaluator(tmp_path, dataset="imagefolder", data_root=root).evaluate(plan)["cache_hit"]
    _write_images(root, shade=20)
    changed = _evaluator(tmp_path, dataset="imagefolder", data_root=root).evaluate(plan)
    assert not changed["cache_hit"]
    assert changed["ssim"] != first["ssim"]


def test_device_type_is_part_of_the_key(cache_root, tmp_path):
    ev = _evaluator(tmp_path, cache=False)
    assert ev.config()["device_type"] == "cpu"
    assert ev.config()["profile"]["uplink_bps"] == ev.profile.uplink_bps


def test_attack_settings_and_profile_do_not_reseed_retraining(cache_root, tmp_path):
    """Version 5: the per-plan seed hashes what retraining reads, so a plan retrains into the
    same network under any attacker or device profile and only the privacy number moves."""
    plan = "6 | 0:W2 3:C1"
    smoke = _evaluator(tmp_path, cache=False)
    patient = _evaluator(tmp_path, cache=False, fidelity=smoke.fidelity.with_(n_d=2, decoder_lr=1e-2),
                         profile="midrange_phone")
    assert smoke.key(plan) != patient.key(plan)
    assert smoke.plan_seed(plan) == patient.plan_seed(plan)
    a, b = smoke.evaluate(plan), patient.evaluate(plan)
    assert a["accuracy"] == b["accuracy"]
    assert a["privacy_loss"] != b["privacy_loss"]  # a different attacker, a different measurement
    longer = _evaluator(tmp_path, cache=False, fidelity=smoke.fidelity.with_(n_ec=2))
    assert longer.plan_seed(plan) != smoke.plan_seed(plan)
    proactive = _evaluator(tmp_path, cache=False, threat="proactive")
    assert proactive.plan_seed(plan) != smoke.plan_seed(plan)


def test_the_resource_denominator_does_not_follow_the_global_rng(tmp_path):
    """S1's denominator is the uncompressed network's storage, whatever its initialisation drew.
    It used to count the structure's non-zero weights, with the structure built on the global
    RNG: a weight of exactly 0.0 (``torch.manual_seed(479)`` draws one in lenet) made a resumed
    search's S differ from the uninterrupted one's (61,705 against 61,706 parameters).  The
    structure is now built on a forked RNG seeded with the evaluator's seed, and costed dense."""
    import torch

    torch.manual_seed(479)
    before = torch.get_rng_state()
    first = _evaluator(tmp_path)
    assert torch.equal(torch.get_rng_state(), before)  # building an evaluator draws nothing from it
    torch.manual_seed(12345)
    again = _evaluator(tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(first.structure.parameters(), again.structure.parameters(), strict=True))

    drew_a_zero = _evaluator(tmp_path, seed=479)  # the structure's seed is the evaluator's
    assert int(sum((p == 0).sum() for p in drew_a_zero.structure.parameters() if p.dim() > 1)) == 1
    assert drew_a_zero.structure_cost.total().params == first.structure_cost.total().params == 61706
    encoder = drew_a_zero.structure.sub(0, 6)
    assert drew_a_zero._costs(encoder)["S1"] == first._costs(encoder)["S1"]
