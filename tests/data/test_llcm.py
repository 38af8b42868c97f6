"""LLCM: parsing, the official gallery draw and metric (against ports of the authors' code), the evaluator,
the synthetic layout, and a tiny end-to-end train_net run."""
import importlib.util
import json
import os
import random
import re

import numpy as np
import pytest
import torch
from conftest import ROOT, train_net, write_image
from PIL import Image

from vireid_plugins.data.datasets import INFRARED, LLCM, VISIBLE, DatasetLayoutError
from vireid_plugins.data.synthetic import generate, plan_llcm, resolve_params
from vireid_plugins.evaluation import LLCMEvaluator, eval_llcm, llcm_removed
from vireid_plugins.visualization import RankListLayout

TRAIN_IDS, TEST_IDS = [2, 3, 5], [4, 7, 9]
# images per (pid, modality, camera) of the hand-made layout; test ids use the test folders
COUNTS = {
    (2, VISIBLE, 1): 2, (2, INFRARED, 4): 1, (3, VISIBLE, 6): 1, (3, VISIBLE, 2): 1, (3, INFRARED, 6): 2,
    (5, VISIBLE, 9): 1, (5, INFRARED, 1): 1,
    (4, VISIBLE, 1): 2, (4, VISIBLE, 3): 1, (4, INFRARED, 1): 2, (4, INFRARED, 5): 1,
    (7, VISIBLE, 2): 3, (7, VISIBLE, 8): 1, (7, INFRARED, 2): 1, (7, INFRARED, 9): 2,
    (9, VISIBLE, 5): 1, (9, VISIBLE, 9): 2, (9, INFRARED, 5): 1,  # pid 9: every infrared query at cam5
}
TAG = {VISIBLE: "vis", INFRARED: "nir"}


def name(pid, modality, cam, i):
    return f"{pid:04d}_c{cam:02d}_s1000{i}_f000{i}_{TAG[modality]}.jpg"


@pytest.fixture
def llcm_root(tmp_path):
    """``tmp/LLCM`` of :data:`COUNTS`; returns ``tmp``."""
    root = tmp_path / "LLCM"
    for folder in [f"test_vis/cam{k}" for k in range(1, 10)] + [f"test_nir/cam{k}" for k in (1, 2, 4, 5, 6, 7, 8, 9)]:
        (root / folder).mkdir(parents=True)
    lines = {VISIBLE: [], INFRARED: []}
    for (pid, modality, cam), count in COUNTS.items():
        for i in range(count):
            if pid in TRAIN_IDS:
                rel = f"{TAG[modality]}/{pid:04d}/{name(pid, modality, cam, i)}"
                lines[modality].append(f"{rel} {TRAIN_IDS.index(pid)}")
            else:
                rel = f"test_{TAG[modality]}/cam{cam}/{pid:04d}/{name(pid, modality, cam, i)}"
            write_image(str(root / rel), mode="RGB" if modality == VISIBLE else "L", value=pid * 100 + cam * 10 + i)
    (root / "idx").mkdir()
    for modality, tag in TAG.items():
        (root / "idx" / f"train_{tag}.txt").write_text("\n".join(lines[modality]) + "\n")
    (root / "idx" / "test_id.txt").write_text(",".join(map(str, TEST_IDS)) + "\n")
    return tmp_path


# ------------------------------------------------------------------------------- ports of the authors' code
def official_query(data_path, mode):
    """Port of process_query_llcm (ZYK100/LLCM DEEN/data_manager.py): mode 1 visible, 2 near-infrared."""
    cameras = ([f"test_vis/cam{k}" for k in range(1, 10)] if mode == 1
               else [f"test_nir/cam{k}" for k in (1, 2, 4, 5, 6, 7, 8, 9)])
    with open(os.path.join(data_path, "idx/test_id.txt")) as f:
        ids = ["%04d" % int(y) for y in f.read().splitlines()[0].split(",")]
    files = []
    for pid in sorted(ids):
        for cam in cameras:
            img_dir = os.path.join(data_path, cam, pid)
            if os.path.isdir(img_dir):
                files.extend(sorted([img_dir + "/" + i for i in os.listdir(img_dir)]))
    return files


