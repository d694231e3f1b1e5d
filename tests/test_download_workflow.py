"""The download and unpack rules end to end, against a local server holding archives in the official layouts."""

import zipfile

import cv2
import numpy as np
import pytest
import yaml

from evseg.data.cityscapes import Cityscapes
from evseg.data.dsec import DsecSemantic
from evseg.fetch.http import CHUNK
from tests.conftest import make_dsec_sequence
from tests.http_server import FileServer
from tests.test_workflow import REPO, jobs_of, snakemake

SEQUENCES = {"train": "zurich_city_00_a", "test": "zurich_city_13_a"}  # 13_a lies in DSEC's test folder
E2VID = "data/weights/E2VID_lightweight.pth.tar"


def zip_folder(path, folder, prefix=""):
    with zipfile.ZipFile(path, "w") as zf:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                zf.write(file, prefix + str(file.relative_to(folder)))
    return path.read_bytes()


def official_archives(tmp_path):
    """URL path -> bytes of the archives as the official servers hold them (small contents)."""
    files = {}
    for split, seq in SEQUENCES.items():
        seq_dir = make_dsec_sequence(tmp_path / "src", split, seq, num_labels=10, events_per_ms=60)
        files[f"/dsec/{split}/{seq}/{seq}_events_left.zip"] = zip_folder(tmp_path / f"{seq}_ev.zip",
                                                                       seq_dir / "events/left")
        labels = tmp_path / "labels" / split
        (labels / split / seq).mkdir(parents=True)
        for item in ("11classes", f"{seq}_semantic_timestamps.txt"):
            (seq_dir / item).rename(labels / split / seq / item)
        files[f"/dsec/semantic/{split}_semantic_segmentation.zip"] = zip_folder(tmp_path / f"{split}_l.zip", labels)
        frames = tmp_path / "frames" / seq
        frames.mkdir(parents=True)
        for i in range(3):
            cv2.imwrite(str(frames / f"{i:06d}.png"), np.full((24, 32, 3), 40 * i, np.uint8))
        base = f"/dsec/{split}/{seq}/{seq}"
        files[f"{base}_images_rectified_left.zip"] = zip_folder(tmp_path / f"{seq}_im.zip", frames)
        files[f"{base}_image_timestamps.txt"] = b"1000\n51000\n101000\n"
    city = tmp_path / "cityscapes"
    for split in ("train", "val"):
        stem = f"aachen_000000_{split == 'val':06d}"
        for kind, suffix, value in (("leftImg8bit", "leftImg8bit", 90), ("gtFine", "gtFine_labelIds", 7)):
            folder = city / kind / split / "aachen"
            folder.mkdir(parents=True, exist_ok=True)
            image = np.full((16, 32, 3) if kind == "leftImg8bit" else (16, 32), value, np.uint8)
            cv2.imwrite(str(folder / f"{stem}_{suffix}.png"), image)
    for kind, package in (("gtFine", 1), ("leftImg8bit", 3)):
        folder = tmp_path / f"cs_{kind}"
        folder.mkdir()
        (city / kind).rename(folder / kind)
        (folder / "license.txt").write_text("Cityscapes licence")  # in both archives, as in the official ones
        files[f"/file-handling/?packageID={package}"] = zip_folder(tmp_path / f"{kind}.zip", folder)
    files["/e2vid/E2VID_lightweight.pth.tar"] = b"weights" * 1000
    return files


