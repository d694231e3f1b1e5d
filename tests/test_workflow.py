"""The Snakemake workflow: dry runs of the configs and a tiny end-to-end run of what exists."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from evseg.data.classes import ESS_11

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]


def snakemake(workdir, *args, check=True, env=None):
    """Run the workflow in ``workdir``; ``env``: variables added to this process's environment."""
    result = subprocess.run([*SNAKEMAKE, "--directory", str(workdir), *args], capture_output=True, text=True,
                            env={**os.environ, **(env or {})})
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def jobs_of(plan):
    """rule name -> job count from the table of a dry run ({} when there is nothing to do)."""
    if "Job stats:" not in plan:
        assert "Nothing to be done" in plan, plan
        return {}
    table = plan.split("Job stats:")[1].split("\n\n")[0].splitlines()[3:]
    return {line.split()[0]: int(line.split()[1]) for line in table if line.split()[0] != "total"}


def tiny_config_with(path, **sections):
    """tests/configs/tiny.yaml with whole top-level sections replaced."""
    config = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    config.update(sections)
    path.write_text(yaml.safe_dump(config))
    return path


def test_dry_run_default_config(tmp_path):
    result = snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(REPO / "configs/default.yaml"))
    out = result.stdout + result.stderr
    assert "synthesize_dsec" in out and "inspect_summary" in out
    assert "results/demo/inspect/summary.csv" in out


CONFIGS = sorted(p.name for p in (REPO / "configs").glob("*.yaml") if p.name != "schema.yaml")


def job_resources(plan: str) -> list[tuple[str, str]]:
    """(rule, its resources line) of every job of a dry run."""
    found, rule = [], None
    for line in plan.splitlines():
        if header := re.fullmatch(r"(?:local)?rule (\w+):", line):
            rule = header.group(1)
        elif rule and line.strip().startswith("resources: "):
            found.append((rule, line.strip().removeprefix("resources: ")))
            rule = None
    return found


@pytest.mark.parametrize("profile", ["local", "slurm"])
@pytest.mark.parametrize("config", CONFIGS)
def test_every_config_dry_runs_with_each_profile(tmp_path, config, profile):
    plan = snakemake(tmp_path, "-n", "--profile", str(REPO / "configs/profiles" / profile), "--configfile",
                     str(REPO / "configs" / config)).stdout
    jobs = job_resources(plan)
    assert jobs and any(rule in ("evaluate", "evaluate_cmda") for rule, _ in jobs)
    if profile == "slurm":  # GPU jobs go to the GPU partition: the profile lists every rule that may ask for one
        for rule, resources in jobs:
            uses_gpu = re.search(r"\bgpu=[1-9]", resources) is not None
            partition = re.search(r"slurm_partition=(\w+)", resources).group(1)
            assert not uses_gpu or partition == "gpu", f"{rule} asks for a GPU but goes to {partition}"


def test_invalid_config_is_refused(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("run: demo\ndsec: {num_classes: 12}\n")
    result = snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(bad), check=False)
    assert result.returncode != 0 and "num_classes" in result.stdout + result.stderr