def official_gallery(data_path, mode, trial):
    """Port of process_gallery_llcm: one random image per (id, camera) after random.seed(trial)."""
    random.seed(trial)
    cameras = ([f"test_vis/cam{k}" for k in range(1, 10)] if mode == 1
               else [f"test_nir/cam{k}" for k in (1, 2, 4, 5, 6, 7, 8, 9)])
    with open(os.path.join(data_path, "idx/test_id.txt")) as f:
        ids = ["%04d" % int(y) for y in f.read().splitlines()[0].split(",")]
    files = []
    for pid in sorted(ids):
        for cam in cameras:
            img_dir = os.path.join(data_path, cam, pid)
            if os.path.isdir(img_dir):
                files.append(random.choice(sorted([img_dir + "/" + i for i in os.listdir(img_dir)])))
    return files


def official_eval_llcm(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=20):
    """Loop port of eval_llcm (ZYK100/LLCM DEEN/eval_metrics.py); the 'gallery is small' print dropped and a
    stable sort (the reference's quicksort orders ties arbitrarily; the cases below are tie-free)."""
    num_q, num_g = distmat.shape
    if num_g < max_rank:
        max_rank = num_g
    indices = np.argsort(distmat, axis=1, kind="stable")
    pred_label = g_pids[indices]
    matches = (g_pids[indices] == q_pids[:, np.newaxis]).astype(np.int32)
    new_all_cmc, all_AP, all_INP = [], [], []
    num_valid_q = 0.
    for q_idx in range(num_q):
        q_pid, q_camid = q_pids[q_idx], q_camids[q_idx]
        order = indices[q_idx]
        remove = (g_pids[order] == q_pid) & (g_camids[order] == q_camid)
        keep = np.invert(remove)
        new_cmc = pred_label[q_idx][keep]
        new_index = np.unique(new_cmc, return_index=True)[1]
        new_cmc = [new_cmc[index] for index in sorted(new_index)]
        new_match = (new_cmc == q_pid).astype(np.int32)
        new_all_cmc.append(new_match.cumsum()[:max_rank])
        orig_cmc = matches[q_idx][keep]
        if not np.any(orig_cmc):
            continue
        cmc = orig_cmc.cumsum()
        pos_max_idx = np.max(np.where(orig_cmc == 1))
        all_INP.append(cmc[pos_max_idx] / (pos_max_idx + 1.0))
        num_valid_q += 1.
        tmp_cmc = np.asarray([x / (i + 1.) for i, x in enumerate(orig_cmc.cumsum())]) * orig_cmc
        all_AP.append(tmp_cmc.sum() / orig_cmc.sum())
    assert num_valid_q > 0
    new_all_cmc = np.asarray(new_all_cmc).astype(np.float32).sum(0) / num_valid_q
    return new_all_cmc, np.mean(all_AP), np.mean(all_INP)


# ------------------------------------------------------------------------------------------------ dataset
def test_llcm_items(llcm_root):
    ds = LLCM(root=str(llcm_root))
    train_counts = {m: sum(n for (p, mm, _), n in COUNTS.items() if p in TRAIN_IDS and mm == m) for m in TAG}
    assert len(ds.train) == train_counts[VISIBLE] + train_counts[INFRARED]
    assert {it[1] for it in ds.train} == {0, 1, 2}  # the index files' labels
    for path, label, cam, modality in ds.train:
        pid = TRAIN_IDS[label]
        assert f"/{TAG[modality]}/{pid:04d}/{pid:04d}_c{cam:02d}_" in path and (pid, modality, cam) in COUNTS
    for items, modality in ((ds.test_visible, VISIBLE), (ds.test_infrared, INFRARED)):
        expected = sum(n for (p, m, _), n in COUNTS.items() if p in TEST_IDS and m == modality)
        assert len(items) == expected and all(it[3] == modality for it in items)
        assert all(f"test_{TAG[modality]}/cam{it[2]}/{it[1]:04d}/" in it[0] for it in items)
    assert ds.query == ds.test_infrared and all(it[3] == VISIBLE for it in ds.gallery)  # default i2v
    v2i = LLCM(root=str(llcm_root), mode="v2i", trial=3)
    assert v2i.query == v2i.test_visible and v2i.gallery == v2i.sample_gallery(INFRARED, 3)
    assert LLCM(root=str(llcm_root / "LLCM")).train == ds.train  # root may be the dataset folder itself