def download_config(path, url, **download):
    config = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    config.update(
        synthetic={"enabled": False},
        dsec={**config["dsec"], "root": "data/dsec", "sequences": {s: [q] for s, q in SEQUENCES.items()}},
        cityscapes={**config["cityscapes"], "root": "data/cityscapes"},
        reconstruct={**config["reconstruct"], "method": "e2vid", "checkpoint": E2VID, "train": {"enabled": False}},
        psa={"backend": "superpixels", "pictures": 2},  # no simulated drives to train a SAM on, no SAM file
        model={**config["model"], "pretrained": "data/weights/mit_b5.pth"},
        download={"enabled": True, "backoff_s": 0.01, "dsec_images": True, **download,
                  "mirrors": {"https://download.ifi.uzh.ch/rpg/DSEC": url + "/dsec",
                              "https://www.cityscapes-dataset.com": url,
                              "http://rpg.ifi.uzh.ch/data/E2VID/models": url + "/e2vid"}},
    )
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_download_unpack_and_rerun(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # the mirror's login comes from ~/.netrc
    (tmp_path / ".netrc").write_text("machine 127.0.0.1 login alice password s3cret\n")
    (tmp_path / ".netrc").chmod(0o600)
    work = tmp_path / "work"
    work.mkdir()
    data_only = ["--until", "dsec_sequence", "unpack_cityscapes", "download_weights"]  # the README's command
    with FileServer() as server:
        server.files.update(official_archives(tmp_path))
        server.login = ("alice", "s3cret")
        server.protected.update(p for p in server.files if p.startswith("/file-handling"))
        events_path = "/dsec/train/zurich_city_00_a/zurich_city_00_a_events_left.zip"
        assert len(server.files[events_path]) > CHUNK + 1000
        server.cut[events_path] = [CHUNK + 1000]
        server.etag.update({path: f'"{i}"' for i, path in enumerate(server.files)})  # as real servers send
        config = download_config(tmp_path / "config.yaml", server.url)
        snakemake(work, *data_only, "--cores", "2", "--configfile", str(config))

        assert server.gets(events_path) == [None, f"bytes={CHUNK + 1000}-"]  # resumed after the last byte received
        sizes = dict(sensor_size=(24, 32), label_height=22)
        dsec = DsecSemantic(work / "data/dsec", "train", ["zurich_city_00_a"], **sizes)
        assert len(dsec) == 2 and dsec.ess_tensor(0, num_chunks=2, events_per_chunk=50).shape == (10, 22, 32)
        assert DsecSemantic(work / "data/dsec", "test", ["zurich_city_13_a"], **sizes).label(0).shape == (22, 32)
        assert len(Cityscapes(work / "data/cityscapes", "val")) == 1
        assert (work / "data/cityscapes/license.txt").is_file()
        images = work / "data/dsec/test/zurich_city_13_a/images"
        assert sorted(p.name for p in (images / "left/rectified").iterdir()) == [f"{i:06d}.png" for i in range(3)]
        assert (images / "timestamps.txt").read_text().split() == ["1000", "51000", "101000"]
        assert (work / E2VID).read_bytes() == server.files["/e2vid/E2VID_lightweight.pth.tar"]
        assert sorted(p.name for p in (work / "data/downloads").iterdir()) == ["logs"]  # archives deleted

        requests = len(server.requests)
        assert jobs_of(snakemake(work, *data_only, "-n", "--cores", "1", "--configfile", str(config)).stdout) == {}
        snakemake(work, *data_only, "--cores", "1", "--configfile", str(config))
        assert len(server.requests) == requests

        missing = snakemake(work, "data/weights/mit_b5.pth", "--cores", "1", "--configfile", str(config), check=False)
        output = missing.stdout + missing.stderr
        assert missing.returncode != 0 and "cannot be downloaded by a script" in output and "SegFormer" in output

        # how to fetch is not what is fetched: with a kept archive, other settings and mirrors rerun nothing
        kept = download_config(tmp_path / "kept.yaml", server.url, keep_archives=True)
        timestamps = "data/downloads/dsec/test/zurich_city_13_a_image_timestamps.txt"
        snakemake(work, timestamps, "--cores", "1", "--configfile", str(kept))
    other = download_config(tmp_path / "other.yaml", "http://127.0.0.1:9", keep_archives=True, retries=1, timeout_s=7)
    assert jobs_of(snakemake(work, timestamps, "-n", "--cores", "1", "--configfile", str(other)).stdout) == {}
    assert jobs_of(snakemake(work, *data_only, "-n", "--cores", "1", "--configfile", str(other)).stdout) == {}
    # present data and hand-placed weights are inputs, not outputs: -F cannot delete them to fetch them again
    (work / "data/weights/mit_b5.pth").write_bytes(b"placed by hand")
    forced = jobs_of(snakemake(work, "-F", "-n", "--cores", "1", "--configfile", str(other)).stdout)
    assert "train_uda" in forced and not set(forced) & DATA_RULES


PAPER_CONFIGS = ["hpl_ess_dsec.yaml", "seco_unimatch_dsec.yaml"]
DATA_RULES = {"download", "download_weights", "place_by_hand", "unpack_dsec_labels", "dsec_sequence",
              "unpack_cityscapes"}


def fake_real_tree(work, config):
    """Empty files and folders where the real datasets and weights go: enough for a dry run."""
    for split, names in config["dsec"]["sequences"].items():
        for seq in names:
            seq_dir = work / config["dsec"]["root"] / split / seq
            (seq_dir / "events/left").mkdir(parents=True)
            (seq_dir / "11classes").mkdir()
            for name in ("events/left/events.h5", "events/left/rectify_map.h5", f"{seq}_semantic_timestamps.txt"):
                (seq_dir / name).touch()
    for kind in ("leftImg8bit", "gtFine") if "cityscapes" in config else ():
        (work / config["cityscapes"]["root"] / kind / "train").mkdir(parents=True)
    for path in (config["model"]["pretrained"], config["reconstruct"].get("checkpoint"),
                 config.get("psa", {}).get("sam", {}).get("checkpoint"), config.get("scc", {}).get("pretrained")):
        if path:
            (work / path).parent.mkdir(parents=True, exist_ok=True)
            (work / path).touch()


@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_paper_config_dry_runs(tmp_path, name):
    config_path = REPO / "configs" / name
    config = yaml.safe_load(config_path.read_text())
    empty = snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(config_path)).stdout
    sequences = sum(len(v) for v in config["dsec"]["sequences"].values())
    jobs = jobs_of(empty)
    seco = "semi" in config["evaluate"].get("models", ["semi"])  # the schema default has every model
    assert jobs["download"] == sequences + 2 + 2  # events zips, 2 label archives, 2 Cityscapes packages
    assert jobs["download_weights"] == 1 + 2 * seco  # E2VID (+ SAM ViT-H and SCC's ResNet-101)
    assert jobs["place_by_hand"] == 1 and "data/weights/mit_b5.pth" in empty  # SegFormer's Drive link
    assert jobs["dsec_sequence"] == sequences and jobs["unpack_cityscapes"] == 1
    assert ("train_semi" in jobs) == seco and ("psa" in jobs) == seco
    until = snakemake(tmp_path, "-n", "--cores", "1", "--until", "dsec_sequence", "unpack_cityscapes",
                      "download_weights", "--configfile", str(config_path)).stdout  # the README's data-only command
    assert set(jobs_of(until)) == DATA_RULES - {"place_by_hand"}

    fake_real_tree(tmp_path, config)
    plan = snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(config_path)).stdout
    jobs = jobs_of(plan)
    assert not DATA_RULES & set(jobs)
    assert jobs["train_uda"] == len(config["train"]["seeds"]) and jobs["reconstruct"] == sequences
    assert ({"psa", "scc", "split", "train_semi"} <= set(jobs)) == seco


