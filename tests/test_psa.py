"""SeCo's pixel semantic aggregation (evseg.refine.psa): hand-made cases and brute-force loops."""

import math
from collections import Counter, deque

import cv2
import numpy as np
import pytest

from evseg.data.classes import CITYSCAPES_19, CLASS_SETS, ESS_11
from evseg.refine.psa import (THING_CLASSES, ThingPrompt, aggregate, box_prompt, class_partition, paint_things,
                              point_prompts, purity_entropy, stuff_vote, thing_components, thing_prompts)

N = 255  # ignore


# ------------------------------------------------------------------------------------------------ class partition

def test_class_partition_ess11_by_name():
    stuff, things = class_partition("ess11", 11)
    assert [ESS_11.names[c] for c in things] == ["person", "pole", "car", "traffic sign"]
    assert stuff == (0, 1, 2, 5, 6, 7, 9)


def test_class_partition_cityscapes19():
    stuff, things = class_partition("cityscapes19", 19)
    assert stuff == (0, 1, 2, 3, 4, 8, 9, 10)
    assert [CITYSCAPES_19.names[c] for c in stuff] == ["road", "sidewalk", "building", "wall", "fence",
                                                       "vegetation", "terrain", "sky"]
    assert {CITYSCAPES_19.names[c] for c in (5, 6, 7)} <= {CITYSCAPES_19.names[c] for c in things}


@pytest.mark.parametrize("name,n", [("ess11", 11), ("cityscapes19", 19)])
def test_class_partition_covers_all_disjointly(name, n):
    stuff, things = class_partition(name, n)
    assert set(stuff) | set(things) == set(range(n))
    assert not set(stuff) & set(things)
    assert things == THING_CLASSES["seco"][name]


@pytest.mark.parametrize("name,n", [("ess11", 11), ("cityscapes19", 19)])
def test_secov2_prompts_only_pole_light_and_sign(name, n):
    class_set = CLASS_SETS[name]
    stuff, things = class_partition(name, n, "secov2")
    assert {class_set.names[c] for c in things} == {"pole", "traffic light", "traffic sign"} & set(class_set.names)
    assert set(stuff) == set(range(n)) - set(things)
    seco_stuff, _ = class_partition(name, n, "seco")
    assert set(seco_stuff) < set(stuff)  # every stuff class of SeCo is still stuff; the objects joined them


def test_class_partition_errors():
    with pytest.raises(ValueError, match="unknown PSA partition 'secov3'"):
        class_partition("ess11", 11, "secov3")
    with pytest.raises(ValueError, match="cityscapes19.*ess11"):
        class_partition("synthia16", 16)
    with pytest.raises(ValueError, match="11"):
        class_partition("ess11", 19)


# ------------------------------------------------------------------------------------------------ stuff vote

def test_stuff_vote_threshold_is_strict():
    # 1 of 5 labelled pixels is stuff class 0 (the others a thing): exactly 20 %, not painted.
    label = np.array([[0, 5, 5, 5, 5]], np.uint8)
    whole = np.ones_like(label, bool)
    assert (stuff_vote([whole], label, (0, 1)) == N).all()
    # 20 of 100 still not; 21 of 100 paints the whole mask.
    label = np.full((1, 100), 5, np.uint8)
    label[0, :20] = 0
    assert (stuff_vote([np.ones_like(label, bool)], label, (0, 1)) == N).all()
    label[0, 20] = 0
    assert (stuff_vote([np.ones_like(label, bool)], label, (0, 1)) == 0).all()


def test_stuff_vote_denominator_counts_things_not_ignore():
    # Mask A: 3 road, 10 thing, 100 ignore -> 3/13 = 0.23 (painted; with ignore counted it would be 3/113).
    # Mask B: 2 road, 10 thing -> 2/12 = 0.17 (not painted; without the things it would be 2/2).
    label = np.full((2, 113), N, np.uint8)
    label[0, :3] = 0
    label[0, 3:13] = 5
    label[1, :2] = 0
    label[1, 2:12] = 5
    mask_a = np.zeros(label.shape, bool)
    mask_a[0] = True
    mask_b = np.zeros(label.shape, bool)
    mask_b[1, :12] = True
    out = stuff_vote([mask_a, mask_b], label, (0, 1))
    assert (out[0] == 0).all()  # the whole mask, its 100 ignored and 10 thing pixels included
    assert (out[1] == N).all()


