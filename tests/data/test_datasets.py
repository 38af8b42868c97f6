"""SYSU-MM01 and RegDB parsing, the official gallery draw, and bad-input errors."""
import os
import random

import pytest
from conftest import SYSU_COUNTS, SYSU_TEST_IDS, SYSU_TRAIN_IDS, SYSU_VAL_IDS

from vireid_plugins.data import read_image
from vireid_plugins.data.datasets import INFRARED, SYSUMM01, VISIBLE, DatasetLayoutError, RegDB


def official_gallery(data_path, mode, trial, test_ids):
    """Port of process_gallery_sysu (Cross-Modal-Re-ID-baseline data_manager.py), the oracle."""
    random.seed(trial)
    rgb_cameras = ["cam1", "cam2", "cam4", "cam5"] if mode == "all" else ["cam1", "cam2"]
    ids = ["%04d" % x for x in test_ids]
    files_rgb = []
    for pid in sorted(ids):
        for cam in rgb_cameras:
            img_dir = os.path.join(data_path, cam, pid)
            if os.path.isdir(img_dir):
                new_files = sorted([img_dir + "/" + i for i in os.listdir(img_dir)])
                files_rgb.append(random.choice(new_files))
    return files_rgb


def _count(pids, cams):
    return sum(n for (pid, cam), n in SYSU_COUNTS.items() if pid in pids and cam in cams)


def test_sysu_splits_and_items(sysu_root):
    ds = SYSUMM01(root=str(sysu_root))
    train_ids = set(SYSU_TRAIN_IDS + SYSU_VAL_IDS)
    assert {it[1] for it in ds.train} == train_ids
    assert len(ds.train) == _count(train_ids, range(1, 7))
    assert len(ds.query) == _count(SYSU_TEST_IDS, (3, 6))
    assert {it[2] for it in ds.query} <= {3, 6} and all(it[3] == INFRARED for it in ds.query)
    for path, pid, camid, modality in ds.train + ds.query + ds.gallery:
        assert all(type(v) is int for v in (pid, camid, modality))
        assert modality == (INFRARED if camid in (3, 6) else VISIBLE)
        assert f"cam{camid}/{pid:04d}/" in path


@pytest.mark.parametrize("mode", ["all", "indoor"])
@pytest.mark.parametrize("trial", [0, 1, 7])
def test_sysu_gallery_matches_official_draw(sysu_root, mode, trial):
    ds = SYSUMM01(root=str(sysu_root))
    expected = official_gallery(str(sysu_root / "SYSU-MM01"), mode, trial, SYSU_TEST_IDS)
    got = ds.sample_gallery(mode, trial)
    assert [os.path.normpath(it[0]) for it in got] == [os.path.normpath(p) for p in expected]
    cams = (1, 2, 4, 5) if mode == "all" else (1, 2)
    assert len(got) == sum(1 for (pid, cam) in SYSU_COUNTS if pid in SYSU_TEST_IDS and cam in cams)


def test_sysu_gallery_pool_and_multishot(sysu_root):
    ds = SYSUMM01(root=str(sysu_root), shot="multi")
    pool = {it[0] for it in ds.gallery_pool(("all", "indoor"))}
    assert len(pool) == _count(SYSU_TEST_IDS, (1, 2, 4, 5))
    for trial in range(3):
        multi = ds.sample_gallery("all", trial, "multi")
        assert {it[0] for it in multi} == pool  # < 10 images per (id, cam): every image is taken
    trials = ds.trial_galleries(("all", "indoor"), 2)
    assert set(trials) == {"all", "indoor"} and len(trials["all"]) == 2
    assert all({it[0] for it in g} <= pool for g in trials["indoor"])


def test_sysu_root_can_be_the_dataset_folder(sysu_root):
    assert len(SYSUMM01(root=str(sysu_root / "SYSU-MM01")).train) == len(SYSUMM01(root=str(sysu_root)).train)


def test_sysu_errors_name_the_path(sysu_root, tmp_path):
    with pytest.raises(DatasetLayoutError, match="nowhere"):
        SYSUMM01(root=str(tmp_path / "nowhere"))
    os.remove(sysu_root / "SYSU-MM01" / "exp" / "val_id.txt")
    with pytest.raises(DatasetLayoutError, match=r"missing id file.*val_id\.txt"):
        SYSUMM01(root=str(sysu_root))
    (sysu_root / "SYSU-MM01" / "exp" / "val_id.txt").write_text("5\n")
    os.rename(sysu_root / "SYSU-MM01" / "cam6", sysu_root / "SYSU-MM01" / "cam6_moved")
    with pytest.raises(DatasetLayoutError, match=r"missing camera folder.*cam6"):
        SYSUMM01(root=str(sysu_root))
    os.rename(sysu_root / "SYSU-MM01" / "cam6_moved", sysu_root / "SYSU-MM01" / "cam6")
    (sysu_root / "SYSU-MM01" / "exp" / "test_id.txt").write_text("7;8\n")
    with pytest.raises(DatasetLayoutError, match=r"comma-separated.*test_id\.txt"):
        SYSUMM01(root=str(sysu_root))
    with pytest.raises(ValueError, match="search mode"):
        SYSUMM01(root=str(sysu_root / "SYSU-MM01"), mode="outdoor")


def test_unreadable_image_names_the_path(sysu_root):
    bad = sysu_root / "SYSU-MM01" / "cam1" / "0001" / "0001.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(OSError, match="0001/0001.jpg"):
        read_image(str(bad))
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        read_image(str(sysu_root / "missing.jpg"))


def test_regdb_trials_and_modes(regdb_root):
    ds = RegDB(root=str(regdb_root), trial=1)
    assert len(ds.train) == 12 and {it[3] for it in ds.train} == {VISIBLE, INFRARED}
    assert {it[1] for it in ds.train} == {0, 1, 2}
    assert all("/Thermal/" in it[0] for it in ds.train if it[3] == INFRARED)
    assert all(it[2] == (1 if it[3] == VISIBLE else 2) for it in ds.train + ds.query + ds.gallery)
    assert ds.query == ds.test_visible and ds.gallery == ds.test_thermal
    t2v = RegDB(root=str(regdb_root), trial=2, mode="t2v")
    assert t2v.query == t2v.test_thermal and "/4/" in t2v.train[0][0]
    with pytest.raises(ValueError, match="1..10"):
        RegDB(root=str(regdb_root), trial=11)


def test_regdb_errors_name_the_path(regdb_root):
    idx = regdb_root / "RegDB" / "idx"
    os.remove(idx / "test_thermal_2.txt")
    with pytest.raises(DatasetLayoutError, match=r"test_thermal_2\.txt"):
        RegDB(root=str(regdb_root), trial=2)
    (idx / "train_visible_1.txt").write_text("Visible/1/p_v_1_0.bmp\n")
    with pytest.raises(DatasetLayoutError, match=r"line 1 .*'<relative path> <label>'"):
        RegDB(root=str(regdb_root), trial=1)
    (idx / "train_visible_1.txt").write_text("Visible/9/nothing.bmp 0\n")
    with pytest.raises(DatasetLayoutError, match=r"Visible/9/nothing\.bmp"):
        RegDB(root=str(regdb_root), trial=1)