def test_cmda_paper_config_dry_runs(tmp_path):
    """configs/cmda_dsec_night.yaml: what it fetches, what must be placed by hand, and the training plan once the
    data is in place."""
    config_path = REPO / "configs/cmda_dsec_night.yaml"
    config = yaml.safe_load(config_path.read_text())
    sequences = list(config["dsec_night"]["sequences"])
    empty = snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(config_path)).stdout
    jobs = jobs_of(empty)
    assert jobs["download"] == 3 * len(sequences) + 3  # events, frames, timestamps; 3 Cityscapes packages
    assert "leftImg8bit_sequence_trainvaltest.zip" in empty
    assert jobs["place_by_hand"] == 2 and "mit_b5.pth" in empty and "cityscapes_ICD_to_dsec_EN.pth" in empty
    assert jobs["place_night_archive"] == 1 and jobs["night_sequence"] == len(sequences)
    runs = len(config["cmda"]["models"]) * len(config["train"]["seeds"])
    assert jobs["train_cmda"] == jobs["evaluate_cmda"] == runs == 12

    for seq in sequences:  # the real layout, empty files
        seq_dir = tmp_path / config["dsec_night"]["root"] / seq
        for folder in ("events/left", "images/left/rectified", "warp_images", "labels"):
            (seq_dir / folder).mkdir(parents=True)
        for name in ("events/left/events.h5", "events/left/rectify_map.h5", "images/timestamps.txt"):
            (seq_dir / name).touch()
    for kind in ("leftImg8bit", "gtFine", "leftImg8bit_sequence"):
        (tmp_path / config["cityscapes"]["root"] / kind / "train").mkdir(parents=True)
    for path in (config["model"]["pretrained"], config["cmda"]["style_transfer"]["checkpoint"]):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).touch()
    jobs = jobs_of(snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(config_path)).stdout)
    assert not (DATA_RULES | {"night_sequence", "place_night_archive"}) & set(jobs)
    assert jobs == {"train_cmda": runs, "evaluate_cmda": runs, "cmda_summary": 1, "all": 1}


def test_ecddp_paper_config_dry_runs(tmp_path):
    """configs/ecddp_finetune.yaml: DSEC only (no source), the released checkpoint placed by hand, and the
    supervised fine-tuning plan once the data is in place; asking for evseg's own pre-training adds it."""
    config_path = REPO / "configs/ecddp_finetune.yaml"
    config = yaml.safe_load(config_path.read_text())
    sequences = sum(len(v) for v in config["dsec"]["sequences"].values())
    empty = snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(config_path)).stdout
    jobs = jobs_of(empty)
    assert jobs["download"] == sequences + 2  # events zips and the 2 label archives; no Cityscapes
    assert jobs["place_by_hand"] == 1 and "data/weights/ecddp_swin_t.pth" in empty
    assert "unpack_cityscapes" not in jobs and "pretrain_events" not in jobs

    fake_real_tree(tmp_path, config)
    jobs = jobs_of(snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(config_path)).stdout)
    assert not DATA_RULES & set(jobs)
    assert jobs["train_supervised"] == jobs["evaluate"] == len(config["train"]["seeds"]) == 1
    assert jobs["reconstruct"] == len(config["dsec"]["sequences"]["test"])  # the test panels only

    own = {**config, "evaluate": {"models": ["supervised", "supervised_ecddp"]},
           "pretrain": {"data": {"folders": ["data/dsec/train"]}}}
    own_path = tmp_path / "own.yaml"
    own_path.write_text(yaml.safe_dump(own))
    plan = snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(own_path)).stdout
    jobs = jobs_of(plan)
    assert jobs["pretrain_events"] == 1 and jobs["train_supervised"] == 2
    assert "input: data/dsec/train\n" in plan.split("rule pretrain_events")[1].split("rule ")[0]

    test_folder = {**own, "pretrain": {"data": {"folders": ["data/dsec/test/zurich_city_13_a"]}}}
    own_path.write_text(yaml.safe_dump(test_folder))
    refused = snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(own_path), check=False)
    assert refused.returncode != 0 and "pre-training must never see them" in refused.stdout + refused.stderr