def test_stuff_vote_order_overwrite_skip_and_thing_never_wins():
    label = np.array([[0, 0, 1, 1, N, N],
                      [0, 0, 1, 1, N, N]], np.uint8)
    left = np.zeros(label.shape, bool)
    left[:, :3] = True  # 4 road, 2 sidewalk -> road
    right = np.zeros(label.shape, bool)
    right[:, 2:4] = True  # only sidewalk
    ignored = np.zeros(label.shape, bool)
    ignored[:, 1:] = True
    ignored_only = np.zeros(label.shape, bool)
    ignored_only[:, 4:] = True

    out = stuff_vote([left, right], label, (0, 1))
    assert out.tolist() == [[0, 0, 1, 1, N, N]] * 2
    out = stuff_vote([right, left], label, (0, 1))
    assert out.tolist() == [[0, 0, 0, 1, N, N]] * 2
    # A mask holding only ignored pixels is skipped: it neither paints nor clears what is there.
    out = stuff_vote([right, ignored_only, left], label, (0, 1))
    assert out.tolist() == [[0, 0, 0, 1, N, N]] * 2
    # 1 road and 4 sidewalk among the 5 labelled pixels of ``ignored``: sidewalk, painted over the ignored ones too.
    out = stuff_vote([ignored], label, (0, 1))
    assert out.tolist() == [[N, 1, 1, 1, 1, 1]] * 2

    # Thing classes never win: 90 % car + 10 % road -> nothing; 70 % car + 30 % sidewalk -> sidewalk.
    label = np.array([[13] * 9 + [0]], np.uint8)
    assert (stuff_vote([np.ones_like(label, bool)], label, (0, 1)) == N).all()
    label = np.array([[13] * 7 + [1] * 3], np.uint8)
    assert (stuff_vote([np.ones_like(label, bool)], label, (0, 1)) == 1).all()


def test_stuff_vote_tie_goes_to_lowest_class():
    label = np.array([[2, 2, 1, 1]], np.uint8)
    assert (stuff_vote([np.ones_like(label, bool)], label, (2, 1)) == 1).all()


def test_stuff_vote_matches_brute_force():
    rng = np.random.default_rng(0)
    label = rng.choice([0, 1, 2, 3, 4, N], size=(12, 15), p=[0.2, 0.15, 0.1, 0.15, 0.1, 0.3]).astype(np.uint8)
    stuff = (1, 3, 4)
    masks = [rng.random(label.shape) < rng.uniform(0.05, 0.6) for _ in range(25)]
    masks.append(np.zeros(label.shape, bool))
    expected = [[N] * label.shape[1] for _ in range(label.shape[0])]
    for mask in masks:
        counts = Counter(int(label[y, x]) for y in range(label.shape[0]) for x in range(label.shape[1])
                         if mask[y, x] and label[y, x] != N)
        total = sum(counts.values())
        if total == 0:
            continue
        winner, best = None, 0.0
        for c in stuff:  # ascending, so a later class needs a strictly larger share
            if counts[c] / total > best:
                winner, best = c, counts[c] / total
        if winner is not None and best > 0.2:
            for y, x in zip(*np.nonzero(mask)):
                expected[y][x] = winner
    assert stuff_vote(masks, label, stuff).tolist() == expected


# ------------------------------------------------------------------------------------------------ purity entropy

def brute_entropy(label, num_classes, radius):
    h, w = label.shape
    out = np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            counts = Counter()
            for yy in range(y - radius, y + radius + 1):
                for xx in range(x - radius, x + radius + 1):
                    if 0 <= yy < h and 0 <= xx < w:  # outside the image counts for nothing
                        counts[num_classes if label[yy, xx] == N else int(label[yy, xx])] += 1
            total = sum(counts.values())
            out[y, x] = -sum(n / total * math.log(n / total) for n in counts.values())
    return out


def test_purity_entropy_hand_values():
    lo = purity_entropy(np.array([[0, 0, 1]], np.uint8), 2, radius=1)
    third = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))
    np.testing.assert_allclose(lo, [[0.0, third, math.log(2)]], atol=1e-6)
    # Ignore is a class of its own.
    np.testing.assert_allclose(purity_entropy(np.array([[1, N]], np.uint8), 2, radius=1), [[math.log(2)] * 2],
                               atol=1e-6)


