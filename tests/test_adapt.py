"""The self-training pieces of evseg.adapt against expectations written here: brute-force loops over pixels and
cells, closed forms, and the formulas of reference/cmda_daformer.md §1 and reference/dsec_ess_hplss.md §3.6."""

import io
import math
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn

from evseg.adapt.augment import (blur_kernel_size, color_jitter, denormalize, gaussian_blur, normalize,
                                 strong_transform)
from evseg.adapt.classmix import class_masks, mix
from evseg.adapt.ema import EMATeacher, ema_alpha
from evseg.adapt.feature_distance import THING_CLASSES_11, THING_CLASSES_19, downscale_label_ratio, feature_distance
from evseg.adapt.losses import confidence_weight, ignore_border, pixel_cross_entropy, pseudo_labels
from evseg.adapt.optim import build_optimizer, param_groups, poly_warmup
from evseg.adapt.rcs import RareClassSampler, count_class_pixels, scaled_min_pixels
from evseg.adapt.spa import ClassPriorEMA, prior_aligned_js


def gen(seed):
    return torch.Generator().manual_seed(seed)


# -- EMA teacher ------------------------------------------------------------------------------------------


def test_ema_alpha():
    assert ema_alpha(0, 0.999) == 0.0
    assert ema_alpha(1, 0.999) == 0.5
    assert ema_alpha(9, 0.999) == pytest.approx(0.9)
    assert ema_alpha(5000, 0.999) == 0.999
    assert ema_alpha(5, 0.5) == 0.5


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))


@pytest.mark.parametrize("average_buffers", [True, False])
def test_ema_update_follows_the_recurrence(average_buffers):
    student = small_net()
    ema = EMATeacher(student, alpha=0.9, average_buffers=average_buffers)
    assert all(not p.requires_grad for p in ema.teacher.parameters())
    initial_buffers = {k: v.clone() for k, v in ema.teacher.named_buffers()}
    expected = {k: v.detach().double().clone() for k, v in student.state_dict().items()}
    rng = torch.Generator().manual_seed(1)
    for step in range(6):
        with torch.no_grad():  # a "training step" of the student: new weights and BN statistics
            for v in student.state_dict().values():
                if v.is_floating_point():
                    v.add_(torch.randn(v.shape, generator=rng))
                else:
                    v.add_(1)
        ema.update(student, step)
        a = min(1 - 1 / (step + 1), 0.9)
        for k, v in student.state_dict().items():
            expected[k] = a * expected[k] + (1 - a) * v.double() if v.is_floating_point() else v.double()
        if step == 0:  # a = 0: an exact copy
            for t, s in zip(ema.teacher.parameters(), student.parameters()):
                assert torch.equal(t, s)
    params = dict(ema.teacher.named_parameters())
    for k, v in ema.teacher.state_dict().items():
        if k in params or average_buffers:
            torch.testing.assert_close(v.double(), expected[k], rtol=1e-5, atol=1e-5)
        else:  # DAFormer: buffers are left alone
            assert torch.equal(v, initial_buffers[k])
    assert ema.teacher[1].num_batches_tracked.item() == (6 if average_buffers else 0)
    # the student is untouched by the update and still trainable
    assert all(p.requires_grad for p in student.parameters())


def test_ema_state_dict_roundtrip():
    student = small_net()
    ema = EMATeacher(student)
    with torch.no_grad():
        student[0].weight.add_(1)
    ema.update(student, 3)
    other = EMATeacher(small_net())
    other.load_state_dict(ema.state_dict())
    for a, b in zip(other.teacher.state_dict().values(), ema.teacher.state_dict().values()):
        assert torch.equal(a, b)


class DropNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 6)
        self.bn = nn.BatchNorm1d(6)
        self.drop = nn.Dropout(0.5)
        self.path = DropPath(0.5)

    def forward(self, x):
        return self.path(self.drop(self.bn(self.fc(x))))


