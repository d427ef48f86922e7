"""privacysplit.specs: the one split of ``name:key=value:...`` that agents, fidelities and attack variants share."""

from __future__ import annotations

import pytest

from privacysplit.agents import agent_options
from privacysplit.fidelity import get_fidelity
from privacysplit.specs import split_spec


def test_a_spec_splits_into_its_name_and_its_changes_in_order():
    assert split_spec("cpu:n_ec=1: prior_epochs =8:x=a=b", "fidelity") == (
        "cpu", [("n_ec", "1"), ("prior_epochs", "8"), ("x", "a=b")])
    assert split_spec("random", "agent") == ("random", [])


@pytest.mark.parametrize("spec", ["bilstm:patience", "bilstm:=3", "bilstm:"])
def test_a_change_that_is_not_key_value_is_refused_by_every_reader(spec):
    with pytest.raises(ValueError, match="is not option=value"):
        split_spec(spec, "agent")
    with pytest.raises(ValueError, match="agent spec"):
        agent_options(spec)
    with pytest.raises(ValueError, match="fidelity spec"):
        get_fidelity(spec.replace("bilstm", "cpu"))
