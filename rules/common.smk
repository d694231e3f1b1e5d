# Config validation and every input/param function of the workflow (the rule files stay declarative).

import os
import re
import sys

from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

validate(config, schema="../configs/schema.yaml")

# Stage scripts import the evseg library from this checkout, also inside a --sdm conda environment
# where it is not pip-installed (jobs inherit this process's environment).
os.environ.update(
    PYTHONPATH=os.pathsep.join(p for p in (workflow.basedir, os.environ.get("PYTHONPATH")) if p)
)
sys.path.insert(0, workflow.basedir)

from evseg.fetch.manifest import (
    archives,
    cityscapes_archives,
    dsec_archive_names,
    manifest,
    night_archive_names,
    placed_by_hand,
    weights,
)

RUN = config["run"]
PIPELINE = config["pipeline"]
RESULTS = f"results/{RUN}"
DSEC_ROOT = os.path.normpath(config["dsec"]["root"])
CITYSCAPES_ROOT = os.path.normpath(config["cityscapes"]["root"])
SYNTH = os.path.normpath(config["synthetic"]["root"])
SPLITS = ("train", "test")
DOWNLOADS = os.path.normpath(config["download"]["archives"])
PRETRAINED_EVENTS = f"{RESULTS}/pretrain_events/ecddp.pth"


def check_config():
    """Consistency checks that the JSON schema cannot express."""
    target = "dsec_night" if PIPELINE == "cmda" else "dsec"
    synthetic = {target: f"{SYNTH}/{target}", "cityscapes": f"{SYNTH}/cityscapes"}
    roots = {target: os.path.normpath(config[target]["root"]), "cityscapes": CITYSCAPES_ROOT}
    if config["synthetic"]["enabled"]:
        # The synthesize rules own (and may delete) these folders: never let them point at real data.
        for name, root in roots.items():
            if root != synthetic[name]:
                raise ValueError(
                    f"config: synthetic.enabled is true, so {name}.root must be {synthetic[name]!r} "
                    f"(the synthesize rules write only under synthetic.root), not {root!r}. "
                    "Set synthetic.enabled: false to use a real dataset."
                )
    if config["download"]["enabled"] and config["synthetic"]["enabled"]:
        raise ValueError(
            "config: download.enabled and synthetic.enabled are both true; the download rules fetch "
            "the real datasets, the synthesize rules write the demo's: enable one of them"
        )
    if PIPELINE == "cmda":
        check_cmda_config()
    elif PIPELINE == "ecddp":
        check_ecddp_config()
    else:
        check_hpl_ess_config()
    if uses_pretraining():
        check_pretrain_config()


def uses_pretraining():
    """Whether the run pre-trains (pretrain_events is in the DAG)."""
    pretrain_model = PIPELINE == "ecddp" and "supervised_ecddp" in config["evaluate"]["models"]
    return pretrain_model or config["model"]["pretrained"] == PRETRAINED_EVENTS


def check_event_channels():
    first, last = config["train"]["input"]["event_channels"]
    ess = config["dsec"]["ess"]
    if not 0 <= first < last <= ess["num_chunks"] * ess["bins_per_chunk"]:
        raise ValueError(
            f"config: train.input.event_channels [{first}, {last}) must lie within the "
            f"{ess['num_chunks'] * ess['bins_per_chunk']} channels of the ESS tensor "
            "(dsec.ess.num_chunks x bins_per_chunk)"
        )


def check_ecddp_config():
    """pipeline: ecddp trains event models on the target's labels: no source, no adaptation."""
    unknown = set(config["evaluate"]["models"]) - {"supervised", "supervised_ecddp"}
    if unknown:
        raise ValueError(
            f"config: pipeline ecddp trains and evaluates supervised and supervised_ecddp; "
            f"evaluate.models also lists {sorted(unknown)}"
        )
    if (
        config["train"]["input"]["target"] != "event_tensor"
        or not config["cityscapes"]["grayscale"]
    ):
        raise ValueError(
            "config: pipeline ecddp pre-trains and trains on events: set train.input.target: event_tensor "
            "(and keep cityscapes.grayscale: true, no RGB source is involved)"
        )
    if config["uda"]["rcs"]["enabled"] or config["uda"]["feature_distance"]["weight"] > 0:
        raise ValueError(
            "config: train_supervised trains on the target's labels without DAFormer's source-side "
            "methods: set uda.rcs.enabled: false and uda.feature_distance.weight: 0"
        )
    check_event_channels()
    seeds = config["train"]["seeds"]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"config: train.seeds has repeated seeds: {seeds}")


