"""Tests of the synthetic SYSU-MM01 / RegDB generator (``vireid_plugins.data.synthetic``)."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from vireid_plugins.data import synthetic

REPO_ROOT = Path(__file__).resolve().parents[2]
SYSU_VISIBLE, SYSU_INFRARED = (1, 2, 4, 5), (3, 6)
FOUR_DIGITS = re.compile(r"^\d{4}$")
ID_LINE = re.compile(r"^[1-9]\d*(,[1-9]\d*)*$")
REGDB_LINE = re.compile(r"^(?P<path>(?P<folder>Visible|Thermal)/(?P<pid>[1-9]\d*)/(female|male)_(front|back)_"
                        r"(?P<letter>[vt])_\d{5}_(?P<name_pid>[1-9]\d*)\.bmp) (?P<label>\d+)$")


@pytest.fixture(scope="module")
def sysu_tiny(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("syn") / "SYSU-MM01"
    synthetic.generate("sysu", root, preset="tiny", seed=0)
    return root


@pytest.fixture(scope="module")
def regdb_tiny(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("syn") / "RegDB"
    synthetic.generate("regdb", root, preset="tiny", seed=0)
    return root


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def read_ids(root: Path, split: str) -> list[int]:
    lines = (root / "exp" / f"{split}_id.txt").read_text().splitlines()
    assert len(lines) == 1 and ID_LINE.match(lines[0]), lines
    return [int(x) for x in lines[0].split(",")]


# ------------------------------------------------------------------------------------------------ layouts
def test_sysu_layout(sysu_tiny):
    root, params = sysu_tiny, synthetic.PRESETS["tiny"]["sysu"]
    meta = json.loads((root / synthetic.META_FILE).read_text())
    expected_top = [f"cam{c}" for c in range(1, 7)] + ["exp", synthetic.META_FILE]
    assert sorted(p.name for p in root.iterdir()) == expected_top
    splits = {name: read_ids(root, name) for name in ("train", "val", "test")}
    sizes = {name: len(ids) for name, ids in splits.items()}
    assert sizes == meta["counts"]["ids"] == {"train": 6, "val": 2, "test": 4}
    all_ids = [pid for ids in splits.values() for pid in ids]
    assert len(set(all_ids)) == len(all_ids) == params.ids + params.test_ids
    assert all(ids == sorted(ids) for ids in splits.values())

    cams_of: dict[int, set[int]] = {pid: set() for pid in all_ids}
    n_images = 0
    for cam in range(1, 7):
        expected_n = params.vis_per_cam if cam in SYSU_VISIBLE else params.ir_per_cam
        for pid_dir in (root / f"cam{cam}").iterdir():
            assert FOUR_DIGITS.match(pid_dir.name) and int(pid_dir.name) in cams_of, pid_dir
            names = sorted(p.name for p in pid_dir.iterdir())
            assert names == [f"{i:04d}.jpg" for i in range(1, expected_n + 1)], names
            cams_of[int(pid_dir.name)].add(cam)
            n_images += len(names)
            with Image.open(pid_dir / names[0]) as im:
                assert im.format == "JPEG" and im.size == (params.width, params.height)
                assert im.mode == ("RGB" if cam in SYSU_VISIBLE else "L")
    assert n_images == meta["counts"]["total_images"]
    for pid, cams in cams_of.items():  # every id is seen by both modalities
        assert cams & set(SYSU_VISIBLE) and cams & set(SYSU_INFRARED), (pid, cams)
    for pid in splits["test"]:  # indoor search needs cam3 queries and cam1/cam2 gallery for every test id
        assert 3 in cams_of[pid] and cams_of[pid] & {1, 2}, (pid, cams_of[pid])


def read_regdb_idx(root: Path, split: str, modality: str, trial: int) -> tuple[dict[int, int], list[str]]:
    """``pid -> label`` and the listed paths of one idx file, checking every line's format and file."""
    folder, letter = ("Visible", "v") if modality == "visible" else ("Thermal", "t")
    label_of: dict[int, int] = {}
    paths = []
    for line in (root / "idx" / f"{split}_{modality}_{trial}.txt").read_text().splitlines():
        m = REGDB_LINE.match(line)
        assert m and m["folder"] == folder and m["letter"] == letter and m["pid"] == m["name_pid"], line
        assert label_of.setdefault(int(m["pid"]), int(m["label"])) == int(m["label"]), line
        assert (root / m["path"]).is_file(), line
        paths.append(m["path"])
    # labels 0..n-1, relabelled in pid order
    assert [label_of[pid] for pid in sorted(label_of)] == list(range(len(label_of)))
    return label_of, paths


