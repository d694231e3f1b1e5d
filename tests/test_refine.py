"""PSA's proposal backends: SAM loading and batched prompts, superpixel prompts, and one image end to end."""

import numpy as np
import pytest
import torch

from evseg.errors import DataError
from evseg.refine.proposals import PsaSettings, SamProposals, SuperpixelProposals, refine_label
from evseg.refine.psa import class_partition
from evseg.refine.sam import SAM_VARIANTS, SamMasks, SamSpec, build_sam, load_sam
from evseg.refine.superpixels import prompt_mask

TINY = SamSpec(32, 2, 2, (1,), image_size=64, patch_size=16, window_size=2, prompt_embed_dim=32, decoder_mlp_dim=64,
               decoder_num_heads=2, iou_head_hidden_dim=32)


@pytest.fixture(scope="module")
def tiny_sam():
    torch.manual_seed(0)
    return build_sam(TINY)


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    frame = np.full((44, 64), 60, np.uint8)
    frame[10:30, 20:45] = 200  # a bright object
    return np.clip(frame + rng.normal(0, 5, frame.shape), 0, 255).astype(np.uint8)


def test_sam_state_dict_round_trip_and_refusals(tiny_sam, tmp_path):
    path = tmp_path / "sam_tiny.pth"
    torch.save(tiny_sam.state_dict(), path)  # the official files are plain state dicts
    loaded = load_sam(path, TINY)
    for (name, a), b in zip(tiny_sam.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name
    with pytest.raises(DataError, match="(?s)2 encoder blocks of width 32 .*not an official SAM variant"):
        load_sam(path, "vit_b")
    with pytest.raises(DataError, match="(?s)does not exist.*sam_vit_h_4b8939.pth"):
        load_sam(tmp_path / "missing.pth", "vit_h")
    broken = tmp_path / "broken.pth"
    broken.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match="not a readable torch checkpoint"):
        load_sam(broken, TINY)
    state = tiny_sam.state_dict()
    state.pop("mask_decoder.iou_token.weight")
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(DataError, match="missing \\['mask_decoder.iou_token.weight'\\]"):
        load_sam(tmp_path / "partial.pth", TINY)


def test_a_checkpoint_of_another_variant_is_named(tmp_path):
    # only the keys that identify a variant matter to the check, so fake a ViT-B's without building one
    blocks = {f"image_encoder.blocks.{i}.norm1.weight": torch.zeros(1) for i in range(12)}
    torch.save({**blocks, "image_encoder.patch_embed.proj.weight": torch.zeros(768, 3, 1, 1)}, tmp_path / "b.pth")
    with pytest.raises(DataError, match="(?s)a vit_b SAM.*set psa.sam.variant to 'vit_b'"):
        load_sam(tmp_path / "b.pth", "vit_h")
    assert SAM_VARIANTS["vit_h"].encoder_depth == 32 and SAM_VARIANTS["vit_l"].encoder_embed_dim == 1024


def test_batched_prompts_equal_one_decoder_call_each(tiny_sam, image):
    masks = SamMasks(tiny_sam)
    masks.set_image(image)
    boxes = [np.array([1, 2, 30, 20.0]), np.array([10, 5, 60, 40.0]), np.array([0, 0, 63, 43.0]),
             np.array([20, 10, 44, 29.0])]
    points = [np.array([[5, 6]]), np.array([[20, 10], [30, 20]]), np.array([[40, 30]]),
              np.array([[25, 12], [40, 25]])]
    batched = masks.prompted(boxes, points, return_logits=True)
    single = masks.prompted_one_by_one(boxes, points, return_logits=True)
    for a, b in zip(batched, single):
        assert a.shape == image.shape
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert [m.dtype for m in masks.prompted(boxes[:1], points[:1])] == [np.bool_]


def test_automatic_masks_and_prompts_share_one_encoder_pass(tiny_sam, image):
    calls = []
    hook = tiny_sam.image_encoder.register_forward_hook(lambda *args: calls.append(1))
    try:
        masks = SamMasks(tiny_sam, points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)
        masks.set_image(image)
        masks.automatic()
        masks.prompted([np.array([1, 2, 30, 20.0])], [np.array([[5, 6]])])
        assert len(calls) == 1
        masks.set_image(image[::-1].copy())
        assert len(calls) == 2
    finally:
        hook.remove()


def test_superpixel_prompt_takes_covered_segments_and_those_under_points():
    segments = np.repeat(np.repeat(np.arange(16).reshape(4, 4), 5, axis=0), 5, axis=1)  # 4x4 blocks of 5x5
    component = np.zeros((20, 20), bool)
    component[0:5, 0:3] = True    # 15 of block 0's 25 pixels: 60 % > 50 %
    component[0:2, 5:10] = True   # 10 of block 1's 25: 40 %, not taken
    points = np.array([[12, 2]])  # (x, y) inside block 2, which the component does not touch
    box = np.array([0, 0, 14, 9])  # x 0..14, y 0..9: blocks 0, 1, 2, 4, 5, 6
    mask = prompt_mask(segments, component, box, points, min_cover=0.5)
    expected = np.isin(segments, [0, 2])
    np.testing.assert_array_equal(mask, expected)
    # blocks cut by the box count only their pixels inside it
    half = prompt_mask(segments, component, np.array([0, 0, 2, 4]), np.zeros((0, 2), int), min_cover=0.5)
    np.testing.assert_array_equal(half, np.pad(np.ones((5, 3), bool), ((0, 15), (0, 17))))


