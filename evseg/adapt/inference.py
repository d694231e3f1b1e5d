"""Trained models: the ``model.pt`` file that the train rules write, and prediction over target samples.

``model.pt`` holds the student's and the teacher's weights with everything needed to rebuild the network
and its inputs (backbone, classes, input spec), so pseudo_label and evaluate need no training config.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from evseg.adapt.data import InputSpec, TargetSamples
from evseg.errors import DataError
from evseg.models import build_segmentor

FORMAT = "evseg-segmentor-1"


def save_model_file(path: str | Path, student, teacher, model_cfg: dict, spec: InputSpec, classes: str,
                    num_classes: int, step: int) -> None:
    torch.save({"format": FORMAT, "student": student.state_dict(),
                "teacher": teacher.state_dict() if teacher is not None else None, "model": model_cfg,
                "input": dataclasses.asdict(spec), "classes": classes, "num_classes": num_classes, "step": step},
               path)


def read_model_state(path: str | Path, file_format: str, which: str, written_by: str, where: str) -> dict:
    """The dict of a ``model.pt`` of ``file_format`` that holds ``which`` (student or teacher) weights."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or state.get("format") != file_format:
        raise DataError(path, f"is not a model file written by evseg's {written_by}", f"point the rule at {where}")
    if state.get(which) is None:
        raise DataError(path, f"holds no {which} weights (a source-only model has no teacher)",
                        "use the student, or a model trained with adaptation")
    return state


def load_model_file(path: str | Path, which: str = "student", device: torch.device | str = "cpu"):
    """(network in eval mode, its InputSpec, the file's metadata). ``which``: student or teacher."""
    state = read_model_state(path, FORMAT, which, "train rules", "results/<run>/train/<model>/seed<seed>/model.pt")
    spec = InputSpec(**state["input"])
    cfg = state["model"]
    model = build_segmentor(cfg["backbone"], state["num_classes"], in_chans=spec.channels,
                            drop_path_rate=cfg["drop_path_rate"], embed_dim=cfg["embed_dim"])
    model.load_state_dict(state[which])
    return model.to(device).eval(), spec, state


@torch.no_grad()
def predict(model, samples: TargetSamples, device: torch.device, batch_size: int = 4,
            indices: list[int] | None = None) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(sample index, class map uint8, max softmax probability float32) for each sample, at label size."""
    indices = list(range(len(samples))) if indices is None else indices
    autocast = dict(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    for start in range(0, len(indices), batch_size):
        chunk = indices[start: start + batch_size]
        x = torch.from_numpy(np.stack([samples.input(i) for i in chunk])).to(device)
        with torch.autocast(**autocast):
            logits = model.predict(x)
        probability, label = F.softmax(logits.float(), dim=1).max(dim=1)
        for i, lab, prob in zip(chunk, label.cpu().numpy(), probability.cpu().numpy()):
            yield i, lab.astype(np.uint8), prob
