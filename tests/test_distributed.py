"""Data-parallel training (evseg.distributed): 2 torchrun processes on the CPU (gloo) against 1 process with the
same global batch.

The worker half of this file runs under torchrun (``python -m torch.distributed.run ... -m
tests.test_distributed WHAT ROOT OUT``) and saves what it computed; the tests compare the files.

Tolerance. The two runs compute the same function of the same batch; they differ in the order of float32
sums: BatchNorm statistics (two processes' partial sums against torch's one-pass kernel), the gradient (the
mean of two half-batch gradients against the gradient of the whole batch's mean) and the all-reduce. That is
the same kind of difference as between one process on 1 thread and on 2 threads (other kernel splits). We
compare ||w_2 - w_1|| / ||w_1 - w_0|| (disagreement over how far training moved the weights w_0) after 4 UDA
steps. Measured on the 2-core CI machine: 2.1e-4 for 2 processes against 1, 5.3e-5 for 1 process on 2 threads
against 1 thread, and 9e-2 for 2 processes with per-process BatchNorm statistics (the mistake the whole-batch
statistics prevent). The bound, 1e-3, sits 5x above the float noise and 90x below that mistake.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from evseg import distributed

REPO = Path(__file__).resolve().parents[1]


def torchrun(processes: int, *args: str, env: dict | None = None) -> None:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
               "-m", "tests.test_distributed", *args]
    # CPU processes (gloo) also on a machine with GPUs
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", **(env or {})})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]


# -------------------------------------------------------------------------------------------- workers


def batch_norm_worker(out: Path) -> None:
    """WholeBatchNorm2d on this process's rows of a fixed batch: output, input gradient, parameter gradients
    (averaged like training does) and running statistics."""
    torch.manual_seed(0)
    x = torch.randn(4, 3, 5, 6) * 2 + 1
    upstream = torch.randn(4, 3, 5, 6)
    bn = distributed.sync_batch_norm(torch.nn.Sequential(torch.nn.BatchNorm2d(3)))
    with torch.no_grad():
        bn[0].weight.uniform_(0.5, 1.5)
        bn[0].bias.uniform_(-1, 1)
    rows = distributed.world().rows(4)
    mine = x[rows].clone().requires_grad_(True)
    y = bn(mine)
    # the loss of the whole batch is the mean over processes of each one's (equal-sized) share
    (y * upstream[rows]).sum().mul(distributed.world().size).backward()
    distributed.average_gradients(bn)
    # an input gradient is the part that flows on to upstream parameters, whose gradients are averaged too
    dx = mine.grad / distributed.world().size
    torch.save({"y": distributed.gather_rows(y.detach()), "dx": distributed.gather_rows(dx),
                "dweight": bn[0].weight.grad, "dbias": bn[0].bias.grad, "running_mean": bn[0].running_mean,
                "running_var": bn[0].running_var}, out / f"rank{distributed.world().rank}.pt")


def loss_inputs() -> dict[str, torch.Tensor]:
    """A batch of 4 for every whole-batch statistic: logits, labels with ignored pixels, confidences, padding,
    features with labels constant on 4x4 cells (so the feature distance has thing cells), images."""
    g = torch.Generator().manual_seed(0)
    cells = torch.randint(0, 5, (4, 4, 4), generator=g)
    labels = cells.repeat_interleave(4, 1).repeat_interleave(4, 2)
    labels[:, :3, :5] = 255
    return {"logits": torch.randn(4, 5, 16, 16, generator=g) * 2, "labels": labels,
            "confidence": torch.rand(4, 16, 16, generator=g), "padding": torch.rand(4, 16, 16, generator=g) > 0.8,
            "student": torch.randn(4, 8, 4, 4, generator=g), "imnet": torch.randn(4, 8, 4, 4, generator=g),
            "images": torch.rand(4, 3, 16, 16, generator=g)}


def whole_batch_statistics(x: dict[str, torch.Tensor], generator_seed: int = 0) -> dict[str, torch.Tensor]:
    """Every loss or draw that covers the whole batch, on the rows this process holds."""
    from evseg.adapt.augment import strong_transform
    from evseg.adapt.classmix import class_masks
    from evseg.adapt.feature_distance import feature_distance
    from evseg.adapt.losses import confidence_weight, pixel_cross_entropy
    from evseg.semi.unimatch import ohem_cross_entropy, unlabelled_loss

    labels_no_ignore = x["labels"].clamp(max=4)
    generator = distributed.step_generator(generator_seed, 3)
    return {
        "ce_valid": pixel_cross_entropy(x["logits"], x["labels"], average="valid"),
        # min_kept between one process's labelled pixels (< 1024 - 15) and the batch's (4 x 1009)
        "ohem": ohem_cross_entropy(x["logits"], x["labels"], threshold=0.3, min_kept=1500),
        "unlabelled": unlabelled_loss(x["logits"], labels_no_ignore, x["confidence"], x["padding"], 0.5),
        "feature_distance": feature_distance(x["student"], x["imnet"], x["labels"], [1, 3], 0.75, 5),
        "confidence_weight": confidence_weight(x["confidence"], 0.7).mean(),
        "class_masks": class_masks(x["labels"], generator),
        "strong": strong_transform(x["images"], generator, color_jitter_p=0.0, color_jitter_s=0.2),
    }


def statistics_worker(out: Path) -> None:
    """The statistics on this process's rows: scalars as the mean over processes (what gradient averaging
    sees), per-row outputs gathered."""
    x = {k: v[distributed.world().rows(4)] for k, v in loss_inputs().items()}
    got = whole_batch_statistics(x)
    result = {k: distributed.gather_rows(v) if v.ndim else distributed.mean_over_processes(v) for k, v in got.items()}
    if distributed.world().is_main:
        torch.save(result, out / "statistics.pt")


def training_worker(root: Path, out: Path, adapt: bool, plain_bn: bool) -> None:
    """A few steps of the UDA (or source-only) loop, without dropout and drop-path (whose masks are per
    process by design), every other part on: DACS weighting, ClassMix, strong augmentation, the ImageNet
    feature distance, HPL-ESS hybrid mixing and SPA."""
    from evseg.adapt.trainer import train
    from tests.test_train import batches_of, config, source_and_target

    if plain_bn:  # the counter-example: per-process BatchNorm statistics
        distributed.sync_batch_norm = lambda model: model
    torch.manual_seed(0)
    from evseg.models import build_segmentor
    model = build_segmentor("mit_b0", 11, in_chans=1, embed_dim=16, drop_path_rate=0.0)
    model.decode_head.dropout.p = 0.0
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = config(adapt=adapt, max_iters=4, log_every=1, checkpoint_every=2)
    # a threshold that some of a random model's pseudo-labels pass (its probabilities are near 1/11), and a
    # feature distance that matters, so that both whole-batch statistics reach the weights
    cfg["uda"] = {**cfg["uda"], "pseudo_threshold": 0.1,
                  "feature_distance": {**cfg["uda"]["feature_distance"], "weight": 0.5}}
    step = train(model, batches_of(source_and_target(root), adapt=adapt), cfg, 11, out / "state",
                 torch.device("cpu"))
    if distributed.world().is_main:
        torch.save({"initial": initial, "student": model.state_dict(),
                    "teacher": step.teacher.teacher.state_dict() if step.teacher else None,
                    "prior": step.prior.value if step.prior else None}, out / "result.pt")


def main() -> None:
    what, *args = sys.argv[1:]
    distributed.start_from_environment()
    try:
        if what == "batch_norm":
            batch_norm_worker(Path(args[0]))
        elif what == "statistics":
            statistics_worker(Path(args[0]))
        else:
            training_worker(Path(args[0]), Path(args[1]), adapt=what.startswith("uda"), plain_bn=what.endswith("plain_bn"))
    finally:
        distributed.stop()


# ---------------------------------------------------------------------------------------------- tests


def test_world_rows_and_helpers_are_identities_in_one_process():
    assert distributed.world() == distributed.World(0, 1)
    assert distributed.World(1, 2).rows(4) == slice(2, 4)
    with pytest.raises(ValueError, match="multiple of its GPU count"):
        distributed.World(0, 2).rows(3)
    x = torch.tensor([3.0, 0.0])
    assert distributed.mean_over_processes(x) is x
    assert torch.equal(distributed.per_process_denominator(torch.tensor(0)), torch.tensor(1.0))
    assert torch.equal(distributed.classes_present(torch.tensor([[4, 1, 4]])), torch.tensor([1, 4]))


def test_whole_batch_norm_over_two_processes_equals_batch_norm_of_the_batch(tmp_path):
    torchrun(2, "batch_norm", str(tmp_path))
    torch.manual_seed(0)
    x = (torch.randn(4, 3, 5, 6) * 2 + 1).requires_grad_(True)
    upstream = torch.randn(4, 3, 5, 6)
    bn = torch.nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-1, 1)
    y = bn(x)
    (y * upstream).sum().backward()
    expected = {"y": y, "dx": x.grad, "dweight": bn.weight.grad, "dbias": bn.bias.grad,
                "running_mean": bn.running_mean, "running_var": bn.running_var}
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        for key, value in expected.items():
            torch.testing.assert_close(got[key], value.detach(), rtol=1e-5, atol=1e-5, msg=f"rank {rank}: {key}")


def test_whole_batch_statistics_over_two_processes_equal_one_process(tmp_path):
    torchrun(2, "statistics", str(tmp_path))
    got = torch.load(tmp_path / "statistics.pt")
    expected = whole_batch_statistics(loss_inputs())
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=1e-5, atol=1e-6, msg=key)
    # the rows of one process alone give other values: the comparison can fail
    half = whole_batch_statistics({k: v[:2] for k, v in loss_inputs().items()})
    for key in ("ce_valid", "ohem", "unlabelled", "feature_distance", "confidence_weight"):
        assert not torch.allclose(half[key], expected[key], rtol=1e-3), key


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The UDA loop in 1 and in 2 processes, same global batch (2), and 2 processes with per-process BN."""
    from tests.test_train import write_datasets

    root = tmp_path_factory.mktemp("ddp")
    write_datasets(root)
    results = {}
    for name, processes, what in [("one", 1, "uda"), ("two", 2, "uda"), ("plain_bn", 2, "uda_plain_bn")]:
        (root / name).mkdir()
        torchrun(processes, what, str(root), str(root / name))
        results[name] = torch.load(root / name / "result.pt")
        results[name]["metrics"] = pd.read_csv(root / name / "state/metrics.csv")
    return results


