"""Strict dataset parsing: id/index files, listed ids without images, non-image files, empty splits, and the
up-front image check (DATASETS.VERIFY_IMAGES, tools/check_dataset.py)."""
import logging
import os
import subprocess
import sys

import pytest
from conftest import ROOT, SYSU_COUNTS, SYSU_TEST_IDS, SYSU_TRAIN_IDS, SYSU_VAL_IDS, write_image

from vireid_plugins.data import build_vireid_dataset
from vireid_plugins.data.datasets import SYSUMM01, DatasetLayoutError, RegDB
from vireid_plugins.data.verify import UnreadableImagesError, verify_dataset_images

EXPECTED = "expected one comma-separated line of integer ids"
NUM_IMAGES = sum(SYSU_COUNTS.values())  # every image is a train, query or gallery-pool image


def exp(root, name):
    return root / "SYSU-MM01" / "exp" / name


# ---------------------------------------------------------------- SYSU-MM01 id files
@pytest.mark.parametrize("text, message", [
    ("", r"line 1 is empty; " + EXPECTED),
    ("\n7,8,10\n", r"line 1 is empty; " + EXPECTED),
    ("7\n8\n10\n", r"line 2 is '8': ids on 3 lines \(one id per line\?\); " + EXPECTED),
    ("7,8,x10\n", r"line 1, id #3 is 'x10', not a non-negative integer; " + EXPECTED),
    ("7,-8,10\n", r"line 1, id #2 is '-8', not a non-negative integer"),
    ("7,8,,10\n", r"line 1, id #3 is '', not a non-negative integer"),
    ("7;8;10\n", r"line 1, id #1 is '7;8;10'"),
    ("7,8,10,8\n", r"line 1 lists id\(s\) 8 more than once"),
])
def test_sysu_id_file_format_is_strict(sysu_root, text, message):
    exp(sysu_root, "test_id.txt").write_text(text)
    with pytest.raises(DatasetLayoutError, match=rf"SYSUMM01: {message}.*: '.*exp/test_id\.txt'"):
        SYSUMM01(root=str(sysu_root))


def test_sysu_accepts_spaces_and_a_final_newline(sysu_root):
    exp(sysu_root, "test_id.txt").write_text(" 7, 8 ,10\n\n")
    assert SYSUMM01(root=str(sysu_root)).test_ids == SYSU_TEST_IDS


def test_sysu_train_and_test_ids_must_be_disjoint(sysu_root):
    exp(sysu_root, "test_id.txt").write_text("7,8,10,2\n")
    with pytest.raises(DatasetLayoutError, match=r"id\(s\) 2 are also listed in train_id.txt or val_id.txt.*test_id"):
        SYSUMM01(root=str(sysu_root))


def test_sysu_listed_ids_without_images_error_or_warn(sysu_root, caplog):
    exp(sysu_root, "train_id.txt").write_text("1,2,4,99,98\n")
    with pytest.raises(DatasetLayoutError, match=r"2 of the 6 ids listed in train_id.txt/val_id.txt have no image "
                                                 r"in cam1..cam6/<id:04d>/ \(ids 99, 98\) \(set DATASETS.MISSING_IDS "
                                                 r"warn.*exp/train_id\.txt"):
        SYSUMM01(root=str(sysu_root))
    with caplog.at_level(logging.WARNING, logger="fastreid.vireid.datasets"):
        ds = SYSUMM01(root=str(sysu_root), missing_ids="warn")
    assert "2 of the 6 ids listed in train_id.txt/val_id.txt have no image" in caplog.text and "Dropped" in caplog.text
    assert ds.train_ids == SYSU_TRAIN_IDS + SYSU_VAL_IDS
    assert {it[1] for it in ds.train} == set(SYSU_TRAIN_IDS + SYSU_VAL_IDS)
    with pytest.raises(ValueError, match=r"DATASETS.MISSING_IDS: expected one of \('error', 'warn'\), got 'ignore'"):
        SYSUMM01(root=str(sysu_root), missing_ids="ignore")


def test_missing_ids_policy_comes_from_the_config(cfg, sysu_root):
    exp(sysu_root, "test_id.txt").write_text("7,8,10,99\n")
    cfg.DATASETS.ROOT = str(sysu_root)
    with pytest.raises(DatasetLayoutError, match="ids 99"):
        build_vireid_dataset(cfg, "SYSUMM01")
    cfg.DATASETS.MISSING_IDS = "warn"
    assert build_vireid_dataset(cfg, "SYSUMM01").test_ids == SYSU_TEST_IDS


