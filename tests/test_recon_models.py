"""E2VID / FireNet modules and checkpoint loading, against the facts in
../shared/reference/e2vid_ecddp.md §A.2-A.5 (key names, shapes, parameter counts, update formulas,
padding rule). Everything is CPU and random weights."""

from __future__ import annotations

import collections

import pytest
import torch
import torch.nn.functional as F

from evseg.errors import DataError
from evseg.recon.checkpoint import load_reconstruction_model, save_reconstruction_model
from evseg.recon.e2vid import ConvGRU, ConvLSTM, E2VIDRecurrent, crop_back, pad_to_multiple
from evseg.recon.firenet import FireNet

LIGHTWEIGHT = {"num_bins": 5, "skip_type": "sum", "recurrent_block_type": "convlstm", "num_encoders": 3,
               "base_num_channels": 32, "num_residual_blocks": 2, "use_upsample_conv": False,
               "norm": "BN"}
FIRENET = {"num_bins": 5, "base_num_channels": 16, "kernel_size": 3, "recurrent_block_type": "convgru",
           "num_residual_blocks": 2, "recurrent_blocks": {"resblock": [0]}}
SMALL_E2VID = {"num_bins": 5, "skip_type": "sum", "recurrent_block_type": "convlstm", "num_encoders": 3,
               "base_num_channels": 4, "num_residual_blocks": 2, "use_upsample_conv": False, "norm": "BN"}


class NotATensor:  # module level, so torch.save can pickle a reference to it
    pass


def expected_lightweight_entries() -> dict[str, tuple]:
    """The 74 state_dict entries of E2VID_lightweight.pth.tar, spelled out from §A.2."""
    bn = lambda c: {"weight": (c,), "bias": (c,), "running_mean": (c,), "running_var": (c,),  # noqa: E731
                    "num_batches_tracked": ()}
    e: dict[str, tuple] = {}
    e["head.conv2d.weight"] = (32, 5, 5, 5)
    e["head.conv2d.bias"] = (32,)
    enc = [((64, 32, 5, 5), 64, (256, 128, 3, 3)), ((128, 64, 5, 5), 128, (512, 256, 3, 3)),
           ((256, 128, 5, 5), 256, (1024, 512, 3, 3))]
    for i, (conv, c, gates) in enumerate(enc):
        e[f"encoders.{i}.conv.conv2d.weight"] = conv
        for k, s in bn(c).items():
            e[f"encoders.{i}.conv.norm_layer.{k}"] = s
        e[f"encoders.{i}.recurrent_block.Gates.weight"] = gates
        e[f"encoders.{i}.recurrent_block.Gates.bias"] = (gates[0],)
    for j in range(2):
        e[f"resblocks.{j}.conv1.weight"] = (256, 256, 3, 3)
        e[f"resblocks.{j}.conv2.weight"] = (256, 256, 3, 3)
        for bn_name in ("bn1", "bn2"):
            for k, s in bn(256).items():
                e[f"resblocks.{j}.{bn_name}.{k}"] = s
    dec = [((256, 128, 5, 5), 128), ((128, 64, 5, 5), 64), ((64, 32, 5, 5), 32)]
    for k_, (w, c) in enumerate(dec):
        e[f"decoders.{k_}.transposed_conv2d.weight"] = w
        for k, s in bn(c).items():
            e[f"decoders.{k_}.norm_layer.{k}"] = s
    e["pred.conv2d.weight"] = (1, 32, 1, 1)
    for k, s in bn(1).items():
        e[f"pred.norm_layer.{k}"] = s
    return {"unetrecurrent." + k: v for k, v in e.items()}