@pytest.mark.parametrize("average_buffers", [True, False])
def test_pseudo_label_mode(average_buffers):
    ema = EMATeacher(DropNet(), average_buffers=average_buffers)
    net = ema.teacher
    net.eval()
    net.drop.train()  # an odd mix of modes, to check that every flag is restored
    before = {m: m.training for m in net.modules()}
    running = net.bn.running_mean.clone()
    x = torch.randn(8, 4, generator=gen(0))
    with torch.no_grad(), ema.pseudo_label_mode() as model:
        assert model is net
        assert net.training and net.bn.training
        assert not net.drop.training and not net.path.training
        y1, y2 = model(x), model(x)
    assert torch.equal(y1, y2)  # no dropout
    # batch statistics, not the running ones
    h = net.fc(x).detach()
    manual = (h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + net.bn.eps) * net.bn.weight + net.bn.bias
    torch.testing.assert_close(y1, manual, rtol=1e-5, atol=1e-5)
    assert {m: m.training for m in net.modules()} == before
    if average_buffers:  # the teacher's buffers stay the average of the student's
        assert torch.equal(net.bn.running_mean, running)
    else:  # DAFormer: the pseudo-labelling passes move them
        assert not torch.equal(net.bn.running_mean, running)


# -- ClassMix ---------------------------------------------------------------------------------------------


def test_class_masks_choose_half_of_the_batch_classes():
    labels = torch.arange(5).repeat_interleave(4).view(1, 4, 5).repeat(3, 1, 1)  # every image has classes 0..4
    labels[1] = labels[1].flip(-1)
    masks = class_masks(labels, generator=gen(3))
    assert masks.shape == (3, 1, 4, 5) and masks.dtype == torch.float32
    for i in range(3):
        chosen = set(labels[i][masks[i, 0] > 0].tolist())
        assert len(chosen) == 3  # ceil(5/2)
        for c in range(5):  # a class is pasted whole or not at all
            assert (masks[i, 0][labels[i] == c] > 0).all() == (c in chosen)


def test_class_masks_use_the_batch_wide_unique_and_the_generator_protocol():
    labels = torch.zeros(2, 3, 4, dtype=torch.long)       # image 0: class 0 only
    labels[1] = torch.tensor([1, 2, 3, 4]).repeat(3, 1)   # image 1: classes 1..4
    empty_first = 0
    for seed in range(200):
        masks = class_masks(labels, generator=gen(seed))
        # protocol: per image, randperm(n) on the generator, first ceil(n/2) of the sorted batch classes
        g = gen(seed)
        for i in range(2):
            chosen = torch.arange(5)[torch.randperm(5, generator=g)[:3]]
            assert torch.equal(masks[i, 0] > 0, torch.isin(labels[i], chosen))
        empty_first += int(masks[0].sum() == 0)
    # class 0 is among the 3 chosen of 5 with probability 3/5: image 0 then pastes everything, else nothing
    assert 0.3 * 200 < empty_first < 0.5 * 200
    assert torch.equal(class_masks(labels, generator=gen(7)), class_masks(labels, generator=gen(7)))


def test_class_masks_ignore_index():
    labels = torch.tensor([[[0, 1, 255, 255]]])
    for seed in range(20):
        # DACS: 255 is a candidate (n = 3, two chosen); with ignore_index it never is (n = 2, one chosen)
        m = class_masks(labels, generator=gen(seed))[0, 0]
        assert len(set(labels[0, 0][m[0] > 0].tolist())) == 2
        m = class_masks(labels, generator=gen(seed), ignore_index=255)[0, 0]
        assert m[0, 2:].sum() == 0 and m[0, :2].sum() == 1


