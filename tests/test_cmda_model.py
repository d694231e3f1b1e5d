"""CMDA's network and the L2 alignment terms: shapes, where gradients flow, and the terms against a brute force."""

import itertools

import numpy as np
import pytest
import torch

from evseg.cmda import alignment
from evseg.cmda.model import AttentionAvgFusion, build_fusion_segmentor


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return build_fusion_segmentor("mit_b0", 19, embed_dim=16)


def inputs(batch=2, size=(64, 96)):
    return [torch.randn(batch, 3, *size) for _ in range(3)]


def test_four_outputs_share_one_head(net):
    image, events, isr = inputs()
    logits, features = net(image, events, isr, return_features=True)
    assert sorted(logits) == ["events", "fusion", "image", "isr"]
    for out in logits.values():
        assert out.shape == (2, 19, 16, 24)
    dims = [32, 64, 160, 256]
    for name in logits:
        assert [f.shape[1] for f in features[name]] == dims
        assert [f.shape[-2:] for f in features[name]] == [(16, 24), (8, 12), (4, 6), (2, 3)]
    # the head is shared: in eval mode (no dropout) it maps each output's features to its logits
    net.eval()
    with torch.no_grad():
        logits, features = net(image, events, isr, return_features=True)
        for name in logits:
            torch.testing.assert_close(net.decode_head(features[name]), logits[name])
    net.train()
    # ISR and events go through the same event backbone: equal inputs give equal maps
    net.eval()
    with torch.no_grad():
        a = net(events=events, isr=events, return_features=True)[1]
    net.train()
    for fe, fi in zip(a["events"], a["isr"]):
        torch.testing.assert_close(fe, fi)


def test_fusion_is_the_average_of_two_per_modality_blocks():
    torch.manual_seed(1)
    fusion = AttentionAvgFusion((8, 16), sr_ratios=(2, 1), drop_path=0.0).eval()
    image = [torch.randn(1, 8, 6, 4), torch.randn(1, 16, 3, 2)]
    events = [torch.randn(1, 8, 6, 4), torch.randn(1, 16, 3, 2)]
    out = fusion(image, events)
    for i in range(2):
        def attend(block, x):
            b, c, h, w = x.shape
            return block(x.flatten(2).transpose(1, 2), (h, w)).transpose(1, 2).reshape(b, c, h, w)
        expected = 0.5 * (attend(fusion.image_blocks[i], image[i]) + attend(fusion.event_blocks[i], events[i]))
        torch.testing.assert_close(out[i], expected)
        assert fusion.image_blocks[i].attn.num_heads == 1
    # each modality's block sees only its own tokens: changing the events leaves the image half unchanged
    shifted = [e + 1 for e in events]
    difference = fusion(image, shifted)[0] - out[0]
    block = fusion.event_blocks[0]
    b, c, h, w = events[0].shape
    half = lambda x: block(x.flatten(2).transpose(1, 2), (h, w)).transpose(1, 2).reshape(b, c, h, w) / 2  # noqa: E731
    torch.testing.assert_close(difference, half(shifted[0]) - half(events[0]))


def test_gradients_reach_both_backbones_and_fusion(net):
    image, events, isr = inputs()
    net.zero_grad()
    logits = net(image, events)
    logits["fusion"].square().mean().backward()
    for part in (net.image_backbone, net.event_backbone, net.fusion, net.decode_head):
        grads = [p.grad for p in part.parameters() if p.requires_grad]
        assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    # the image output's loss does not reach the event backbone
    net.zero_grad()
    net(image, events)["image"].square().mean().backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in net.event_backbone.parameters())
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in net.fusion.parameters())


def test_image_only_network_and_predict(net):
    image, events, _ = inputs(1, (64, 64))
    image_only = build_fusion_segmentor("mit_b0", 19, events=False, embed_dim=16).eval()
    assert image_only.inference_output == "image"
    assert list(image_only(image)) == ["image"]
    assert image_only.predict(image, events).shape == (1, 19, 64, 64)
    with pytest.raises(ValueError, match="image-only"):
        image_only(image, events)
    net.eval()
    with torch.no_grad():
        full = torch.nn.functional.interpolate(net(image, events)["fusion"], size=(64, 64), mode="bilinear")
        torch.testing.assert_close(net.predict(image, events), full)
    net.train()
    with pytest.raises(ValueError, match="MiT"):
        build_fusion_segmentor("resnet18", 19)


