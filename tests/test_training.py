"""Base-network cache: keyed on what base training reads, not on the whole fidelity."""

from __future__ import annotations

from privacysplit.data import load_dataset
from privacysplit.fidelity import get_fidelity
from privacysplit.training import base_weights_dir, pretrained_base


def test_attack_settings_share_the_base_network_and_base_settings_do_not(cache_root):
    mnist = load_dataset("mnist")
    smoke = get_fidelity("smoke")
    net, acc = pretrained_base("lenet", mnist, fidelity=smoke, cache=cache_root)
    files = set(base_weights_dir(cache_root).glob("lenet-*.pt"))
    attack_only = smoke.with_(name="other", prior_epochs=3, n_d=2, shift_attack="prior")
    net2, acc2 = pretrained_base("lenet", mnist, fidelity=attack_only, cache=cache_root)
    assert set(base_weights_dir(cache_root).glob("lenet-*.pt")) == files  # loaded, not retrained
    same = zip(net.state_dict().values(), net2.state_dict().values(), strict=True)
    assert acc2 == acc and all((a == b).all() for a, b in same)
    pretrained_base("lenet", mnist, fidelity=smoke.with_(base_epochs=1), cache=cache_root)
    assert len(set(base_weights_dir(cache_root).glob("lenet-*.pt")) - files) == 1