def test_sysu_non_image_files_are_ignored_and_counted(sysu_root, caplog):
    clean = SYSUMM01(root=str(sysu_root))
    folder = sysu_root / "SYSU-MM01" / "cam1" / "0001"
    (folder / "Thumbs.db").write_bytes(b"\x00" * 16)
    (folder / ".DS_Store").write_bytes(b"\x00")
    (folder / "._0001.jpg").write_bytes(b"\x00")  # macOS resource fork: not an image despite its extension
    (sysu_root / "SYSU-MM01" / "cam3" / "0007" / "notes.txt").write_text("x")
    with caplog.at_level(logging.INFO, logger="fastreid.vireid.datasets"):
        ds = SYSUMM01(root=str(sysu_root))
    assert ds.train == clean.train and ds.query == clean.query and ds.gallery == clean.gallery
    assert "ignored 4 non-image file(s)" in caplog.text
    assert "'.db': 1" in caplog.text and "'.txt': 1" in caplog.text and "'.DS_Store': 1" in caplog.text


def test_sysu_image_extensions(sysu_root):
    folder = sysu_root / "SYSU-MM01" / "cam1" / "0001"
    write_image(str(folder / "0100.PNG"))
    write_image(str(folder / "0101.jpeg"))
    write_image(str(folder / "0102.bmp"))
    names = {os.path.basename(it[0]) for it in SYSUMM01(root=str(sysu_root)).train if it[2] == 1}
    assert {"0100.PNG", "0101.jpeg", "0102.bmp", "0001.jpg", "0002.jpg"} <= names


def _empty_test_cameras(sysu_root, cams):
    for cam in cams:
        for pid in SYSU_TEST_IDS:
            for f in (sysu_root / "SYSU-MM01" / f"cam{cam}").glob(f"{pid:04d}/*"):
                f.unlink()


def test_sysu_empty_splits_name_the_file(sysu_root):
    _empty_test_cameras(sysu_root, (1, 2))  # no visible test image in the indoor cameras
    ds = SYSUMM01(root=str(sysu_root))  # all-search still has a gallery
    with pytest.raises(DatasetLayoutError, match=r"the indoor-search gallery split is empty: no id of test_id.txt "
                                                 r"has a visible image in cams \(1, 2\).*exp/test_id\.txt"):
        ds.sample_gallery("indoor", 0)
    with pytest.raises(DatasetLayoutError, match=r"indoor-search gallery split is empty"):
        SYSUMM01(root=str(sysu_root), mode="indoor")
    _empty_test_cameras(sysu_root, (3, 6))
    with pytest.raises(DatasetLayoutError, match=r"the query split is empty: no id of test_id.txt has an infrared "
                                                 r"image.*exp/test_id\.txt"):
        SYSUMM01(root=str(sysu_root))


def test_sysu_empty_train_split_names_the_id_file(sysu_root):
    exp(sysu_root, "train_id.txt").write_text("90,91\n")
    exp(sysu_root, "val_id.txt").write_text("92\n")
    with pytest.raises(DatasetLayoutError, match=r"the train split is empty: no id of train_id.txt/val_id.txt has an "
                                                 r"image.*exp/train_id\.txt"):
        SYSUMM01(root=str(sysu_root), missing_ids="warn")


# ---------------------------------------------------------------- RegDB index files
@pytest.mark.parametrize("line, message", [
    ("Visible/1/p_v_1_0.bmp one", r"line 2 is 'Visible/1/p_v_1_0.bmp one', not '<relative path> <label>'"),
    ("Visible/1/p_v_1_0.bmp 0 extra", r"line 2 is .*, not '<relative path> <label>'"),
    ("Visible/1/p_v_1_0.bmp -1", r"line 2 is .*\(a non-negative integer label\)"),
    ("Visible/1/notes.txt 0", r"line 2 lists 'Visible/1/notes.txt', not an image path \(expected an extension of "
                              r"\.jpg/\.jpeg/\.png/\.bmp\)"),
    ("Visible/1/p_v_1_1.bmp 0", r"line 2 lists 'Visible/1/p_v_1_1.bmp' again \(first on line 1\)"),
])
def test_regdb_index_lines_are_strict(regdb_root, line, message):
    idx = regdb_root / "RegDB" / "idx" / "train_visible_1.txt"
    idx.write_text(f"Visible/1/p_v_1_1.bmp 0\n{line}\n")
    with pytest.raises(DatasetLayoutError, match=rf"RegDB: {message}.*train_visible_1\.txt"):
        RegDB(root=str(regdb_root), trial=1)


