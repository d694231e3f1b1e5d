"""Benchmark of PSA's SAM stage: images per second with batched thing prompts against one decoder call per prompt.

Run ``python tests/benchmarks/bench_psa.py [--variant vit_b|vit_l|vit_h] [--images N] [--quick] [--json PATH]``.
It is a script, not a pytest test. The default is ``vit_h`` (random weights: speed does not depend on them) on
CUDA when present, else on the CPU, where a vit_h encoder pass takes minutes per image. ``--quick`` is a CPU
smoke test of a tiny SAM (tests/test_refine.py's ``TINY`` spec, 64-px input) on 110x160 labels, 3 images: a few
seconds on one thread. CPU runs use ``--threads`` (1) torch and OpenCV threads. It exits non-zero only when the two
ways give different masks, never on speed.

Data, per image (seeded): a synthetic ESS-11 pseudo-label at DSEC's PSA resolution (440x640; ``--quick`` 110x160):
building above, road below, 20-40 rectangles of the thing classes (person, pole, car, traffic sign; class-shaped,
10-400 px, scaled down with the label's area), then 5% ignore speckle; the grayscale image is a per-class intensity
plus noise. Prompts come from ``purity_entropy`` + ``thing_prompts`` with ``class_partition("ess11", 11)``'s things.

Timed, per image (each call between two ``torch.cuda.synchronize()`` on CUDA; fp32, as segment-anything runs; the
two ways alternate which goes first): ``SamMasks.set_image`` (the encoder pass, shared by both ways), then the same
thing prompts through ``SamMasks.prompted`` (batched: one decoder call per number of points) and through
``prompted_one_by_one`` (the released SeCo code's way: one ``SamPredictor.predict`` per prompt), boolean masks as
PSA uses them. One untimed warm-up image runs first. Images/s = 1 / (encoder + prompt stage), mean over images.
Without ``--quick`` the automatic mask generator (official parameters, stuff masks) is also timed per image on the
same embedding; with random weights few masks pass its filters, so its post-processing is lighter than with the
official weights. Correctness (untimed): the logits of both ways must agree to 1e-3 max |diff| (the CPU's, and
CUDA's too: the decoder's matmuls run in fp32, only its transposed convolutions may use TF32, on both sides alike).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from evseg.refine.psa import class_partition, purity_entropy, thing_prompts
from evseg.refine.sam import SAM_VARIANTS, SamMasks, SamSpec, build_sam

NUM_CLASSES, IGNORE = 11, 255
TINY = SamSpec(32, 2, 2, (1,), image_size=64, patch_size=16, window_size=2, prompt_embed_dim=32, decoder_mlp_dim=64,
               decoder_num_heads=2, iou_head_hidden_dim=32)
FULL_SIZE, QUICK_SIZE = (440, 640), (110, 160)
ASPECT = {3: 2.5, 4: 8.0, 8: 0.5, 10: 1.0}  # height / width of the things: person, pole, car, traffic sign
INTENSITY = np.array([30, 90, 120, 200, 160, 60, 100, 70, 220, 110, 240, 0], np.uint8)  # per class; last: ignore
TOLERANCE = 1e-3


def synthetic_sample(seed: int, size: tuple[int, int], things: tuple[int, ...]):
    """(gray uint8 image, uint8 pseudo-label) of one street-like scene."""
    rng = np.random.default_rng(seed)
    h, w = size
    label = np.full(size, 5, np.uint8)  # road
    label[: int(0.45 * h)] = 1  # building
    scale = h * w / (FULL_SIZE[0] * FULL_SIZE[1])
    for _ in range(rng.integers(20, 41)):
        cls = int(rng.choice(things))
        area = max(10.0, rng.uniform(10, 400) * scale)
        bw = max(1, round(np.sqrt(area / ASPECT[cls])))
        bh = max(1, round(area / bw))
        y, x = rng.integers(0, h - bh + 1), rng.integers(0, w - bw + 1)
        label[y:y + bh, x:x + bw] = cls
    label[rng.random(size) < 0.05] = IGNORE
    image = INTENSITY[np.minimum(label, NUM_CLASSES)].astype(np.float32) + rng.normal(0, 8, size)
    return np.clip(image, 0, 255).astype(np.uint8), label


def timed(fn, device: torch.device):
    """(result, milliseconds) of ``fn()``, CUDA-synchronised."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out, 1e3 * (time.perf_counter() - start)


