"""Fidelity: cache-key stability, ``preset:field=value`` specs and field validation."""

from __future__ import annotations

import pytest

from privacysplit.fidelity import FIDELITIES, Fidelity, get_fidelity, retraining_fields


def test_fields_added_later_leave_every_old_key_unchanged():
    """Keys of every fidelity that leaves the late fields at their defaults (``smoke``, a
    custom fidelity) are the ones written before ``shift_attack`` existed; ``cpu`` sets them
    since evaluation version 5 (two more since version 6, two more since 7), so its key moved
    on purpose; each earlier ``cpu`` is the preset with the later fields set back."""
    assert FIDELITIES["smoke"].key() == "smoke-8ef9d80a8c"
    assert Fidelity(name="cpu").key() == "cpu-39e3cb24b0"  # version 4's cpu preset
    assert "shift_attack" not in FIDELITIES["smoke"].to_dict()
    version6 = FIDELITIES["cpu"].with_(name="cpu", proactive_aux="split_steps", reactive_aux="subset",
                                       proactive_shift_tolerance=0.03)
    assert version6.key() == "cpu-c512cdd88e" and "reactive_aux" not in version6.to_dict()
    version5 = version6.with_(name="cpu", proactive_aux="subset", attack_input="standardize")
    assert version5.key() == "cpu-e3063cf429" and "attack_input" not in version5.to_dict()
    assert FIDELITIES["cpu"].key() == "cpu-32c5ed15b3"
    cpu = FIDELITIES["cpu"]
    assert (cpu.shift_attack, cpu.proactive_restarts, cpu.proactive_aux, cpu.attack_input, cpu.reactive_aux,
            cpu.proactive_shift_tolerance) == ("prior", 4, "split", "auto", "split", 0.0)
    assert get_fidelity("cpu:proactive_aux=split").key() != FIDELITIES["cpu"].key()
    assert get_fidelity("cpu:attack_input=whiten").key() != FIDELITIES["cpu"].key()


def test_retraining_fields_leave_out_what_only_the_attacker_reads():
    cpu = FIDELITIES["cpu"]
    patient = cpu.with_(prior_epochs=64, shift_attack="scratch", proactive_restarts=0, n_d=9, decoder_lr=1e-2,
                        proactive_aux="split", attack_input="whiten")
    assert retraining_fields(patient) == retraining_fields(cpu)
    assert retraining_fields(patient, "proactive") != retraining_fields(cpu, "proactive")  # the game reads n_d
    assert retraining_fields(cpu.with_(n_ec=3)) != retraining_fields(cpu)


def test_spec_sets_numbers_none_and_strings():
    fid = get_fidelity("cpu:prior_epochs=32:n_val=None:shift_attack=prior:lr=0.002")
    assert (fid.prior_epochs, fid.n_val, fid.shift_attack, fid.lr) == (32, None, "prior", 0.002)
    assert fid.name == "cpu-prior_epochs32-n_valNone-shift_attackprior-lr0.002"
    assert get_fidelity("cpu") is FIDELITIES["cpu"]


@pytest.mark.parametrize(("spec", "match"), [
    ("cpu:shift_attack=later", "must be one of scratch, prior"),
    ("cpu:proactive_aux=all", "must be one of subset, split"),
    ("cpu:attack_input=pca", "must be one of standardize, whiten"),
    ("cpu:prior_epochs=x", "needs a number"),
    ("cpu:speed=2", "valid fields"),
    ("fast:n_ec=1", "valid presets"),
])
def test_bad_specs_say_what_is_valid(spec, match):
    with pytest.raises(ValueError, match=match):
        get_fidelity(spec)


def test_attack_images_follow_the_threat_and_proactive_aux():
    subset = get_fidelity("cpu:proactive_aux=subset:reactive_aux=subset")
    split = subset.with_(proactive_aux="split")
    assert (subset.attack_images("reactive"), subset.attack_images("proactive")) == (2000, 2000)
    assert get_fidelity("cpu").attack_images("proactive") is None  # split_steps in version 6, split since 7
    assert (split.attack_images("reactive"), split.attack_images("proactive")) == (2000, None)
    assert split.with_(n_train=None).attack_images("reactive") is None