def test_only_the_image_output_uses_dropout(net):
    image, events, _ = inputs(1, (64, 64))
    # drop path in the backbones makes every output random in training; with it off, only the image output is
    with torch.no_grad():
        for m in net.modules():
            if type(m).__name__ == "DropPath":
                m.eval()
        a, b = net(image, events), net(image, events)
        net.train()
    assert not torch.equal(a["image"], b["image"])
    torch.testing.assert_close(a["fusion"], b["fusion"])
    torch.testing.assert_close(a["events"], b["events"])


# --------------------------------------------------------------------------------------------------------
# L2 variants


def brute_mse(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().numpy(), b.detach().double().numpy()
    return sum((x - y) ** 2 for x, y in zip(a.ravel(), b.ravel())) / a.size


def features(requires_grad=True):
    torch.manual_seed(5)
    return {name: torch.randn(2, 4, 3, 5, requires_grad=requires_grad) for name in ("image", "events", "fusion")}


@pytest.mark.parametrize("variant", sorted(alignment.VARIANTS))
def test_l2_variant_terms_against_brute_force(variant):
    lambdas = {"rgb_events_source": 0.3, "fusion_st": 0.7, "rgb_st": 0.2, "events_rgbt": 0.05, "events_st": 0.11}
    source, mixed = features(), {k: v.detach().clone().add_(1.5).requires_grad_() for k, v in features().items()}
    src_terms = alignment.source_terms(variant, lambdas, source)
    mix_terms = alignment.mixed_terms(variant, lambdas, mixed, source)
    expected_pairs = {  # written out from the fork's files (reference/cmda_daformer.md §3.3)
        "rgb_events_source": (source["image"], source["events"]),
        "fusion_st": (mixed["fusion"], source["fusion"]),
        "rgb_st": (mixed["image"], source["image"]),
        "events_rgbt": (mixed["image"], source["events"]),
        "events_st": (mixed["events"], source["events"]),
    }
    wanted = {"none": set(), "rgb_events_source": {"rgb_events_source"},
              "rgb_events_source+fusion_st": {"rgb_events_source", "fusion_st"}, "fusion_st": {"fusion_st"},
              "rgb_st+events_rgbt": {"rgb_st", "events_rgbt"}, "rgb_st+events_st": {"rgb_st", "events_st"}}[variant]
    assert set(src_terms) | set(mix_terms) == wanted
    assert set(src_terms) == wanted & {"rgb_events_source"}
    for name, value in itertools.chain(src_terms.items(), mix_terms.items()):
        a, b = expected_pairs[name]
        assert value.item() == pytest.approx(lambdas[name] * brute_mse(a, b), rel=1e-6)
    # gradients: the source-only term reaches both source maps; source-target terms reach the mixed side only
    total = alignment.total({**src_terms, **mix_terms})
    if not wanted:
        assert total == 0.0
        return
    total.backward()
    if "rgb_events_source" in wanted:
        assert source["image"].grad is not None and source["events"].grad is not None
    else:
        assert all(v.grad is None for v in source.values())
    touched = {k for n in mix_terms for k in mixed if expected_pairs[n][0] is mixed[k]}
    for key, tensor in mixed.items():
        assert (tensor.grad is not None) == (key in touched)
    assert alignment.needs(variant) == {alignment.TERMS[n][1][1] for n in mix_terms}


def test_l2_bad_inputs():
    with pytest.raises(ValueError, match="unknown L2 variant"):
        alignment.source_terms("rgb_everything", {}, {})
    source = features()
    mixed = {k: torch.randn(2, 4, 6, 10) for k in source}
    with pytest.raises(ValueError, match="same size"):
        alignment.mixed_terms("fusion_st", alignment.DEFAULT_LAMBDAS, mixed, source)
    assert np.isclose(alignment.DEFAULT_LAMBDAS["events_st"], 0.05)
