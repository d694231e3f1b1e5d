"""How large is the synthetic benchmark's domain shift? A source-only model on source vs target frames.

Trains a small fully convolutional segmenter on the synthetic Cityscapes-format *day* images (grayscale,
as HPL-ESS) for a few minutes on the CPU, then measures mIoU (11 ESS classes) on
  (a) held-out source images (the `val` split), and
  (b) the target domain's grayscale frames (`images/left/ev_inf`, the night drives the events come from),
so the gap is the appearance shift alone; on events the model's input would differ even more. Both sets
are read through the project's loaders. Run after `make run` (it needs data/synthetic):

    .venv/bin/python tests/benchmarks/domain_shift.py --minutes 4
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from evseg.data import Cityscapes, DsecSemantic
from evseg.data.classes import ESS_11, IGNORE


def block(c_in, c_out):
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                         nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class SmallUNet(nn.Module):
    def __init__(self, num_classes: int, width: int = 24):
        super().__init__()
        self.enc = nn.ModuleList([block(1, width), block(width, 2 * width), block(2 * width, 4 * width),
                                  block(4 * width, 8 * width)])
        self.dec = nn.ModuleList([block(12 * width, 4 * width), block(6 * width, 2 * width), block(3 * width, width)])
        self.head = nn.Conv2d(width, num_classes, 1)

    def forward(self, x):
        size = x.shape[-2:]
        x = F.pad(x, (0, (-x.shape[-1]) % 8, 0, (-x.shape[-2]) % 8), mode="replicate")
        skips = []
        for i, enc in enumerate(self.enc):
            x = enc(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for dec, skip in zip(self.dec, reversed(skips[:-1])):
            x = dec(torch.cat([F.interpolate(x, size=skip.shape[-2:], mode="bilinear"), skip], 1))
        return self.head(x)[..., : size[0], : size[1]]


def confusion(pred: np.ndarray, label: np.ndarray, n: int) -> np.ndarray:
    keep = label != IGNORE
    return np.bincount(n * label[keep].astype(np.int64) + pred[keep], minlength=n * n).reshape(n, n)


def miou(conf: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean IoU over the classes present in the labels or predictions (nanmean, as mmseg)."""
    tp = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - tp
    iou = np.where(union > 0, tp / np.maximum(union, 1), np.nan)
    return float(np.nanmean(iou)), iou


def to_tensor(gray: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(gray.astype(np.float32) / 255.0)[None, None]


def evaluate(model, pairs) -> tuple[float, np.ndarray]:
    model.eval()
    conf = np.zeros((11, 11), np.int64)
    with torch.no_grad():
        for gray, label in pairs:
            pred = model(to_tensor(gray)).argmax(1)[0].numpy()
            conf += confusion(pred, label, 11)
    return miou(conf)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cityscapes", default="data/synthetic/cityscapes")
    parser.add_argument("--dsec", default="data/synthetic/dsec")
    parser.add_argument("--sensor-size", type=int, nargs=2, default=[120, 160])
    parser.add_argument("--label-height", type=int, default=110)
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    # Source images are scaled to the target's width so that objects have the same size in pixels.
    width = args.sensor_size[1]
    def source_pairs(split):
        data = Cityscapes(args.cityscapes, split, classes="ess11", grayscale=True)
        pairs = []
        for i in range(len(data)):
            image, label = data.image(i), data.label(i)
            height = round(image.shape[0] * width / image.shape[1])
            pairs.append((cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA),
                          cv2.resize(label, (width, height), interpolation=cv2.INTER_NEAREST)))
        return pairs

    train, val = source_pairs("train"), source_pairs("val")
    target = []
    for split in ("test", "train"):
        seqs = sorted(p.name for p in (Path(args.dsec) / split).iterdir() if p.is_dir())
        data = DsecSemantic(args.dsec, split, seqs, sensor_size=tuple(args.sensor_size),
                            label_height=args.label_height)
        for i in range(len(data)):
            name, index = data.samples[i]
            frame_path = data.sequences[name].dir / "images/left/ev_inf" / f"{index:06d}.png"
            frame = cv2.imread(str(frame_path), cv2.IMREAD_GRAYSCALE)[: args.label_height]
            target.append((frame, data.label(i)))

    model = SmallUNet(11)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    images = torch.cat([to_tensor(g) for g, _ in train])
    labels = torch.from_numpy(np.stack([lab for _, lab in train]).astype(np.int64))
    start, step = time.time(), 0
    while time.time() - start < args.minutes * 60:
        model.train()
        idx = torch.from_numpy(rng.choice(len(images), 8, replace=False))
        x, y = images[idx], labels[idx]
        if rng.random() < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        loss = F.cross_entropy(model(x), y, ignore_index=IGNORE)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
    source_miou, source_iou = evaluate(model, val)
    target_miou, target_iou = evaluate(model, target)
    print(f"trained {step} iterations ({args.minutes} min) on {len(train)} source images")
    print(f"{'class':>14} {'source val':>10} {'target':>8}")
    for name, s, t in zip(ESS_11.names, source_iou, target_iou):
        print(f"{name:>14} {100 * s:10.1f} {100 * t:8.1f}")
    print(f"mIoU: source val {100 * source_miou:.1f}, target night frames {100 * target_miou:.1f} "
          f"({len(val)} and {len(target)} images)")


if __name__ == "__main__":
    main()