def check_pretrain_config():
    data = config["pretrain"]["data"]
    if data["simulated_drives"] and not config["synthetic"]["enabled"]:
        raise ValueError(
            "config: pretrain.data.simulated_drives are synthetic drives (synthetic.enabled: true); "
            "on real data list folders of events.h5 files in pretrain.data.folders"
        )
    if not data["simulated_drives"] and not data["folders"]:
        raise ValueError(
            "config: pretrain_events has no recordings: set pretrain.data.simulated_drives (synthetic "
            "benchmark) or list folders of DSEC-format events.h5 files in pretrain.data.folders"
        )
    test_root = Path(DSEC_ROOT, "test").resolve()
    for folder in data["folders"]:
        path = Path(folder).resolve()
        if path == test_root or test_root in path.parents or path in test_root.parents:
            raise ValueError(
                f"config: pretrain.data.folders lists {folder!r}, which holds the target's test drives "
                f"({test_root}); pre-training must never see them"
            )
    check_event_channels()


def check_cmda_config():
    """pipeline: cmda trains on RGB Cityscapes with 19 classes; the parts of HPL-ESS it does not have are off."""
    if config["cityscapes"]["classes"] != "cityscapes19" or config["cityscapes"]["grayscale"]:
        raise ValueError(
            "config: pipeline cmda trains on RGB Cityscapes with its 19 classes: set cityscapes.classes: "
            "cityscapes19 and cityscapes.grayscale: false"
        )
    if config["uda"]["feature_distance"]["weight"] > 0:
        raise ValueError(
            "config: CMDA trains without DAFormer's ImageNet feature distance, and evseg's CMDA step has "
            "none: set uda.feature_distance.weight: 0"
        )
    if config["model"]["backbone"] not in [f"mit_b{i}" for i in range(6)]:
        raise ValueError(
            f"config: CMDA fuses MiT stages: model.backbone must be mit_b0 ... mit_b5, not "
            f"{config['model']['backbone']!r}"
        )
    style = config["cmda"]["style_transfer"]
    if style["enabled"] and not style["checkpoint"]:
        raise ValueError(
            "config: cmda.style_transfer.enabled needs cmda.style_transfer.checkpoint, CMDA's "
            "cityscapes_ICD_to_dsec_EN.pth (placed by hand), or set enabled: false"
        )
    height, width = config["dsec_night"]["sensor_size"]
    crop_h, crop_w = config["cmda"]["target_crop"]
    if crop_h > height or crop_w > width or config["dsec_night"]["eval_height"] > height:
        raise ValueError(
            f"config: cmda.target_crop {[crop_h, crop_w]} and dsec_night.eval_height "
            f"({config['dsec_night']['eval_height']}) must fit the sensor {[height, width]}"
        )
    seeds = config["train"]["seeds"]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"config: train.seeds has repeated seeds: {seeds}")


