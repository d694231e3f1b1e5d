"""ECDDP pre-training (evseg.pretrain): each loss against a brute-force computation, the context mining on a
hand-made feature map, the crops' geometry, bit-exact resume, the checkpoint round trip into a segmentation
model, and bad inputs."""

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from evseg.adapt.data import InputSpec
from evseg.adapt.trainer import CHECKPOINT, METRICS
from evseg.errors import DataError
from evseg.models import build_segmentor
from evseg.pretrain.checkpoint import save_pretrained
from evseg.pretrain.context import cosine_kmeans, warp_assignments
from evseg.pretrain.crops import CropBox, apply_grid, block_mask, draw_masks, random_resized_box
from evseg.pretrain.data import EventRecordings, PretrainBatches, find_event_files
from evseg.pretrain.losses import context_loss, image_loss, patch_loss, sinkhorn_knopp
from evseg.pretrain.model import AttentionPool, ECDDPNet
from evseg.pretrain.trainer import PretrainSchedule, param_groups, pretrain
from tests.conftest import make_dsec_sequence

SENSOR = (64, 96)
ESS = dict(num_chunks=4, events_per_chunk=1500, bins_per_chunk=2, skip_first=0, stride=1, official_truncation=False)
SPEC = InputSpec("event_tensor", (2, 8), False, (0.5,) * 3, (0.25,) * 3)
CROPS = {"full": [64, 64], "flip": True, "global": {"number": 2, "size": 48, "scale": [0.4, 1.0]},
         "local": {"number": 2, "size": 32, "scale": [0.1, 0.4]}}
MASKS = {"probability": 0.5, "ratio": [0.1, 0.5]}
CONFIG = dict(seed=3, max_iters=4, num_workers=0, log_every=1, checkpoint_every=2, lr=1e-3, min_lr=1e-6,
              warmup_iters=2, weight_decay=0.04, weight_decay_end=0.4, betas=[0.9, 0.999], patch_embed_lr_scale=0.2,
              clip_grad_norm=3.0, ema={"start": 0.992}, teacher_temperature={"start": 0.04, "end": 0.07, "warmup_iters": 3},
              student_temperature=0.1, context={"clusters": 3, "iterations": 5, "weight": 2.0},
              freeze_prototypes_iters=1, centering="sinkhorn_knopp")


# ----------------------------------------------------------------------------------------------------------
# losses against brute force


def brute_sinkhorn(scores: np.ndarray, temperature: float, iterations: int = 3) -> np.ndarray:
    """DINOv2's algorithm written out with explicit sums over a (K, B) matrix."""
    q = np.exp(scores.astype(np.float64) / temperature).T
    k, b = q.shape
    q = q / q.sum()
    for _ in range(iterations):
        for row in range(k):
            q[row] = q[row] / q[row].sum() / k
        for col in range(b):
            q[:, col] = q[:, col] / q[:, col].sum() / b
    return (q * b).T


def brute_ce(target: np.ndarray, scores: np.ndarray, temperature: float) -> float:
    z = scores.astype(np.float64) / temperature
    log_p = z - np.log(np.exp(z - z.max()).sum()) - z.max()
    return float(-(target * log_p).sum())


