"""Training a small SAM on simulated drives: the offline demo's stand-in for the official SAM weights.

SeCo's PSA needs SAM's object-shaped masks; the official weights (trained on SA-1B) cannot be downloaded where
the demo runs, and no package ships them. As the demo does for E2VID, a SAM is trained on the simulated drives
that are never segmented: segment-anything's own classes (a small ``ImageEncoderViT``, ``PromptEncoder``,
``MaskDecoder`` with its ``TwoWayTransformer``) learn class-agnostic masks on the *reconstructions* of those
drives, so SAM sees the kind of image it is later shown. The masks are the renderer's segments: every 8-connected
component of every class of the 19-class label, so a car, a tree or a stretch of sidewalk is one segment, and
no class is ever given to the network. No target label is read.

One step follows SAM's first interactive round (Kirillov et al. 2023, §3 and appendix A): each image gets
``prompts_per_image`` segments, drawn in proportion to the square root of their area (drawn uniformly, the many
small segments sent the from-scratch network to empty masks), prompted by one kind drawn per image (so that
they share one decoder call):

- a foreground point drawn uniformly inside the segment (three outputs; only the best one's mask loss counts,
  as SAM trains ambiguous prompts), which is what the automatic mask generator asks;
- a box, the segment's bounding box with Gaussian noise on each side (std 10 % of the side, at most
  ``box_noise_max`` pixels; SAM: 20 pixels on 1024-pixel images);
- a box with one or two points, which is what PSA asks for thing components (one output).

Loss per mask as SAM: 20 × focal (γ = 2; no α class weighting by default, README fidelity) + 1 × dice, plus the
MSE between the predicted IoU and the IoU of the predicted mask (logits > 0) with the segment, for every output
(the automatic mask generator filters on it).
SAM's later rounds (points drawn from the error region, the previous mask as input) are left out.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.utils.transforms import ResizeLongestSide
from torchvision.ops import sigmoid_focal_loss
from tqdm import tqdm

from evseg.refine.sam import as_rgb

PROMPT_KINDS = ("point", "box", "box+point", "box+2points")


@dataclass
class SamTraining:
    iterations: int = 600
    batch_size: int = 4  # images per step
    prompts_per_image: int = 16
    lr: float = 8e-4  # SAM: AdamW 8e-4, weight decay 0.1, linear warm-up
    weight_decay: float = 0.1
    warmup_iters: int = 50
    min_segment_pixels: int = 10
    box_noise_max: float = 5.0
    focal_weight: float = 20.0
    focal_alpha: float = -1.0  # no class weighting (RetinaNet's 0.25 sent the from-scratch network to empty masks)
    dice_weight: float = 1.0
    iou_weight: float = 1.0
    seed: int = 0


def segment_map(label: np.ndarray) -> np.ndarray:
    """int32 (H, W) map of the renderer's segments: every 8-connected component of every class gets its own id
    (1, 2, ...); 255 (no class) is 0."""
    segments = np.zeros(label.shape, np.int32)
    next_id = 1
    for cls in np.unique(label):
        if cls == 255:
            continue
        count, components = cv2.connectedComponents((label == cls).astype(np.uint8), connectivity=8)
        inside = components > 0
        segments[inside] = components[inside] + next_id - 1
        next_id += count - 1
    return segments


class SegmentImages:
    """Images (gray uint8) and their segment maps, resized as SAM's predictor resizes (longest side to the
    encoder's input size), with the segments a prompt may pick (at least ``min_pixels``)."""

    def __init__(self, images: list[np.ndarray], labels: list[np.ndarray], image_size: int, min_pixels: int):
        if not images or len(images) != len(labels):
            raise ValueError(f"need as many labels as images (at least one), got {len(images)} and {len(labels)}")
        transform = ResizeLongestSide(image_size)
        self.images, self.segments, self.choices, self.weights = [], [], [], []
        for image, label in zip(images, labels):
            if image.shape[:2] != label.shape:
                raise ValueError(f"an image of {image.shape[:2]} has a label of {label.shape}")
            height, width = transform.get_preprocess_shape(*image.shape[:2], image_size)
            resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
            segments = cv2.resize(segment_map(label), (width, height), interpolation=cv2.INTER_NEAREST)
            ids, sizes = np.unique(segments[segments > 0], return_counts=True)
            if not (sizes >= min_pixels).any():
                continue  # nothing to prompt: a step drawing only such images would have no loss
            self.images.append(resized)
            self.segments.append(segments)
            self.choices.append(ids[sizes >= min_pixels])
            self.weights.append(np.sqrt(sizes[sizes >= min_pixels]).astype(np.float64))
        if not self.images:
            raise ValueError(f"no segment of {min_pixels} pixels or more in {len(images)} images; lower "
                             "psa.sam.train.min_segment_pixels or check the simulated drives' 19-class labels")

    def __len__(self) -> int:
        return len(self.images)


