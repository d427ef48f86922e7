"""Base-network cache: keyed on what base training reads, not on the whole fidelity."""

from __future__ import annotations

import copy

import torch

from privacysplit.attacks.decoders import generic_decoder
from privacysplit.data import load_dataset
from privacysplit.fidelity import get_fidelity
from privacysplit.training import adam, base_weights_dir, pretrained_base


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


def test_adam_multi_tensor_update_matches_the_looped_one_to_the_bit():
    """``adam`` uses the multi-tensor update for speed; every cached number was produced by
    the looped one, so the two must agree exactly, not approximately."""
    torch.manual_seed(0)
    feats, x = torch.randn(16, 16, 8, 8), torch.rand(16, 1, 28, 28)
    states = []
    for make in (lambda p: torch.optim.Adam(p, lr=3e-3, foreach=False), lambda p: adam(p, 3e-3)):
        torch.manual_seed(1)
        net = generic_decoder(feats, x)
        start = copy.deepcopy(net.state_dict())
        opt = make(net.parameters())
        for _ in range(5):
            opt.zero_grad()
            (net(feats) - x).pow(2).mean().backward()
            opt.step()
        states.append(net.state_dict())
    assert opt.defaults["foreach"] is True
    assert not torch.equal(states[1]["body.net.0.weight"], start["body.net.0.weight"])  # it trained
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