@pytest.mark.slow
def test_tiny_end_to_end(tmp_path):
    # train_semi asks for 2 (pretend) GPUs: it runs as 2 torchrun processes (gloo on the CPU), evseg.distributed
    config = tmp_path / "tiny.yaml"
    config.write_text((REPO / "tests/configs/tiny.yaml").read_text() + "resources:\n  train_semi: {gpu: 2}\n")
    gpus = {"EVSEG_GPUS": "0,1", "EVSEG_GPU_LOCKS": str(tmp_path / "locks")}
    snakemake(tmp_path, "--cores", "2", "--configfile", str(config), env=gpus)
    inspect = tmp_path / "results/tiny/inspect"
    for name in ("train/synth_00_a.png", "test/synth_10_a.png", "cityscapes.png", "class_frequencies.png"):
        assert (inspect / name).stat().st_size > 1000
    table = pd.read_csv(inspect / "summary.csv")
    target = table[table.domain == "target"].set_index("sequence")
    assert set(target.index) == {"synth_00_a", "synth_10_a"}
    assert (target.labels == 15).all() and (target.samples == 5).all()  # 0.75 s at 20 Hz; ESS keeps 6, 8, ..., 14
    assert (target.events > 0).all() and (target.event_rate_mev_s > 0).all()
    stats = json.loads((inspect / "test/synth_10_a.json").read_text())
    assert sum(stats["class_pixels"].values()) + stats["ignored_pixels"] == 5 * 33 * 48  # the 5 protocol labels
    assert (tmp_path / "data/synthetic/logs/synthesize_dsec/train/synth_00_a.log").exists()
    manifest = pd.read_csv(tmp_path / "results/tiny/reconstruct/test/synth_10_a/manifest.csv")
    assert list(manifest.sample_id) == [f"synth_10_a/{i:06d}" for i in (6, 8, 10, 12, 14)]
    assert len(list((tmp_path / "results/tiny/reconstruct/test/synth_10_a").glob("*.png"))) == 5
    assert json.loads((tmp_path / "results/tiny/reconstruct/test/synth_10_a.json").read_text())["method"] == "e2vid"
    assert len(pd.read_csv(tmp_path / "results/tiny/train_reconstruction/losses.csv")) == 3
    assert (tmp_path / "data/synthetic/dsec/simulated/sim_00/images/left/ev_inf/000000.png").is_file()
    rate = pd.read_csv(tmp_path / "results/tiny/reconstruct/test/synth_10_a/fixed_rate/manifest.csv")
    assert (np.diff(rate.timestamp_us) % 40_000 == 0).all() and len(rate) > 5  # 25 Hz, minus the label times
    # training, pseudo-labels, evaluation
    results = tmp_path / "results/tiny"
    hybrid = (results / "sample/hybrid.txt").read_text().split()
    assert len(hybrid) == 1 and hybrid[0] in list(manifest.sample_id.str.replace("10_a", "00_a"))  # at least 1
    for model, rows in (("uda", 2), ("source_only", 2), ("semi", 1)):
        assert len(pd.read_csv(results / f"train/{model}/seed0/metrics.csv")) == rows  # log_every 2
        resolved = yaml.safe_load((results / f"train/{model}/seed0/config.yaml").read_text())
        assert resolved["semi" if model == "semi" else "train"]["seed"] == 0
        assert not (results / f"train/{model}/seed0/state").exists()  # removed once the outputs are complete
        metrics = json.loads((results / f"evaluate/{model}/seed0/metrics.json").read_text())
        confusion = np.load(results / f"evaluate/{model}/seed0/confusion.npy")
        labels = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in
                  sorted((tmp_path / "data/synthetic/dsec/test/synth_10_a/11classes").glob("*.png"))[6:15:2]]
        assert confusion.sum() == sum(int((label != 255).sum()) for label in labels)
        assert metrics["pixel_accuracy"] == pytest.approx(np.trace(confusion) / confusion.sum())
    summary = pd.read_csv(results / "evaluate/summary.csv")
    assert list(summary.model) == ["source_only", "uda", "semi", "pseudo_labels (train)",
                                   "psa sam (train)", "scc paper rule (train)"]
    assert "data-parallel training: 2 processes" in (results / "logs/train_semi/seed0.log").read_text()
    semi = pd.read_csv(results / "train/semi/seed0/metrics.csv")
    assert {"loss_labeled", "loss_strong1", "loss_strong2", "loss_feature_perturbation"} <= set(semi.columns)
    scc = json.loads((results / "scc/quality.json").read_text())
    regions = pd.read_csv(results / "scc/regions.csv")
    assert scc["regions"] == len(regions) == scc["kept"] + scc["relabelled"] + scc["dropped"] > 0
    assert len(list((results / "scc/train/synth_00_a").glob("*.png"))) == 5
    labeled, unlabeled = ((results / f"split/{name}.txt").read_text().split() for name in ("labeled", "unlabeled"))
    assert len(labeled) == 3 and len(unlabeled) == 2  # half of 5, rounded up
    assert sorted(labeled + unlabeled) == [f"synth_00_a/{i:06d}" for i in (6, 8, 10, 12, 14)]
    # the SAM trained on the simulated drive's reconstructions, loaded by psa like an official file
    assert len(pd.read_csv(results / "train_sam/losses.csv")) == 2
    assert "frames of 1 simulated drives" in (results / "logs/train_sam.log").read_text()
    assert len(pd.read_csv(results / "train_region_classifier/losses.csv")) == 2
    assert set(scc["per_class"]) <= set(ESS_11.names) and sum(
        c[f"regions_{k}"] for c in scc["per_class"].values() for k in ("kept", "relabelled", "dropped")) == len(regions)
    psa = json.loads((results / "psa/quality.json").read_text())
    assert psa["samples"] == 5 and len(list((results / "psa/train/synth_00_a").glob("*.png"))) == 5
    assert (results / "psa/pictures.png").stat().st_size > 1000
    pseudo = sorted((results / "pseudo_label/train/synth_00_a").glob("*.png"))
    assert [p.name for p in pseudo][:2] == ["000006.png", "000006_confidence.png"] and len(pseudo) == 10
    assert cv2.imread(str(pseudo[1]), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    # a second run has nothing to do; editing one stage's setting reruns exactly that stage and what follows
    assert "Nothing to be done" in snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(config)).stdout
    after_training = {"pseudo_label": 1, "psa": 1, "scc": 1, "split": 1, "train_semi": 1, "evaluate_summary": 1,
                      "report_figures": 1, "all": 1}
    for edit, expected in [
        (("samples_per_sequence: 2", "samples_per_sequence: 1"), {"inspect_sequence": 2, "inspect_summary": 1, "all": 1}),
        (("start_iter: 1", "start_iter: 2"), {"train_uda": 1, **after_training, "evaluate": 2}),  # uda and semi
        (("  unassigned: keep\n  pictures: 2", "  unassigned: keep\n  pictures: 1"),
         {**after_training, "pseudo_label": 0, "evaluate": 1}),
        (("prompts_per_image: 2", "prompts_per_image: 3"),  # a new SAM: psa and what follows
         {**after_training, "train_sam": 1, "pseudo_label": 0, "evaluate": 1}),
        (("pretrain: {enabled: true, iterations: 2", "pretrain: {enabled: true, iterations: 3"),
         {**after_training, "train_region_classifier": 1, "pseudo_label": 0, "psa": 0, "evaluate": 1}),
        (("panels: 2", "panels: 1"), {"evaluate": 3, "evaluate_summary": 1, "report_figures": 1, "all": 1}),
        (("confidence_threshold: 0.5", "confidence_threshold: 0.6"),
         {"train_semi": 1, "evaluate": 1, "evaluate_summary": 1, "report_figures": 1, "all": 1}),
    ]:
        changed = tmp_path / "changed.yaml"
        changed.write_text(config.read_text().replace(*edit))
        plan = jobs_of(snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(changed)).stdout)
        assert plan == {rule: n for rule, n in expected.items() if n}, edit
    # after a code edit: -R reruns one stage and what follows; --until stops at a stage (the README's commands)
    forced = jobs_of(snakemake(tmp_path, "-n", "-R", "scc", "--cores", "1", "--configfile", str(config)).stdout)
    assert forced == {"scc": 1, "split": 1, "train_semi": 1, "evaluate": 1, "evaluate_summary": 1, "report_figures": 1,
                      "all": 1}
    changed.write_text(config.read_text().replace("  unassigned: keep\n  pictures: 2",
                                                  "  unassigned: keep\n  pictures: 1"))
    until = jobs_of(snakemake(tmp_path, "-n", "--until", "split", "--cores", "1", "--configfile", str(changed)).stdout)
    assert until == {"psa": 1, "scc": 1, "split": 1}
    # the HTML report: self-contained (offline), every flagged figure embedded, captions filled in
    for name in ("training_curves", "per_class_iou", "pseudo_label_quality"):
        assert (results / f"report/{name}.png").stat().st_size > 5000
    snakemake(tmp_path, "--report", "results/tiny/report.html", "--configfile", str(config))
    html = (results / "report.html").read_text()
    assert html.count("iVBORw0KGgo") == 3 + 3 + 3 + 3  # confusion and panels of 3 models, SAM, PSA, SCC, 3 figures
    assert "Confusion matrix of model semi, seed 0" in html and "Training losses of every trained model" in html
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=.https?://", html)
    shutil.rmtree(tmp_path / "data")


