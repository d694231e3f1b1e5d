"""MiT checkpoints into timm pvt_v2, the DAFormer head, and the segmentor (CPU, mit_b0, tiny inputs)."""

from __future__ import annotations

import re

import pytest
import timm
import torch
from torch import nn

from evseg.errors import DataError
from evseg.models import DAFormerHead, Segmentor, build_segmentor, read_mit_checkpoint

B0_CHANNELS = (32, 64, 160, 256)


def timm_to_official(key: str) -> str:
    """The inverse of the MiT -> timm renaming, written out independently of evseg.models.mit."""
    if m := re.fullmatch(r"patch_embed\.(.+)", key):
        return f"patch_embed1.{m.group(1)}"
    if m := re.fullmatch(r"stages\.(\d)\.downsample\.(.+)", key):
        return f"patch_embed{int(m.group(1)) + 1}.{m.group(2)}"
    if m := re.fullmatch(r"stages\.(\d)\.blocks\.(\d+)\.(.+)", key):
        rest = m.group(3).replace("mlp.dwconv.", "mlp.dwconv.dwconv.")
        return f"block{int(m.group(1)) + 1}.{m.group(2)}.{rest}"
    if m := re.fullmatch(r"stages\.(\d)\.norm\.(.+)", key):
        return f"norm{int(m.group(1)) + 1}.{m.group(2)}"
    raise AssertionError(f"unmapped timm key {key}")


@pytest.fixture(scope="module")
def mit_b0(tmp_path_factory):
    """A random timm pvt_v2_b0 (MiT's MLP ratio 4) and its weights saved in the official MiT format, plain and
    wrapped in {'state_dict': ...}, both with the 1000-class ImageNet head."""
    torch.manual_seed(0)
    model = timm.create_model("pvt_v2_b0", mlp_ratios=(4, 4, 4, 4), num_classes=0).eval()
    official = {timm_to_official(k): v.clone() for k, v in model.state_dict().items()}
    assert "block1.0.mlp.dwconv.dwconv.weight" in official and "norm4.weight" in official
    official["head.weight"] = torch.randn(1000, 256)
    official["head.bias"] = torch.randn(1000)
    folder = tmp_path_factory.mktemp("mit")
    plain, wrapped = folder / "mit_b0.pth", folder / "wrapped" / "mit_b0.pth"
    wrapped.parent.mkdir()
    torch.save(official, plain)
    torch.save({"state_dict": official, "meta": {"epoch": 300}}, wrapped)
    return model, official, plain, wrapped