@pytest.mark.parametrize("radius,shape", [(2, (7, 9)), (8, (12, 20))])
def test_purity_entropy_matches_brute_force(radius, shape):
    rng = np.random.default_rng(radius)
    label = rng.choice([0, 1, 2, 3, N], size=shape).astype(np.uint8)
    got = purity_entropy(label, 4, radius)
    assert got.dtype == np.float32 and got.shape == shape
    np.testing.assert_allclose(got, brute_entropy(label, 4, radius), atol=1e-5)


def test_purity_entropy_uniform_is_zero():
    label = np.full((20, 30), 3, np.uint8)
    got = purity_entropy(label, 4)
    assert (got[8:-8, 8:-8] == 0).all()
    assert (got == 0).all()  # zero padding adds no class at the borders either


def test_purity_entropy_rejects_unknown_ids():
    with pytest.raises(ValueError, match="7"):
        purity_entropy(np.array([[0, 7]], np.uint8), 4)


# ------------------------------------------------------------------------------------------------ thing components

def test_thing_components_8_connectivity_minimums_and_order():
    label = np.full((20, 30), 0, np.uint8)
    # class 11: two 3x3 blocks that touch only at a corner: ONE component of 18 (4-connected: two of 9, both dropped)
    label[0:3, 0:3] = 11
    label[3:6, 3:6] = 11
    # class 13: exactly 10 pixels: skipped (needs strictly more than 10)
    label[10:12, 0:5] = 13
    # class 14: a 10-pixel block (kept: >= 10) and a lone pixel (dropped)
    label[15:17, 0:5] = 14
    label[19, 29] = 14
    # class 15: 9 + 3 pixels: the class counts, no component does
    label[0:3, 20:23] = 15
    label[5, 20:23] = 15
    # class 12: component A starts at row 1 col 10, component B at row 0 col 16: B comes first (row-major)
    label[1:6, 10:12] = 12
    label[0:2, 16:21] = 12
    got = thing_components(label, (15, 14, 13, 12, 11))  # order of the argument does not matter
    expected = []
    for c, rows, cols in [(11, None, None), (12, slice(0, 2), slice(16, 21)), (12, slice(1, 6), slice(10, 12)),
                          (14, slice(15, 17), slice(0, 5))]:
        m = np.zeros(label.shape, bool)
        if c == 11:
            m[0:3, 0:3] = m[3:6, 3:6] = True
        else:
            m[rows, cols] = True
        expected.append((c, m))
    assert [c for c, _ in got] == [c for c, _ in expected]
    for (_, m), (_, e) in zip(got, expected):
        assert m.dtype == bool and (m == e).all()


def brute_components(mask):
    """8-connected components by breadth-first flood fill, numbered in row-major order of their first pixel."""
    h, w = mask.shape
    seen = np.zeros_like(mask)
    out = []
    for y in range(h):
        for x in range(w):
            if mask[y, x] and not seen[y, x]:
                comp = np.zeros_like(mask)
                queue = deque([(y, x)])
                seen[y, x] = True
                while queue:
                    cy, cx = queue.popleft()
                    comp[cy, cx] = True
                    for dy in (-1, 0, 1):
                        for dx in (-1, 0, 1):
                            ny, nx = cy + dy, cx + dx
                            if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                                seen[ny, nx] = True
                                queue.append((ny, nx))
                out.append(comp)
    return out


def test_thing_components_match_flood_fill():
    rng = np.random.default_rng(3)
    label = rng.choice([0, 1, 2, N], size=(40, 50), p=[0.3, 0.35, 0.05, 0.3]).astype(np.uint8)
    label[30:34, 40:45] = 2
    expected = []
    for c in (1, 2):
        if (label == c).sum() > 4:
            expected += [(c, comp) for comp in brute_components(label == c) if comp.sum() >= 3]
    got = thing_components(label, (2, 1), min_class_pixels=4, min_component_pixels=3)
    assert len(got) == len(expected) > 5
    for (c, m), (ec, em) in zip(got, expected):
        assert c == ec and (m == em).all()


# ------------------------------------------------------------------------------------------------ box prompt

def test_min_area_rect_of_pixel_block_spans_pixel_centres():
    # The fact box_prompt's expectations rest on: OpenCV's contour of a w x h block of pixels runs through the
    # centres of its border pixels, so the minimum-area rectangle is (w-1) x (h-1), not w x h.
    m = np.zeros((12, 12), np.uint8)
    m[2:5, 3:8] = 1  # w = 5, h = 3
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    (cx, cy), size, _ = cv2.minAreaRect(contours[0])
    assert sorted(size) == [2.0, 4.0] and (cx, cy) == (5.0, 3.0)