def test_lint_and_format(tmp_path):
    lint = snakemake(tmp_path, "--lint", "--configfile", str(REPO / "configs/default.yaml"), check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "Snakefile", "rules"], cwd=REPO,
                         capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stderr


@pytest.mark.parametrize("reconstruct, synthetic, message", [
    ({"method": "highpass", "train": {"enabled": True}}, True, "reconstruct.method must be 'e2vid'"),
    ({"method": "e2vid", "checkpoint": "w.pth.tar", "train": {"enabled": True}}, True, "checkpoint must be empty"),
    ({"method": "e2vid", "train": {"enabled": True}}, False, "only the synthetic benchmark has"),
])
def test_reconstruction_training_config_is_checked(tmp_path, reconstruct, synthetic, message):
    config = tiny_config_with(tmp_path / "recon.yaml", reconstruct=reconstruct, synthetic={"enabled": synthetic})
    result = snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(config), check=False)
    assert result.returncode != 0 and message in result.stdout + result.stderr


@pytest.mark.parametrize("sections, message", [
    ({"psa": {"backend": "sam", "sam": {"variant": "vit_demo", "checkpoint": "sam.pth", "train": {"enabled": True}}}},
     "psa.sam.checkpoint must be empty"),
    ({"psa": {"backend": "sam", "sam": {"variant": "vit_demo", "train": {"enabled": True}}},
      "reconstruct": {"method": "highpass"}}, "only exist with reconstruct.train.enabled true"),
    ({"psa": {"backend": "sam", "sam": {"variant": "vit_demo", "checkpoint": "sam.pth"}}},
     "only the train_sam step makes"),
    ({"scc": {"pretrained": "resnet18.pth", "pretrain": {"enabled": True}}}, "set one of them"),
])
def test_trained_sam_and_region_classifier_configs_are_checked(tmp_path, sections, message):
    config = tiny_config_with(tmp_path / "bad.yaml", **sections)
    result = snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(config), check=False)
    assert result.returncode != 0 and message in result.stdout + result.stderr