def test_split_steps_gives_the_proactive_attacker_the_whole_split_at_the_subsets_steps():
    """``proactive_aux="split_steps"``: the whole split under the proactive threat, with
    ``n_d`` and ``prior_finetune`` scaled down so the optimiser takes the subset's steps;
    the reactive attacker, and any attacker on no more images than ``n_train``, unchanged."""
    steps = get_fidelity("cpu:proactive_aux=split_steps:reactive_aux=subset")
    assert steps.key() not in (FIDELITIES["cpu"].key(), get_fidelity("cpu:proactive_aux=split:reactive_aux=subset").key())
    assert (steps.attack_images("proactive"), steps.attack_images("reactive")) == (None, 2000)
    assert steps.attack_epochs("proactive", 4000) == (3, 1)  # 6 and 2 epochs on 2,000 images
    assert steps.attack_epochs("proactive", 6000) == (2, 1)  # rounded up, one epoch past the fine-tune
    assert steps.attack_epochs("reactive", 4000) == (6, 2)
    assert steps.attack_epochs("proactive", 2000) == (6, 2)
    assert get_fidelity("cpu:proactive_aux=split").attack_epochs("proactive", 4000) == (6, 2)
    assert steps.with_(prior_finetune=0).attack_epochs("proactive", 4000) == (3, 0)


def test_reactive_aux_gives_the_reactive_attacker_the_split_and_leaves_cpu_unchanged():
    """``reactive_aux`` is the reactive threat's ``proactive_aux``: opt-in (its default keeps
    every key), the whole split, at full epochs (``split``) or the subset's steps."""
    default = Fidelity(name="cpu")
    assert default.reactive_aux == "subset" and "reactive_aux" not in default.to_dict()
    assert default.key() == "cpu-39e3cb24b0"
    cpu = FIDELITIES["cpu"]  # the whole split since evaluation version 7
    split = get_fidelity("cpu:reactive_aux=split")
    steps = get_fidelity("cpu:reactive_aux=split_steps")
    assert cpu.attack_images("reactive") is None and get_fidelity("cpu:reactive_aux=subset").attack_images("reactive") == 2000
    assert len({cpu.key(), split.key(), steps.key()}) == 3
    assert (split.attack_images("reactive"), split.attack_images("proactive")) == (None, None)
    assert (split.attack_epochs("reactive", 4000), steps.attack_epochs("reactive", 4000)) == ((6, 2), (3, 1))
    assert cpu.with_(reactive_aux="split", proactive_aux="subset").attack_images("proactive") == 2000
    assert retraining_fields(split) == retraining_fields(cpu)  # the attacker's alone
    with pytest.raises(ValueError, match="reactive_aux must be one of subset, split, split_steps"):
        cpu.with_(reactive_aux="all")


def test_proactive_shift_tolerance_is_the_proactive_attackers_alone():
    default = Fidelity(name="cpu")
    assert (default.shift_tolerance("proactive"), default.shift_tolerance("reactive")) == (0.03, 0.03)
    assert "proactive_shift_tolerance" not in default.to_dict()
    cpu = FIDELITIES["cpu"]  # 0 since evaluation version 7
    assert (cpu.shift_tolerance("proactive"), cpu.shift_tolerance("reactive")) == (0.0, 0.03)
    patient = get_fidelity("cpu:proactive_shift_tolerance=0.03")
    assert patient.key() != cpu.key() and retraining_fields(patient, "proactive") == retraining_fields(cpu, "proactive")
    assert (cpu.attack_restarts("proactive"), cpu.attack_restarts("reactive")) == (4, 0)
    with pytest.raises(ValueError, match="proactive_shift_tolerance must be a finite number >= 0"):
        cpu.with_(proactive_shift_tolerance=-0.1)