def block(shape, x0, y0, w, h):
    m = np.zeros(shape, bool)
    m[y0:y0 + h, x0:x0 + w] = True
    return m


def test_box_prompt_axis_aligned_block():
    # Pixels x = 10..14, y = 20..22: rectangle through the centres [10, 14] x [20, 22], sides 4 x 2.
    d = (4 * 2 * 1.25) / (2 * (4 + 2))
    np.testing.assert_allclose(box_prompt(block((40, 40), 10, 20, 5, 3)), [10 - d, 20 - d, 14 + d, 22 + d], atol=1e-5)
    d = (4 * 2 * 2.0) / (2 * (4 + 2))
    np.testing.assert_allclose(box_prompt(block((40, 40), 10, 20, 5, 3), unclip_ratio=2.0),
                               [10 - d, 20 - d, 14 + d, 22 + d], atol=1e-5)


def test_box_prompt_clips_to_image():
    # Pixels x = 4..9, y = 3..7 in a 10-wide, 8-high image: sides 5 x 4, d = 25/18; right and bottom clip.
    d = 5 * 4 * 1.25 / (2 * 9)
    box = box_prompt(block((8, 10), 4, 3, 6, 5))
    assert box.dtype == np.float32
    np.testing.assert_allclose(box, [4 - d, 3 - d, 9, 7], atol=1e-5)
    np.testing.assert_allclose(box_prompt(block((8, 10), 0, 0, 6, 5)), [0, 0, 5 + d, 4 + d], atol=1e-5)


def test_box_prompt_degenerate_rectangles():
    # A one-pixel-high line: zero-area rectangle, d = 0; a single pixel: zero perimeter, d = 0.
    np.testing.assert_allclose(box_prompt(block((10, 20), 2, 5, 12, 1)), [2, 5, 13, 5])
    np.testing.assert_allclose(box_prompt(block((10, 20), 7, 3, 1, 1)), [7, 3, 7, 3])


def test_box_prompt_rotated_bar():
    # A 2-pixel-wide diagonal band: centres (i, i) and (i+1, i) for i = 2..12. Their hull is the parallelogram
    # (2,2) (3,2) (13,12) (12,12). Along (1,1) the rectangle spans (x+y)/sqrt2 in [4, 25]/sqrt2 and (x-y)/sqrt2 in
    # [0, 1]/sqrt2: area 21/2 = 10.5 (the axis-aligned choice would be 11 x 10). Corners (2,2) (2.5,1.5)
    # (12.5,12.5) (13,12); perimeter 2 * 22/sqrt2.
    m = np.zeros((20, 20), bool)
    for i in range(2, 13):
        m[i, i] = m[i, i + 1] = True
    d = 10.5 * 1.25 / (44 / math.sqrt(2))
    np.testing.assert_allclose(box_prompt(m), [2 - d, 1.5 - d, 13 + d, 12.5 + d], atol=1e-4)


# ------------------------------------------------------------------------------------------------ point prompts

def brute_points(component, entropy):
    pixels = [(y, x) for y in range(component.shape[0]) for x in range(component.shape[1]) if component[y, x]]
    n, step = len(pixels), len(pixels) // 2
    points, start = [], 0
    while start + step < n:  # the released loop: range(0, n - step, step)
        best = None
        for y, x in pixels[start:start + step]:
            if best is None or entropy[y, x] < entropy[best]:
                best = (y, x)
        points.append([best[1], best[0]])
        start += step
    return points


def test_point_prompts_even_and_odd():
    entropy = np.arange(60, dtype=np.float32).reshape(6, 10)[::-1].copy()  # lower further down
    comp = block((6, 10), 2, 1, 5, 2)  # 10 pixels: one chunk of 5 (row 1, x = 2..6) -> its lowest entropy
    entropy[1, 4] = -1
    entropy[2, 2] = -5  # in the second half: not a candidate for an even N
    assert point_prompts(comp, entropy).tolist() == [[4, 1]]
    comp[3, 9] = True  # 11 pixels: chunks [0, 5) and [5, 10); pixel 10 = (9, 3) is never a candidate
    entropy[3, 9] = -100
    got = point_prompts(comp, entropy)
    assert got.tolist() == [[4, 1], [2, 2]]
    assert np.issubdtype(got.dtype, np.integer)