def test_batched_reconstruction_covers_the_simulated_drives_a_sam_trains_on(tmp_path):
    tiny = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    config = tiny_config_with(tmp_path / "batched.yaml", reconstruct={**tiny["reconstruct"], "batch_sequences": True})
    plan = jobs_of(snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(config)).stdout)
    assert plan["reconstruct_simulated"] == plan["reconstruct_train"] == plan["train_sam"] == 1


def test_synthetic_rules_never_point_at_real_data(tmp_path):
    config = tmp_path / "real.yaml"
    config.write_text("run: real\nsynthetic: {enabled: true}\ndsec: {root: data/dsec}\n")
    result = snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(config), check=False)
    assert result.returncode != 0 and "synthetic.enabled is true, so dsec.root must be" in result.stdout + result.stderr


def test_conda_env_has_the_same_pins():
    pins = [line.split("#")[0].strip() for line in (REPO / "envs/requirements.txt").read_text().splitlines()]
    env = yaml.safe_load((REPO / "envs/evseg.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip == [p for p in pins if p]


@pytest.mark.slow
def test_reconstruct_with_an_official_format_e2vid_checkpoint(tmp_path):
    from evseg.recon.checkpoint import build_reconstruction_model, save_reconstruction_model

    config = {"num_bins": 5, "base_num_channels": 8, "num_encoders": 2, "num_residual_blocks": 1, "norm": "BN",
              "use_upsample_conv": False, "skip_type": "sum", "recurrent_block_type": "convlstm"}
    checkpoint = tmp_path / "E2VID_tiny.pth.tar"
    save_reconstruction_model(checkpoint, build_reconstruction_model("E2VIDRecurrent", config), "E2VIDRecurrent",
                              config)
    run_config = tiny_config_with(tmp_path / "e2vid.yaml",
                                  reconstruct={"method": "e2vid", "checkpoint": str(checkpoint), "mode": "per_sample"},
                                  psa={"backend": "superpixels"})  # no simulated drives to train a SAM on
    target = "results/tiny/reconstruct/test/synth_10_a.png"
    snakemake(tmp_path, target, "--cores", "2", "--configfile", str(run_config))  # --configfile takes all that follows
    stats = json.loads((tmp_path / "results/tiny/reconstruct/test/synth_10_a.json").read_text())
    assert stats["method"] == "e2vid" and stats["mode"] == "per_sample" and stats["frames"] == 5
    # one job per split, its sequences as one batch
    batched = tiny_config_with(tmp_path / "batched.yaml",
                               dsec={**yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())["dsec"],
                                     "sequences": {"train": ["synth_00_a", "synth_01_a"], "test": ["synth_10_a"]}},
                               reconstruct={"method": "e2vid", "checkpoint": str(checkpoint), "batch_sequences": True},
                               psa={"backend": "superpixels"})
    plan = snakemake(tmp_path, "results/tiny/reconstruct/train/synth_01_a.png", "-n", "--cores", "1",
                     "--configfile", str(batched)).stdout
    assert "reconstruct_train" in plan and "rule reconstruct:" not in plan
    snakemake(tmp_path, "results/tiny/reconstruct/train/synth_01_a.png", "--cores", "2", "--configfile", str(batched))
    for seq in ("synth_00_a", "synth_01_a"):
        stats = json.loads((tmp_path / f"results/tiny/reconstruct/train/{seq}.json").read_text())
        assert stats["method"] == "e2vid" and stats["mode"] == "stream" and stats["frames"] == 5
    missing = tiny_config_with(tmp_path / "no_weights.yaml", reconstruct={"method": "e2vid"})
    result = snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(missing), check=False)
    assert result.returncode != 0 and "E2VID_lightweight.pth.tar" in result.stdout + result.stderr


