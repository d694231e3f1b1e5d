"""Benchmark of one UDA training step: seconds per iteration and peak GPU memory of ``evseg.adapt.trainer.Step``.

Run ``python tests/benchmarks/bench_train.py`` on the GPU machine (CUDA; a few minutes). It is a script, not a
pytest test. ``--quick`` is a CPU smoke test (mit_b0, 128x128 crops, 3 steps per variant: 1 warm-up + 2
timed; about 50 s on 2 shared cores, ~7 s per step); CPU times only show that the step runs: the figures that
matter are the CUDA ones. CPU runs use ``--threads`` (1) torch threads: on cores shared with another job, 2
threads made the backward of the head's dilated depthwise convolutions 20-40x slower (OpenMP oversubscription).

What is measured, at HPL-ESS's setting: MiT-B5 (``build_segmentor("mit_b5", 11, in_chans=1)``, random init),
batch 2, 640x640 crops, the whole hybrid loop on every step (``uda.start_iter`` 0): EMA teacher update, source
cross-entropy, teacher pseudo-labels, ClassMix mix loss, the student's pass on the reconstructions, hybrid mix
loss and the SPA term (the ImageNet feature distance is off, as in HPL-ESS; ``--feature-distance`` turns it on).
One iteration is what ``train()`` does per batch: ``optimizer.zero_grad``, ``Step(...)(index, batch)``,
``optimizer.step()``, ``scheduler.step()`` (AdamW + poly schedule of ``build_optimizer``). Batches are synthetic,
made on the device before each step and not timed: ``source``/``target``/``hybrid``/``hybrid_image``
(B, 1, H, W) normal noise, ``source_label`` (B, H, W) blocks of 16x16 pixels of classes 0..10, 5% of them 255.

Variants, each with a fresh model, teacher and optimizer (same seed) and its own peak-memory counter:
- ours: the trainer as it is (on CUDA: bf16 autocast, model and 4-D inputs in channels_last, as ``train()``);
- baseline: the same step in fp32 (``Step.autocast`` overridden to ``enabled=False``) without channels_last
  (PyTorch's defaults otherwise: TF32 off for matmuls, on for cuDNN convolutions).
Seconds/iter: median over ``--steps`` timed steps after ``--warmup`` steps, each between two
``torch.cuda.synchronize()``. Memory: ``torch.cuda.max_memory_allocated()`` in GiB (2**30 bytes, as the
trainer's ``max_memory_gb``). Reference: HPL-ESS's A100-80GB log, 1.25 s/iter after the warm-up and 23.7 GB.
Targets for ours on an H100 at the paper setting: <= 0.5 s/iter and <= 16 GiB; a CUDA run at the paper setting
that misses one exits non-zero.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from evseg.adapt.data import InputSpec
from evseg.adapt.optim import build_optimizer
from evseg.adapt.trainer import Step
from evseg.models import build_segmentor

NUM_CLASSES = 11
PAPER = {"backbone": "mit_b5", "crop": 640, "batch": 2}
REFERENCE = {"s_per_iter": 1.25, "memory_gb": 23.7}   # HPL-ESS, A100-80GB log
TARGET = {"s_per_iter": 0.5, "memory_gb": 16.0}       # ours, H100
INPUT = {"target": "event_tensor", "event_channels": [0, 9], "sum_event_channels": True,
         "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
UDA = {"ema_alpha": 0.999, "start_iter": 0, "pseudo_threshold": 0.968, "pseudo_weighting": True,
       "pseudo_ignore_top": 0, "pseudo_ignore_bottom": 0,
       "strong_aug": {"color_jitter_p": 0.2, "color_jitter_s": 0.2, "gray_jitter": True, "blur": True},
       "rcs": {"enabled": False, "temperature": 0.01, "min_pixels": 3000, "min_crop_ratio": 0.5},
       "feature_distance": {"weight": 0.0, "thing_classes": [3, 8, 10], "min_ratio": 0.75},
       "hybrid": {"enabled": True, "weight": 1.0, "spa_weight": 1.0, "spa_momentum": 0.999}}
OPTIMIZER = {"lr": 6e-5, "weight_decay": 0.01, "betas": [0.9, 0.999], "head_lr_mult": 10.0,
             "warmup_iters": 1500, "warmup_ratio": 1e-6, "power": 1.0}


def synthetic_batch(batch: int, crop: int, device: torch.device, channels_last: bool) -> dict:
    shape = (batch, 1, crop, crop)
    blocks = torch.randint(0, NUM_CLASSES, (batch, 1, crop // 16, crop // 16), device=device).float()
    label = F.interpolate(blocks, size=(crop, crop), mode="nearest")[:, 0].long()
    label[torch.rand(label.shape, device=device) < 0.05] = 255
    out = {"source": torch.randn(shape, device=device), "source_label": label,
           "target": torch.randn(shape, device=device), "hybrid": torch.randn(shape, device=device),
           "hybrid_image": torch.randn(shape, device=device)}
    if channels_last:  # as train() does with every 4-D tensor of the batch
        out = {k: v.contiguous(memory_format=torch.channels_last) if v.ndim == 4 else v for k, v in out.items()}
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_variant(name: str, args, device: torch.device) -> dict:
    """A fresh model/teacher/optimizer; ``warmup`` untimed then ``steps`` timed iterations."""
    baseline = name == "baseline"
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(0)
    uda = {**UDA, "feature_distance": {**UDA["feature_distance"], "weight": 0.005 if args.feature_distance else 0.0}}
    cfg = {"seed": 0, "max_iters": 80000, "adapt": True, "uda": uda, "optimizer": OPTIMIZER}
    student = build_segmentor(args.backbone, NUM_CLASSES, in_chans=1).to(device).train()
    channels_last = device.type == "cuda" and not baseline
    if channels_last:  # before Step: the teacher is a deep copy and inherits the layout, as in train()
        student.to(memory_format=torch.channels_last)
    step = Step(student, cfg, NUM_CLASSES, InputSpec.from_config(INPUT), device)
    if baseline:
        step.autocast = {**step.autocast, "enabled": False}
    optimizer, scheduler = build_optimizer(student, {**OPTIMIZER, "max_iters": cfg["max_iters"]})
    seconds = []
    for index in range(args.warmup + args.steps):
        batch = synthetic_batch(args.batch, args.crop, device, channels_last)
        sync(device)
        tic = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        logs = step(index, batch)
        optimizer.step()
        scheduler.step()
        sync(device)
        if index >= args.warmup:
            seconds.append(time.perf_counter() - tic)
    memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    del step, student, optimizer, scheduler, batch
    return {"name": name, "s_per_iter": statistics.median(seconds), "min": min(seconds), "max": max(seconds),
            "memory_gb": memory, "losses": sorted(k for k in logs if k.startswith("loss"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    parser.add_argument("--backbone", default=PAPER["backbone"])
    parser.add_argument("--crop", type=int, default=PAPER["crop"], help="square crop side (a multiple of 32)")
    parser.add_argument("--batch", type=int, default=PAPER["batch"])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per variant before those")
    parser.add_argument("--variant", choices=["both", "ours", "baseline"], default="both",
                        help="baseline: fp32 (Step.autocast off), no channels_last")
    parser.add_argument("--feature-distance", action="store_true", help="also DAFormer's ImageNet feature distance")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (CPU runs only; see above)")
    parser.add_argument("--quick", action="store_true", help="CPU smoke test: mit_b0, crop 128, 1 + 2 steps")
    args = parser.parse_args()
    if args.quick:
        args.device, args.backbone, args.crop, args.steps, args.warmup = "cpu", "mit_b0", 128, 2, 1
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    names = ["ours", "baseline"] if args.variant == "both" else [args.variant]
    started = time.perf_counter()
    results = {name: run_variant(name, args, device) for name in names}

    print(f"UDA training step (DAFormer/DACS + HPL-ESS hybrid, SPA on{', FD on' if args.feature_distance else ''}): "
          f"{args.backbone}, batch {args.batch}, {args.crop}x{args.crop} crops, 11 classes, 1 input channel")
    print(f"device {gpu or 'cpu'}; torch {torch.__version__}; median of {args.steps} steps after {args.warmup} "
          f"warm-up; losses per step: {', '.join(next(iter(results.values()))['losses'])}")
    print(f"  {'variant':<10}{'precision':<22}{'s/iter':>8}{'min':>8}{'max':>8}{'peak GiB':>10}")
    for r in results.values():
        precision = "fp32" if r["name"] == "baseline" or device.type != "cuda" else "bf16 autocast, NHWC"
        memory = f"{r['memory_gb']:.2f}" if r["memory_gb"] is not None else "-"
        print(f"  {r['name']:<10}{precision:<22}{r['s_per_iter']:>8.3f}{r['min']:>8.3f}{r['max']:>8.3f}{memory:>10}")
    if len(results) == 2:
        ours, base = results["ours"], results["baseline"]
        ratio = f"ours/baseline: time {ours['s_per_iter'] / base['s_per_iter']:.2f}x"
        if device.type == "cuda":
            ratio += f", memory {ours['memory_gb'] / base['memory_gb']:.2f}x"
        print(f"  {ratio}")
    print(f"  reference HPL-ESS (A100-80GB log): {REFERENCE['s_per_iter']} s/iter after the warm-up, "
          f"{REFERENCE['memory_gb']} GB; targets for ours (H100, paper setting): <= {TARGET['s_per_iter']} s/iter, "
          f"<= {TARGET['memory_gb']:g} GiB")
    print(f"total run time {time.perf_counter() - started:.0f} s")
    if device.type != "cuda":
        print("CPU run: times only, no memory and no targets (ours is the baseline on the CPU: autocast and "
              "channels_last are CUDA-only); the figures that matter are the CUDA ones")
        return
    paper = {"backbone": args.backbone, "crop": args.crop, "batch": args.batch} == PAPER
    if "ours" not in results or not paper:
        print("targets not checked: " + ("not the paper setting" if not paper else "ours was not run"))
        return
    missed = [f"{key} {results['ours'][key]:.2f} > {limit}" for key, limit in TARGET.items()
              if results["ours"][key] > limit]
    if missed:
        sys.exit("FAILED: ours misses a target: " + "; ".join(missed))
    print("targets met")


if __name__ == "__main__":
    main()
