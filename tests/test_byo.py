"""Bring your own network, weights and data: end to end at smoke fidelity (issue 18)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F

import privacysplit  # noqa: F401 - registers PrivacySplit-v0
from privacysplit.agents import make_agent
from privacysplit.attacks.decoders import build_decoder
from privacysplit.cli import main
from privacysplit.envs.evaluator import Evaluator
from privacysplit.envs.user_base import pretrained
from privacysplit.export import export_plan
from privacysplit.fidelity import get_fidelity
from privacysplit.models import split
from privacysplit.plan import Plan
from privacysplit.training import accuracy


def cnn(c: int, classes: int = 4) -> nn.Sequential:
    """The user's own small CNN."""
    return nn.Sequential(
        nn.Conv2d(c, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(256, 32), nn.ReLU(), nn.Linear(32, classes),
    )


def tensors(shape, n=160, nt=40, classes=4, seed=0):
    """Learnable user data: the class sets the brightness of one image quadrant."""
    g = torch.Generator().manual_seed(seed)

    def make(m):
        y = torch.arange(m) % classes
        x = 0.3 * torch.rand(m, *shape, generator=g)
        h, w = shape[1] // 2, shape[2] // 2
        for k in range(classes):
            r, c = divmod(k, 2)
            x[y == k, :, r * h:(r + 1) * h, c * w:(c + 1) * w] += 0.6
        return x.clamp(0, 1), y

    return (*make(n), *make(nt))


@pytest.fixture
def cache(tmp_path):
    return str(tmp_path / "evals.sqlite")


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 64, 64)])
def test_user_sequential_on_user_tensors_runs_an_episode_and_a_search(shape, cache):
    env = gym.make("PrivacySplit-v0", base=cnn(shape[0]), dataset=tensors(shape), fidelity="smoke", cache=cache)
    ev = env.unwrapped.evaluator
    assert ev.structure.input_shape == shape and len(ev.structure) == 11
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    done, steps = False, 0
    while not done:
        mask = env.unwrapped.action_masks()
        obs, reward, done, truncated, info = env.step(int(np.flatnonzero(mask)[-1]))
        steps += 1
    assert not info.get("error"), info.get("error")
    assert info["plan"] == str(env.unwrapped.current_plan()) and steps >= 2
    assert reward == info["reward"] and reward > 0.0
    result = make_agent("random", seed=0).search(env, budget=5, progress=False)
    assert len(result.history) == 5
    assert all(not row.get("error") for row in result.history)
    assert result.best_reward == max(row["reward"] for row in result.history)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 64, 64), (5, 40, 40)])
def test_decoders_reconstruct_the_inputs_own_size(shape):
    net = cnn(shape[0])
    ev = Evaluator(net, tensors(shape, n=40, nt=8), fidelity="smoke", cache="off")
    for p in (0, 3, 6):
        encoder, _ = split(ev.structure, p)
        x = ev.data.train.x[:8]
        with torch.no_grad():
            feats = encoder(ev.data.normalize(x))
        for name in ("mirror", "generic"):
            decoder = build_decoder(name, encoder, feats, x)
            with torch.no_grad():
                assert tuple(decoder(feats).shape) == (8, *shape), (name, p)


@pytest.mark.parametrize("name, layers, plan", [
    ("resnet18", 15, "6 | 0:W2 4:C1 5:W1 6:C3"),
    ("mobilenet_v2", 27, "8 | 0:C1 3:W1 8:W1"),
])
def test_torchvision_networks_become_searchable_tables(name, layers, plan, cache):
    model = getattr(torchvision.models, name)(weights=None, num_classes=10)
    data = tensors((3, 32, 32), n=80, nt=20, classes=10)
    ev = Evaluator(model, data, fidelity="smoke", cache=cache)
    assert len(ev.structure) == layers and ev.base_name.startswith(type(model).__name__.lower() + "-")
    assert Plan.parse(str(Plan.parse(plan))) == Plan.parse(plan)
    info = ev.evaluate(plan)
    assert not info.get("error"), info.get("error")
    assert info["plan"] == plan and 0.0 < info["resource"] < 1.0
    # techniques that would not build are masked: torchvision's blocks are not known to W2,
    # an inverted residual has no standard spatial convolution for C1-C3
    assert "W2" not in ev.space.choices(4)
    if name == "mobilenet_v2":
        assert ev.space.choices(5) == ["none", "W1"]
    with pytest.raises(ValueError, match="does not apply to layer 4"):
        ev.evaluate("6 | 4:W2")


def test_user_weights_are_used_as_they_are(tmp_path, cache):
    data = tensors((1, 28, 28))
    torch.manual_seed(0)
    model = cnn(1)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(30):
        opt.zero_grad()
        F.cross_entropy(model(data[0]), data[1]).backward()
        opt.step()
    path = tmp_path / "mine.pt"
    torch.save(model.state_dict(), path)
    ev = Evaluator(cnn(1), data, weights=str(path), fidelity="smoke", cache=cache)
    net, acc = pretrained(ev.source, ev.data, labels=ev.labels, fidelity=ev.fidelity, seed=ev.seed, device=ev.device)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), model.state_dict().values(), strict=True))
    val = ev.data.val.take(ev.fidelity.n_val, ev.seed)
    expected = accuracy(model, val.x, val.fine)  # the user's model on the validation images
    assert acc == expected and acc > 0.5
    base, _ = ev.base()  # the evaluator starts from the same weights, untrained
    assert all(torch.equal(a, b) for a, b in zip(base.state_dict().values(), model.state_dict().values(), strict=True))
    untrained = Evaluator(cnn(1), data, fidelity="smoke", cache=cache)
    assert untrained.base_name != ev.base_name  # the fingerprint holds the weights


