"""DAFormer's optimiser and schedule (reference/cmda_daformer.md §1.10): AdamW with a 10x learning rate on the
decode head, no weight decay on norms and position blocks outside the head, poly decay after a linear warm-up.

mmcv matches ``custom_keys`` by substring, longest key first, so ``head`` wins over ``norm``: head parameters,
BN/LN included, keep the weight decay at 10x lr. We match the head by name prefix (``decode_head.``) instead of
the substring "head", which would also hit e.g. attention "heads" if a backbone named parameters that way.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch import nn


def param_groups(model: nn.Module, lr: float, weight_decay: float, head_lr_mult: float = 10.0,
                 head_prefix: str = "decode_head.", no_decay_keys: Sequence[str] = ("norm", "pos_block")) -> list[dict]:
    """Parameter groups "head" (lr*mult, decay), "no_decay" (lr, decay 0) and "decay" (lr, decay); frozen
    parameters are left out, and so are empty groups. Each group has a "name" for logging."""
    groups = {"head": ([], lr * head_lr_mult, weight_decay), "no_decay": ([], lr, 0.0),
              "decay": ([], lr, weight_decay)}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.startswith(head_prefix):
            key = "head"
        elif any(k in name for k in no_decay_keys):
            key = "no_decay"
        else:
            key = "decay"
        groups[key][0].append(p)
    return [{"params": params, "lr": group_lr, "weight_decay": decay, "name": key}
            for key, (params, group_lr, decay) in groups.items() if params]


def poly_warmup(step: int, max_iters: int, warmup_iters: int = 1500, warmup_ratio: float = 1e-6,
                power: float = 1.0, min_lr_ratio: float = 0.0) -> float:
    """The lr multiplier at ``step`` (mmcv poly + linear warm-up, by iteration):
    ((1 - step/max_iters)^power * (1 - min_lr_ratio) + min_lr_ratio) * w(step), with
    w = 1 - (1 - step/warmup_iters)*(1 - warmup_ratio) during the warm-up and 1 after it."""
    progress = max(0.0, 1.0 - step / max_iters)
    factor = progress**power * (1.0 - min_lr_ratio) + min_lr_ratio
    if step < warmup_iters:
        factor *= 1.0 - (1.0 - step / warmup_iters) * (1.0 - warmup_ratio)
    return factor


def build_optimizer(model: nn.Module, cfg: dict) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """An optimiser over ``param_groups`` and a LambdaLR applying ``poly_warmup``; call ``scheduler.step()`` after
    each optimiser step (iteration t then trains with lr(t)). cfg: max_iters (required), name ("adamw", or "sgd"
    with momentum: UniMatch, which decays every parameter), lr, weight_decay, betas, momentum, head_lr_mult,
    warmup_iters, warmup_ratio, power, min_lr_ratio (DAFormer's values by default)."""
    name = cfg.get("name", "adamw")
    if name not in ("adamw", "sgd"):
        raise ValueError(f"optimizer name must be 'adamw' or 'sgd', got {name!r}")
    no_decay = ("norm", "pos_block") if name == "adamw" else ()
    groups = param_groups(model, cfg.get("lr", 6e-5), cfg.get("weight_decay", 0.01),
                          cfg.get("head_lr_mult", 10.0), cfg.get("head_prefix", "decode_head."),
                          tuple(cfg.get("no_decay_keys", no_decay)))
    if name == "adamw":
        optimizer = torch.optim.AdamW(groups, lr=cfg.get("lr", 6e-5), betas=tuple(cfg.get("betas", (0.9, 0.999))),
                                      weight_decay=cfg.get("weight_decay", 0.01))
    else:
        optimizer = torch.optim.SGD(groups, lr=cfg.get("lr", 6e-5), momentum=cfg.get("momentum", 0.9),
                                    weight_decay=cfg.get("weight_decay", 0.01))
    # A partial, not a lambda, so that LambdaLR.state_dict can store it.
    schedule = functools.partial(poly_warmup, max_iters=cfg["max_iters"], warmup_iters=cfg.get("warmup_iters", 1500),
                                 warmup_ratio=cfg.get("warmup_ratio", 1e-6), power=cfg.get("power", 1.0),
                                 min_lr_ratio=cfg.get("min_lr_ratio", 0.0))
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
