"""Decoders and the property classifier accept features of any shape the pool produces."""

from __future__ import annotations

import pytest
import torch

from privacysplit.attacks.decoders import DECODERS, FeatureStandardizer, build_decoder
from privacysplit.attacks.property import PropertyClassifier
from privacysplit.models import build, split


def _check(net_name: str, input_shape: tuple[int, ...], partitions: list[int]) -> None:
    torch.manual_seed(0)
    net = build(net_name, num_classes=10, input_shape=input_shape).eval()
    x = torch.rand(4, *input_shape)
    for p in partitions:
        encoder, _ = split(net, p)
        with torch.no_grad():
            feats = encoder(x)
        for name in DECODERS:
            decoder = build_decoder(name, encoder, feats, x).eval()
            with torch.no_grad():
                out = decoder(feats)
            assert out.shape == x.shape, (net_name, p, name)
            assert float(out.min()) >= 0 and float(out.max()) <= 1
            # the parameter-free front and the head compose to the forward pass
            assert torch.allclose(decoder.head(decoder.prepare(feats)), out)
        classifier = PropertyClassifier(feats, 10).eval()
        assert classifier(feats).shape == (4, 10)


def test_lenet_every_partition():
    _check("lenet", (1, 32, 32), list(range(11)))


def test_vgg11_every_convolution_and_the_flat_end():
    # maps from 64x32x32 down to 512x1x1
    _check("vgg11", (3, 32, 32), [0, 2, 3, 7, 10, 17, 24, 27, 28])


def test_alexnet_and_resnet_blocks():
    _check("alexnet", (3, 32, 32), [0, 2, 5, 13, 14])
    _check("resnet18", (3, 32, 32), [3, 10, 11])


def test_tabular_fcn_reconstructs_feature_vectors():
    _check("fcn", (60,), [0, 1, 4, 8])


def test_standardizer_survives_constant_features():
    feats = torch.ones(10, 3, 4, 4)
    out = FeatureStandardizer(feats)(feats)
    assert torch.isfinite(out).all() and float(out.abs().max()) == 0.0


def test_unknown_decoder_lists_valid_ones():
    net = build("lenet", num_classes=10, input_shape=(1, 32, 32))
    encoder, _ = split(net, 0)
    x = torch.rand(2, 1, 32, 32)
    with pytest.raises(ValueError, match="mirror, generic"):
        build_decoder("unet", encoder, encoder(x), x)