@pytest.mark.parametrize("trial", [0, 1, 9])
def test_llcm_query_order_and_gallery_draw_match_the_official_code(llcm_root, trial):
    ds = LLCM(root=str(llcm_root))
    data_path = str(llcm_root / "LLCM")
    norm = os.path.normpath
    for modality, mode in ((VISIBLE, 1), (INFRARED, 2)):
        test_items = ds.test_visible if modality == VISIBLE else ds.test_infrared
        assert [norm(it[0]) for it in test_items] == [norm(p) for p in official_query(data_path, mode)]
        got = ds.sample_gallery(modality, trial)
        assert [norm(it[0]) for it in got] == [norm(p) for p in official_gallery(data_path, mode, trial)]
        assert len(got) == sum(1 for (p, m, _) in COUNTS if p in TEST_IDS and m == modality)
        # the official parse of the camera and the pid from the path
        for path, pid, cam, _ in got:
            assert (int(path.split("cam")[1][0]), int(path.split("cam")[1][2:6])) == (cam, pid)


def test_llcm_errors_name_the_path(llcm_root, tmp_path):
    root = llcm_root / "LLCM"
    with pytest.raises(DatasetLayoutError, match="nowhere"):
        LLCM(root=str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="search mode"):
        LLCM(root=str(llcm_root), mode="v2t")
    os.rename(root / "test_nir" / "cam9", root / "cam9_moved")
    with pytest.raises(DatasetLayoutError, match=r"missing camera folder.*test_nir/cam9"):
        LLCM(root=str(llcm_root))
    os.rename(root / "cam9_moved", root / "test_nir" / "cam9")
    good = (root / "idx" / "train_nir.txt").read_text()
    for text, message in (("nir/0002/a.jpg\n", r"line 1 .*'<relative path> <label>'"),
                          ("nir/0002/0002_s1_nir.jpg 0\n", r"no camera '_c<cam>'.*0002_s1_nir\.jpg"),
                          ("nir/0002/0002_c04_gone.jpg 0\n", r"nir/0002/0002_c04_gone\.jpg"),
                          ("", r"lists no image.*train_nir\.txt")):
        (root / "idx" / "train_nir.txt").write_text(text)
        with pytest.raises(DatasetLayoutError, match=message):
            LLCM(root=str(llcm_root))
    (root / "idx" / "train_nir.txt").write_text(good)
    (root / "idx" / "test_id.txt").write_text("4;7\n")
    with pytest.raises(DatasetLayoutError, match=r"comma-separated.*test_id\.txt"):
        LLCM(root=str(llcm_root))
    os.remove(root / "idx" / "test_id.txt")
    with pytest.raises(DatasetLayoutError, match=r"missing id file.*test_id\.txt"):
        LLCM(root=str(llcm_root))


# ------------------------------------------------------------------------------------------------ metric
@pytest.mark.parametrize("seed, num_q, num_g, num_ids, max_rank", [(0, 40, 30, 8, 5), (1, 200, 90, 20, 10),
                                                                     (2, 7, 12, 12, 1)])
def test_eval_llcm_matches_the_official_loop(seed, num_q, num_g, num_ids, max_rank):
    rng = np.random.default_rng(seed)
    g_pids, g_cams = rng.integers(0, num_ids, num_g), rng.integers(1, 10, num_g)
    g_pids[:num_ids] = np.arange(num_ids)
    q_pids, q_cams = rng.integers(0, num_ids + 3, num_q), rng.integers(1, 10, num_q)  # some ids never in gallery
    q_pids[0], q_cams[0] = g_pids[0], g_cams[0]  # a query that loses a same-camera match
    distmat = rng.random((num_q, num_g))
    assert llcm_removed(q_pids, g_pids, q_cams, g_cams).any()
    cmc, m_ap, m_inp = eval_llcm(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=max_rank)
    ref_cmc, ref_ap, ref_inp = official_eval_llcm(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=max_rank)
    np.testing.assert_allclose(cmc, ref_cmc, atol=1e-6)
    assert m_ap == pytest.approx(ref_ap, abs=1e-9) and m_inp == pytest.approx(ref_inp, abs=1e-9)


def test_eval_llcm_drops_same_identity_same_camera_only():
    # Query pid 1 cam 2. Gallery by distance: g0 pid 1 cam 2 (dropped: same id and camera), g1 pid 2 cam 2
    # (kept: other id), g2 pid 1 cam 5 (kept), g3 pid 3 cam 7. Kept ranking [2, 1, 3] -> dedup CMC [0, 1, 1];
    # AP: single match at rank 2 -> 1/2; INP = 1/2. SYSU's rule would keep g0 (no camera 3 query): AP 1.
    args = (np.array([[0.1, 0.2, 0.3, 0.4]]), np.array([1]), np.array([1, 2, 1, 3]), np.array([2]),
            np.array([2, 2, 5, 7]))
    cmc, m_ap, m_inp = eval_llcm(*args, max_rank=3)
    np.testing.assert_array_equal(cmc, [0.0, 1.0, 1.0])
    assert (m_ap, m_inp) == (0.5, 0.5)


