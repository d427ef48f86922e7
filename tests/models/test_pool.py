"""The base-network pool: names, paper layer indices, shapes."""

from __future__ import annotations

import pytest
import torch

from privacysplit.models import LayerSpec, build, list_models

ALL = [
    "lenet", "alexnet", "vgg11", "vgg13", "vgg16", "resnet18", "resnet50",
    "mobilenet_v2", "wide_resnet28_10", "inception_v3", "fcn",
]


def indices(name: str, kind: str) -> list[int]:
    return [i for i, spec in enumerate(build(name).layers) if spec.type == kind]


def test_list_models_names_all_eleven():
    assert list_models() == ALL


def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError, match="valid networks: lenet, alexnet"):
        build("vgg19")


@pytest.mark.parametrize(
    ("name", "kind", "expected"),
    [
        ("vgg11", "conv", [0, 4, 8, 11, 15, 18, 22, 25]),
        ("vgg13", "conv", [0, 3, 7, 10, 14, 17, 21, 24, 28, 31]),
        ("vgg16", "conv", [0, 3, 7, 10, 14, 17, 20, 24, 27, 30, 34, 37, 40]),
        ("alexnet", "conv", [0, 3, 6, 8, 10]),
        ("lenet", "conv", [0, 3]),
        ("lenet", "linear", [6, 8, 10]),
        ("resnet18", "block", list(range(3, 11))),
        ("resnet50", "block", list(range(3, 19))),
    ],
)
def test_layer_indices_follow_the_paper(name, kind, expected):
    assert indices(name, kind) == expected


def test_alexnet_first_fully_connected_layer_is_14():
    assert indices("alexnet", "linear")[0] == 14


def test_specs_describe_the_modules():
    net = build("vgg11", in_channels=1)
    first = net.layers[0]
    assert first == LayerSpec("conv", 3, 1, 1, 1, 64)
    assert net.body[0].in_channels == 1 and net.body[0].out_channels == 64
    assert net.layers[1].type == "bn" and net.layers[2].type == "relu" and net.layers[3].type == "pool"


@pytest.mark.parametrize("name", ALL)
def test_every_network_maps_input_to_class_scores(name):
    net = build(name, num_classes=7, in_channels=1).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 1, 32, 32))
    assert out.shape == (2, 7)


def test_fcn_takes_tabular_input():
    net = build("fcn", num_classes=100, input_shape=(600,))
    assert net(torch.randn(4, 600)).shape == (4, 100)
    assert net.layers[0] == LayerSpec("linear", 0, 0, 0, 600, 1024)


def test_image_networks_refuse_tabular_and_tiny_inputs():
    with pytest.raises(ValueError, match="only 'fcn'"):
        build("lenet", input_shape=(600,))
    with pytest.raises(ValueError, match="at least 32x32"):
        build("vgg11", image_size=16)


def test_unknown_layer_type_is_refused():
    with pytest.raises(ValueError, match="valid types"):
        LayerSpec("attention")