def relative_difference(a: dict, b: dict, initial: dict) -> float:
    """||a - b|| / ||a - initial|| over all float weights: the runs' disagreement against how far training
    moved them. (An L2 ratio: AdamW's first updates are ~lr * sign(gradient), so a gradient that is zero up
    to rounding may take either sign in either run; those few elements dominate a max-norm.)"""
    floats = [k for k, v in initial.items() if v.is_floating_point()]
    flat = lambda state: torch.cat([state[k].flatten() for k in floats])  # noqa: E731
    return ((flat(a) - flat(b)).norm() / (flat(a) - flat(initial)).norm()).item()


def test_two_processes_train_as_one_with_the_same_global_batch(two_runs):
    one, two = two_runs["one"], two_runs["two"]
    assert relative_difference(two["student"], one["student"], one["initial"]) < 1e-3
    assert relative_difference(two["teacher"], one["teacher"], one["initial"]) < 1e-3
    torch.testing.assert_close(two["prior"], one["prior"], rtol=1e-5, atol=1e-7)
    # the logged losses are whole-batch means: equal up to rounding, step by step
    losses = [c for c in one["metrics"].columns if c.startswith("loss") or c == "pseudo_weight"]
    assert {"loss_mix", "loss_hybrid", "loss_feature_distance", "loss_spa"} <= set(losses)
    assert one["metrics"]["pseudo_weight"].max() > 0  # some pseudo-labelled pixels carry weight
    pd.testing.assert_frame_equal(two["metrics"][losses], one["metrics"][losses], rtol=1e-3)


def test_the_bound_fails_without_whole_batch_statistics(two_runs):
    one, plain = two_runs["one"], two_runs["plain_bn"]
    assert relative_difference(plain["student"], one["student"], one["initial"]) > 1e-2


if __name__ == "__main__":
    main()