def check_hpl_ess_config():
    recon = config["reconstruct"]
    if recon["train"]["enabled"]:
        if recon["method"] != "e2vid" or recon["checkpoint"]:
            raise ValueError(
                "config: reconstruct.train.enabled trains an E2VID network, so reconstruct.method must be "
                f"'e2vid' (not {recon['method']!r}) and reconstruct.checkpoint must be empty (not "
                f"{recon['checkpoint']!r}); disable reconstruct.train to load a checkpoint instead"
            )
        if not config["synthetic"]["enabled"]:
            raise ValueError(
                "config: reconstruct.train.enabled needs simulated drives with ground-truth frames, "
                "which only the synthetic benchmark has (synthetic.enabled: true); on real data use "
                "the official E2VID_lightweight.pth.tar through reconstruct.checkpoint"
            )
    elif recon["method"] in ("e2vid", "firenet") and not recon["checkpoint"]:
        raise ValueError(
            f"config: reconstruct.method is {recon['method']!r} but reconstruct.checkpoint is empty. "
            "E2VID: download http://rpg.ifi.uzh.ch/data/E2VID/models/E2VID_lightweight.pth.tar; "
            "FireNet: place firenet_1000.pth.tar (Google Drive link in the FireNet README) by hand; "
            "then set reconstruct.checkpoint to its path. The training-free method is 'highpass'."
        )
    if recon["fixed_rate_hz"] > 0 and recon["mode"] != "stream":
        raise ValueError(
            "config: reconstruct.fixed_rate_hz needs reconstruct.mode: stream (per_sample "
            "reconstructs only at the label times)"
        )
    expected_classes = {"ess11": 11, "cityscapes19": 19}[config["cityscapes"]["classes"]]
    if expected_classes != config["dsec"]["num_classes"]:
        raise ValueError(
            f"config: cityscapes.classes is {config['cityscapes']['classes']!r} ({expected_classes} "
            f"classes) but dsec.num_classes is {config['dsec']['num_classes']}; source and target must "
            "use the same classes (ess11 with 11, cityscapes19 with 19)"
        )
    seeds = config["train"]["seeds"]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"config: train.seeds has repeated seeds: {seeds}")
    check_event_channels()
    if not config["cityscapes"]["grayscale"] and not (
        config["train"]["input"]["target"] == "reconstruction"
        or config["train"]["input"]["sum_event_channels"]
    ):
        raise ValueError(
            "config: RGB source images (cityscapes.grayscale: false) need a 1-channel target input "
            "(reconstruction, or sum_event_channels: true), which is repeated to 3 channels; a voxel "
            "grid's channels cannot be mixed with RGB"
        )
    refines = "semi" in config["evaluate"]["models"]  # the SeCo stages run only for train_semi
    sam = config["psa"]["sam"]
    uses_sam = refines and config["psa"]["backend"] == "sam"
    if uses_sam and sam["train"]["enabled"] and sam["checkpoint"]:
        raise ValueError(
            "config: psa.sam.train.enabled trains the SAM that psa loads, so psa.sam.checkpoint must be "
            f"empty (not {sam['checkpoint']!r}); disable psa.sam.train to load a checkpoint instead"
        )
    if uses_sam and sam["train"]["enabled"] and not recon["train"]["enabled"]:
        raise ValueError(
            "config: psa.sam.train.enabled trains a SAM on the reconstructions of the simulated drives, "
            "which only exist with reconstruct.train.enabled true (the synthetic benchmark); on real data "
            "use the official sam_vit_h_4b8939.pth through psa.sam.checkpoint"
        )
    if uses_sam and not sam["train"]["enabled"] and sam["variant"] == "vit_demo":
        raise ValueError(
            "config: psa.sam.variant 'vit_demo' is the demo's small SAM, which only the train_sam "
            "step makes; set psa.sam.train.enabled true, or use an official variant (vit_b, vit_l, "
            "vit_h) with its file"
        )
    if config["scc"]["pretrain"]["enabled"] and config["scc"]["pretrained"]:
        raise ValueError(
            "config: scc.pretrain.enabled trains the region classifier's initial weights on the source "
            f"regions, and scc.pretrained ({config['scc']['pretrained']!r}) loads them from a file: "
            "set one of them (the released code: an ImageNet file in scc.pretrained)"
        )
    if uses_sam and not sam["checkpoint"] and not sam["train"]["enabled"]:
        raise ValueError(
            "config: psa.backend is 'sam' but psa.sam.checkpoint is empty. Download "
            "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth (or the vit_b/vit_l "
            "file matching psa.sam.variant) and set psa.sam.checkpoint to its path; "
            "psa.backend: superpixels needs no weights"
        )
    height, width = config["dsec"]["sensor_size"]
    if config["dsec"]["label_height"] > height:
        raise ValueError(
            f"config: dsec.label_height ({config['dsec']['label_height']}) exceeds the sensor "
            f"height ({height}); DSEC: 440 of 480"
        )