# ------------------------------------------------------------------------------------------------ evaluator
@pytest.mark.parametrize("scoring", ["transposed", "direct"])
def test_llcm_evaluator_runs_and_scores(llcm_root, cfg, scoring):
    cfg.DATASETS.LLCM.NUM_TRIALS = 3
    cfg.DATASETS.LLCM.V2I_SCORING = scoring
    ds = LLCM(root=str(llcm_root))
    ev = LLCMEvaluator(cfg, ds)
    items = [it[0] for it in ev.items]
    assert items == [it[0] for it in ds.test_visible + ds.test_infrared]
    for trial in range(3):
        q, g = ev.runs["i2v"][trial]
        assert [items[i] for i in q] == [it[0] for it in ds.test_infrared]
        assert [items[i] for i in g] == [it[0] for it in ds.sample_gallery(VISIBLE, trial)]
        q, g = ev.runs["v2i"][trial]
        drawn, every = [it[0] for it in ds.sample_gallery(INFRARED, trial)], [it[0] for it in ds.test_visible]
        expected = (drawn, every) if scoring == "transposed" else (every, drawn)
        assert ([items[i] for i in q], [items[i] for i in g]) == expected
    # pid 9's visible images are at cams 5 and 9; its infrared queries (cam 5) keep the cam-9 one, so no i2v
    # query loses its identity: 3 ids. In v2i-direct, pid 9's visible queries at cam 5 lose pid 9 (its only
    # infrared camera is 5): 2 ids; transposed, the drawn pid-9 infrared image (cam 5) keeps pid 9 (cam 9).
    assert ev._rankable(*ev.runs["i2v"][0]) == 3
    assert ev._rankable(*ev.runs["v2i"][0]) == (3 if scoring == "transposed" else 2)
    assert ev.max_rank == (3 if scoring == "transposed" else 2)
    # evaluate() on given features = eval_llcm per trial, averaged
    feats = torch.randn(len(items), 16, generator=torch.Generator().manual_seed(0))
    ev.process({"index": torch.arange(len(items))}, feats)
    results = ev.evaluate()
    normed = torch.nn.functional.normalize(feats, dim=1)
    for mode in ("i2v", "v2i"):
        maps = []
        for q, g in ev.runs[mode]:
            distmat = -(normed[q] @ normed[g].T).numpy()
            maps.append(official_eval_llcm(distmat, ev.pids[q], ev.pids[g], ev.camids[q], ev.camids[g],
                                           max_rank=ev.max_rank)[1])
        assert results[f"{mode}/mAP"] == pytest.approx(100 * np.mean(maps), abs=1e-6)
    assert results["metric"] == pytest.approx((results["i2v/Rank-1"] + results["i2v/mAP"]) / 2)
    cfg.DATASETS.LLCM.V2I_SCORING = "sideways"
    with pytest.raises(ValueError, match="V2I_SCORING"):
        LLCMEvaluator(cfg, ds)


# ------------------------------------------------------------------------------------------------ synthetic
NAME = re.compile(r"^(?P<pid>\d{4})_c(?P<cam>\d{2})_s\d{6}_f\d{4,}_(?P<tag>vis|nir)\.jpg$")