def test_sinkhorn_knopp_matches_the_written_out_algorithm_and_balances_prototypes():
    scores = torch.rand(6, 5) * 2 - 1
    targets = sinkhorn_knopp(scores, 0.07)
    np.testing.assert_allclose(targets.numpy(), brute_sinkhorn(scores.numpy(), 0.07), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(targets.sum(1).numpy(), 1.0, rtol=1e-5)  # every row a distribution
    many = sinkhorn_knopp(torch.rand(64, 4) * 2 - 1, 0.1, iterations=50)
    np.testing.assert_allclose(many.sum(0).numpy(), 64 / 4, rtol=1e-3)  # the prototypes used equally
    assert sinkhorn_knopp(torch.zeros(0, 5), 0.04).shape == (0, 5)


def test_image_loss_is_the_mean_over_cross_view_pairs():
    student = [torch.randn(3, 7) for _ in range(5)]  # 2 global crops, then 3 local
    teacher = [torch.softmax(torch.randn(3, 7), -1) for _ in range(2)]
    expected, pairs = 0.0, 0
    for i, s in enumerate(student):
        for j, t in enumerate(teacher):
            if i != j:
                expected += np.mean([brute_ce(t[b].numpy(), s[b].numpy(), 0.1) for b in range(3)])
                pairs += 1
    assert pairs == 2 + 2 * 3
    assert image_loss(student, teacher, 0.1).item() == pytest.approx(expected / pairs, rel=1e-5)


def test_patch_loss_averages_per_image_over_its_masked_tokens_then_over_all_images():
    masks = torch.tensor([[1, 0, 1, 1], [0, 0, 0, 0], [0, 1, 0, 0]], dtype=torch.bool)
    m = int(masks.sum())
    student, teacher = torch.randn(m, 6), torch.softmax(torch.randn(m, 6), -1)
    rows = masks.nonzero()[:, 0].tolist()
    per_image = {}
    for k, row in enumerate(rows):
        per_image.setdefault(row, []).append(brute_ce(teacher[k].numpy(), student[k].numpy(), 0.1))
    expected = sum(np.mean(v) for v in per_image.values()) / 3  # the unmasked image counts, adding 0
    assert patch_loss(student, teacher, masks, 0.1).item() == pytest.approx(expected, rel=1e-5)


def test_context_loss_is_the_mean_over_covered_contexts_and_zero_without_any():
    student, teacher = torch.randn(4, 5), torch.softmax(torch.randn(4, 5), -1)
    expected = np.mean([brute_ce(teacher[k].numpy(), student[k].numpy(), 0.2) for k in range(4)])
    assert context_loss(student, teacher, 0.2).item() == pytest.approx(expected, rel=1e-5)
    empty = torch.zeros(0, 5, requires_grad=True)
    loss = context_loss(empty, torch.zeros(0, 5), 0.2)
    assert loss.item() == 0.0 and loss.requires_grad


def test_attention_pool_restricted_to_a_group_weighs_only_its_tokens():
    pool = AttentionPool(4)
    tokens = torch.randn(1, 5, 4)
    groups = torch.tensor([[[1, 0, 1, 0, 0], [0, 0, 0, 0, 0]]], dtype=torch.bool)
    out = pool(tokens, groups)
    scores = (pool.key(tokens[0]) @ pool.query / 2.0)[[0, 2]]
    expected = torch.softmax(scores, 0) @ tokens[0, [0, 2]]
    torch.testing.assert_close(out[0, 0], expected)
    assert torch.isfinite(out).all()  # an empty group is finite (its row is dropped by the caller)


# ----------------------------------------------------------------------------------------------------------
# context mining and crops


def hand_made_map():
    """A 6x6 token map of three regions (left third, top-right, bottom-right), each a noisy copy of its own
    direction; the region ids."""
    directions = torch.eye(8)[:3] * 3
    regions = torch.zeros(6, 6, dtype=torch.long)
    regions[:, 2:] = 1
    regions[3:, 2:] = 2
    tokens = directions[regions.view(-1)] + 0.3 * torch.randn(36, 8)
    return tokens[None], regions


def test_cosine_kmeans_recovers_the_regions_of_a_hand_made_map():
    tokens, regions = hand_made_map()
    found = cosine_kmeans(tokens, 3, 10, torch.Generator().manual_seed(0))[0]
    # the same partition up to a renaming of the clusters
    pairs = {(int(a), int(b)) for a, b in zip(found, regions.view(-1))}
    assert len(pairs) == 3 and len({a for a, _ in pairs}) == 3
    # brute force: one more Lloyd step from the found partition changes nothing (a fixed point)
    x = F.normalize(tokens[0], dim=-1)
    centroids = torch.stack([F.normalize(x[found == k].sum(0), dim=0) for k in range(3)])
    assert torch.equal((x @ centroids.T).argmax(1), found)


def test_kmeans_needs_as_many_tokens_as_clusters():
    with pytest.raises(ValueError, match="pretrain.context.clusters"):
        cosine_kmeans(torch.randn(1, 3, 4), 4, 2, torch.Generator())


def test_a_crops_tokens_see_the_contexts_of_the_whole_crop_below_them():
    _, regions = hand_made_map()
    # the right half (columns 3..5 of 6 tokens = pixels 48..96 of 96), mirrored, at 3x6 tokens per crop
    box = CropBox(top=0.0, left=48.0, height=96.0, width=48.0, flip=True)
    warped = warp_assignments(regions.view(1, -1), 3, (6, 6), box.grid((6, 3), (96, 96))[None])
    expected = F.one_hot(regions[:, 3:].flip(1).reshape(-1), 3).T.float()
    torch.testing.assert_close(warped[0], expected)


def test_crop_grids_reproduce_slices_and_flips():
    image = torch.arange(2 * 8 * 10, dtype=torch.float32).view(2, 8, 10)
    whole = CropBox(0.0, 0.0, 8.0, 10.0)
    torch.testing.assert_close(apply_grid(image, whole.grid((8, 10), (8, 10))), image)
    part = CropBox(2.0, 4.0, 4.0, 6.0, flip=True)
    torch.testing.assert_close(apply_grid(image, part.grid((4, 6), (8, 10))), image[:, 2:6, 4:10].flip(-1))


def test_random_resized_boxes_stay_inside_with_the_asked_area():
    rng = np.random.default_rng(0)
    for _ in range(200):
        box = random_resized_box(rng, (64, 96), (0.1, 0.4))
        assert 0 <= box.top and box.top + box.height <= 64 + 1e-9
        assert 0 <= box.left and box.left + box.width <= 96 + 1e-9
        assert 0.1 - 1e-9 <= box.height * box.width / (64 * 96) <= 0.4 + 1e-9


def test_block_masks_mask_blocks_up_to_the_target_and_half_the_images():
    rng = np.random.default_rng(1)
    for target in (4, 10, 20):
        mask = block_mask(rng, (8, 8), target)
        assert 0 < mask.sum() <= target
    masks = draw_masks(rng, 10, (8, 8), 0.5, (0.1, 0.5))
    assert masks.shape == (10, 64) and (masks.sum(1) > 0).sum() == 5
    assert masks.sum(1).max() <= 32


# ----------------------------------------------------------------------------------------------------------
# data, training, resume, checkpoint


@pytest.fixture(scope="module")
def recordings_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrain")
    for i in range(2):
        make_dsec_sequence(root, "simulated", f"sim_{i:02d}", 12, sensor=SENSOR, label_height=60,
                           events_per_ms=120, seed=i)
    return root


def recordings(root, rectify=True):
    return EventRecordings(find_event_files([root]), SENSOR, 64, ESS, SPEC, rectify)


def fresh_net(seed=0):
    torch.manual_seed(seed)
    return ECDDPNet("mit_b0", SPEC.channels, -2, prototypes=32, hidden_dim=16, bottleneck_dim=8)


def test_batches_hold_the_views_and_are_a_function_of_seed_and_step(recordings_root):
    batches = PretrainBatches(recordings(recordings_root), 3, 2, CROPS, MASKS, 16)
    batch = batches[5]
    assert batch["full"].shape == (2, 6, 64, 64)
    assert batch["global"].shape == (2, 2, 6, 48, 48) and batch["local"].shape == (2, 2, 6, 32, 32)
    assert batch["global_grid"].shape == (2, 2, 3, 3, 2) and batch["masks"].shape == (2, 2, 9)
    assert batch["full"].abs().sum() > 0
    again = PretrainBatches(recordings(recordings_root), 3, 2, CROPS, MASKS, 16)[5]
    for key in batch:
        assert torch.equal(batch[key], again[key]), key


def test_a_window_is_the_segmentation_input_of_its_events(recordings_root):
    """The pre-training input of a window is the ESS tensor of the same events (the channels train.input
    keeps), computed here from the file by hand."""
    from evseg.events import EventSlicer, ess_event_tensor, load_rectify_map, rectify_events

    rec = recordings(recordings_root)
    file, end = rec.draw(np.random.default_rng(0))
    with EventSlicer(rec.files[file]) as slicer:
        ev = slicer.get_events_by_index(end - rec.window, end)
    x, y = rectify_events(ev.x, ev.y, load_rectify_map(rec.files[file].parent / "rectify_map.h5", SENSOR))
    tensor = ess_event_tensor(x, y, ev.t, ev.p, *SENSOR, 64, ESS["num_chunks"], ESS["bins_per_chunk"])
    np.testing.assert_array_equal(rec.input(file, end), tensor[2:8])


def test_killed_pretraining_resumes_to_the_same_weights(recordings_root, tmp_path):
    """4 steps in one go vs 3 steps, a kill (the step-3 state is lost: checkpoints every 2), and a rerun."""
    batches = PretrainBatches(recordings(recordings_root), 3, 2, CROPS, MASKS, 16)
    whole = pretrain(fresh_net(), batches, CONFIG, tmp_path / "whole", torch.device("cpu"))
    pretrain(fresh_net(), batches, CONFIG, tmp_path / "killed", torch.device("cpu"), stop_after=3)
    assert torch.load(tmp_path / "killed" / CHECKPOINT, weights_only=False)["step"] == 2
    resumed = pretrain(fresh_net(), batches, CONFIG, tmp_path / "killed", torch.device("cpu"))
    for a, b in [(whole.student, resumed.student), (whole.teacher, resumed.teacher)]:
        for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
            assert torch.equal(x, y), name
    initial = fresh_net()
    assert not torch.equal(whole.student.backbone.patch_embed.proj.weight, initial.backbone.patch_embed.proj.weight)
    assert not torch.equal(whole.teacher.backbone.patch_embed.proj.weight,
                           initial.backbone.patch_embed.proj.weight)  # the EMA moved too
    header = (tmp_path / "killed" / METRICS).read_text().splitlines()[0].split(",")
    for key in ("loss_image", "loss_patch", "loss_context", "contexts_per_crop", "lr_patch_embed"):
        assert key in header


def test_schedules_follow_the_released_shapes():
    net = fresh_net()
    groups = param_groups(net, 0.2)
    assert [g["name"] for g in groups] == ["patch_embed", "no_decay", "decay"]
    optimizer = torch.optim.AdamW(groups, lr=1.0)
    cfg = {**CONFIG, "max_iters": 12, "warmup_iters": 2}
    schedule = PretrainSchedule(optimizer, cfg)
    seen = []
    for _ in range(13):
        seen.append({g["name"]: (g["lr"], g["weight_decay"]) for g in optimizer.param_groups})
        schedule.step()
    assert seen[0]["decay"] == (0.0, pytest.approx(0.04)) and seen[1]["decay"][0] == pytest.approx(5e-4)
    assert seen[2]["decay"][0] == pytest.approx(1e-3) and seen[2]["patch_embed"][0] == pytest.approx(2e-4)
    assert seen[12]["decay"] == (pytest.approx(1e-6), pytest.approx(0.4)) and seen[12]["no_decay"][1] == 0.0
    middle = 0.04 + 0.5 * (0.4 - 0.04) * (1 - math.cos(math.pi * 6 / 12))
    assert seen[6]["decay"][1] == pytest.approx(middle)


def test_the_checkpoint_loads_the_teachers_backbone_into_a_segmentation_model(tmp_path):
    student, teacher = fresh_net(1), fresh_net(2)
    save_pretrained(tmp_path / "ecddp.pth", student, teacher, {"backbone": "mit_b0"}, {}, 4)
    segmentor = build_segmentor("mit_b0", 11, in_chans=SPEC.channels, pretrained=tmp_path / "ecddp.pth")
    loaded = {k.replace("_", "."): v for k, v in segmentor.backbone.state_dict().items()}
    wanted = {k.replace("_", "."): v for k, v in teacher.backbone.state_dict().items()}
    assert set(loaded) <= set(wanted) and len(loaded) > 20
    for key, value in loaded.items():
        assert torch.equal(value, wanted[key]), key
    # a file with the student only (no teacher) gives the student's backbone
    only_student = {k: v for k, v in torch.load(tmp_path / "ecddp.pth")["model"].items() if k.startswith("student.")}
    torch.save({"model": only_student}, tmp_path / "student.pth")
    segmentor = build_segmentor("mit_b0", 11, in_chans=SPEC.channels, pretrained=tmp_path / "student.pth")
    assert torch.equal(segmentor.backbone.patch_embed.proj.weight, student.backbone.patch_embed.proj.weight)


def test_a_checkpoint_of_another_backbone_or_input_is_refused_by_name(tmp_path):
    save_pretrained(tmp_path / "ecddp.pth", fresh_net(), fresh_net(), {}, {}, 1)
    with pytest.raises(DataError, match="ecddp.pth.*does not fit mit_b1"):
        build_segmentor("mit_b1", 11, in_chans=SPEC.channels, pretrained=tmp_path / "ecddp.pth")
    with pytest.raises(DataError, match="ecddp.pth.*cannot adapt"):
        build_segmentor("mit_b0", 11, in_chans=5, pretrained=tmp_path / "ecddp.pth")


def test_reinit_keeps_the_files_backbone_but_a_fresh_patch_embedding(tmp_path):
    """ECDDP's released file was pre-trained on another input: keep_patch_keys false re-initialises the first
    layer, whatever its channel count, and loads the rest."""
    teacher = fresh_net(2)
    save_pretrained(tmp_path / "ecddp.pth", fresh_net(1), teacher, {}, {}, 1)
    torch.manual_seed(0)
    segmentor = build_segmentor("mit_b0", 11, in_chans=5, pretrained=tmp_path / "ecddp.pth", reinit_patch_embed=True)
    assert segmentor.backbone.patch_embed.proj.weight.shape[1] == 5
    assert torch.equal(segmentor.backbone.stages_1.blocks[0].attn.q.weight, teacher.backbone.stages[1].blocks[0].attn.q.weight)
    torch.manual_seed(0)
    scratch = build_segmentor("mit_b0", 11, in_chans=5)
    assert torch.equal(segmentor.backbone.patch_embed.proj.weight, scratch.backbone.patch_embed.proj.weight)


def test_swin_pretrains_and_segments_frames_of_any_size(tmp_path):
    net = ECDDPNet("swin_tiny_patch4_window7_224", 2, -1, prototypes=16, hidden_dim=8, bottleneck_dim=8)
    tokens, grid = net.tokens(torch.zeros(1, 2, 64, 64), torch.ones(1, 2, 2, dtype=torch.bool))
    assert grid == (2, 2) and tokens.shape == (1, 4, 768)
    save_pretrained(tmp_path / "swin.pth", net, net, {}, {}, 1)
    segmentor = build_segmentor("swin_tiny_patch4_window7_224", 11, in_chans=2, pretrained=tmp_path / "swin.pth")
    with torch.no_grad():
        assert segmentor.predict(torch.zeros(1, 2, 110, 160)).shape == (1, 11, 110, 160)


# ----------------------------------------------------------------------------------------------------------
# bad inputs


def test_folders_without_event_files_are_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty.*holds no events.h5"):
        find_event_files([tmp_path / "empty"])
    with pytest.raises(DataError, match="missing.*does not exist"):
        find_event_files([tmp_path / "missing"])


def test_a_missing_rectification_map_is_named(tmp_path):
    seq = make_dsec_sequence(tmp_path, "x", "rec", 3, sensor=SENSOR, label_height=60, events_per_ms=120)
    (seq / "events/left/rectify_map.h5").unlink()
    with pytest.raises(DataError, match="(?s)rectify_map.h5.*is missing.*pretrain.data.rectify: false"):
        recordings(tmp_path)


def test_recordings_shorter_than_a_window_are_refused(tmp_path):
    make_dsec_sequence(tmp_path, "x", "short", 2, sensor=SENSOR, label_height=60, events_per_ms=1)
    with pytest.raises(DataError, match="no recording holds more than one window"):
        recordings(tmp_path)


def test_crops_that_tokens_do_not_tile_are_refused(recordings_root):
    crops = copy.deepcopy(CROPS)
    crops["global"]["size"] = 40
    with pytest.raises(ValueError, match="pretrain.crops.global.*not a multiple of the token stride 16"):
        PretrainBatches(recordings(recordings_root), 0, 2, crops, MASKS, 16)
    crops = copy.deepcopy(CROPS)
    crops["full"] = [64, 128]
    with pytest.raises(ValueError, match="pretrain.crops.full.*exceeds the 64x96 event frame"):
        PretrainBatches(recordings(recordings_root), 0, 2, crops, MASKS, 16)


def test_a_backbone_without_a_patch_grid_is_refused_by_name():
    net = ECDDPNet("vit_tiny_patch16_224", 2, -1, prototypes=8, hidden_dim=8, bottleneck_dim=8)
    with pytest.raises(ValueError, match="vit_tiny_patch16_224.*not as a 2-D grid"):
        net.tokens(torch.zeros(1, 2, 224, 224), torch.zeros(1, 14, 14, dtype=torch.bool))


def test_a_token_level_the_backbone_lacks_is_refused():
    with pytest.raises(ValueError, match="pretrain.token_level 4 does not exist"):
        ECDDPNet("mit_b0", 2, 4, prototypes=8)
