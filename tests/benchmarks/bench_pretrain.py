"""Benchmark of one ECDDP pre-training step: seconds per iteration and peak memory of
``evseg.pretrain.trainer.PretrainStep``, against one supervised segmentation step of the same backbone on the
same windows (``train_supervised``: the loop's step with adaptation off) measured in the same run.

Run ``python tests/benchmarks/bench_pretrain.py`` (a script, not a pytest test):

- on a GPU it measures the released setting per GPU: Swin-T/7, 128 windows of 6 channels (the 1,024 of a step
  over 8 GPUs), a 224 whole crop, 2 global 192 crops and 8 local 96 crops, 2^15 prototypes, bf16 autocast; peak
  memory is ``torch.cuda.max_memory_allocated()``; the segmentation step gets 8 whole 224 crops with labels;
- ``--demo`` measures the offline demo's setting on the CPU (MiT-B0, ``configs/ecddp_demo.yaml``'s crops and
  heads, 16 windows of 20 channels against 2 labelled 96x128 crops and a 32-channel DAFormer head; one or
  ``--threads`` torch threads); peak
  memory is the peak resident set size of a fresh process per variant, torch included (~0.4 GiB).

Batches are synthetic (sparse signed event counts, 16x16 label blocks), made once. One iteration is ``zero_grad``,
the step, ``optimizer.step()``, as ``run_steps`` does. Seconds/iter: the median over ``--steps`` timed steps after
``--warmup``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from training_step import arguments, in_fresh_process, prepare, time_iterations

PAPER = {"backbone": "swin_tiny_patch4_window7_224", "channels": 6, "windows": 128, "full": 224, "global": 192,
         "local": 96, "n_local": 8, "level": -1, "prototypes": 2**15, "hidden": 2048, "bottleneck": 256,
         "clusters": 8, "seg_batch": 8, "seg_crop": (224, 224), "embed_dim": 256}
DEMO = {"backbone": "mit_b0", "channels": 20, "windows": 16, "full": 96, "global": 64, "local": 32, "n_local": 4,
        "level": -2, "prototypes": 1024, "hidden": 256, "bottleneck": 64, "clusters": 4, "seg_batch": 2,
        "seg_crop": (96, 128), "embed_dim": 32}
NUM_CLASSES = 11


def pretrain_config(setting: dict) -> dict:
    return {"seed": 0, "max_iters": 1000, "student_temperature": 0.1, "centering": "sinkhorn_knopp",
            "teacher_temperature": {"start": 0.04, "end": 0.07, "warmup_iters": 100}, "ema": {"start": 0.992},
            "context": {"clusters": setting["clusters"], "iterations": 10, "weight": 2.0},
            "freeze_prototypes_iters": 0}


def events(shape: tuple, generator: torch.Generator) -> torch.Tensor:
    """Sparse signed counts: about one pixel in five has events."""
    return torch.randint(-2, 3, shape, generator=generator).float() * (torch.rand(shape, generator=generator) < 0.2)


def pretrain_batch(setting: dict, stride: int, device: torch.device) -> dict:
    from evseg.pretrain.crops import CropBox, draw_masks

    g = torch.Generator().manual_seed(0)
    b, c = setting["windows"], setting["channels"]
    full, size, local = setting["full"], setting["global"], setting["local"]
    tokens = (size // stride,) * 2
    box = CropBox(0.0, 0.0, float(full), float(full))
    masks = draw_masks(np.random.default_rng(0), b * 2, tokens, 0.5, (0.1, 0.5))
    batch = {"full": events((b, c, full, full), g), "global": events((b, 2, c, size, size), g),
             "local": events((b, setting["n_local"], c, local, local), g),
             "global_grid": box.grid(tokens, (full, full)).expand(b, 2, *tokens, 2).contiguous(),
             "masks": torch.from_numpy(masks).view(b, 2, -1)}
    return {k: v.to(device) for k, v in batch.items()}


def segmentation_batch(setting: dict, device: torch.device) -> dict:
    g = torch.Generator().manual_seed(0)
    b, (h, w) = setting["seg_batch"], setting["seg_crop"]
    blocks = torch.randint(0, NUM_CLASSES, (b, 1, h // 16, w // 16), generator=g).float()
    label = F.interpolate(blocks, size=(h, w), mode="nearest")[:, 0].long()
    return {"source": events((b, setting["channels"], h, w), g).to(device), "source_label": label.to(device)}


def run_variant(name: str, setting: dict, steps: int, warmup: int, device_name: str, threads: int) -> dict:
    from evseg.adapt.data import InputSpec
    from evseg.adapt.optim import build_optimizer
    from evseg.adapt.trainer import Step, to_training_device
    from evseg.models import build_segmentor
    from evseg.pretrain.model import ECDDPNet
    from evseg.pretrain.trainer import PretrainStep, param_groups

    device = torch.device(device_name)
    prepare(device, threads)
    if name == "ecddp":
        net = ECDDPNet(setting["backbone"], setting["channels"], setting["level"], setting["prototypes"],
                       setting["hidden"], setting["bottleneck"])
        to_training_device(net, device)
        step = PretrainStep(net, pretrain_config(setting), device)
        optimizer = torch.optim.AdamW(param_groups(net, 0.2), lr=1e-4)
        batch = pretrain_batch(setting, net.stride, device)
    else:
        net = build_segmentor(setting["backbone"], NUM_CLASSES, in_chans=setting["channels"],
                              embed_dim=setting["embed_dim"])
        to_training_device(net, device)
        spec = InputSpec("event_tensor", (0, setting["channels"]), False, (0.5,) * 3, (0.25,) * 3)
        cfg = {"seed": 0, "adapt": False, "uda": {"feature_distance": {"weight": 0.0}, "hybrid": {"enabled": False}}}
        step = Step(net, cfg, NUM_CLASSES, spec, device)
        optimizer, _ = build_optimizer(net, {"max_iters": 1000})
        batch = segmentation_batch(setting, device)

    def iteration(index: int, batch: dict) -> None:
        optimizer.zero_grad(set_to_none=True)
        step(index, batch)
        optimizer.step()

    return {"name": name, **time_iterations(iteration, lambda: batch, steps, warmup, device)}


def main() -> None:
    args = arguments(__doc__)
    setting, device = (DEMO, "cpu") if args.demo else (PAPER, "cuda")
    results = [in_fresh_process(run_variant, name, setting, args.steps, args.warmup, device, args.threads)
               for name in ("supervised", "ecddp")]
    base = results[0]
    print(f"{'setting':<10} {'variant':<11} {'s/iter':>8} {'ratio':>6} {'peak GiB':>9} {'ratio':>6}")
    for r in results:
        print(f"{'demo' if args.demo else 'released':<10} {r['name']:<11} {r['s_per_iter']:>8.3f} "
              f"{r['s_per_iter'] / base['s_per_iter']:>6.2f} {r['memory_gib']:>9.2f} "
              f"{r['memory_gib'] / base['memory_gib']:>6.2f}")


if __name__ == "__main__":
    main()