def draw_prompts(segments: np.ndarray, choices: np.ndarray, count: int, kind: str, rng: np.random.Generator,
                 box_noise_max: float, weights: np.ndarray | None = None) -> list[dict]:
    """``count`` prompts of one kind on one image (they share one decoder call), segments drawn in proportion to
    ``weights`` (uniformly when None): {target (bool H, W), points (n, 2) (x, y), box (4,) XYXY or None}."""
    height, width = segments.shape
    prompts = []
    p = None if weights is None else weights / weights.sum()
    for segment in rng.choice(choices, size=count, replace=True, p=p):
        target = segments == segment
        ys, xs = np.nonzero(target)
        box = None
        if kind != "point":
            x0, y0, x1, y1 = xs.min(), ys.min(), xs.max(), ys.max()
            side = np.array([x1 - x0, y1 - y0, x1 - x0, y1 - y0], np.float64) + 1
            noise = np.clip(rng.normal(0, 0.1 * side), -box_noise_max, box_noise_max)
            box = np.clip(np.array([x0, y0, x1, y1], np.float64) + noise, 0, [width - 1, height - 1] * 2)
        points = {"point": 1, "box": 0, "box+point": 1, "box+2points": 2}[kind]
        picked = rng.integers(len(xs), size=points)
        prompts.append({"target": target, "box": box,
                        "points": np.stack([xs[picked], ys[picked]], 1).astype(np.float64)})
    return prompts