check_config()


wildcard_constraints:
    split="train|test|simulated",
    seq="[A-Za-z0-9_]+",
    model="uda|source_only|semi|supervised|supervised_ecddp",
    supervised="supervised|supervised_ecddp",
    cmda_model="source_only|fusion_source_only|image_only|fusion|fusion_l2_[a-z_+]+",
    seed="[0-9]+",


def dsec_sequences():
    """(split, sequence) pairs of the target dataset."""
    return [(split, seq) for split in SPLITS for seq in config["dsec"]["sequences"][split]]


def synthetic_seed(name):
    """A seed per synthetic item (e.g. "dsec/train/synth_00_a") that does not change when other items
    are added or removed."""
    return (
        config["synthetic"]["seed"] * 1_000_003 + sum(ord(c) * 131**i for i, c in enumerate(name))
    ) % 2**32


def cityscapes_seeds():
    return {
        split: synthetic_seed(f"cityscapes/{split}")
        for split in config["synthetic"]["cityscapes"]["images"]
    }


def config_subset(section, *keys):
    """Only the keys a stage uses: params trigger reruns, so editing another key must not reach it."""
    return {key: config[section][key] for key in keys}


def resources_of(rule_name):
    return config["resources"][rule_name]


TRAINED_RECONSTRUCTION = f"{RESULTS}/train_reconstruction/e2vid.pth.tar"
TRAINED_SAM = f"{RESULTS}/train_sam/sam_{config['psa']['sam']['variant']}.pth"
TRAINED_REGION_CLASSIFIER = f"{RESULTS}/train_region_classifier/{config['scc']['backbone']}.pth"


def simulated_drives(count=None):
    """The drives synthesized only to train the reconstruction network (or the first ``count``)."""
    count = config["reconstruct"]["train"]["drives"] if count is None else count
    return [f"{SYNTH}/dsec/simulated/sim_{i:02d}" for i in range(count)]


def pretrain_recordings():
    """pretrain_events reads the simulated drives it asks for and the configured folders."""
    data = config["pretrain"]["data"]
    return simulated_drives(data["simulated_drives"]) + list(data["folders"])


def supervised_inputs(wildcards):
    """train_supervised: the target's labelled training drives; supervised_ecddp starts from pretrain_events,
    supervised from model.pretrained (random initialisation when it is empty)."""
    inputs = {"sequences": target_sequences("train")}
    if wildcards.supervised == "supervised_ecddp":
        inputs["pretrained"] = PRETRAINED_EVENTS
    elif config["model"]["pretrained"]:
        inputs["pretrained"] = config["model"]["pretrained"]
    return inputs


def _with_checkpoint(inputs):
    if config["reconstruct"]["train"]["enabled"]:
        inputs["checkpoint"] = TRAINED_RECONSTRUCTION
    elif config["reconstruct"]["method"] != "highpass":
        inputs["checkpoint"] = config["reconstruct"]["checkpoint"]
    return inputs


def reconstruct_inputs(wildcards):
    return _with_checkpoint({"sequences": f"{DSEC_ROOT}/{wildcards.split}/{wildcards.seq}"})


def reconstructed_splits():
    """The splits that are reconstructed (train, test), and the simulated drives when a SAM is trained
    on their reconstructions (psa.sam.train)."""
    return SPLITS + (("simulated",) if config["psa"]["sam"]["train"]["enabled"] else ())


def sequences_of(split):
    if split == "simulated":
        return [os.path.basename(drive) for drive in simulated_drives()]
    return config["dsec"]["sequences"][split]


def reconstruct_inputs_of_split(split):
    """Inputs of the batched job of one split (all its sequences), as an input function."""
    sequences = [f"{DSEC_ROOT}/{split}/{seq}" for seq in sequences_of(split)]
    return lambda wildcards: _with_checkpoint({"sequences": sequences})


def reconstruct_outputs():
    return [f"{RESULTS}/reconstruct/{split}/{seq}.png" for split, seq in dsec_sequences()]


