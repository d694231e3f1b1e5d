"""SCC's region classifier (reference/seco_unimatch.md §2.2): a timm backbone whose stem output is multiplied by
the region mask, trained briefly ("early learning") with label smoothing, then used to score every region.

The released code uses a torchvision ResNet-101 and multiplies the mask into the output of conv1/bn/relu (stride 2,
before the max-pool). Here any timm classifier works, with the module after which the mask applies named by
``stem_module`` (``act1`` for timm's ResNets). Optimiser as released: SGD with Nesterov momentum 0.9, weight decay
1e-3, lr 0.01 for the classifier and 0.001 for the backbone, decayed as lr0 (1 + 10 it / T)^-0.75.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import timm
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm


class MaskedStemClassifier(nn.Module):
    """``forward(image (N, C, H, W), mask (N, 1, H, W)) -> logits``; the mask zeroes the stem features outside
    the region (nearest-resized to the stem's resolution)."""

    def __init__(self, backbone: str, num_classes: int, in_chans: int = 1, stem_module: str = "act1",
                 pretrained_file: str | None = None):
        super().__init__()
        # timm loads a local weights file (ImageNet, as released) and adapts the stem to in_chans by summing
        pretrained = dict(pretrained=True, pretrained_cfg_overlay={"file": pretrained_file}) if pretrained_file else {}
        self.net = timm.create_model(backbone, num_classes=num_classes, in_chans=in_chans, **pretrained)
        modules = dict(self.net.named_modules())
        if stem_module not in modules:
            raise ValueError(f"{backbone} has no module {stem_module!r} to apply the region mask after; "
                             f"its first modules: {list(modules)[1:8]}")
        modules[stem_module].register_forward_hook(self._apply_mask)
        self._mask = None

    def _apply_mask(self, module, inputs, output):
        return output * F.interpolate(self._mask, size=output.shape[-2:], mode="nearest")

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        self._mask = mask.to(image.dtype)
        try:
            return self.net(image)
        finally:
            self._mask = None

    def classifier_parameters(self) -> list[nn.Parameter]:
        return list(self.net.get_classifier().parameters())


@dataclass
class ClassifierTraining:
    iterations: int = 300
    batch_size: int = 32
    optimizer: str = "sgd"  # the released SGD schedule; "adamw" (constant lr) trains from scratch much faster
    lr_backbone: float = 0.001
    lr_classifier: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-3
    label_smoothing: float = 0.1
    class_balanced: bool = False
    seed: int = 0


def _batch(images: np.ndarray, masks: np.ndarray, index: np.ndarray, flip: np.ndarray | None = None):
    x = torch.from_numpy(images[index]).float().div_(255).unsqueeze(1)
    m = torch.from_numpy(masks[index]).float().unsqueeze(1)
    if flip is not None and flip.any():
        x[flip], m[flip] = x[flip].flip(-1), m[flip].flip(-1)
    return x, m


def region_probabilities(labels: np.ndarray) -> np.ndarray:
    """Class-balanced sampling: every class present is drawn equally often, its regions uniformly."""
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    return 1.0 / (len(classes) * counts[inverse])


def train_classifier(model: MaskedStemClassifier, images: np.ndarray, masks: np.ndarray, labels: np.ndarray,
                     cfg: ClassifierTraining, progress: bool = True, device: torch.device | str = "cpu") -> list[float]:
    """Early learning on region windows (images uint8 (N, H, W), masks bool (N, H, W), labels (N,)); random
    horizontal flips. Returns the loss of every step."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    head = {id(p) for p in model.classifier_parameters()}
    groups = [{"params": [p for p in model.parameters() if id(p) not in head], "lr": cfg.lr_backbone},
              {"params": model.classifier_parameters(), "lr": cfg.lr_classifier}]
    if cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, momentum=cfg.momentum, nesterov=True, weight_decay=cfg.weight_decay)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: (1 + 10 * it / cfg.iterations) ** -0.75)
    elif cfg.optimizer == "adamw":
        optimizer = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: 1.0)
    else:
        raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {cfg.optimizer!r}")
    targets = torch.from_numpy(np.asarray(labels, np.int64))
    draw = region_probabilities(labels) if cfg.class_balanced else None
    losses = []
    model.train()
    for _ in tqdm(range(cfg.iterations), desc="scc classifier", disable=not progress, mininterval=5):
        index = rng.choice(len(labels), size=min(cfg.batch_size, len(labels)), p=draw)
        x, m = _batch(images, masks, index, flip=rng.random(len(index)) < 0.5)
        loss = F.cross_entropy(model(x.to(device), m.to(device)), targets[index].to(device),
                               label_smoothing=cfg.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
    return losses


@torch.no_grad()
def recompute_batch_norm(model: nn.Module, images: np.ndarray, masks: np.ndarray, batch_size: int = 64) -> None:
    """Replace every BatchNorm's running statistics by their average over all regions with the final weights
    (precise BN, as detectron2's PreciseBN). After a short early learning the running averages still lag the
    weights, and the eval-mode scores then depend on that lag (and on float noise, e.g. the thread count)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the batches below
    model.train()
    device = next(model.parameters()).device
    for start in range(0, len(images), batch_size):
        x, mask = _batch(images, masks, np.arange(start, min(start + batch_size, len(images))))
        model(x.to(device), mask.to(device))
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    model.eval()


@torch.no_grad()
def score_regions(model: MaskedStemClassifier, images: np.ndarray, masks: np.ndarray, labels: np.ndarray,
                  batch_size: int = 64, device: torch.device | str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """(per-region cross-entropy against its PSA label (no smoothing), softmax probabilities (N, K)); no flip."""
    model.eval()
    losses, probabilities = [], []
    targets = torch.from_numpy(np.asarray(labels, np.int64))
    for start in range(0, len(labels), batch_size):
        index = np.arange(start, min(start + batch_size, len(labels)))
        x, m = _batch(images, masks, index)
        logits = model(x.to(device), m.to(device)).float().cpu()
        losses.append(F.cross_entropy(logits, targets[index], reduction="none"))
        probabilities.append(logits.softmax(1))
    return torch.cat(losses).numpy(), torch.cat(probabilities).numpy()
