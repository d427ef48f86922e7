"""Attack priors: the mirror prior beside the generic one (``Fidelity.prior_decoder``)."""

from __future__ import annotations

import copy

import pytest

from privacysplit.attacks import evaluate_split
from privacysplit.attacks.decoders import GENERIC_DEPTH, GENERIC_WIDTH, warm_decoder
from privacysplit.attacks.fitting import release
from privacysplit.attacks.prior import mirror_fits, prior_key, prior_score, prior_state
from privacysplit.compression import apply_plan
from privacysplit.fidelity import get_fidelity
from privacysplit.models import split
from privacysplit.training import pretrained_base

PRIOR = dict(metric="ssim", epochs=1, batch_size=128, lr=3e-3, cache=False)


@pytest.fixture(scope="module")
def lenet(mnist, cache_root):
    return pretrained_base("lenet", mnist, fidelity="smoke", cache=cache_root)[0]


def test_a_mirror_prior_fits_plans_that_keep_the_layer_shapes_and_only_those(mnist, lenet):
    """Filter pruning (W2) changes a convolution's channels, so the base network's mirror no
    longer has the plan's shapes; a separable replacement (C1) keeps every layer's input and
    output shape, so the mirror prior is a fair warm start for it."""
    base_encoder, x = lenet.sub(0, 4), mnist.train.x[:2]
    assert mirror_fits(copy.deepcopy(base_encoder), base_encoder, x, mnist)
    assert mirror_fits(apply_plan(lenet, "3 | 0:C1")[0], base_encoder, x, mnist)
    pruned = apply_plan(lenet, "3 | 0:W2")[0]
    assert not mirror_fits(pruned, base_encoder, x, mnist)
    state = prior_state(base_encoder, mnist, decoder="mirror", **PRIOR)
    feats = release(pruned, mnist.train.x[:64], mnist.normalize)
    assert warm_decoder(state, feats, mnist.train.x[:64], "mirror", pruned) is None
    with pytest.raises(ValueError, match="needs the encoder"):
        warm_decoder(state, feats, mnist.train.x[:64], "mirror")


def test_the_mirror_prior_is_its_own_decoder_under_its_own_key(mnist, lenet):
    """Its weights are the mirror's, not the generic decoder's; its cache key differs from the
    generic prior's, which keeps the key it had before there was a choice; it reconstructs
    the base features better than the mean image does."""
    enc = lenet.sub(0, 4)
    mirror = prior_state(enc, mnist, decoder="mirror", **PRIOR)
    generic = prior_state(enc, mnist, **PRIOR)
    assert set(mirror) != set(generic)
    key_args = dict(metric="ssim", epochs=1, batch_size=128, lr=3e-3, seed=0)
    assert prior_key(enc, mnist, decoder="mirror", **key_args) != prior_key(enc, mnist, **key_args)
    assert prior_key(enc, mnist, decoder="generic", **key_args) == prior_key(enc, mnist, **key_args)
    with pytest.raises(ValueError, match="generic, mirror"):
        prior_key(enc, mnist, decoder="unet", **key_args)
    score = prior_score(enc, mnist, mirror, metric="ssim", n_val=128, decoder="mirror")
    assert score > 0.5  # the mean MNIST digit scores about 0.2 SSIM against the digits


def test_an_evaluation_names_the_prior_it_started_from(mnist, tmp_path):
    """``prior_decoder="mirror"``: the uncompressed plan starts from the mirror prior, the
    filter-pruned one from the generic prior (its mirror has other shapes), and the info says
    which."""
    fid = get_fidelity("smoke").with_(prior_epochs=1, prior_decoder="mirror")
    base = pretrained_base("lenet", mnist, fidelity=fid, cache=str(tmp_path))[0]
    seen = {}
    for plan in ("3 | none", "3 | 0:W2"):
        enc, cloud = apply_plan(base, plan) if plan != "3 | none" else split(copy.deepcopy(base), 3)
        out = evaluate_split(enc, cloud, mnist, fidelity=fid, seed=0, prior_encoder=base.sub(0, 4),
                             prior_cache=str(tmp_path))
        seen[plan] = out["prior_decoder"]
    assert seen == {"3 | none": "mirror", "3 | 0:W2": "generic"}