def test_regdb_layout(regdb_tiny):
    root, params = regdb_tiny, synthetic.PRESETS["tiny"]["regdb"]
    assert sorted(p.name for p in root.iterdir()) == ["Thermal", "Visible", "idx", synthetic.META_FILE]
    pids = list(range(1, params.ids + 1))
    for folder in ("Visible", "Thermal"):
        assert sorted(int(p.name) for p in (root / folder).iterdir()) == pids
    on_disk = {str(p.relative_to(root)) for p in root.glob("*/*/*.bmp")}
    assert len(on_disk) == params.ids * (params.vis_per_cam + params.ir_per_cam)
    assert {p.name for p in (root / "idx").iterdir()} == {
        f"{s}_{m}_{t}.txt" for s in ("train", "test") for m in ("visible", "thermal")
        for t in range(1, params.trials + 1)}
    test_splits = set()
    for trial in range(1, params.trials + 1):
        ids = {}
        for split, modality in [(s, m) for s in ("train", "test") for m in ("visible", "thermal")]:
            label_of, paths = read_regdb_idx(root, split, modality, trial)
            folder = "Visible" if modality == "visible" else "Thermal"
            # every image of every listed id, each once
            assert len(paths) == len(set(paths))
            expected = {f for f in on_disk if f.split("/")[0] == folder and int(f.split("/")[1]) in label_of}
            assert set(paths) == expected
            ids.setdefault(split, set(label_of))
            assert ids[split] == set(label_of), "visible and thermal files must list the same ids"
        assert (len(ids["train"]), len(ids["test"])) == (params.ids - params.test_ids, params.test_ids)
        assert not ids["train"] & ids["test"] and ids["train"] | ids["test"] == set(pids)
        test_splits.add(frozenset(ids["test"]))
    assert len(test_splits) > 1, "trials must use different random splits"
    for folder, mode in (("Visible", "RGB"), ("Thermal", "L")):
        with Image.open(next((root / folder / "1").iterdir())) as im:
            assert im.format == "BMP" and im.mode == mode and im.size == (params.width, params.height)


# ------------------------------------------------------------------------- determinism and atomic writes
@pytest.mark.parametrize("layout", ["sysu", "regdb"])  # LLCM: tests/test_llcm.py
def test_deterministic_and_worker_independent(layout, sysu_tiny, regdb_tiny, tmp_path):
    reference = tree_digest(sysu_tiny if layout == "sysu" else regdb_tiny)
    synthetic.generate(layout, tmp_path / "w2", preset="tiny", seed=0, workers=2)
    assert tree_digest(tmp_path / "w2") == reference
    synthetic.generate(layout, tmp_path / "s1", preset="tiny", seed=1)
    other = tree_digest(tmp_path / "s1")
    images = [name for name in reference if name.endswith((".jpg", ".bmp"))]
    assert sum(other.get(name) != reference[name] for name in images) == len(images)


def test_refuses_non_empty_output_and_overwrites_atomically(tmp_path):
    out = tmp_path / "RegDB"
    out.mkdir()  # an existing empty directory is fine
    synthetic.generate("regdb", out, preset="tiny", ids=4, test_ids=2, trials=1)
    (out / "stale.txt").write_text("x")
    before = tree_digest(out)
    with pytest.raises(FileExistsError, match=re.escape(str(out))):
        synthetic.generate("regdb", out, preset="tiny", ids=4, test_ids=2, trials=1)
    assert tree_digest(out) == before
    synthetic.generate("regdb", out, preset="tiny", ids=4, test_ids=2, trials=1, overwrite=True)
    assert not (out / "stale.txt").exists() and (out / "idx" / "train_visible_1.txt").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["RegDB"]  # no .tmp-/.old- siblings left


