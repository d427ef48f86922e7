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


def test_the_ladder_reaches_the_grid_by_doublings_with_a_convolution_each():
    """``upsample="ladder"``: a 2x2 map climbs 2 -> 4 -> 8 with a 3x3 convolution at each rung
    (the resize jumps 2 -> 8 and convolves there only); a 5x5 map takes one rung (5 -> 8); maps
    at least as large as the grid, and flat features, are built as before; a typo is refused."""
    def sides(upsample: str, shape: tuple[int, ...]) -> list[int]:
        feats, x = torch.randn(4, *shape), torch.rand(4, 1, 32, 32)
        decoder = build_decoder("generic", None, feats, x, upsample=upsample)
        seen: list[int] = []
        hooks = [m.register_forward_hook(lambda m, i, o: seen.append(o.shape[-1]))
                 for m in decoder.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
        assert decoder(feats).shape == x.shape
        for h in hooks:
            h.remove()
        return seen

    assert sides("ladder", (512, 2, 2)) == [2, 4, 8, 8, 8]
    assert sides("resize", (512, 2, 2)) == [2, 8, 8, 8]
    assert sides("ladder", (16, 5, 5)) == [5, 8, 8, 8]
    assert sides("ladder", (6, 14, 14)) == sides("resize", (6, 14, 14))
    assert sides("ladder", (120,)) == sides("resize", (120,))
    with pytest.raises(ValueError, match="resize, ladder, pyramid"):
        build_decoder("generic", None, torch.randn(4, 8, 2, 2), torch.rand(4, 1, 32, 32), upsample="bicubic")


def test_the_pyramid_is_a_ladder_whose_channels_halve_as_the_side_doubles():
    """``upsample="pyramid"``: the ladder's rungs, with ``width * 2**k`` channels ``k`` doublings
    below the grid (192 at 2x2, 96 at 4x4, 48 on the 8x8 grid for width 48); on a map that needs
    no rung it is the ladder, and the ladder's shapes (its cached priors) are unchanged."""
    def channels(upsample: str, shape: tuple[int, ...], width: int = 48) -> list[tuple[int, int]]:
        feats, x = torch.randn(4, *shape), torch.rand(4, 1, 32, 32)
        decoder = build_decoder("generic", None, feats, x, upsample=upsample, width=width)
        assert decoder(feats).shape == x.shape
        return [(m.out_channels, m.kernel_size[0]) for m in decoder.modules() if isinstance(m, torch.nn.Conv2d)]

    assert channels("pyramid", (512, 2, 2))[:4] == [(192, 3), (96, 3), (48, 3), (48, 3)]
    assert channels("pyramid", (16, 5, 5), width=8)[:3] == [(16, 3), (8, 3), (8, 3)]
    assert channels("ladder", (512, 2, 2))[:4] == [(48, 3)] * 4
    assert channels("pyramid", (6, 14, 14)) == channels("ladder", (6, 14, 14))