def inspect_outputs():
    pictures = [f"{RESULTS}/inspect/{split}/{seq}.png" for split, seq in dsec_sequences()]
    return pictures + [f"{RESULTS}/inspect/cityscapes.png", f"{RESULTS}/inspect/summary.csv"]


DSEC_PARAMS = config_subset(
    "dsec", "num_classes", "label_layout", "sensor_size", "label_height", "ess"
)


def target_sequences(split):
    return [f"{DSEC_ROOT}/{split}/{seq}" for seq in config["dsec"]["sequences"][split]]


def reconstruction_folders(split):
    return [f"{RESULTS}/reconstruct/{split}/{seq}" for seq in config["dsec"]["sequences"][split]]


def train_inputs(adapt):
    """Inputs of train_uda (adapt) or train_source_only, as an input function."""
    inputs = {"cityscapes": CITYSCAPES_ROOT}
    if config["model"][
        "pretrained"
    ]:  # an input, so that a missing file stops the run before it starts
        inputs["pretrained"] = config["model"]["pretrained"]
    if adapt:
        inputs["sequences"] = target_sequences("train")
        hybrid = config["uda"]["hybrid"]["enabled"]
        if hybrid:
            inputs["hybrid"] = f"{RESULTS}/sample/hybrid.txt"
        if hybrid or config["train"]["input"]["target"] == "reconstruction":
            inputs["reconstructions"] = reconstruction_folders("train")
    return lambda wildcards: inputs


def train_params(wildcards):
    """The train section for one seed (the list of seeds itself must not trigger reruns)."""
    params = {key: value for key, value in config["train"].items() if key != "seeds"}
    return {**params, "seed": int(wildcards.seed)}


def all_outputs():
    """The targets of the whole run: each pipeline's results."""
    if PIPELINE == "cmda":
        return cmda_outputs()
    if PIPELINE == "ecddp":
        return ecddp_outputs()
    return [
        inspect_outputs(),
        reconstruct_outputs(),
        f"{RESULTS}/evaluate/summary.csv",
        report_figure_outputs().values(),
    ]


def ecddp_outputs():
    """Rule all of pipeline ecddp: every model's test mIoU, the report figures and, when the run pre-trains,
    the picture of what pre-training learned."""
    outputs = [f"{RESULTS}/evaluate/summary.csv", *report_figure_outputs().values()]
    if uses_pretraining():
        outputs.append(f"{RESULTS}/pretrain_events/similarity.png")
    return outputs


def evaluate_outputs():
    return [
        f"{RESULTS}/evaluate/{model}/seed{seed}/metrics.json"
        for model in config["evaluate"]["models"]
        for seed in config["train"]["seeds"]
    ]


def summary_inputs(wildcards):
    """Every evaluated model, and the pseudo-label quality after each refinement step when semi is run."""
    inputs = {"metrics": evaluate_outputs()}
    if "semi" in config["evaluate"]["models"]:
        inputs["pseudo_labels"] = f"{RESULTS}/pseudo_label/quality.json"
        inputs["psa"] = f"{RESULTS}/psa/quality.json"
        inputs["scc"] = f"{RESULTS}/scc/quality.json"
    return inputs


def refinement_quality_inputs():
    """SCC's quality.json (its per-class outcomes) for the report, when the refinement runs."""
    if "semi" in config["evaluate"]["models"]:
        return {"scc": f"{RESULTS}/scc/quality.json"}
    return {}


def report_figure_outputs():
    """The report's figures: training curves and per-class IoU, and the pseudo-label quality with refinement."""
    figures = {
        "curves": report(
            f"{RESULTS}/report/training_curves.png",
            caption=f"{workflow.basedir}/report/training_curves.rst",
            category="Training",
        ),
        "per_class": report(
            f"{RESULTS}/report/per_class_iou.png",
            caption=f"{workflow.basedir}/report/per_class_iou.rst",
            category="Evaluation",
        ),
    }
    if "semi" in config["evaluate"]["models"]:
        figures["pseudo_labels"] = report(
            f"{RESULTS}/report/pseudo_label_quality.png",
            caption=f"{workflow.basedir}/report/pseudo_label_quality.rst",
            category="Pseudo-labels",
        )
    return figures