def test_regdb_missing_images_error_or_warn(regdb_root, caplog):
    idx = regdb_root / "RegDB" / "idx" / "test_thermal_1.txt"
    lines = idx.read_text().splitlines() + ["Thermal/9/p_t_9_0.bmp 3", "Thermal/9/p_t_9_1.bmp 3"]
    idx.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetLayoutError, match=r"2 of the 8 images listed do not exist \(1 label\(s\) lose all their "
                                                 r"images\), e.g. .*Thermal/9/p_t_9_0.bmp.*MISSING_IDS warn"):
        RegDB(root=str(regdb_root), trial=1)
    with caplog.at_level(logging.WARNING, logger="fastreid.vireid.datasets"):
        ds = RegDB(root=str(regdb_root), trial=1, missing_ids="warn")
    assert "2 of the 8 images listed do not exist" in caplog.text and len(ds.test_thermal) == 6


def test_regdb_empty_split_names_the_index(regdb_root):
    idx = regdb_root / "RegDB" / "idx" / "test_visible_1.txt"
    idx.write_text("\n\n")
    with pytest.raises(DatasetLayoutError, match=r"the test visible split is empty: the index file lists no image.*"
                                                 r"test_visible_1\.txt"):
        RegDB(root=str(regdb_root), trial=1)
    idx.write_text("Visible/9/a.bmp 0\nVisible/9/b.bmp 0\n")
    with pytest.raises(DatasetLayoutError, match=r"the test visible split is empty: none of its images exists"):
        RegDB(root=str(regdb_root), trial=1, missing_ids="warn")


# ---------------------------------------------------------------- up-front image check
def _break_images(sysu_root):
    root = sysu_root / "SYSU-MM01"
    good = (root / "cam1" / "0001" / "0001.jpg").read_bytes()
    (root / "cam1" / "0001" / "0001.jpg").write_bytes(good[: len(good) // 2])  # truncated JPEG (train)
    (root / "cam3" / "0007" / "0001.jpg").write_bytes(b"not an image")  # query
    (root / "cam2" / "0008" / "0003.jpg").write_bytes(b"")  # gallery pool
    return ["cam1/0001/0001.jpg", "cam3/0007/0001.jpg", "cam2/0008/0003.jpg"]


def test_verify_images_reports_every_unreadable_file(cfg, sysu_root):
    bad = _break_images(sysu_root)
    with pytest.raises(UnreadableImagesError) as info:
        verify_dataset_images(SYSUMM01(root=str(sysu_root)), "SYSUMM01", num_workers=2)
    assert f"SYSUMM01: 3 of {NUM_IMAGES} images cannot be read" in str(info.value)
    assert sorted(os.path.relpath(p, sysu_root / "SYSU-MM01") for p, _ in info.value.bad) == sorted(bad)
    assert all(name in str(info.value) for name in bad)
    cfg.DATASETS.ROOT, cfg.DATASETS.VERIFY_IMAGES = str(sysu_root), True
    with pytest.raises(UnreadableImagesError, match=f"3 of {NUM_IMAGES} images cannot be read"):
        build_vireid_dataset(cfg, "SYSUMM01")
    cfg.DATASETS.VERIFY_IMAGES = False
    build_vireid_dataset(cfg, "SYSUMM01")  # off by default: parsing alone does not open images


@pytest.mark.slow
def test_check_dataset_tool(sysu_root):
    cmd = [sys.executable, os.path.join(ROOT, "tools", "check_dataset.py"), "--config-file",
           os.path.join(ROOT, "configs/Synthetic/agw_supervised.yml"), "DATASETS.ROOT", str(sysu_root)]
    ok = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0 and f"SYSUMM01: {NUM_IMAGES} of {NUM_IMAGES} images readable" in ok.stdout + ok.stderr
    bad = _break_images(sysu_root)
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "3 problem(s)" in log
    assert f"SYSUMM01: {NUM_IMAGES - 3} of {NUM_IMAGES} images readable" in log
    assert all(f"unreadable image {sysu_root / 'SYSU-MM01' / name}" in log for name in bad)
    exp(sysu_root, "val_id.txt").write_text("5\n6\n")
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "val_id.txt" in proc.stdout + proc.stderr