def test_mix():
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]]).repeat(2, 1, 1, 1)
    fg, bg = torch.full((2, 3, 2, 2), 5.0), torch.full((2, 3, 2, 2), -1.0)
    out = mix(mask, fg, bg)
    assert out.shape == (2, 3, 2, 2)
    assert torch.equal(out[:, :, 0, 0], torch.full((2, 3), 5.0))
    assert torch.equal(out[:, :, 0, 1], torch.full((2, 3), -1.0))
    la, lb = torch.full((2, 2, 2), 7, dtype=torch.long), torch.full((2, 2, 2), 255, dtype=torch.long)
    labels = mix(mask, la, lb)
    assert labels.dtype == torch.long
    assert labels[0].tolist() == [[7, 255], [255, 7]]
    assert mix(mask[:, 0], la, lb).tolist() == labels.tolist()  # a (B,H,W) mask works too
    weight = mix(mask, 1.0, torch.full((2, 2, 2), 0.25))
    assert weight.shape == (2, 2, 2) and weight[1].tolist() == [[1.0, 0.25], [0.25, 1.0]]


# -- strong augmentation ----------------------------------------------------------------------------------


def test_strong_transform_deterministic_and_in_range():
    x = torch.rand(2, 3, 24, 31, generator=gen(0))
    for seed in range(10):
        a = strong_transform(x, generator=gen(seed))
        b = strong_transform(x, generator=gen(seed))
        assert torch.equal(a, b) and a.shape == x.shape and a.dtype == x.dtype
        assert a.min() >= 0 and a.max() <= 1
    changed = [not torch.equal(strong_transform(x, generator=gen(s), blur=False), x) for s in range(200)]
    assert 0.7 < np.mean(changed) < 0.9  # jitter when a uniform draw > 0.2


def test_strong_transform_leaves_a_constant_image_constant_under_blur():
    x = torch.full((2, 3, 30, 41), 0.3)
    for seed in range(20):  # jitter off (a uniform draw is never > 1), blur in about half of the draws
        torch.testing.assert_close(strong_transform(x, generator=gen(seed), color_jitter_p=1.0), x)
    y = torch.rand(1, 1, 30, 41, generator=gen(1))
    blurred = [not torch.equal(strong_transform(y, generator=gen(s), color_jitter_p=1.0), y) for s in range(40)]
    assert 0.2 < np.mean(blurred) < 0.8


def test_strong_transform_gray_images():
    x = torch.rand(2, 1, 20, 20, generator=gen(2))
    out = strong_transform(x, generator=gen(0), color_jitter_s=0.8)  # gray: no hue, so s may exceed 0.5
    assert out.shape == x.shape and 0 <= out.min() and out.max() <= 1
    # HPL-ESS's released behaviour: no jitter on non-RGB inputs at all
    for seed in range(20):
        assert torch.equal(strong_transform(x, generator=gen(seed), blur=False, gray_jitter=False), x)
    assert any(not torch.equal(strong_transform(x, generator=gen(s), blur=False), x) for s in range(20))