def psa_inputs(wildcards):
    inputs = {
        "sequences": target_sequences("train"),
        "reconstructions": reconstruction_folders("train"),
        "pseudo_labels": [
            f"{RESULTS}/pseudo_label/train/{seq}" for seq in config["dsec"]["sequences"]["train"]
        ],
    }
    if config["psa"]["backend"] == "sam":
        sam = config["psa"]["sam"]
        inputs["checkpoint"] = TRAINED_SAM if sam["train"]["enabled"] else sam["checkpoint"]
    return inputs


def scc_inputs(wildcards):
    train = config["dsec"]["sequences"]["train"]
    inputs = {
        "sequences": target_sequences("train"),
        "reconstructions": reconstruction_folders("train"),
        "psa": [f"{RESULTS}/psa/train/{seq}" for seq in train],
        "pseudo_labels": [f"{RESULTS}/pseudo_label/train/{seq}" for seq in train],
    }
    if config["scc"]["pretrain"]["enabled"]:
        inputs["pretrained"] = TRAINED_REGION_CLASSIFIER
    elif config["scc"]["pretrained"]:
        inputs["pretrained"] = config["scc"]["pretrained"]
    return inputs


def semi_inputs(wildcards):
    """train_semi starts from the same seed's adapted model and reads the split and the SCC labels."""
    inputs = {
        "model": f"{RESULTS}/train/uda/seed{wildcards.seed}/model.pt",
        "labeled": f"{RESULTS}/split/labeled.txt",
        "unlabeled": f"{RESULTS}/split/unlabeled.txt",
        "labels": [f"{RESULTS}/scc/train/{seq}" for seq in config["dsec"]["sequences"]["train"]],
        "sequences": target_sequences("train"),
    }
    if config["train"]["input"]["target"] == "reconstruction":
        inputs["reconstructions"] = reconstruction_folders("train")
    if config["semi"]["source_weight"] > 0:
        inputs["cityscapes"] = CITYSCAPES_ROOT
    return inputs


def semi_source_params():
    """The source settings train_semi reads, only when it trains on source crops (else no rerun on their edits)."""
    if config["semi"]["source_weight"] > 0:
        return {
            "classes": config["cityscapes"]["classes"],
            "resize": config["train"]["source_resize"],
        }
    return {}


def checkpoint_paths():
    """Every weights file the config names (empty settings left out)."""
    sections = ("model", "pretrained"), ("reconstruct", "checkpoint"), ("scc", "pretrained")
    named = [config[section][key] for section, key in sections]
    named += [config["psa"]["sam"]["checkpoint"], config["cmda"]["style_transfer"]["checkpoint"]]
    return [path for path in named if path]


def weights_entry(wildcards):
    return weights([wildcards.checkpoint])[wildcards.checkpoint].as_dict()


def manual_source(wildcards):
    return placed_by_hand([wildcards.manual])[wildcards.manual]


def download_entries():
    """Archive name (under download.archives) -> manifest entry, for everything this config may fetch."""
    if PIPELINE == "cmda":
        entries = archives({}, False, list(config["dsec_night"]["sequences"]))
    else:
        sequences = {split: config["dsec"]["sequences"][split] for split in SPLITS}
        entries = archives(sequences, config["download"]["dsec_images"])
    return {name: entry.as_dict() for name, entry in entries.items()}


def cityscapes_archive_inputs():
    """CMDA's Image Motion-Extractor also needs leftImg8bit_sequence."""
    return [f"{DOWNLOADS}/{name}" for name in cityscapes_archives(PIPELINE == "cmda")]


def archive(path):
    """Archives are deleted once unpacked unless download.keep_archives."""
    return path if config["download"]["keep_archives"] else temp(path)


def missing(paths):
    return [path for path in paths if not os.path.exists(path)]


def missing_sequences():
    """The configured DSEC sequences whose folder is not there yet."""
    return [
        seq
        for split in SPLITS
        for seq in config["dsec"]["sequences"][split]
        if not os.path.exists(f"{DSEC_ROOT}/{split}/{seq}")
    ]