def test_weights_that_do_not_fit_are_one_clear_error(tmp_path):
    data = tensors((1, 28, 28), n=40, nt=8)
    path = tmp_path / "other.pt"
    torch.save(cnn(1, classes=7).state_dict(), path)
    with pytest.raises(ValueError, match=r"'10.weight' has shape \(7, 32\) there but \(4, 32\)"):
        Evaluator(cnn(1), data, weights=str(path), fidelity="smoke", cache="off")
    state = cnn(1).state_dict()
    del state["3.weight"]
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"key '3.weight' of the network is missing"):
        Evaluator(cnn(1), data, weights=str(path), fidelity="smoke", cache="off")
    state = {**cnn(1).state_dict(), "extra.bias": torch.zeros(1)}
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"key 'extra.bias' is not in the network"):
        Evaluator(cnn(1), data, weights=str(path), fidelity="smoke", cache="off")


class Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 28 * 28, 4)

    def forward(self, x):
        y = self.conv(x)
        return self.fc(torch.flatten(y + x, 1))  # a residual at the top level: not a chain


def test_a_module_that_is_no_chain_is_one_clear_error():
    with pytest.raises(ValueError, match=r"node 'add' .*reads 'conv', 'x'.*nn.Module of its own.*nn.Sequential"):
        gym.make("PrivacySplit-v0", base=Untraceable(), dataset=tensors((1, 28, 28), n=40, nt=8), fidelity="smoke")


def test_exported_parts_compose_to_the_users_network(tmp_path):
    data = tensors((1, 28, 28), n=60, nt=10)
    torch.manual_seed(1)
    model = cnn(1).eval()
    path = tmp_path / "w.pt"
    torch.save(model.state_dict(), path)
    fid = get_fidelity("smoke").with_(n_ec=0)  # no retraining: the parts are the user's layers
    ev = Evaluator(cnn(1), data, weights=str(path), fidelity=fid, cache="off")
    export_plan(ev, "5 | none", tmp_path / "out", onnx=False)
    device = torch.jit.load(str(tmp_path / "out" / "device.pt"))
    cloud = torch.jit.load(str(tmp_path / "out" / "cloud.pt"))
    x = data[2]
    with torch.no_grad():
        got = cloud(device(ev.data.normalize(x)))
        assert torch.allclose(got, model(x), atol=1e-5)


def test_cli_layers_for_a_factory_file(tmp_path, capsys):
    (tmp_path / "mynet.py").write_text(
        "from torch import nn\n\n"
        "def factory():\n"
        "    return nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 26 * 26, 10))\n"
    )
    assert main(["layers", "--base", f"{tmp_path / 'mynet.py'}:factory", "--input-shape", "1,28,28"]) == 0
    out = capsys.readouterr().out
    assert "| 0 | conv(k=3, s=1, p=0, 1->8) | Conv2d | 8x26x26 | 80 | C1, C2, C3, W1, W2 |" in out
    assert "| 3 | linear(5408->10) | Linear | 10 | 54,090 | F1, F2, W1 |" in out
    assert main(["layers", "--base", f"{tmp_path / 'mynet.py'}:nope"]) == 2
    assert "has no 'nope'" in capsys.readouterr().err


@pytest.mark.slow
def test_worker_processes_rebuild_the_users_network(cache):
    """Workers get the module and tensors pickled and score plans as in-process does."""
    data = tensors((1, 28, 28), n=60, nt=10)
    plans = ["3 | 0:W1", "5 | 0:C3 3:W2", "10 | none"]
    ev = Evaluator(cnn(1), data, fidelity="smoke", cache=cache, executor="process", workers=2)
    try:
        infos = ev.evaluate_many(plans)
    finally:
        ev.close()
    ref = Evaluator(cnn(1), data, fidelity="smoke", cache="off")
    assert [i["reward"] for i in infos] == [ref.evaluate(p)["reward"] for p in plans]
    assert all(not i.get("error") for i in infos)


def test_weights_for_a_pool_network(tmp_path, cache):
    from privacysplit.models import build

    data = tensors((1, 32, 32), n=60, nt=10)
    torch.manual_seed(3)
    lenet = build("lenet", num_classes=4, input_shape=(1, 32, 32))
    torch.save(lenet.state_dict(), tmp_path / "lenet.pt")
    ev = Evaluator("lenet", data, weights=str(tmp_path / "lenet.pt"), fidelity="smoke", cache=cache)
    assert ev.base_name.startswith("lenet-") and ev.base_name != "lenet"
    base, _ = ev.base()
    assert all(torch.equal(a, b) for a, b in zip(base.state_dict().values(), lenet.state_dict().values(), strict=True))