@pytest.fixture(scope="module")
def tiny_llcm(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_llcm")
    generate("llcm", root / "LLCM", preset="tiny", seed=0, workers=1)
    return root


def test_synthetic_llcm_layout(tiny_llcm, tmp_path):
    root = tiny_llcm / "LLCM"
    meta = json.loads((root / "synthetic_meta.json").read_text())
    assert meta["counts"]["ids"] == {"train": 8, "test": 4}
    files = [p for p in root.rglob("*.jpg")]
    assert len(files) == meta["counts"]["total_images"]
    for path in files:
        m = NAME.match(path.name)
        assert m, path.name
        rel = path.relative_to(root).parts
        if rel[0] in ("vis", "nir"):
            assert rel[0] == m["tag"] and rel[1] == m["pid"]
        else:
            assert rel[0] == f"test_{m['tag']}" and rel[1] == f"cam{int(m['cam'])}" and rel[2] == m["pid"]
            assert not (m["tag"] == "nir" and int(m["cam"]) == 3)
    ds = LLCM(root=str(tiny_llcm))
    test_ids = [int(x) for x in (root / "idx" / "test_id.txt").read_text().strip().split(",")]
    assert sorted(test_ids) == sorted(ds.test_ids) and len(test_ids) == 4
    train_pids = {int(m) for m in re.findall(r"/(?:vis|nir)/(\d{4})/", " ".join(it[0] for it in ds.train))}
    assert len(train_pids) == 8 and not train_pids & set(test_ids)
    for pid in test_ids:  # two cameras per modality: every query keeps a match from another camera
        assert len({it[2] for it in ds.test_visible if it[1] == pid}) >= 2
        assert len({it[2] for it in ds.test_infrared if it[1] == pid}) >= 2
    labels = {}
    for path, label, _, _ in ds.train:  # one label per identity, shared by both modalities
        labels.setdefault(int(NAME.match(os.path.basename(path))["pid"]), set()).add(label)
    assert all(len(v) == 1 for v in labels.values()) and len(labels) == 8
    assert {it[3] for it in ds.train} == {VISIBLE, INFRARED}
    digest = {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    generate("llcm", tmp_path / "w2", preset="tiny", seed=0, workers=2)  # the same bytes with 2 workers
    assert {str(p.relative_to(tmp_path / "w2")): p.read_bytes() for p in (tmp_path / "w2").rglob("*")
            if p.is_file()} == digest
    generate("llcm", tmp_path / "s1", preset="tiny", seed=1, workers=1)
    assert (tmp_path / "s1" / "idx" / "train_vis.txt").read_text() != (root / "idx" / "train_vis.txt").read_text()


def test_synthetic_llcm_presets_and_cli(tmp_path, capsys):
    # sysu-scale mimics the real LLCM: 713 + 351 ids, 46,767 images (30,921 train, 15,846 test)
    counts = plan_llcm(resolve_params("llcm", "sysu-scale"), seed=0).counts
    assert counts["ids"] == {"train": 713, "test": 351} and 44000 < counts["total_images"] < 48000
    assert 29000 < sum(counts["images"]["train"].values()) < 32000
    spec = importlib.util.spec_from_file_location("cli", os.path.join(ROOT, "tools", "make_synthetic_vireid.py"))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    meta = cli.main(["--layout", "llcm", "--preset", "tiny", "--ids", "3", "--test-ids", "2", "--workers", "1",
                     "--out", str(tmp_path / "LLCM")])
    assert meta["counts"]["ids"] == {"train": 3, "test": 2} and "counts:" in capsys.readouterr().out
    assert len(LLCM(root=str(tmp_path)).test_ids) == 2


@pytest.mark.slow
def test_train_net_on_tiny_llcm_with_ranklists(tiny_llcm, tmp_path):
    out = tmp_path / "run"
    log = train_net("configs/Synthetic/agw_supervised.yml", tiny_llcm, out, opts=[
        "DATASETS.NAMES", "('LLCM',)", "DATASETS.TESTS", "('LLCM',)", "SOLVER.MAX_EPOCH", "1",
        "DATASETS.LLCM.NUM_TRIALS", "2", "TEST.RANKLIST.ENABLED", "True", "TEST.RANKLIST.NUM_QUERIES", "3"])
    rows = re.findall(r"\| LLCM +\| (i2v|v2i) +\| ([\d.]+) ± [\d.]+ ", log)
    assert [r[0] for r in rows] == ["i2v", "v2i"]
    assert (out / "model_final.pth").exists()
    folders = sorted((out / "ranklists" / "LLCM").glob("iter_*"))
    assert len(folders) == 1  # one evaluation, at the end of the training
    row = RankListLayout().size  # TEST.RANKLIST.SIZE [128, 64], TOPK 10
    for mode in ("i2v", "v2i"):
        pngs = sorted((folders[0] / mode).iterdir())
        assert [p.name.startswith("query_") for p in pngs] == [False, True, True, True]  # contact_sheet first
        for png in pngs[1:]:
            with Image.open(png) as image:
                assert image.size == row
        with Image.open(pngs[0]) as sheet:
            assert sheet.size == (row[0] + 2 * 6, 3 * row[1] + 4 * 6)