def alternatives(names):
    """A wildcard constraint that matches exactly these strings (never-matching when empty)."""
    return "|".join(re.escape(name) for name in names) or "(?!)"


def dsec_sequence_inputs(wildcards):
    names = dsec_archive_names(wildcards.split, wildcards.seq, config["download"]["dsec_images"])
    return {role: f"{DOWNLOADS}/{name}" for role, name in names.items()}


# --------------------------------------------------------------------------------------------------------
# pipeline: cmda

DSEC_NIGHT_ROOT = os.path.normpath(config["dsec_night"]["root"])


def cmda_models():
    """The configured models, then one fusion_l2_<variant> per entry of the L2 study."""
    return list(config["cmda"]["models"]) + [f"fusion_l2_{v}" for v in config["cmda"]["l2_study"]]


def cmda_variant(wildcards):
    """What the model's name means: an event branch, adaptation, and the L2 variant."""
    name = wildcards.cmda_model
    if name.startswith("fusion_l2_"):
        return {"events": True, "adapt": True, "l2": name.removeprefix("fusion_l2_")}
    released = config["cmda"]["l2"]["variant"]
    return {
        "fusion": {"events": True, "adapt": True, "l2": released},
        "image_only": {"events": False, "adapt": True, "l2": "none"},
        "source_only": {"events": False, "adapt": False, "l2": "none"},
        "fusion_source_only": {"events": True, "adapt": False, "l2": released},
    }[name]


def night_sequences():
    return [f"{DSEC_NIGHT_ROOT}/{seq}" for seq in config["dsec_night"]["sequences"]]


def train_cmda_inputs(wildcards):
    variant = cmda_variant(wildcards)
    inputs = {"cityscapes": CITYSCAPES_ROOT}
    if config["model"]["pretrained"]:
        inputs["pretrained"] = config["model"]["pretrained"]
    if variant["adapt"]:
        inputs["sequences"] = night_sequences()
    if variant["events"] and config["cmda"]["style_transfer"]["enabled"]:
        inputs["style"] = config["cmda"]["style_transfer"]["checkpoint"]
    return inputs


CMDA_PARAMS = {
    key: value for key, value in config["cmda"].items() if key not in ("models", "l2_study")
}


def cmda_evaluate_outputs():
    return [
        f"{RESULTS}/cmda/evaluate/{model}/seed{seed}/metrics.json"
        for model in cmda_models()
        for seed in config["train"]["seeds"]
    ]


def cmda_l2_study_inputs(wildcards):
    """The L2 variants' and the baseline's (fusion) test metrics, and the variants' training logs."""
    seeds, variants = config["train"]["seeds"], config["cmda"]["l2_study"]
    models = ["fusion"] + [f"fusion_l2_{v}" for v in variants]
    return {
        "metrics": [
            f"{RESULTS}/cmda/evaluate/{m}/seed{s}/metrics.json" for m in models for s in seeds
        ],
        "training": [
            f"{RESULTS}/cmda/train/fusion_l2_{v}/seed{s}/metrics.csv"
            for v in variants
            for s in seeds
        ],
    }


def cmda_outputs():
    outputs = [f"{RESULTS}/cmda/summary.csv"]
    if config["cmda"]["l2_study"]:
        outputs += [f"{RESULTS}/cmda/l2_study.csv", f"{RESULTS}/cmda/l2_terms.png"]
    return outputs


NIGHT_ARCHIVE = os.path.normpath(config["download"]["night_archive"])


def missing_night_sequences():
    return [
        seq
        for seq in config["dsec_night"]["sequences"]
        if not os.path.exists(f"{DSEC_NIGHT_ROOT}/{seq}")
    ]


def night_sequence_inputs(wildcards):
    names = night_archive_names(wildcards.seq)
    return {
        **{role: f"{DOWNLOADS}/{name}" for role, name in names.items()},
        "night_archive": NIGHT_ARCHIVE,
    }


def night_archive_source():
    return manifest()["night_archive"]