def test_failure_leaves_no_partial_output(tmp_path, monkeypatch):
    def broken(img, path):
        raise RuntimeError("disk full")

    monkeypatch.setattr(synthetic, "_save_image", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        synthetic.generate("sysu", tmp_path / "SYSU", preset="tiny", workers=1)
    assert list(tmp_path.iterdir()) == []


def test_params_presets_and_overrides():
    params = synthetic.resolve_params("sysu", "demo", ids=10, height=None, width=48)
    assert (params.ids, params.height, params.width) == (10, 128, 48)
    with pytest.raises(TypeError, match="bogus"):
        synthetic.resolve_params("sysu", "tiny", bogus=1)
    with pytest.raises(ValueError, match="test_ids"):
        synthetic.resolve_params("regdb", "tiny", test_ids=12)
    with pytest.raises(ValueError, match="preset"):
        synthetic.resolve_params("sysu", "huge")
    # sysu-scale mimics the real SYSU-MM01 train+val set (22,258 visible / 11,909 infrared images).
    counts = synthetic.plan_sysu(synthetic.resolve_params("sysu", "sysu-scale"), seed=0).counts
    assert counts["ids"] == {"train": 296, "val": 99, "test": 96}
    assert 21000 < counts["images"]["train_val"]["visible"] < 23500
    assert 11000 < counts["images"]["train_val"]["infrared"] < 13000
    assert synthetic.plan_regdb(synthetic.resolve_params("regdb", "sysu-scale"), seed=0).counts["images"] == {
        "visible": 4120, "thermal": 4120}


def test_cli(tmp_path, capsys):
    script = REPO_ROOT / "tools" / "make_synthetic_vireid.py"
    spec = importlib.util.spec_from_file_location("make_synthetic_vireid", script)
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    out = tmp_path / "sysu"
    meta = cli.main(["--layout", "sysu", "--preset", "tiny", "--out", str(out), "--ids", "3",
                     "--test-ids", "2", "--height", "32", "--width", "16", "--workers", "1"])
    assert meta["counts"]["ids"] == {"train": 2, "val": 1, "test": 2}
    assert "counts:" in capsys.readouterr().out
    with Image.open(next(out.glob("cam3/*/0001.jpg"))) as im:
        assert im.size == (16, 32)


# ---------------------------------------------------------------------------------------- modality gap
def _population_statistics(n_ids: int = 200, height: int = 64, width: int = 32):
    """Mean colour / intensity of the upper garment of ``n_ids`` identities, per camera (no occlusion)."""
    rng = np.random.default_rng(123)
    cams = {cam: synthetic.sample_camera(rng, cam, *synthetic.CAMERAS["sysu"][cam]) for cam in (1, 4, 3, 6)}
    stats = {cam: [] for cam in cams}
    for pid in range(n_ids):
        ident = synthetic.sample_identity(rng, pid)
        for cam, camera in cams.items():
            pose = synthetic.sample_pose(rng)
            img, labels = synthetic.render_image(ident, camera, pose, rng, height, width, return_labels=True)
            pixels = img[labels == synthetic.UPPER].astype(np.float64).reshape(-1, camera.channels)
            stats[cam].append(pixels.mean(0))
    return {cam: np.stack(v) for cam, v in stats.items()}


def _r2(x: np.ndarray, y: np.ndarray) -> float:
    """In-sample R^2 of a least-squares fit of ``y`` on ``x`` (with intercept)."""
    design = np.column_stack([x, np.ones(len(x))])
    residual = y - design @ np.linalg.lstsq(design, y, rcond=None)[0]
    return float(1.0 - residual.var() / y.var())


def test_modality_gap_in_garment_appearance():
    stats = _population_statistics()
    vis1, vis4, ir3, ir6 = stats[1], stats[4], stats[3][:, 0], stats[6][:, 0]
    # Visible colour varies across identities and is consistent across visible cameras ...
    assert vis1.std(0).min() > 25
    assert _r2(vis1, vis4.mean(1)) > 0.6
    # ... infrared intensity is identity-specific too (consistent between the two IR cameras) ...
    assert ir3.std() > 15 and _r2(ir3[:, None], ir6) > 0.6
    # ... but it cannot be predicted from the visible colour of the same garment.
    assert _r2(vis1, ir3) < 0.1 and _r2(vis4, ir6) < 0.1


def _load_images(root: Path, cams: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    feats, pids = [], []
    for cam in cams:
        for path in sorted((root / f"cam{cam}").glob("*/*.jpg")):
            with Image.open(path) as im:
                gray = np.asarray(im.convert("L"), np.float32)
            small = cv2.resize(gray, (8, 16), interpolation=cv2.INTER_AREA).ravel()
            feats.append(small - small.mean())
            pids.append(int(path.parent.name))
    feats = np.stack(feats)
    return feats / np.linalg.norm(feats, axis=1, keepdims=True), np.asarray(pids)


def _nn_accuracy(query, query_ids, gallery, gallery_ids, leave_one_out: bool) -> tuple[float, float]:
    """Top-1 cosine nearest-neighbour accuracy and its chance level."""
    sim = query @ gallery.T
    if leave_one_out:
        np.fill_diagonal(sim, -np.inf)
    accuracy = float((gallery_ids[sim.argmax(1)] == query_ids).mean())
    chance = float(np.mean([((gallery_ids == q).sum() - leave_one_out) / (len(gallery_ids) - leave_one_out)
                            for q in query_ids]))
    return accuracy, chance


def test_raw_pixel_nearest_neighbour(tmp_path):
    root = tmp_path / "sysu"
    synthetic.generate("sysu", root, preset="tiny", ids=40, test_ids=4, workers=2)  # 44 ids, ~500 images
    vis, vis_ids = _load_images(root, SYSU_VISIBLE)
    ir, ir_ids = _load_images(root, SYSU_INFRARED)
    vis_acc, vis_chance = _nn_accuracy(vis, vis_ids, vis, vis_ids, leave_one_out=True)
    ir_acc, ir_chance = _nn_accuracy(ir, ir_ids, ir, ir_ids, leave_one_out=True)
    cross_acc, _ = _nn_accuracy(ir, ir_ids, vis, vis_ids, leave_one_out=False)
    # Same-identity images are closer than different-identity ones within a modality (weakly, on raw pixels),
    assert vis_acc > 4 * vis_chance and ir_acc > 4 * ir_chance, (vis_acc, vis_chance, ir_acc, ir_chance)
    # while raw grey levels do not bridge the modality gap nearly as well (only the shared shape cues help).
    assert cross_acc < 0.5 * min(vis_acc, ir_acc), (cross_acc, vis_acc, ir_acc)
