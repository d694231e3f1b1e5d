"""How much of PSA's result is the mask generator? PSA with the run's SAM against PSA with perfect masks.

PSA (SeCo's pixel semantic aggregation) can only be as good as the masks it aggregates over. On the synthetic
benchmark the ground truth of the target training drives is known, so the script runs PSA's own code
(``refine_label``) on the run's pixel pseudo-labels under each class partition (``psa.partition``: seco and
secov2):

- with the run's SAM (``psa.sam``: the checkpoint, or the one ``train_sam`` made, on ``psa.sam.device``), its
  automatic mask generator settings and the reconstructed frames, as the ``psa`` rule runs it with
  ``psa.image: reconstruction``;
- with the ground truth's segments as the masks (every 8-connected component of each class of the label is one
  automatic mask, so touching objects of one class are one segment), and a thing prompt gets the segment under
  its first point.

It prints coverage and mIoU / pixel accuracy on the labelled pixels, as ``psa/quality.json`` counts them. The
perfect-mask rows read the ground truth: a diagnostic for the synthetic benchmark, never a PSA backend. With
``secov2`` they bound what better masks could give; with ``seco`` they show what the thing prompts do with a
teacher's wrong object labels. Run after ``make run`` (it needs the run's pseudo_label and reconstruct outputs):

    .venv/bin/python tests/benchmarks/psa_mask_ceiling.py --config configs/default.yaml
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from snakemake.utils import validate

from evseg.adapt.data import InputSpec, TargetSamples
from evseg.data.classes import NUM_CLASSES_TO_SET
from evseg.recon.methods import pick_device
from evseg.refine.labels import RefinementQuality, read_label
from evseg.refine.proposals import PsaSettings, SamProposals, refine_label
from evseg.refine.psa import THING_CLASSES, class_partition
from evseg.refine.sam import load_sam
from evseg.refine.sam_training import segment_map

REPO = Path(__file__).resolve().parents[2]


class GroundTruthSegments:
    """The ground truth's segments as PSA's masks (``truth`` is set per sample before ``refine_label``)."""

    truth: np.ndarray

    def stuff(self, image: np.ndarray) -> list[np.ndarray]:
        self.segments = segment_map(self.truth)
        return [self.segments == k for k in range(1, int(self.segments.max()) + 1)]

    def things(self, image: np.ndarray, prompts: list) -> list[np.ndarray]:
        masks = []
        for prompt in prompts:
            x, y = np.rint(prompt.points[0]).astype(int)
            segment = self.segments[y, x]
            masks.append(self.segments == segment if segment else np.zeros(self.segments.shape, bool))
        return masks


class SameStuffMasks:
    """A proposal backend whose automatic masks are computed once per image, so that both partitions see the
    same SAM masks (the automatic mask generator is the slow part)."""

    def __init__(self, proposals):
        self.proposals, self.key, self.masks = proposals, None, None

    def stuff(self, image: np.ndarray) -> list[np.ndarray]:
        key = image.tobytes()
        if key != self.key:
            self.key, self.masks = key, self.proposals.stuff(image)
        return self.masks

    def things(self, image: np.ndarray, prompts: list) -> list[np.ndarray]:
        # the prompts are decoded from the image embedding of the last stuff() call, which SamMasks'
        # SharedEmbeddingPredictor keeps: the cache must hold the same image
        assert image.tobytes() == self.key, "things() of an image whose automatic masks were not asked last"
        return self.proposals.things(image, prompts)


def load_config(path: Path) -> dict:
    config = yaml.safe_load(path.read_text())
    validate(config, str(REPO / "configs/schema.yaml"))  # fills in the schema's defaults
    return config


def sam_checkpoint(config: dict, results: Path) -> Path:
    sam = config["psa"]["sam"]
    if sam["train"]["enabled"]:
        return results / f"train_sam/sam_{sam['variant']}.pth"
    if not sam["checkpoint"]:
        raise SystemExit("the config has no SAM: set psa.sam.checkpoint or psa.sam.train.enabled")
    return Path(sam["checkpoint"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs/default.yaml")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_config(args.config)
    dsec, psa = config["dsec"], config["psa"]
    if psa["backend"] != "sam" or psa["image"] != "reconstruction":
        raise SystemExit(f"{args.config}: this diagnostic runs PSA with SAM on the reconstructions "
                         f"(psa.backend sam, psa.image reconstruction), not {psa['backend']} on {psa['image']}")
    results = Path("results") / config["run"]
    sequences = dsec["sequences"]["train"]
    samples = TargetSamples.from_folders(
        [f"{dsec['root']}/train/{s}" for s in sequences], dsec, InputSpec.from_config(config["train"]["input"], True),
        [str(results / f"reconstruct/train/{s}") for s in sequences])
    class_set = NUM_CLASSES_TO_SET[dsec["num_classes"]]
    settings = {}
    for partition in THING_CLASSES:
        stuff, things = class_partition(class_set.name, dsec["num_classes"], partition)
        settings[partition] = PsaSettings(stuff, things, dsec["num_classes"], psa["stuff_threshold"],
                                          psa["unclip_ratio"], psa["min_class_pixels"], psa["min_component_pixels"],
                                          psa["purity_radius"], psa["unassigned"] == "keep")
    checkpoint = sam_checkpoint(config, results)
    sam = load_sam(checkpoint, psa["sam"]["variant"], device=pick_device(psa["sam"]["device"]))
    backends = {"ground-truth segments": GroundTruthSegments(),
                f"SAM {checkpoint}": SameStuffMasks(SamProposals(sam, **psa["sam"]["amg"]))}
    quality = {(b, p): RefinementQuality(dsec["num_classes"]) for b in backends for p in settings}
    start = time.time()
    for i in range(len(samples)):
        name, index = samples.samples[i]
        label = read_label(results / f"pseudo_label/train/{name}/{index:06d}.png", samples.label_size)
        truth, image = samples.label(i), samples.reconstruction(i)
        backends["ground-truth segments"].truth = truth
        for (backend, partition), tracker in quality.items():
            refined, _ = refine_label(label, image, backends[backend], settings[partition])
            tracker.update(label, refined, truth)
    print(f"PSA of {len(samples)} samples of {results} ({time.time() - start:.0f} s); "
          f"stuff_threshold {psa['stuff_threshold']}, unassigned {psa['unassigned']}")
    first = next(iter(quality.values())).summary()
    print(f"{'masks':<50} {'partition':<9} {'coverage':>8} {'mIoU':>6} {'acc':>6}")
    print(f"{'(pixel pseudo-labels)':<50} {'':<9} {100 * first['labelled_share_before']:7.1f}% "
          f"{100 * first['miou_labelled_before']:6.1f} {100 * first['pixel_accuracy_labelled_before']:6.1f}")
    for (backend, partition), tracker in quality.items():
        summary = tracker.summary()
        print(f"{backend[-50:]:<50} {partition:<9} {100 * summary['labelled_share']:7.1f}% "
              f"{100 * summary['miou_labelled']:6.1f} {100 * summary['pixel_accuracy_labelled']:6.1f}")


if __name__ == "__main__":
    main()