def randomize_bn(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics, so eval-mode outputs are not all the same."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


def voxel(h=32, w=48, seed=0):
    return torch.randn(1, 5, h, w, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------------------
# Architecture facts
# ---------------------------------------------------------------------------------------------------------

def test_e2vid_lightweight_state_dict_matches_reference():
    model = E2VIDRecurrent(LIGHTWEIGHT)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = expected_lightweight_entries()
    assert len(expected) == 74
    assert len(got) == 74
    assert got == expected
    assert sum(p.numel() for p in model.parameters()) == 10_712_098
    assert [name for name, _ in model.named_children()] == ["unetrecurrent"]


def test_firenet_parameter_count_and_keys():
    model = FireNet(FIRENET)
    assert sum(p.numel() for p in model.parameters()) == 37_777
    keys = list(model.state_dict())
    prefixes = ["net.head.conv.conv2d.", "net.head.recurrent_block.reset_gate.",
                "net.head.recurrent_block.update_gate.", "net.head.recurrent_block.out_gate.",
                "net.resblocks.0.conv.conv1.", "net.resblocks.0.conv.conv2.",
                "net.resblocks.0.recurrent_block.", "net.resblocks.1.conv1.", "net.resblocks.1.conv2.",
                "net.pred.conv2d."]
    for prefix in prefixes:
        assert any(k.startswith(prefix) for k in keys), prefix
    assert all(any(k.startswith(p) for p in prefixes) for k in keys)
    assert tuple(model.state_dict()["net.pred.conv2d.weight"].shape) == (1, 16, 1, 1)
    assert "net.pred.conv2d.bias" in keys
    # full resolution, any size
    out, states = model(voxel(13, 17), None)
    assert out.shape == (1, 1, 13, 17) and len(states) == 2


def test_e2vid_variants_build_and_run():
    x = voxel(32, 32)
    for cfg in ({"num_bins": 5},  # BaseE2VID defaults: 4 encoders, upsample conv, no norm, convlstm
                {"num_bins": 5, "num_encoders": 2, "base_num_channels": 4, "skip_type": "concat",
                 "recurrent_block_type": "convgru", "norm": "IN"},
                {"num_bins": 5, "num_encoders": 5, "base_num_channels": 2, "use_upsample_conv": True}):
        model = E2VIDRecurrent(cfg).eval()
        with torch.no_grad():
            out, states = model(x, None)
            out2, _ = model(x, states)
        assert out.shape == (1, 1, 32, 32) and len(states) == model.num_encoders
        assert 0 <= out.min() and out.max() <= 1
        assert out2.shape == out.shape
    assert E2VIDRecurrent({"num_bins": 5}).num_encoders == 4


def test_e2vid_rejects_sizes_not_multiple():
    model = E2VIDRecurrent(SMALL_E2VID)
    with pytest.raises(ValueError, match="multiples of 2\\*\\*num_encoders = 8"):
        model(voxel(30, 48), None)


# ---------------------------------------------------------------------------------------------------------
# Recurrent cells against the formulas of §A.3
# ---------------------------------------------------------------------------------------------------------

def test_convlstm_step_matches_formula():
    torch.manual_seed(0)
    cell = ConvLSTM(3, 4, 3)
    x, h, c = torch.randn(2, 3, 6, 7), torch.randn(2, 4, 6, 7), torch.randn(2, 4, 6, 7)
    gates = F.conv2d(torch.cat([x, h], 1), cell.Gates.weight, cell.Gates.bias, padding=1)
    i, f, o, g = (gates[:, k * 4:(k + 1) * 4] for k in range(4))  # input, forget, output, cell
    c_ref = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h_ref = torch.sigmoid(o) * torch.tanh(c_ref)
    with torch.no_grad():
        h_new, c_new = cell(x, (h, c))
        h0, c0 = cell(x, None)
    torch.testing.assert_close(c_new, c_ref)
    torch.testing.assert_close(h_new, h_ref)
    # zero state
    gates0 = F.conv2d(torch.cat([x, torch.zeros_like(h)], 1), cell.Gates.weight, cell.Gates.bias, padding=1)
    i0, _, o0, g0 = (gates0[:, k * 4:(k + 1) * 4] for k in range(4))
    torch.testing.assert_close(c0, torch.sigmoid(i0) * torch.tanh(g0))
    torch.testing.assert_close(h0, torch.sigmoid(o0) * torch.tanh(c0))


def test_convgru_step_matches_formula():
    torch.manual_seed(0)
    cell = ConvGRU(3, 4, 3)
    with torch.no_grad():  # non-zero biases, so their use is checked too
        for conv in (cell.reset_gate, cell.update_gate, cell.out_gate):
            conv.bias.normal_()
    x, h = torch.randn(2, 3, 6, 7), torch.randn(2, 4, 6, 7)
    xh = torch.cat([x, h], 1)
    z = torch.sigmoid(F.conv2d(xh, cell.update_gate.weight, cell.update_gate.bias, padding=1))
    r = torch.sigmoid(F.conv2d(xh, cell.reset_gate.weight, cell.reset_gate.bias, padding=1))
    cand = torch.tanh(F.conv2d(torch.cat([x, r * h], 1), cell.out_gate.weight, cell.out_gate.bias, padding=1))
    with torch.no_grad():
        torch.testing.assert_close(cell(x, h), h * (1 - z) + cand * z)
        torch.testing.assert_close(cell(x, None), cell(x, torch.zeros_like(h)))
    # orthogonal init: rows of the flattened weight are orthonormal (more columns than rows here)
    w = ConvGRU(3, 4, 3).out_gate.weight.reshape(4, -1)
    torch.testing.assert_close(w @ w.T, torch.eye(4), atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------------------------------
# Padding (§A.5: smallest multiple, reflection, centred, extra pixel on top/left)
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("h, w, multiple, crop", [
    (440, 640, 8, (0, 0, 0, 0)),
    (110, 160, 8, (1, 1, 0, 0)),
    (109, 157, 8, (2, 1, 2, 1)),
    (180, 240, 8, (2, 2, 0, 0)),
    (260, 346, 8, (2, 2, 3, 3)),
    (480, 640, 16, (0, 0, 0, 0)),
    (21, 19, 16, (6, 5, 7, 6)),
])
def test_pad_to_multiple(h, w, multiple, crop):
    x = torch.randn(1, 5, h, w)
    padded, got = pad_to_multiple(x, multiple)
    assert got == crop
    top, bottom, left, right = crop
    assert padded.shape[-2:] == (h + top + bottom, w + left + right)
    assert padded.shape[-2] % multiple == 0 and padded.shape[-1] % multiple == 0
    assert torch.equal(crop_back(padded, got), x)
    if top:  # reflection (mirror without repeating the edge row), not replication or zeros
        assert torch.equal(padded[..., top - 1, left:left + w], x[..., 1, :])
    if left:
        assert torch.equal(padded[..., top:top + h, left - 1], x[..., :, 1])


# ---------------------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------------------

def test_small_e2vid_checkpoint_roundtrip_and_recurrence(tmp_path):
    torch.manual_seed(1)
    model = E2VIDRecurrent(SMALL_E2VID)
    randomize_bn(model)
    path = save_reconstruction_model(tmp_path / "small.pth.tar", model, "E2VIDRecurrent", SMALL_E2VID)
    loaded, config = load_reconstruction_model(path)
    assert config == SMALL_E2VID and isinstance(loaded, E2VIDRecurrent) and not loaded.training
    x = voxel()
    with torch.no_grad():
        out1, states = loaded(x, None)
        out2, _ = loaded(x, states)
        out_reset, _ = loaded(x, None)
        ref, _ = model.eval()(x, None)
    assert out1.shape == (1, 1, 32, 48)
    assert 0 <= out1.min() and out1.max() <= 1
    torch.testing.assert_close(out1, ref)
    assert not torch.allclose(out1, out2)  # the kept state changes the next output
    assert torch.equal(out1, out_reset)  # a reset gives the first output again


def test_lightweight_checkpoint_roundtrip(tmp_path):
    torch.manual_seed(2)
    model = E2VIDRecurrent(LIGHTWEIGHT)
    randomize_bn(model)
    path = save_reconstruction_model(tmp_path / "E2VID_lightweight.pth.tar", model, "E2VIDRecurrent",
                                     LIGHTWEIGHT)
    loaded, config = load_reconstruction_model(path)
    assert config == LIGHTWEIGHT
    x = voxel()
    with torch.no_grad():
        out, states = loaded(x, None)
        out2, _ = loaded(x, states)
    assert out.shape == (1, 1, 32, 48) and 0 <= out.min() and out.max() <= 1
    assert len(states) == 3 and all(isinstance(s, tuple) and len(s) == 2 for s in states)
    assert [s[0].shape[1:] for s in states] == [(64, 16, 24), (128, 8, 12), (256, 4, 6)]
    assert not torch.allclose(out, out2)


def test_firenet_checkpoint_roundtrip_and_recurrence(tmp_path):
    torch.manual_seed(3)
    model = FireNet(FIRENET)
    path = save_reconstruction_model(tmp_path / "firenet.pth.tar", model, "FireNet", FIRENET)
    loaded, config = load_reconstruction_model(path)
    assert isinstance(loaded, FireNet) and config == FIRENET
    x = voxel()
    with torch.no_grad():
        out1, states = loaded(x, None)
        out2, _ = loaded(x, states)
        out_reset, _ = loaded(x, None)
        ref, _ = model(x, None)
    assert out1.shape == (1, 1, 32, 48)
    torch.testing.assert_close(out1, ref)
    assert not torch.allclose(out1, out2)
    assert torch.equal(out1, out_reset)


def test_config_fallback_legacy_format_and_missing_num_batches_tracked(tmp_path):
    torch.manual_seed(4)
    model = E2VIDRecurrent(SMALL_E2VID)
    randomize_bn(model)
    # plain dict (no module-version metadata, as in pre-0.4.1 files) without num_batches_tracked,
    # config under ['config']['model'], written with the old (non-zip) serialization
    old_sd = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert len(old_sd) < len(model.state_dict())
    path = tmp_path / "old.pth.tar"
    torch.save({"arch": "E2VIDRecurrent", "config": {"model": SMALL_E2VID}, "state_dict": old_sd,
                "epoch": 3}, path, _use_new_zipfile_serialization=False)
    loaded, config = load_reconstruction_model(path)
    assert config == SMALL_E2VID
    x = voxel()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, None)[0], model.eval()(x, None)[0])
    # a state_dict that keeps torch's module-version metadata but lost the counters also loads
    new_sd = model.state_dict()
    for k in [k for k in new_sd if k.endswith("num_batches_tracked")]:
        del new_sd[k]
    path = _save(tmp_path / "stripped.pth.tar", {"arch": "E2VIDRecurrent", "model": SMALL_E2VID,
                                                 "state_dict": new_sd})
    loaded, _ = load_reconstruction_model(path)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, None)[0], model(x, None)[0])