@pytest.mark.slow
def test_tiny_cmda_end_to_end(tmp_path):
    """pipeline: cmda on tests/configs/tiny_cmda.yaml: the synthetic night drive in the Night-Semantic layout, every
    model (CMDA with 2 data-parallel processes), the evaluation, the summary and the L2 study."""
    config = tmp_path / "tiny_cmda.yaml"
    config.write_text((REPO / "tests/configs/tiny_cmda.yaml").read_text() + "resources:\n  train_cmda: {gpu: 2}\n")
    gpus = {"EVSEG_GPUS": "0,1", "EVSEG_GPU_LOCKS": str(tmp_path / "locks")}
    snakemake(tmp_path, "--cores", "2", "--configfile", str(config), env=gpus)
    night = tmp_path / "data/synthetic_cmda/dsec_night/night_00"
    assert len(list((night / "warp_images").glob("*.png"))) == 30  # 1.5 s at 20 Hz
    assert sorted(p.name[9:15] for p in (night / "labels").glob("*.png")) == ["000002", "000004", "000006"]
    assert (tmp_path / "data/synthetic_cmda/cityscapes/leftImg8bit_sequence/train").is_dir()
    results = tmp_path / "results/tiny_cmda/cmda"
    summary = pd.read_csv(results / "summary.csv")
    assert list(summary.model) == ["source_only", "fusion_source_only", "image_only", "fusion",
                                   "fusion_l2_rgb_st+events_st"]
    assert list(summary.output) == ["image", "fusion", "image", "fusion", "fusion"]
    assert (summary.samples == 3).all()
    metrics = json.loads((results / "evaluate/fusion/seed0/metrics.json").read_text())
    confusion = np.load(results / "evaluate/fusion/seed0/confusion.npy")
    labels = [cv2.imread(str(night / f"labels/night_00_{f:06d}_grey_gtFine_labelTrainIds.png"),
                         cv2.IMREAD_UNCHANGED)[:33] for f in (2, 4, 6)]
    assert confusion.sum() == sum(int((label != 255).sum()) for label in labels)
    per_class = pd.read_csv(results / "evaluate/fusion/seed0/per_class.csv")
    ious = per_class[per_class["class"] != "truck"]["iou"].dropna()
    assert metrics["miou"] == pytest.approx(ious.mean())  # the mean over the 18 classes, directly
    assert set(metrics["miou_by_output"]) == {"fusion", "image", "events"}
    assert "data-parallel training: 2 processes" in (tmp_path / "results/tiny_cmda/logs/train_cmda/fusion/seed0.log"
                                                     ).read_text()
    curves = pd.read_csv(results / "train/fusion_l2_rgb_st+events_st/seed0/metrics.csv")
    assert {"l2_rgb_st", "l2_events_st", "loss_mix_fusion", "loss_source_isr"} <= set(curves.columns)
    study = pd.read_csv(results / "l2_study.csv")
    assert list(study.variant) == ["none", "rgb_st+events_st"] and study.delta_vs_baseline[0] == 0
    assert (results / "l2_terms.png").stat().st_size > 5000
    assert "Nothing to be done" in snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(config)).stdout
    shutil.rmtree(tmp_path / "data")