def mask_losses(logits: torch.Tensor, target: torch.Tensor,
                focal_alpha: float = -1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per (prompt, output): focal (γ = 2, mean over pixels; ``focal_alpha`` < 0: no class weighting), dice and
    the IoU of logits > 0 with the target.

    logits (P, M, H, W); target (P, 1, H, W) float in {0, 1}."""
    target = target.expand_as(logits)
    focal = sigmoid_focal_loss(logits, target, alpha=focal_alpha, gamma=2.0, reduction="none").flatten(2).mean(2)
    prob = logits.sigmoid().flatten(2)
    truth = target.flatten(2)
    dice = 1 - (2 * (prob * truth).sum(2) + 1) / (prob.sum(2) + truth.sum(2) + 1)
    with torch.no_grad():
        predicted = (logits > 0).flatten(2).float()
        union = ((predicted + truth) > 0).float().sum(2)
        iou = (predicted * truth).sum(2) / union.clamp(min=1)
    return focal, dice, iou


def sam_loss(sam, data: SegmentImages, batch: np.ndarray, rng: np.random.Generator, cfg: SamTraining,
             flip: np.ndarray | None = None) -> tuple[torch.Tensor, dict]:
    """SAM's loss on the images ``batch`` (indices into ``data``), prompts drawn from ``rng``."""
    device = sam.device
    size = sam.image_encoder.img_size
    images, segment_maps = [], []
    for k, i in enumerate(batch):
        image, segments = data.images[i], data.segments[i]
        if flip is not None and flip[k]:
            image, segments = image[:, ::-1], segments[:, ::-1]
        images.append(image)
        segment_maps.append(segments)
    pixels = torch.stack([torch.from_numpy(np.ascontiguousarray(as_rgb(im))).float().permute(2, 0, 1) for im in images])
    embeddings = sam.image_encoder(torch.stack([sam.preprocess(p.to(device)) for p in pixels]))
    dense_pe = sam.prompt_encoder.get_dense_pe()
    mask_loss, iou_loss, count, mean_iou = embeddings.new_zeros(()), embeddings.new_zeros(()), 0, []
    for k, segments in enumerate(segment_maps):
        choices = data.choices[batch[k]]
        height, width = segments.shape
        kind = PROMPT_KINDS[rng.integers(len(PROMPT_KINDS))]
        prompts = draw_prompts(segments, choices, cfg.prompts_per_image, kind, rng, cfg.box_noise_max,
                               data.weights[batch[k]])
        points = None
        if prompts[0]["points"].size:
            coords = torch.as_tensor(np.stack([p["points"] for p in prompts]), dtype=torch.float, device=device)
            points = (coords, torch.ones(coords.shape[:2], dtype=torch.int, device=device))
        boxes = (torch.as_tensor(np.stack([p["box"] for p in prompts]), dtype=torch.float, device=device)
                 if prompts[0]["box"] is not None else None)
        sparse, dense = sam.prompt_encoder(points=points, boxes=boxes, masks=None)
        low_res, predicted_iou = sam.mask_decoder(embeddings[k:k + 1], dense_pe, sparse, dense,
                                                  multimask_output=kind == "point")
        logits = F.interpolate(low_res, (size, size), mode="bilinear", align_corners=False)[..., :height, :width]
        target = torch.as_tensor(np.stack([p["target"] for p in prompts])[:, None], dtype=torch.float, device=device)
        focal, dice, iou = mask_losses(logits, target, cfg.focal_alpha)
        per_output = cfg.focal_weight * focal + cfg.dice_weight * dice
        mask_loss = mask_loss + per_output.min(1).values.sum()
        iou_loss = iou_loss + F.mse_loss(predicted_iou, iou, reduction="none").mean(1).sum()
        count += len(prompts)
        mean_iou.append(iou.max(1).values)
    loss = (mask_loss + cfg.iou_weight * iou_loss) / max(count, 1)
    stats = {"loss": float(loss.detach()), "mask_loss": float(mask_loss.detach()) / max(count, 1),
             "iou_loss": float(iou_loss.detach()) / max(count, 1),
             "iou": float(torch.cat(mean_iou).mean()) if mean_iou else float("nan")}
    return loss, stats


def train_sam(sam, data: SegmentImages, cfg: SamTraining, progress: bool = True) -> list[dict]:
    """Train ``sam`` in place (AdamW, linear warm-up, cosine decay); returns every step's statistics."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    optimizer = torch.optim.AdamW(sam.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = max(cfg.warmup_iters, 1)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: min(1.0, (it + 1) / warmup) * 0.5 * (1 + np.cos(np.pi * it / cfg.iterations)))
    sam.train()
    history = []
    bar = tqdm(range(cfg.iterations), desc="train sam", disable=not progress, mininterval=5)
    for step in bar:
        batch = rng.integers(len(data), size=cfg.batch_size)
        loss, stats = sam_loss(sam, data, batch, rng, cfg, flip=rng.random(cfg.batch_size) < 0.5)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        history.append({"step": step, **stats})
        if step % 50 == 0 or step == cfg.iterations - 1:
            recent = history[-50:]
            logging.info("step %d loss %.4f, IoU of the best output %.3f", step,
                         np.mean([h["loss"] for h in recent]), np.mean([h["iou"] for h in recent]))
    return history