def _save(path, obj):
    torch.save(obj, path)
    return path


def _expect_data_error(path, *fragments):
    with pytest.raises(DataError) as info:
        load_reconstruction_model(path)
    assert info.value.path == path
    text = str(info.value)
    assert str(path) in text
    for fragment in fragments:
        assert fragment in text, (fragment, text)
    return info.value


def test_errors_missing_file(tmp_path):
    err = _expect_data_error(tmp_path / "E2VID_lightweight.pth.tar", "not found",
                             "http://rpg.ifi.uzh.ch/data/E2VID/models/E2VID_lightweight.pth.tar")
    assert err.fix
    _expect_data_error(tmp_path / "firenet_1000.pth.tar", "not found", "drive.google.com")


def test_errors_pickled_custom_class_is_refused(tmp_path):
    model = E2VIDRecurrent(SMALL_E2VID)
    path = _save(tmp_path / "custom.pth.tar", {"arch": "E2VIDRecurrent", "model": SMALL_E2VID,
                                                "state_dict": model.state_dict(), "extra": NotATensor()})
    err = _expect_data_error(path, "not a plain official checkpoint", "NotATensor")
    assert "weights_only=False" in err.fix and "state_dict" in err.fix
    whole = _save(tmp_path / "module.pth.tar", collections.OrderedDict(model=NotATensor()))
    _expect_data_error(whole, "not a plain official checkpoint")