def test_prior_decoder_is_checked_and_enters_cache_keys_only_when_set():
    """Every number cached before the field existed keeps its key (the generic default is left
    out of the hashed dict); a mirror prior's numbers get their own."""
    with pytest.raises(ValueError, match="generic, mirror"):
        get_fidelity("cpu:prior_decoder=unet")
    cpu = get_fidelity("cpu")
    assert "prior_decoder" not in cpu.to_dict()
    assert cpu.with_(name="cpu", prior_decoder="mirror").key() != cpu.key()


def test_the_generic_shape_builds_the_prior_and_enters_keys_only_when_set(mnist, lenet):
    """``Fidelity.decoder_width`` / ``decoder_depth``: the fidelity's defaults are the decoder's
    own (so every key written before the fields stays); another shape is another prior under
    another key, built with that many grid channels and convolutions, which a default-shaped
    attacker cannot start from."""
    cpu = get_fidelity("cpu")
    assert cpu.generic_options() == {"width": GENERIC_WIDTH, "depth": GENERIC_DEPTH, "upsample": "resize"}
    assert not {"decoder_width", "decoder_depth", "decoder_upsample"} & set(cpu.to_dict())
    assert len({cpu.key(), get_fidelity("cpu:decoder_width=96").key(), get_fidelity("cpu:decoder_depth=4").key(),
                get_fidelity("cpu:decoder_upsample=ladder").key()}) == 4
    for spec in ("cpu:decoder_width=0", "cpu:decoder_depth=0"):
        with pytest.raises(ValueError, match="must be a positive integer"):
            get_fidelity(spec)
    with pytest.raises(ValueError, match="resize, ladder"):
        get_fidelity("cpu:decoder_upsample=bicubic")
    enc = lenet.sub(0, 4)
    key_args = dict(metric="ssim", epochs=1, batch_size=128, lr=3e-3, seed=0)
    default = prior_key(enc, mnist, **key_args)
    assert prior_key(enc, mnist, generic=cpu.generic_options(), **key_args) == default
    assert len({default, prior_key(enc, mnist, generic={"width": 16}, **key_args),
                prior_key(enc, mnist, generic={"depth": 3}, **key_args),
                prior_key(enc, mnist, generic={"upsample": "ladder"}, **key_args)}) == 4
    assert prior_key(enc, mnist, decoder="mirror", generic={"width": 16}, **key_args) == \
        prior_key(enc, mnist, decoder="mirror", **key_args)  # the mirror has no width
    with pytest.raises(ValueError, match="width, depth, upsample"):
        prior_key(enc, mnist, generic={"scale": 2}, **key_args)
    narrow = prior_state(enc, mnist, generic={"width": 16, "depth": 3}, **PRIOR)
    feats = release(enc, mnist.train.x[:64], mnist.normalize)
    x = mnist.train.x[:64]

    def grid_convs(state: dict) -> int:
        return sum(v.dim() == 4 and tuple(v.shape[:2]) == (16, 16) for v in state.values())

    shallow = prior_state(enc, mnist, generic={"width": 16}, **PRIOR)
    assert grid_convs(narrow) == grid_convs(shallow) + 1 >= 2
    assert not any(v.dim() == 4 and GENERIC_WIDTH in v.shape[:2] for v in narrow.values())
    assert warm_decoder(narrow, feats, x, "generic", width=16, depth=3) is not None
    assert warm_decoder(narrow, feats, x, "generic", width=16) is None  # another depth does not fit it
    assert warm_decoder(narrow, feats, x, "generic") is None


def test_an_evaluation_starts_from_the_prior_of_its_own_shape(mnist, tmp_path):
    """The measuring attacker builds its warm decoder at the fidelity's width and depth, so a
    non-default prior is used, not refused for its shapes (which would leave the scratch
    decoders)."""
    fid = get_fidelity("smoke").with_(prior_epochs=1, decoder_width=16, decoder_depth=3)
    base = pretrained_base("lenet", mnist, fidelity=fid, cache=str(tmp_path))[0]
    enc, cloud = split(copy.deepcopy(base), 3)
    out = evaluate_split(enc, cloud, mnist, fidelity=fid, seed=0, prior_encoder=base.sub(0, 4),
                         prior_cache=str(tmp_path))
    assert out["attacker"].startswith("prior") and "score_prior" in out
