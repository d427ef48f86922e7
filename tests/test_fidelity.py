"""Fidelity: cache-key stability, ``preset:field=value`` specs and field validation."""

from __future__ import annotations

import pytest

from privacysplit.fidelity import FIDELITIES, get_fidelity


def test_fields_added_later_leave_every_old_key_unchanged():
    """Keys (and the per-plan seeds derived from them) of every number cached before
    ``shift_attack`` existed: a new field at its default must not move them."""
    assert FIDELITIES["cpu"].key() == "cpu-39e3cb24b0"
    assert FIDELITIES["smoke"].key() == "smoke-8ef9d80a8c"
    assert "shift_attack" not in FIDELITIES["cpu"].to_dict()
    moved = FIDELITIES["cpu"].with_(name="cpu", shift_attack="prior")
    assert moved.to_dict()["shift_attack"] == "prior" and moved.key() != FIDELITIES["cpu"].key()


def test_spec_sets_numbers_none_and_strings():
    fid = get_fidelity("cpu:prior_epochs=32:n_val=None:shift_attack=prior:lr=0.002")
    assert (fid.prior_epochs, fid.n_val, fid.shift_attack, fid.lr) == (32, None, "prior", 0.002)
    assert fid.name == "cpu-prior_epochs32-n_valNone-shift_attackprior-lr0.002"
    assert get_fidelity("cpu") is FIDELITIES["cpu"]


@pytest.mark.parametrize(("spec", "match"), [
    ("cpu:shift_attack=later", "must be one of scratch, prior"),
    ("cpu:prior_epochs=x", "needs a number"),
    ("cpu:speed=2", "valid fields"),
    ("fast:n_ec=1", "valid presets"),
])
def test_bad_specs_say_what_is_valid(spec, match):
    with pytest.raises(ValueError, match=match):
        get_fidelity(spec)