def test_strong_transform_under_autocast_and_unclamped():
    x = torch.rand(2, 3, 16, 16, generator=gen(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a = strong_transform(x, generator=gen(5))
    assert a.dtype == torch.float32
    torch.testing.assert_close(a, strong_transform(x, generator=gen(5)))
    events = 4 * torch.randn(1, 2, 30, 30, generator=gen(4))  # not intensities: blur only, no clamping
    outs = [strong_transform(events, generator=gen(s), color_jitter_p=1.0, clamp=False) for s in range(10)]
    assert any(o.max() > 1 for o in outs) and any(not torch.equal(o, events) for o in outs)


def test_color_jitter_ops():
    x = torch.rand(2, 3, 5, 6, generator=gen(0))
    ones = torch.ones(4, 2, dtype=torch.float64)
    f = ones.clone()
    f[0] = 0.5
    torch.testing.assert_close(color_jitter(x, f, [0]), x * 0.5)
    f = ones.clone()
    f[1] = 0.0  # contrast 0: every pixel becomes the image's mean luma
    gray = 0.2989 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    torch.testing.assert_close(color_jitter(x, f, [1]), gray.mean((1, 2)).view(2, 1, 1, 1).expand_as(x))
    f = ones.clone()
    f[2] = 0.0  # saturation 0: each pixel becomes its luma
    torch.testing.assert_close(color_jitter(x, f, [2]), gray[:, None].expand_as(x))
    f = ones.clone()
    f[3] = 0.0  # hue 0: identity
    torch.testing.assert_close(color_jitter(x, f, [3]), x, atol=1e-5, rtol=0)
    f = ones.clone()
    f[0] = 3.0
    assert color_jitter(x, f, [0]).max() == 1.0  # clamped


def test_gaussian_blur_against_a_loop():
    assert [blur_kernel_size(n) for n in (10, 30, 41, 440, 512)] == [1, 3, 5, 45, 53]
    x = torch.rand(1, 2, 25, 41, generator=gen(1), dtype=torch.float64)
    sigma = 0.9
    out = gaussian_blur(x, sigma)
    kh, kw = 3, 5

    def taps(k):
        g = [math.exp(-((i - (k - 1) / 2) ** 2) / (2 * sigma**2)) for i in range(k)]
        return [v / sum(g) for v in g]

    def reflect(i, n):
        return -i if i < 0 else 2 * (n - 1) - i if i >= n else i

    gy, gx = taps(kh), taps(kw)
    a = x.numpy()
    for c in range(2):
        for yy in (0, 1, 12, 24):
            for xx in (0, 2, 20, 39, 40):
                v = sum(gy[i] * gx[j] * a[0, c, reflect(yy + i - kh // 2, 25), reflect(xx + j - kw // 2, 41)]
                        for i in range(kh) for j in range(kw))
                assert out[0, c, yy, xx].item() == pytest.approx(v, abs=1e-12)


def test_normalize_roundtrip():
    x = torch.rand(2, 3, 4, 4, generator=gen(0))
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    n = normalize(x, mean, std)
    torch.testing.assert_close(n[:, 1], (x[:, 1] - 0.456) / 0.224)
    torch.testing.assert_close(denormalize(n, mean, std), x)
    with pytest.raises(ValueError):
        normalize(x, (0.5,), (0.5,))


# -- losses and pseudo-labels -----------------------------------------------------------------------------


def manual_ce(logits, labels, weight, ignore_index=255, average="all"):
    """-log softmax per pixel, in python, with weights; ignored pixels add 0."""
    b, c, h, w = logits.shape
    total, valid = 0.0, 0
    for i in range(b):
        for y in range(h):
            for x in range(w):
                t = int(labels[i, y, x])
                if t == ignore_index:
                    continue
                z = [float(logits[i, k, y, x]) for k in range(c)]
                m = max(z)
                lse = m + math.log(sum(math.exp(v - m) for v in z))
                total += (lse - z[t]) * (1.0 if weight is None else float(weight[i, y, x]))
                valid += 1
    return total / (b * h * w if average == "all" else valid)


def test_pixel_cross_entropy_against_a_loop():
    logits = torch.randn(2, 4, 3, 5, generator=gen(0))
    labels = torch.randint(0, 4, (2, 6, 10), generator=gen(1))
    labels[0, :2] = 255
    labels[1, 3, 4] = 255
    weight = torch.rand(2, 6, 10, generator=gen(2))
    up = F.interpolate(logits, size=(6, 10), mode="bilinear", align_corners=False)
    loss = pixel_cross_entropy(logits, labels, weight)
    assert loss.dtype == torch.float32 and loss.ndim == 0
    assert loss.item() == pytest.approx(manual_ce(up, labels, weight), rel=1e-5)
    # same size: no resize
    assert pixel_cross_entropy(up, labels).item() == pytest.approx(manual_ce(up, labels, None), rel=1e-5)
    # "valid" is F.cross_entropy's mean over non-ignored pixels
    valid = pixel_cross_entropy(logits, labels, average="valid")
    torch.testing.assert_close(valid, F.cross_entropy(up, labels, ignore_index=255))
    assert pixel_cross_entropy(logits, labels, weight, average="valid").item() == pytest.approx(
        manual_ce(up, labels, weight, average="valid"), rel=1e-5)
    assert pixel_cross_entropy(logits, torch.full_like(labels, 255), average="valid").item() == 0.0
    with torch.autocast("cpu", dtype=torch.bfloat16):
        amp = pixel_cross_entropy(logits.bfloat16(), labels, weight)
    assert amp.dtype == torch.float32
    assert amp.item() == pytest.approx(loss.item(), rel=2e-2)


def test_pixel_cross_entropy_gradient():
    logits = torch.randn(1, 3, 2, 2, generator=gen(0), requires_grad=True)
    pixel_cross_entropy(logits, torch.tensor([[[0, 1], [2, 255]]])).backward()
    assert logits.grad[0, :, 1, 1].abs().sum() == 0 and logits.grad[0, :, 0, 0].abs().sum() > 0


def test_pseudo_labels():
    logits = torch.randn(2, 5, 3, 4, generator=gen(0))
    prob, label = pseudo_labels(logits)
    soft = torch.softmax(logits, 1)
    torch.testing.assert_close(prob, soft.amax(1))
    assert label.dtype == torch.long and torch.equal(label, soft.argmax(1))
    prob, label = pseudo_labels(logits.bfloat16(), size=(6, 8))
    assert prob.shape == (2, 6, 8) and prob.dtype == torch.float32
    up = torch.softmax(F.interpolate(logits.bfloat16().float(), size=(6, 8), mode="bilinear"), 1)
    torch.testing.assert_close(prob, up.amax(1))


def test_confidence_weight_and_ignore_border():
    prob = torch.tensor([[[0.99, 0.5], [0.968, 0.1]], [[0.97, 0.2], [0.3, 0.4]]])
    w = confidence_weight(prob)
    assert w.shape == prob.shape
    assert torch.equal(w, torch.full_like(prob, 3 / 8))  # 0.99, 0.968 (>=) and 0.97 over all 8 pixels
    weight = torch.ones(2, 6, 3)
    out = ignore_border(weight, 1, 2)
    assert out[:, 0].sum() == 0 and out[:, 4:].sum() == 0 and torch.equal(out[:, 1:4], weight[:, 1:4])
    assert torch.equal(ignore_border(weight, 0, 0), weight) and weight.sum() == 36  # input untouched
    assert ignore_border(weight, 0, 10).sum() == 0


# -- ImageNet feature distance ----------------------------------------------------------------------------


def brute_downscale(labels, scale, min_ratio, num_classes, ignore=255):
    b, h, w = labels.shape
    out = np.full((b, h // scale, w // scale), ignore)
    for i in range(b):
        for cy in range(h // scale):
            for cx in range(w // scale):
                cell = labels[i, cy * scale:(cy + 1) * scale, cx * scale:(cx + 1) * scale].flatten().tolist()
                counts = Counter(v if 0 <= v < num_classes and v != ignore else num_classes for v in cell)
                cls, n = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))  # ties: lowest id, ignore last
                if cls != num_classes and n / scale**2 >= min_ratio:
                    out[i, cy, cx] = cls
    return out


@pytest.mark.parametrize("scale, min_ratio", [(2, 0.5), (2, 0.75), (3, 0.75), (4, 0.3)])
def test_downscale_label_ratio_against_a_loop(scale, min_ratio):
    labels = torch.randint(0, 3, (2, 13, 17), generator=gen(scale))
    labels[labels == 2] = 255
    labels[0, :6, :8] = 1  # some pure cells
    out = downscale_label_ratio(labels, scale, min_ratio, num_classes=2)
    assert out.shape == (2, 13 // scale, 17 // scale) and out.dtype == torch.long
    np.testing.assert_array_equal(out.numpy(), brute_downscale(labels.numpy(), scale, min_ratio, 2))


def test_feature_distance_against_manual():
    s = torch.randn(2, 3, 4, 5, generator=gen(0), requires_grad=True)
    t = torch.randn(2, 3, 4, 5, generator=gen(1))
    labels = torch.full((2, 16, 20), 0)
    labels[0, :4, :4] = 13      # one pure car cell
    labels[1, 4:8, 8:12] = 11   # one pure person cell
    labels[1, 8:12, 0:4] = 6
    labels[1, 8:10, 0:4] = 255  # traffic light on half a cell: below 0.75, not a thing cell
    cells = brute_downscale(labels.numpy(), 4, 0.75, 19)
    dist = torch.sqrt(((s - t) ** 2).sum(1)).detach().numpy()
    expected = np.mean([dist[i, y, x] for i in range(2) for y in range(4) for x in range(5)
                        if cells[i, y, x] in THING_CLASSES_19])
    assert expected == pytest.approx(np.mean([dist[0, 0, 0], dist[1, 1, 2]]))
    out = feature_distance(s, t, labels, THING_CLASSES_19, num_classes=19)
    assert out.item() == pytest.approx(expected, rel=1e-5)
    assert feature_distance(s, t, labels, THING_CLASSES_19).item() == pytest.approx(expected, rel=1e-5)
    assert feature_distance(s, t, None, THING_CLASSES_19).item() == pytest.approx(dist.mean(), rel=1e-5)
    out.backward()
    assert s.grad[0, :, 0, 0].abs().sum() > 0 and s.grad[0, :, 1, 1].abs().sum() == 0


def test_feature_distance_edge_cases():
    s = torch.randn(1, 3, 2, 2, generator=gen(0), requires_grad=True)
    imnet = torch.randn(1, 3, 2, 2, generator=gen(1), requires_grad=True)
    stuff = torch.zeros(1, 8, 8, dtype=torch.long)
    zero = feature_distance(s, imnet, stuff, THING_CLASSES_11, num_classes=11)
    assert zero.item() == 0.0 and zero.requires_grad
    zero.backward()
    assert s.grad.abs().sum() == 0 and imnet.grad is None  # differentiable; the ImageNet side never gets a grad
    same = s.detach().clone().requires_grad_()
    d = feature_distance(same, s.detach(), torch.full((1, 8, 8), 8), THING_CLASSES_11, num_classes=11)
    d.backward()  # at the start of training student == ImageNet model: zero distance, finite gradient
    assert d.item() == 0.0 and torch.isfinite(same.grad).all()
    with pytest.raises(ValueError):
        feature_distance(s, imnet, torch.zeros(1, 8, 12, dtype=torch.long), THING_CLASSES_11, num_classes=11)


# -- rare-class sampling ----------------------------------------------------------------------------------


CLASS_PIXELS = np.array([[500, 20, 0, 5],
                         [400, 0, 30, 8],
                         [300, 15, 40, 9],
                         [600, 0, 0, 0],
                         [200, 12, 0, 7]], dtype=np.int64)


@pytest.mark.parametrize("temperature", [0.01, 0.5])
def test_rcs_probabilities_follow_the_formula(temperature):
    sampler = RareClassSampler(CLASS_PIXELS, temperature=temperature, min_pixels=10)
    f = CLASS_PIXELS.sum(0) / CLASS_PIXELS.sum()
    ok = np.array([True, True, True, False])  # class 3 never has more than 10 pixels in one image
    z = np.where(ok, (1 - f) / temperature, -np.inf)
    expected = np.exp(z - z[ok].max())
    expected /= expected.sum()
    np.testing.assert_allclose(sampler.class_probabilities, expected, rtol=1e-10, atol=1e-300)
    assert sampler.class_probabilities[3] == 0


def test_rcs_samples():
    sampler = RareClassSampler(CLASS_PIXELS, temperature=0.5, min_pixels=10)
    g = gen(0)
    draws = [sampler.sample(g) for _ in range(6000)]
    classes = np.array([c for c, _ in draws])
    freq = np.bincount(classes, minlength=4) / len(draws)
    np.testing.assert_allclose(freq, sampler.class_probabilities, atol=0.02)
    for c, i in draws:
        assert CLASS_PIXELS[i, c] > 10
    images_of_1 = Counter(i for c, i in draws if c == 1)
    assert set(images_of_1) == {0, 2, 4}
    assert min(images_of_1.values()) > 0.25 * sum(images_of_1.values())  # uniform over the three
    g1, g2 = gen(5), gen(5)
    assert [sampler.sample(g1) for _ in range(20)] == [sampler.sample(g2) for _ in range(20)]


def test_rcs_helpers():
    assert scaled_min_pixels(3000, 2048 * 1024, 512 * 256) == 188  # 187.5, rounded
    assert scaled_min_pixels(3000, 100, 100) == 3000
    label = np.array([[0, 1, 1], [255, 2, 1]])
    assert count_class_pixels(label, 4).tolist() == [1, 3, 1, 0]
    with pytest.raises(ValueError):
        RareClassSampler(CLASS_PIXELS, min_pixels=10_000)


# -- soft prototypical alignment --------------------------------------------------------------------------


def test_class_prior_ema():
    prior = ClassPriorEMA(4, momentum=0.9)
    assert torch.equal(prior.value, torch.full((4,), 0.25))
    p = torch.softmax(torch.randn(2, 4, 3, 3, generator=gen(0)), 1)
    mean = [p[:, c].mean().item() for c in range(4)]
    prior.update(p)
    expected = [0.9 * 0.25 + 0.1 * m for m in mean]
    prior.update(p)
    expected = [0.9 * e + 0.1 * m for e, m in zip(expected, mean)]
    np.testing.assert_allclose(prior.value.numpy(), expected, rtol=1e-6)
    other = ClassPriorEMA(4)
    buf = io.BytesIO()
    torch.save(prior.state_dict(), buf)
    buf.seek(0)
    other.load_state_dict(torch.load(buf))
    assert torch.equal(other.value, prior.value) and other.momentum == 0.9


def manual_js(a, b, prior):
    """JS between softmax(a - prior) and softmax(b - prior) per pixel, numpy, summed over classes."""
    def soft(z):
        z = z - prior.reshape(1, -1, 1, 1)
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)
    p, q = soft(a), soft(b)
    m = (p + q) / 2
    return (0.5 * (p * np.log(p / m)).sum(1) + 0.5 * (q * np.log(q / m)).sum(1)).mean()


def test_prior_aligned_js():
    a = torch.randn(2, 5, 3, 4, generator=gen(0), dtype=torch.float64)
    b = torch.randn(2, 5, 3, 4, generator=gen(1), dtype=torch.float64)
    prior = torch.tensor([0.5, 0.2, 0.1, 0.1, 0.1])
    js = prior_aligned_js(a, b, prior)
    assert js.dtype == torch.float32
    assert js.item() == pytest.approx(manual_js(a.numpy(), b.numpy(), prior.double().numpy()), rel=1e-5)
    assert js.item() == pytest.approx(prior_aligned_js(b, a, prior).item(), rel=1e-6)  # symmetric
    assert 0 < js.item() < math.log(2)
    assert prior_aligned_js(a, a.clone(), prior).item() == pytest.approx(0.0, abs=1e-7)
    # a uniform prior is a constant shift of the logits: no effect
    assert prior_aligned_js(a, b, torch.full((5,), 0.2)).item() == pytest.approx(
        manual_js(a.numpy(), b.numpy(), np.zeros(5)), rel=1e-5)


def test_prior_aligned_js_gradient_flows_into_the_student_only():
    student = torch.randn(1, 4, 2, 2, generator=gen(0), requires_grad=True)
    target = torch.randn(1, 4, 2, 2, generator=gen(1), requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = prior_aligned_js(student, target, torch.full((4,), 0.25))
    assert loss.dtype == torch.float32
    loss.backward()
    assert student.grad.abs().sum() > 0 and target.grad is None


# -- optimiser and schedule -------------------------------------------------------------------------------


class Segmentor(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.ModuleDict({"patch": nn.Conv2d(3, 4, 3), "norm": nn.LayerNorm(4),
                                       "pos_block": nn.Conv2d(4, 4, 3), "fc": nn.Linear(4, 4)})
        self.decode_head = nn.ModuleDict({"conv": nn.Conv2d(4, 4, 1), "bn": nn.BatchNorm2d(4),
                                          "norm": nn.LayerNorm(4)})
        self.frozen = nn.Linear(2, 2)
        self.frozen.requires_grad_(False)


def test_param_groups():
    model = Segmentor()
    groups = param_groups(model, lr=6e-5, weight_decay=0.01)
    by_name = {g["name"]: g for g in groups}
    ids = {k: {id(p) for p in g["params"]} for k, g in by_name.items()}
    params = dict(model.named_parameters())
    assert ids["head"] == {id(p) for n, p in params.items() if n.startswith("decode_head.")}
    assert by_name["head"]["lr"] == pytest.approx(6e-4) and by_name["head"]["weight_decay"] == 0.01
    assert id(params["decode_head.bn.weight"]) in ids["head"] and id(params["decode_head.norm.weight"]) in ids["head"]
    assert ids["no_decay"] == {id(params[n]) for n in ("backbone.norm.weight", "backbone.norm.bias",
                                                       "backbone.pos_block.weight", "backbone.pos_block.bias")}
    assert by_name["no_decay"]["weight_decay"] == 0 and by_name["no_decay"]["lr"] == 6e-5
    assert ids["decay"] == {id(params[n]) for n in ("backbone.patch.weight", "backbone.patch.bias",
                                                    "backbone.fc.weight", "backbone.fc.bias")}
    assert by_name["decay"]["weight_decay"] == 0.01
    assert id(model.frozen.weight) not in set().union(*ids.values())


def test_poly_warmup():
    r = 1e-6
    assert poly_warmup(0, 40000) == pytest.approx(r)
    assert poly_warmup(750, 40000) == pytest.approx((1 - 750 / 40000) * (1 - 0.5 * (1 - r)))
    assert poly_warmup(1500, 40000) == pytest.approx(1 - 1500 / 40000)
    assert poly_warmup(40000, 40000) == 0.0
    assert poly_warmup(40000, 40000, min_lr_ratio=0.1) == pytest.approx(0.1)
    assert poly_warmup(20000, 40000, power=0.9) == pytest.approx(0.5**0.9)
    assert poly_warmup(0, 100, warmup_iters=0) == 1.0


def test_build_optimizer_schedule_and_resume():
    model = Segmentor()
    cfg = dict(lr=6e-5, weight_decay=0.01, betas=(0.9, 0.999), head_lr_mult=10.0, warmup_iters=10,
               warmup_ratio=1e-6, power=1.0, max_iters=100)
    optimizer, scheduler = build_optimizer(model, cfg)
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["betas"] == (0.9, 0.999)
    base = {g["name"]: g["initial_lr"] for g in optimizer.param_groups}
    assert base["head"] == pytest.approx(6e-4) and base["decay"] == pytest.approx(6e-5)
    for step in range(15):
        for g in optimizer.param_groups:
            assert g["lr"] == pytest.approx(base[g["name"]] * poly_warmup(step, 100, 10, 1e-6))
        optimizer.step()
        scheduler.step()
    buf = io.BytesIO()
    torch.save({"o": optimizer.state_dict(), "s": scheduler.state_dict()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=False)
    optimizer2, scheduler2 = build_optimizer(Segmentor(), cfg)
    optimizer2.load_state_dict(state["o"])
    scheduler2.load_state_dict(state["s"])
    assert [g["lr"] for g in optimizer2.param_groups] == pytest.approx([g["lr"] for g in optimizer.param_groups])
    optimizer2.step()
    scheduler2.step()
    assert optimizer2.param_groups[0]["lr"] == pytest.approx(base[optimizer2.param_groups[0]["name"]]
                                                              * poly_warmup(16, 100, 10, 1e-6))