def test_tiny_ecddp_end_to_end(tmp_path):
    """pipeline: ecddp on tests/configs/tiny_ecddp.yaml: a simulated drive, pre-training as 2 data-parallel
    processes, supervised training from scratch and from its checkpoint, evaluation, summary, picture."""
    config = tmp_path / "tiny_ecddp.yaml"
    config.write_text((REPO / "tests/configs/tiny_ecddp.yaml").read_text() + "resources:\n  pretrain_events: {gpu: 2}\n")
    gpus = {"EVSEG_GPUS": "0,1", "EVSEG_GPU_LOCKS": str(tmp_path / "locks")}
    snakemake(tmp_path, "--cores", "2", "--configfile", str(config), env=gpus)
    results = tmp_path / "results/tiny_ecddp"
    assert "data-parallel training: 2 processes" in (results / "logs/pretrain_events.log").read_text()
    metrics = pd.read_csv(results / "pretrain_events/metrics.csv")
    assert list(metrics.step) == [2, 4] and {"loss_image", "loss_patch", "loss_context"} <= set(metrics.columns)
    recordings = yaml.safe_load((results / "pretrain_events/config.yaml").read_text())["recordings"]
    assert [Path(r).parts[-5:] for r in recordings] == [("simulated", "sim_00", "events", "left", "events.h5")]
    checkpoint = torch.load(results / "pretrain_events/ecddp.pth", weights_only=True)
    assert yaml.safe_load((results / "train/supervised_ecddp/seed0/config.yaml").read_text())["model"][
        "pretrained"].endswith("pretrain_events/ecddp.pth")
    assert checkpoint["ecddp"]["input"]["event_channels"] == [90, 100]
    assert any(k.startswith("teacher.backbone.") for k in checkpoint["model"])
    summary = pd.read_csv(results / "evaluate/summary.csv")
    assert list(summary.model) == ["supervised", "supervised_ecddp"] and (summary.input == "event_tensor").all()
    assert (results / "pretrain_events/similarity.png").stat().st_size > 2000
    assert not (tmp_path / "data/synthetic/cityscapes").exists()  # no source in this pipeline
    assert "Nothing to be done" in snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(config)).stdout
