"""Class tables, the ESS protocol, both DSEC label layouts and the Cityscapes loader."""

import cv2
import numpy as np
import pytest

from evseg.data import CITYSCAPES_19, ESS_11, Cityscapes, DsecSemantic, ess_label_indices, ess_num_samples
from evseg.data.classes import LABELID_TO_ESS11, LABELID_TO_TRAIN19, TRAIN19_TO_ESS11_LUT
from tests.conftest import T_OFFSET, make_dsec_sequence

# The mappings written out by name (reference §1.8), independently of evseg.data.classes.
CITYSCAPES_NAME_TO_ESS11 = {
    "road": "road", "sidewalk": "sidewalk", "building": "building", "wall": "wall", "fence": "fence",
    "pole": "pole", "traffic light": "traffic sign", "traffic sign": "traffic sign", "vegetation": "vegetation",
    "terrain": "vegetation", "sky": "background", "person": "person", "rider": "person", "car": "car",
    "truck": "car", "bus": "car", "train": "car", "motorcycle": "car", "bicycle": "car",
}
CITYSCAPES_LABEL_IDS = {  # name -> labelId, from Cityscapes' labels.py
    "unlabeled": 0, "ego vehicle": 1, "rectification border": 2, "out of roi": 3, "static": 4, "dynamic": 5,
    "ground": 6, "road": 7, "sidewalk": 8, "parking": 9, "rail track": 10, "building": 11, "wall": 12,
    "fence": 13, "guard rail": 14, "bridge": 15, "tunnel": 16, "pole": 17, "polegroup": 18,
    "traffic light": 19, "traffic sign": 20, "vegetation": 21, "terrain": 22, "sky": 23, "person": 24,
    "rider": 25, "car": 26, "truck": 27, "bus": 28, "caravan": 29, "trailer": 30, "train": 31,
    "motorcycle": 32, "bicycle": 33,
}


def test_label_tables():
    for name, label_id in CITYSCAPES_LABEL_IDS.items():
        if name in CITYSCAPES_NAME_TO_ESS11:
            assert CITYSCAPES_19.names[LABELID_TO_TRAIN19[label_id]] == name
            assert ESS_11.names[LABELID_TO_ESS11[label_id]] == CITYSCAPES_NAME_TO_ESS11[name]
            assert TRAIN19_TO_ESS11_LUT[LABELID_TO_TRAIN19[label_id]] == LABELID_TO_ESS11[label_id]
        else:
            assert LABELID_TO_TRAIN19[label_id] == 255 and LABELID_TO_ESS11[label_id] == 255
    assert LABELID_TO_TRAIN19[34] == -1  # not a Cityscapes id: an error, not silently ignored
    assert CITYSCAPES_19.num_classes == 19 and ESS_11.num_classes == 11
    assert ESS_11.palette[0] == (0, 0, 0) and ESS_11.palette[10] == (220, 220, 0)


def test_ess_counting_rule():
    for n in range(0, 60):
        brute = len([i for i in range(n) if i >= 6 and (i - 6) % 2 == 0])
        assert ess_num_samples(n) == brute == len(ess_label_indices(n))
    # DSEC-Semantic test: 2,809 labels over 3 sequences, so sum(N - 6) = 2,791. The protocol gives
    # sum(ceil((N - 6) / 2)) = (2,791 + number of odd N - 6) / 2: 1,397 (HPL-ESS's log) exactly when all three
    # N - 6 are odd, 1,396 otherwise. The per-sequence counts are not in our notes; any odd split shows the rule.
    for counts in [(385, 1193, 1231), (1001, 1001, 807)]:
        assert sum(counts) == 2809
        assert sum(ess_num_samples(n) for n in counts) == 1397
    assert sum(ess_num_samples(n) for n in (386, 1192, 1231)) == 1396