def test_errors_garbage_and_structure(tmp_path):
    garbage = tmp_path / "garbage.pth.tar"
    garbage.write_text("this is not a checkpoint")
    _expect_data_error(garbage, "not a readable PyTorch checkpoint")
    _expect_data_error(_save(tmp_path / "list.pth", [1, 2]), "not a dict")
    _expect_data_error(_save(tmp_path / "nokeys.pth", {"weights": {}}), "lacks arch, state_dict, model")
    model = E2VIDRecurrent(SMALL_E2VID)
    _expect_data_error(_save(tmp_path / "arch.pth", {"arch": "E2VID", "model": SMALL_E2VID,
                                                      "state_dict": model.state_dict()}),
                       "unknown arch 'E2VID'")


def test_errors_state_dict_mismatch(tmp_path):
    model = E2VIDRecurrent(SMALL_E2VID)
    sd = model.state_dict()
    wrong_keys = dict(sd)
    wrong_keys.pop("unetrecurrent.head.conv2d.bias")
    wrong_keys["unetrecurrent.head.extra"] = torch.zeros(3)
    path = _save(tmp_path / "keys.pth", {"arch": "E2VIDRecurrent", "model": SMALL_E2VID,
                                         "state_dict": wrong_keys})
    _expect_data_error(path, "missing keys: unetrecurrent.head.conv2d.bias",
                       "unexpected keys: unetrecurrent.head.extra")
    # config says 8 base channels, weights are for 4: shape mismatches
    other = dict(SMALL_E2VID, base_num_channels=8)
    path = _save(tmp_path / "shapes.pth", {"arch": "E2VIDRecurrent", "model": other, "state_dict": sd})
    _expect_data_error(path, "shape mismatches", "unetrecurrent.head.conv2d.weight: file (4, 5, 5, 5) vs "
                       "model (8, 5, 5, 5)")
    # FireNet weights under the E2VID arch
    path = _save(tmp_path / "swap.pth", {"arch": "E2VIDRecurrent", "model": SMALL_E2VID,
                                         "state_dict": FireNet(FIRENET).state_dict()})
    _expect_data_error(path, "missing keys", "unexpected keys: net.")
