"""Benchmark of one CMDA training step (two MiT backbones, fusion, four outputs): seconds per iteration and peak
memory of ``evseg.cmda.trainer.CMDAStep``, against the image-only step of the same loop (one backbone: DAFormer)
measured in the same run.

Run ``python tests/benchmarks/bench_cmda.py`` (a script, not a pytest test):

- on a GPU it measures the paper setting (two MiT-B5, batch 2, 512x512 crops, bf16 autocast and channels_last as
  ``run_steps`` trains); peak memory is ``torch.cuda.max_memory_allocated()``. CMDA trained on an A100; the target
  is that the CMDA step fits in 24 GiB, and a run at the paper setting that misses it exits non-zero;
- ``--demo`` measures the offline demo's setting on the CPU (two MiT-B0 with a 32-channel head, batch 2, 96x96
  crops, one torch thread as the demo's jobs have); peak memory is the peak resident set size of a fresh process
  per variant (``ru_maxrss``), which includes torch itself (~0.4 GiB).

Every variant adapts from the first step (``uda.start_iter`` 0): EMA update, source pass on image + Motion map +
ISR, teacher fusion pseudo-labels, ClassMix + strong augmentation, mixed ISR, mixed pass. One iteration is what
``run_steps`` does per batch: ``zero_grad``, the step, ``optimizer.step()``, ``scheduler.step()``. Batches are
synthetic (normal noise images, [-1, 1] event maps, 16x16 label blocks), made before each step and not timed.
Seconds/iter: the median over ``--steps`` timed steps after ``--warmup``.
"""

from __future__ import annotations

import sys
import time

import torch
import torch.nn.functional as F
from training_step import arguments, in_fresh_process, prepare, time_iterations

PAPER = {"backbone": "mit_b5", "embed_dim": 256, "crop": 512, "batch": 2}
DEMO = {"backbone": "mit_b0", "embed_dim": 32, "crop": 96, "batch": 2}
TARGET_GIB = 24.0
NUM_CLASSES = 19


def config(seed: int = 0) -> dict:
    from evseg.cmda.inputs import SOURCE_CONTENT, TARGET_CONTENT

    lambdas = {"rgb_events_source": 0.1, "fusion_st": 0.1, "rgb_st": 0.1, "events_rgbt": 0.05, "events_st": 0.05}
    return {"seed": seed, "adapt": True,
            "uda": {"ema_alpha": 0.999, "start_iter": 0, "pseudo_threshold": 0.968, "pseudo_weighting": True,
                    "pseudo_ignore_top": 0, "pseudo_ignore_bottom": 0,
                    "strong_aug": {"color_jitter_p": 0.2, "color_jitter_s": 0.2, "gray_jitter": True, "blur": True}},
            "cmda": {"loss_weights": {"fusion": 0.5, "image": 0.5, "events": 0.25, "isr": 0.25},
                     "teacher_isr_p": 0.5, "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
                     "content": {"source": SOURCE_CONTENT, "target": TARGET_CONTENT},
                     "l2": {"variant": "none", "lambdas": lambdas}}}


def synthetic_batch(batch: int, crop: int, device: torch.device, channels_last: bool) -> dict:
    image, events = (batch, 3, crop, crop), (batch, 1, crop, crop)
    blocks = torch.randint(0, NUM_CLASSES, (batch, 1, crop // 16, crop // 16), device=device).float()
    label = F.interpolate(blocks, size=(crop, crop), mode="nearest")[:, 0].long()
    out = {"source": torch.randn(image, device=device), "source_label": label,
           "source_events": torch.rand(events, device=device) * 2 - 1,
           "source_isr": torch.rand(events, device=device) * 2 - 1, "target": torch.randn(image, device=device),
           "target_events": torch.rand(events, device=device) * 2 - 1,
           "target_isr": torch.rand(events, device=device) * 2 - 1}
    if channels_last:
        out = {k: v.contiguous(memory_format=torch.channels_last) if v.ndim == 4 else v for k, v in out.items()}
    return out


def run_variant(name: str, setting: dict, steps: int, warmup: int, device_name: str, threads: int) -> dict:
    from evseg.adapt.optim import build_optimizer
    from evseg.adapt.trainer import to_training_device
    from evseg.cmda.model import build_fusion_segmentor
    from evseg.cmda.trainer import CMDAStep

    device = torch.device(device_name)
    prepare(device, threads)
    student = build_fusion_segmentor(setting["backbone"], NUM_CLASSES, events=name == "cmda",
                                     embed_dim=setting["embed_dim"])
    to_training_device(student, device)
    step = CMDAStep(student, config(), device)
    optimizer, scheduler = build_optimizer(student, {"lr": 6e-5, "weight_decay": 0.01, "betas": [0.9, 0.999],
                                                     "head_lr_mult": 10.0, "warmup_iters": 1500,
                                                     "warmup_ratio": 1e-6, "power": 1.0, "max_iters": 40000})

    def iteration(index: int, batch: dict) -> None:
        optimizer.zero_grad(set_to_none=True)
        step(index, batch)
        optimizer.step()
        scheduler.step()

    def make_batch() -> dict:
        return synthetic_batch(setting["batch"], setting["crop"], device, device.type == "cuda")

    return {"name": name, **time_iterations(iteration, make_batch, steps, warmup, device)}


def main() -> None:
    args = arguments(__doc__)
    setting, device = (DEMO, "cpu") if args.demo else (PAPER, "cuda")
    started = time.perf_counter()
    results = {name: in_fresh_process(run_variant, name, setting, args.steps, args.warmup, device, args.threads)
               for name in ("image_only", "cmda")}
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else f"cpu, {args.threads} thread(s)"
    memory = "peak GiB (CUDA allocated)" if device == "cuda" else "peak GiB (process RSS)"
    print(f"CMDA training step: {setting['backbone']} x2, head {setting['embed_dim']} ch, batch {setting['batch']}, "
          f"{setting['crop']}x{setting['crop']} crops, 19 classes; {gpu}; torch {torch.__version__}; "
          f"median of {args.steps} steps after {args.warmup}")
    print(f"  {'variant':<12}{'s/iter':>8}{'min':>8}{'max':>8}{memory:>28}")
    for r in results.values():
        print(f"  {r['name']:<12}{r['s_per_iter']:>8.3f}{r['min']:>8.3f}{r['max']:>8.3f}{r['memory_gib']:>28.2f}")
    cmda, base = results["cmda"], results["image_only"]
    print(f"  cmda / image_only: time {cmda['s_per_iter'] / base['s_per_iter']:.2f}x, "
          f"memory {cmda['memory_gib'] / base['memory_gib']:.2f}x")
    print(f"total run time {time.perf_counter() - started:.0f} s")
    if device == "cuda":
        if cmda["memory_gib"] > TARGET_GIB:
            sys.exit(f"FAILED: the CMDA step needs {cmda['memory_gib']:.1f} GiB > {TARGET_GIB:g} GiB")
        print(f"target met: <= {TARGET_GIB:g} GiB")


if __name__ == "__main__":
    main()