class FixedProposals:
    """Hand-made proposals: what a backend would answer."""

    def __init__(self, stuff, thing_mask):
        self.stuff_masks, self.thing_mask, self.prompts = stuff, thing_mask, None

    def stuff(self, image):
        return self.stuff_masks

    def things(self, image, prompts):
        self.prompts = prompts
        return [self.thing_mask for _ in prompts]


def test_refine_label_votes_stuff_and_paints_prompted_things():
    stuff, things = class_partition("ess11", 11)
    label = np.full((20, 30), 255, np.uint8)
    label[12:20, :] = 5        # road, sparse: every other column
    label[12:20, ::2] = 255
    label[2:6, 10:14] = 8      # a car component of 16 pixels
    top, bottom = np.zeros((20, 30), bool), np.zeros((20, 30), bool)
    top[:10], bottom[10:] = True, True
    car = np.zeros((20, 30), bool)
    car[1:7, 9:15] = True
    proposals = FixedProposals([top, bottom], car)
    refined, counts = refine_label(label, np.zeros((20, 30), np.uint8), proposals, PsaSettings(stuff, things, 11))
    expected = np.full((20, 30), 255, np.uint8)
    expected[10:] = 5          # the whole bottom mask: its labelled pixels are all road
    expected[car] = 8          # things overwrite stuff; the top mask holds only car pixels, no stuff vote
    np.testing.assert_array_equal(refined, expected)
    assert counts == {"stuff_proposals": 2, "thing_prompts": 1} and proposals.prompts[0].cls == 8


def test_secov2_lets_a_car_vote_on_the_masks_instead_of_prompting():
    """The SeCoV2 partition: a car component does not prompt; the mask it lies in takes its majority class."""
    label = np.full((20, 30), 255, np.uint8)
    label[2:6, 10:14] = 8      # a car component of 16 pixels ...
    label[2:6, 20:22] = 2      # ... and 8 building pixels in the same mask
    label[12:20, ::2] = 5      # road
    top, bottom = np.zeros((20, 30), bool), np.zeros((20, 30), bool)
    top[:10], bottom[10:] = True, True
    wide_car = np.ones((20, 30), bool)  # what a prompt would paint: everything
    stuff, things = class_partition("ess11", 11, "secov2")
    refined, counts = refine_label(label, np.zeros((20, 30), np.uint8), FixedProposals([top, bottom], wide_car),
                                   PsaSettings(stuff, things, 11))
    expected = np.full((20, 30), 255, np.uint8)
    expected[:10], expected[10:] = 8, 5  # car holds 2/3 of the top mask's labelled pixels
    np.testing.assert_array_equal(refined, expected)
    assert counts == {"stuff_proposals": 2, "thing_prompts": 0}
    # the released partition prompts the car, and its (here: whole-image) mask wins over every vote
    stuff, things = class_partition("ess11", 11, "seco")
    refined, counts = refine_label(label, np.zeros((20, 30), np.uint8), FixedProposals([top, bottom], wide_car),
                                   PsaSettings(stuff, things, 11))
    assert counts["thing_prompts"] == 1 and (refined == 8).all()


def test_both_backends_run_on_a_real_image(tiny_sam, image, tmp_path):
    torch.save(tiny_sam.state_dict(), tmp_path / "sam_tiny.pth")
    loaded = load_sam(tmp_path / "sam_tiny.pth", TINY)  # the whole PSA path through our loader
    stuff, things = class_partition("ess11", 11)
    label = np.full(image.shape, 255, np.uint8)
    label[35:, :] = 5
    label[12:28, 22:43] = 8
    settings = PsaSettings(stuff, things, 11)
    for proposals in (SuperpixelProposals("felzenszwalb", 0.5, scale=50, sigma=0.5, min_size=10),
                      SamProposals(loaded, points_per_side=4)):
        refined, counts = refine_label(label, image, proposals, settings)
        assert refined.shape == label.shape and refined.dtype == np.uint8
        assert counts["thing_prompts"] == 1 and set(np.unique(refined)) <= {5, 8, 255}
    # felzenszwalb separates the bright object from the background, so the car prompt grows beyond the
    # 67 % of the object that the pseudo-label covers, and stays on the object
    refined, _ = refine_label(label, image, SuperpixelProposals("felzenszwalb", 0.5, scale=50, sigma=0.5,
                                                                min_size=10), settings)
    on_object = np.zeros(image.shape, bool)
    on_object[10:30, 20:45] = True
    assert (label[on_object] == 8).mean() < 0.7 and (refined[on_object] == 8).mean() > 0.8
    assert not (refined[~on_object] == 8).any()