@pytest.mark.parametrize("layout", ["raw", "ess", "ess_readme"])
def test_dsec_layouts_and_protocol(tmp_path, layout):
    make_dsec_sequence(tmp_path, "test", "seq_a", 15, layout=layout)
    make_dsec_sequence(tmp_path, "test", "seq_b", 8, layout=layout, seed=1)
    data = DsecSemantic(tmp_path, "test", ["seq_a", "seq_b"], sensor_size=(24, 32), label_height=22)
    assert data.sequences["seq_a"].layout == layout
    assert data.ids == [f"seq_a/{i:06d}" for i in (6, 8, 10, 12, 14)] + ["seq_b/000006"]
    assert data.timestamp_us(1) == T_OFFSET + 100_000 + 50_000 * 8
    assert data.label(1).shape == (22, 32) and np.all(data.label(1) == 8)
    x, y, t, p = data.events_in_window(0, 50_000)
    assert np.all(t < data.timestamp_us(0)) and np.all(t >= data.timestamp_us(0) - 50_000) and len(t) > 500
    np.testing.assert_allclose(x[:20] + 0.7, np.rint(x[:20] + 0.7))  # rectified through the map
    tensor = data.ess_tensor(0, num_chunks=4, events_per_chunk=100, bins_per_chunk=3)
    assert tensor.shape == (12, 22, 32)
    data.close()


def test_cityscapes_loader(tmp_path):
    city = "testcity"
    for split in ("train",):
        for i, value in enumerate((7, 23, 1)):
            stem = f"{city}_{i:06d}_000019"
            (tmp_path / "leftImg8bit" / split / city).mkdir(parents=True, exist_ok=True)
            (tmp_path / "gtFine" / split / city).mkdir(parents=True, exist_ok=True)
            rgb = np.zeros((4, 6, 3), np.uint8)
            rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50  # R, G, B
            cv2.imwrite(str(tmp_path / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png"), rgb[..., ::-1])
            cv2.imwrite(str(tmp_path / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png"),
                        np.full((4, 6), value, np.uint8))
    data = Cityscapes(tmp_path, "train", classes="ess11", grayscale=True)
    assert data.ids[0] == "testcity/testcity_000000_000019"
    assert [int(data.label(i)[0, 0]) for i in range(3)] == [5, 0, 255]  # road, sky -> background, ego vehicle
    assert int(data.image(0)[0, 0]) == round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)
    rgb = Cityscapes(tmp_path, "train", classes="cityscapes19").image(0)
    assert rgb.shape == (4, 6, 3) and tuple(rgb[0, 0]) == (200, 100, 50)
    assert [int(Cityscapes(tmp_path, classes="cityscapes19").label(i)[0, 0]) for i in range(3)] == [0, 10, 255]


def test_ess_tensor_against_raw_events(tmp_path):
    import h5py

    from tests.test_representations import brute_voxel

    seq = make_dsec_sequence(tmp_path, "test", "seq", 9, sensor=(12, 16), label_height=11, events_per_ms=2)
    data = DsecSemantic(tmp_path, "test", ["seq"], sensor_size=(12, 16), label_height=11)
    with h5py.File(seq / "events/left/events.h5") as f:  # everything in memory, no slicer
        x, y, t = f["events/x"][()], f["events/y"][()], f["events/t"][()].astype(np.int64) + T_OFFSET
        p = f["events/p"][()]
    before = np.nonzero(t < data.timestamp_us(1))[0][-4 * 26 :]  # the last 104 events before label 8
    x_rect, y_rect = x[before] - 0.7, y[before] + 0.3  # the map make_dsec_sequence writes
    t, p = t[before], p[before]
    tensor = data.ess_tensor(1, num_chunks=4, events_per_chunk=26, bins_per_chunk=3)
    assert tensor.shape == (12, 11, 16)
    for chunk in range(4):  # oldest chunk first, each a 3-bin grid cropped to the 11 label rows
        s = slice(chunk * 26, (chunk + 1) * 26)
        expected = brute_voxel(x_rect[s].astype(float), y_rect[s].astype(float), t[s], p[s], 3, 12, 16)[:, :11]
        np.testing.assert_allclose(tensor[3 * chunk : 3 * chunk + 3], expected, atol=1e-5)
    data.close()