def test_point_prompts_first_on_ties_and_errors():
    comp = block((5, 5), 1, 1, 3, 3)  # 9 pixels: chunks of 4 start at pixels 0 and 4
    assert point_prompts(comp, np.zeros((5, 5))).tolist() == [[1, 1], [2, 2]]
    with pytest.raises(ValueError):
        point_prompts(block((5, 5), 1, 1, 1, 1), np.zeros((5, 5)))


def test_point_prompts_match_brute_force():
    rng = np.random.default_rng(5)
    for n in range(2, 40):
        comp = np.zeros((9, 11), bool)
        comp.ravel()[rng.choice(comp.size, n, replace=False)] = True
        entropy = rng.integers(0, 4, comp.shape).astype(np.float32)  # small range, so ties happen
        got = point_prompts(comp, entropy)
        assert got.tolist() == brute_points(comp, entropy)
        assert len(got) == (1 if n % 2 == 0 else 2)


# ------------------------------------------------------------------------------------------------ thing prompts

def test_thing_prompts_combine_components_boxes_points():
    label = np.full((20, 30), 0, np.uint8)
    label[2:6, 3:10] = 13
    label[10:14, 20:27] = 11
    label[12, 27] = 11  # 29 pixels: odd, two points
    entropy = purity_entropy(label, 19)
    prompts = thing_prompts(label, (11, 13), entropy)
    assert [p.cls for p in prompts] == [11, 13]
    for p, (c, comp) in zip(prompts, thing_components(label, (11, 13))):
        assert isinstance(p, ThingPrompt) and p.cls == c and (p.component == comp).all()
        np.testing.assert_array_equal(p.box, box_prompt(comp))
        np.testing.assert_array_equal(p.points, point_prompts(comp, entropy))
    assert len(prompts[0].points) == 2 and len(prompts[1].points) == 1


# ------------------------------------------------------------------------------------------------ aggregate

def test_paint_things_copies_and_overwrites_in_order():
    canvas = np.full((2, 3), N, np.uint8)
    a = np.array([[1, 1, 0], [0, 0, 0]], bool)
    b = np.array([[0, 1, 1], [0, 0, 0]], bool)
    out = paint_things(canvas, [(11, a), (13, b)])
    assert out.tolist() == [[11, 13, 13], [N, N, N]]
    assert (canvas == N).all()


def test_aggregate_keep_unassigned_and_things_over_stuff():
    label = np.array([[0, 0, 0, N, 1, 1],
                      [0, 13, 13, N, 1, 2],
                      [N, 13, 13, 5, 2, 2]], np.uint8)
    stuff_left = np.zeros(label.shape, bool)
    stuff_left[:2, :3] = True  # 4 road + 2 car -> road, painted over the car pixels as well
    stuff_right = np.zeros(label.shape, bool)
    stuff_right[:, 4:] = True  # 3 of class 1 and 3 of class 2: a tie -> 1
    thing = np.zeros(label.shape, bool)
    thing[1:3, 1:3] = True
    thing_b = np.zeros(label.shape, bool)
    thing_b[2, 2:4] = True  # a later thing mask overwrites the earlier one
    things = [(13, thing), (5, thing_b)]
    out = aggregate(label, [stuff_left, stuff_right], things, (0, 1, 2, 9))
    assert out.dtype == np.uint8
    assert out.tolist() == [[0, 0, 0, N, 1, 1],
                            [0, 13, 13, N, 1, 1],
                            [N, 13, 5, 5, 1, 1]]
    out = aggregate(label, [stuff_left, stuff_right], things, (0, 1, 2, 9), keep_unassigned=True)
    assert out.tolist() == [[0, 0, 0, N, 1, 1],
                            [0, 13, 13, N, 1, 1],
                            [N, 13, 5, 5, 1, 1]]
    # With only the left stuff mask, the right part is unassigned: 255 (SeCo) or the pixel label (SeCoV2).
    out = aggregate(label, [stuff_left], things, (0, 1, 2, 9))
    assert out.tolist() == [[0, 0, 0, N, N, N],
                            [0, 13, 13, N, N, N],
                            [N, 13, 5, 5, N, N]]
    out = aggregate(label, [stuff_left], things, (0, 1, 2, 9), keep_unassigned=True)
    assert out.tolist() == [[0, 0, 0, N, 1, 1],
                            [0, 13, 13, N, 1, 2],
                            [N, 13, 5, 5, 2, 2]]