def backbone_features(seg: Segmentor, x: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        _, features = seg.eval()(x, return_features=True)
    return features


def test_read_mit_checkpoint_renames_to_timm_and_drops_head(mit_b0, tmp_path):
    model, official, plain, _ = mit_b0
    expected = model.state_dict()
    in_model_key = tmp_path / "mit_b0.pth"
    torch.save({"model": official}, in_model_key)
    for path in (plain, in_model_key):
        state_dict = read_mit_checkpoint(path)
        assert set(state_dict) == set(expected)
        assert all(torch.equal(state_dict[k], expected[k]) for k in expected)
    # timm's own filter agrees with ours on the official names
    from timm.models.pvt_v2 import checkpoint_filter_fn
    theirs = checkpoint_filter_fn(dict(official), None)
    assert {k for k in theirs if not k.startswith("head.")} == set(state_dict)


@pytest.mark.parametrize("which", ["plain", "wrapped"])
def test_official_file_gives_the_original_backbone(mit_b0, which):
    model, _, plain, wrapped = mit_b0
    seg = build_segmentor("mit_b0", 11, pretrained=plain if which == "plain" else wrapped)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model.forward_intermediates(x, intermediates_only=True)
    features = backbone_features(seg, x)
    assert [f.shape for f in features] == [(2, c, 64 // s, 64 // s) for c, s in zip(B0_CHANNELS, (4, 8, 16, 32))]
    for got, want in zip(features, expected):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    # the timm override copy of the weights must not linger in the config
    assert "state_dict" not in seg.backbone.pretrained_cfg
    # and a random backbone really differs (the comparison above can fail)
    random_features = backbone_features(build_segmentor("mit_b0", 11), x)
    assert not torch.allclose(random_features[-1], expected[-1], atol=1e-3)


def test_one_channel_input_sums_rgb_weights(mit_b0):
    _, official, plain, _ = mit_b0
    seg1 = build_segmentor("mit_b0", 11, in_chans=1, pretrained=plain)
    seg3 = build_segmentor("mit_b0", 11, in_chans=3, pretrained=plain)
    assert seg1.in_chans == 1 and seg3.in_chans == 3
    stem = dict(seg1.backbone.named_parameters())["patch_embed.proj.weight"]
    torch.testing.assert_close(stem, official["patch_embed1.proj.weight"].sum(1, keepdim=True))
    x = torch.randn(2, 1, 64, 64)
    for got, want in zip(backbone_features(seg1, x), backbone_features(seg3, x.repeat(1, 3, 1, 1))):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_checkpoint_of_another_variant_is_refused(tmp_path):
    with torch.device("meta"):
        b2 = timm.create_model("pvt_v2_b2", mlp_ratios=(4, 4, 4, 4), num_classes=0)
    # stride-0 expanded zeros: the right shapes in a file of a few kilobytes
    official = {timm_to_official(k): torch.zeros(()).expand(v.shape) for k, v in b2.state_dict().items()}
    path = tmp_path / "mit_b2.pth"
    torch.save(official, path)
    with pytest.raises(DataError) as err:
        build_segmentor("mit_b0", 11, pretrained=path)
    message = str(err.value)
    assert str(path) in message and "does not fit mit_b0" in message
    assert "looks like mit_b2" in message
    assert "shape" in message and "unexpected" in message


def test_missing_backbone_key_is_refused(mit_b0, tmp_path):
    _, official, _, _ = mit_b0
    path = tmp_path / "mit_b0.pth"
    torch.save({k: v for k, v in official.items() if k != "norm4.weight"}, path)
    with pytest.raises(DataError, match=r"1 missing \(e\.g\. 'stages\.3\.norm\.weight'\)") as err:
        build_segmentor("mit_b0", 11, pretrained=path)
    assert str(path) in str(err.value)


def test_bad_files_are_refused(mit_b0, tmp_path):
    _, official, _, _ = mit_b0
    junk = tmp_path / "junk.pth"
    torch.save({**official, "decoder.conv.weight": torch.zeros(3)}, junk)
    with pytest.raises(DataError, match="decoder.conv.weight") as err:
        read_mit_checkpoint(junk)
    assert str(junk) in str(err.value) and "github.com/NVlabs/SegFormer" in err.value.fix
    assert "ImageNet-1K pretrained" in err.value.fix

    text = tmp_path / "mit_b0.txt"
    text.write_text("not a checkpoint")
    with pytest.raises(DataError, match="not a readable PyTorch checkpoint"):
        read_mit_checkpoint(text)
    pickled = tmp_path / "pickled.pth"
    torch.save({"model": nn.Identity()}, pickled)  # a whole module: refused, never unpickled
    with pytest.raises(DataError, match="pickled objects"):
        read_mit_checkpoint(pickled)
    empty = tmp_path / "empty.pth"
    torch.save({"epoch": 3}, empty)
    with pytest.raises(DataError, match="no state dict"):
        read_mit_checkpoint(empty)
    with pytest.raises(DataError, match="not found"):
        read_mit_checkpoint(tmp_path / "absent.pth")


def _bn(c: int) -> int:
    return 2 * c  # affine weight and bias; running stats are buffers


def test_daformer_head_parameters_shapes_and_init():
    channels, e, k, dilations = B0_CHANNELS, 256, 19, (1, 6, 12, 18)
    head = DAFormerHead(channels, k)
    cat = len(channels) * e
    expected = sum(c * e + e for c in channels)                    # per-stage linear embeddings
    expected += cat * e + _bn(e)                                    # dilation 1: 1x1 conv + BN
    expected += 3 * (cat * 9 + _bn(cat) + cat * e + _bn(e))         # depthwise 3x3 + BN, pointwise 1x1 + BN
    expected += len(dilations) * e * e * 9 + _bn(e)                 # 3x3 bottleneck + BN
    expected += e * k + k                                           # classifier with bias
    assert sum(p.numel() for p in head.parameters()) == expected
    assert not [n for n, _ in head.named_parameters() if "norm" in n]
    assert sorted(m.dilation[0] for m in head.modules() if isinstance(m, nn.Conv2d) and m.groups > 1) == [6, 12, 18]
    assert 0.009 < head.classifier.weight.std().item() < 0.011
    assert torch.count_nonzero(head.classifier.bias) == 0

    features = [torch.randn(2, c, 64 // s, 64 // s) for c, s in zip(channels, (4, 8, 16, 32))]
    assert head(features).shape == (2, k, 16, 16)


def test_segmentor_names_and_output_sizes():
    seg = build_segmentor("mit_b0", 11).eval()
    names = [n for n, _ in seg.named_parameters()]
    assert not [n for n in names if n.startswith("decode_head.") and "norm" in n]
    # the optimiser's "head" (lr x10) rule must only reach the decode head
    assert not [n for n in names if n.startswith("backbone.") and "head" in n]
    x = torch.randn(1, 3, 70, 90)  # not a multiple of 32
    with torch.no_grad():
        logits = seg(x)
        prediction = seg.predict(x)
    assert logits.shape == (1, 11, 18, 23)
    assert prediction.shape == (1, 11, 70, 90)


def test_generic_timm_backbone():
    seg = build_segmentor("resnet18", 5, in_chans=2).eval()
    assert seg.in_chans == 2
    with torch.no_grad():
        assert seg(torch.randn(1, 2, 64, 64)).shape == (1, 5, 16, 16)
        assert seg.predict(torch.randn(1, 2, 70, 90)).shape == (1, 5, 70, 90)
    with pytest.raises(ValueError, match="unknown backbone"):
        build_segmentor("no_such_net", 5)


def test_generic_timm_checkpoint(tmp_path):
    torch.manual_seed(1)
    model = timm.create_model("resnet18").eval()  # with its 1000-class fc, which the loader drops
    path = tmp_path / "resnet18.pth"
    torch.save(model.state_dict(), path)
    seg = build_segmentor("resnet18", 5, pretrained=path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = model.forward_intermediates(x, indices=[1, 2, 3, 4], intermediates_only=True)
    for got, want in zip(backbone_features(seg, x), expected):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    with pytest.raises(DataError, match="does not fit resnet34 with in_chans=3: parameters 96 missing") as err:
        build_segmentor("resnet34", 5, pretrained=path)
    assert str(path) in str(err.value)