def run_image(masks: SamMasks, image, label, things, device, batched_first: bool, amg: bool) -> dict:
    prompts = thing_prompts(label, things, purity_entropy(label, NUM_CLASSES))
    boxes, points = [p.box for p in prompts], [p.points for p in prompts]
    _, encoder = timed(lambda: masks.set_image(image), device)
    ways = {"batched": lambda: masks.prompted(boxes, points),
            "one_by_one": lambda: masks.prompted_one_by_one(boxes, points)}
    out, ms = {}, {}
    for name in (["batched", "one_by_one"] if batched_first else ["one_by_one", "batched"]):
        out[name], ms[name] = timed(ways[name], device)
    # untimed: the logits of both ways, and how many pixels of the timed boolean masks differ
    logits_b = masks.prompted(boxes, points, return_logits=True)
    logits_s = masks.prompted_one_by_one(boxes, points, return_logits=True)
    diff = max((float(np.abs(a - b).max()) for a, b in zip(logits_b, logits_s)), default=0.0)
    pixels = sum(int((a != b).sum()) for a, b in zip(out["batched"], out["one_by_one"]))
    amg_ms = timed(masks.automatic, device)[1] if amg else None
    return {"prompts": len(prompts), "two_point": sum(len(p) == 2 for p in points), "encoder_ms": encoder,
            "batched_ms": ms["batched"], "one_by_one_ms": ms["one_by_one"], "max_abs_diff": diff,
            "mask_pixels_differing": pixels, "amg_ms": amg_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=sorted(SAM_VARIANTS), default="vit_h")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    parser.add_argument("--images", type=int, default=10, help="timed images (after one warm-up image)")
    parser.add_argument("--threads", type=int, default=1, help="torch and OpenCV CPU threads (CPU runs only)")
    parser.add_argument("--quick", action="store_true", help="CPU smoke test: tiny SAM, 110x160 labels, 3 images")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args()
    if args.quick:
        args.device, args.images = "cpu", 3
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
        if not args.quick:
            print(f"warning: {args.variant} on the CPU is slow (minutes per image for vit_h); try --quick",
                  file=sys.stderr)
    spec, name = (TINY, "tiny (TINY spec)") if args.quick else (SAM_VARIANTS[args.variant], args.variant)
    size = QUICK_SIZE if args.quick else FULL_SIZE
    _, things = class_partition("ess11", NUM_CLASSES)
    started = time.perf_counter()
    torch.manual_seed(0)
    masks = SamMasks(build_sam(spec).to(device))
    run_image(masks, *synthetic_sample(1000, size, things), things, device, True, not args.quick)  # warm-up
    rows = [run_image(masks, *synthetic_sample(seed, size, things), things, device, seed % 2 == 0, not args.quick)
            for seed in range(args.images)]

    def mean(key):
        return sum(r[key] for r in rows) / len(rows)

    enc, per_way = mean("encoder_ms"), {"batched": mean("batched_ms"), "one by one": mean("one_by_one_ms")}
    diff = max(r["max_abs_diff"] for r in rows)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    print(f"PSA thing prompts: SAM {name}, random weights, fp32, {spec.image_size}-px input; {len(rows)} images "
          f"{size[1]}x{size[0]} (+1 warm-up), {mean('prompts'):.1f} prompts/image "
          f"({mean('two_point'):.1f} with 2 points)")
    print(f"device {gpu or 'cpu'}; torch {torch.__version__}; "
          + (f"{args.threads} CPU thread(s)" if device.type == "cpu" else "CUDA-synchronised") + "; mean per image")
    print(f"  {'prompts':<12}{'encoder ms':>11}{'prompts ms':>12}{'total ms':>10}{'images/s':>10}")
    for way, ms in per_way.items():
        print(f"  {way:<12}{enc:>11.1f}{ms:>12.1f}{enc + ms:>10.1f}{1e3 / (enc + ms):>10.2f}")
    ratio = per_way["one by one"] / per_way["batched"]
    throughput = (enc + per_way["one by one"]) / (enc + per_way["batched"])
    print(f"  batched vs one by one: prompt stage {ratio:.2f}x faster, images/s {throughput:.2f}x")
    print(f"  masks: logits max|diff| {diff:.1e} (tolerance {TOLERANCE:g}), "
          f"{sum(r['mask_pixels_differing'] for r in rows)} boolean mask pixels differ")
    if not args.quick:
        print(f"  automatic mask generator (official parameters, random weights): {mean('amg_ms'):.1f} ms/image on "
              "the shared embedding")
    if not gpu:
        print("GPU: no CUDA device in this run; no GPU figures")
    total = time.perf_counter() - started
    print(f"total run time {total:.0f} s")
    if args.json:
        results = {"variant": name, "device": gpu or "cpu", "size": size, "torch": torch.__version__,
                   "threads": args.threads, "images": rows, "total_s": total}
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if not diff < TOLERANCE:  # also catches NaN
        sys.exit(f"FAILED: batched and one-by-one logits differ by up to {diff:.3g} (limit {TOLERANCE:g})")


if __name__ == "__main__":
    main()
