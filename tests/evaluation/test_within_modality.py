"""Within-modality retrieval: ``eval_cross_camera`` (Market-1501 rule), the SYSU within-modality galleries and
the ``v2v`` / ``i2i`` modes of ``SYSUEvaluator`` (``DATASETS.SYSU.WITHIN_MODALITY``)."""
import os
import random

import numpy as np
import pytest
import torch
from conftest import SYSU_COUNTS, SYSU_TEST_IDS
from fastreid.evaluation.rank import eval_market1501

from vireid_plugins.data.datasets import INFRARED, SYSUMM01, VISIBLE
from vireid_plugins.evaluation import SYSUEvaluator
from vireid_plugins.evaluation.rank import eval_cross_camera, eval_sysu


def random_case(rng, num_q, num_g, num_ids, cams):
    """Tie-free distances; queries share the gallery's cameras; some query ids are absent from the gallery."""
    g_pids, g_cams = rng.integers(0, num_ids, num_g), rng.choice(cams, num_g)
    q_pids, q_cams = rng.integers(0, num_ids + 3, num_q), rng.choice(cams, num_q)
    g_pids[0] = q_pids[0] = num_ids + 5  # an id seen by one gallery camera only ...
    q_cams[0] = g_cams[0]  # ... queried from that camera: its only match is removed, the query is not valid
    q_pids[1], q_cams[1] = g_pids[1], g_cams[1]  # a valid query that also has a removed same-camera match
    return rng.random((num_q, num_g)), q_pids, g_pids, q_cams, g_cams


@pytest.mark.parametrize("seed, num_q, num_g, num_ids, cams, max_rank", [
    (0, 40, 60, 12, (1, 2, 4, 5), 10),
    (1, 200, 120, 30, (3, 6), 20),
    (2, 300, 301, 96, (1, 2, 4, 5), 20),
])
def test_eval_cross_camera_matches_fastreid_market1501(seed, num_q, num_g, num_ids, cams, max_rank):
    args = random_case(np.random.default_rng(seed), num_q, num_g, num_ids, cams)
    cmc, m_ap, m_inp = eval_cross_camera(*args, max_rank=max_rank)
    ref_cmc, ref_ap, ref_inp = eval_market1501(*args, max_rank)
    np.testing.assert_allclose(cmc, ref_cmc, rtol=1e-6)
    assert m_ap == pytest.approx(np.mean(ref_ap), rel=1e-9) and m_inp == pytest.approx(np.mean(ref_inp), rel=1e-9)
    distmat, q_pids, g_pids, q_cams, g_cams = args
    same_cam_only = [(g_pids == p).any() and not ((g_pids == p) & (g_cams != c)).any() for p, c in zip(q_pids, q_cams)]
    assert len(ref_ap) < num_q and any(same_cam_only), "invalid queries (no other-camera match) are exercised"


def test_eval_cross_camera_hand_worked():
    # Query pid 1 cam 1; gallery by distance: g0 pid 1 cam 1 (removed), g1 pid 2 cam 2, g2 pid 1 cam 2,
    # g3 pid 1 cam 4. Kept ranking: pid 2, 1, 1 -> AP = (1/2 + 2/3) / 2 = 7/12, INP = 2/3, CMC = [0, 1, 1].
    distmat = np.array([[0.1, 0.2, 0.3, 0.4]])
    cmc, m_ap, m_inp = eval_cross_camera(distmat, [1], [1, 2, 1, 1], [1], [1, 2, 2, 4], max_rank=3)
    np.testing.assert_allclose(cmc, [0.0, 1.0, 1.0])
    assert m_ap == pytest.approx(7 / 12) and m_inp == pytest.approx(2 / 3)
    # The same case under the cross-modality SYSU rule keeps g0: AP = (1 + 2/3 + 3/4) / 3.
    assert eval_sysu(distmat, [1], [1, 2, 1, 1], [1], [1, 2, 2, 4], max_rank=2)[1] == pytest.approx(29 / 36)
    with pytest.raises(ValueError, match="no valid query"):  # its only match is in its own camera
        eval_cross_camera(distmat[:, :2], [1], [1, 2], [1], [1, 2], max_rank=2)


def official_draw(data_path, cams, trial, test_ids):
    """The official single-shot draw (process_gallery_sysu) over the given cameras, as the oracle."""
    random.seed(trial)
    files = []
    for pid in sorted("%04d" % x for x in test_ids):
        for cam in cams:
            img_dir = os.path.join(data_path, f"cam{cam}", pid)
            if os.path.isdir(img_dir):
                files.append(random.choice(sorted(img_dir + "/" + i for i in os.listdir(img_dir))))
    return [os.path.normpath(f) for f in files]


def test_sysu_within_modality_runs(sysu_root):
    ds = SYSUMM01(root=str(sysu_root))
    runs = ds.within_modality_runs(num_trials=3)
    assert set(runs) == {"v2v", "i2i"}
    v_query, v_galleries = runs["v2v"]
    i_query, i_galleries = runs["i2i"]
    assert i_query == ds.query
    visible_counts = [n for (pid, cam), n in SYSU_COUNTS.items() if pid in SYSU_TEST_IDS and cam in (1, 2, 4, 5)]
    assert len(v_query) == sum(visible_counts)
    assert all(it[3] == VISIBLE for it in v_query) and all(it[3] == INFRARED for g in i_galleries for it in g)
    for trial in range(3):
        assert v_galleries[trial] == ds.sample_gallery("all", trial)
        expected = official_draw(str(sysu_root / "SYSU-MM01"), (3, 6), trial, SYSU_TEST_IDS)
        assert [os.path.normpath(it[0]) for it in i_galleries[trial]] == expected


def _evaluate(cfg, root, within, feature_of):
    cfg.DATASETS.ROOT, cfg.DATASETS.SYSU.NUM_TRIALS, cfg.DATASETS.SYSU.WITHIN_MODALITY = str(root), 3, within
    evaluator = SYSUEvaluator(cfg, SYSUMM01(root=str(root)))
    feats = torch.stack([feature_of(item) for item in evaluator.items])
    evaluator.reset()
    evaluator.process({"index": torch.arange(len(feats))}, feats)
    return evaluator, evaluator.evaluate()


def test_sysu_evaluator_within_modality_modes(sysu_root, cfg):
    rng = torch.Generator().manual_seed(0)
    table = {}

    def feature_of(item):  # a fixed random feature per image
        return table.setdefault(item[0], torch.randn(8, generator=rng))

    base_eval, base = _evaluate(cfg.clone(), sysu_root, False, feature_of)
    evaluator, results = _evaluate(cfg.clone(), sysu_root, True, feature_of)
    assert {k.split("/")[0] for k in results if "/" in k} == {"all", "indoor", "v2v", "i2i"}
    for key, value in base.items():  # the cross-modality modes are unchanged
        assert results[key] == pytest.approx(value)
    assert len(base_eval.items) == len(evaluator.items)  # the default modes already hold every visible test image

    # v2v / i2i against a direct eval_cross_camera on the same features, trial by trial
    ds = SYSUMM01(root=str(sysu_root))
    for mode, (queries, galleries) in ds.within_modality_runs(3).items():
        q = torch.nn.functional.normalize(torch.stack([feature_of(it) for it in queries]), dim=1)
        maps = []
        for gallery in galleries:
            g = torch.nn.functional.normalize(torch.stack([feature_of(it) for it in gallery]), dim=1)
            _, m_ap, _ = eval_cross_camera(-(q @ g.T).numpy(), [it[1] for it in queries], [it[1] for it in gallery],
                                           [it[2] for it in queries], [it[2] for it in gallery],
                                           max_rank=evaluator.max_rank)
            maps.append(m_ap)
        assert results[f"{mode}/mAP"] == pytest.approx(100 * np.mean(maps))


def test_within_modality_perfect_features(sysu_root, cfg):
    """Identity one-hot features: every valid query finds its matches first in every mode."""
    _, results = _evaluate(cfg, sysu_root, True, lambda item: torch.nn.functional.one_hot(torch.tensor(item[1]), 16)
                           .float())
    for mode in ("all", "indoor", "v2v", "i2i"):
        assert results[f"{mode}/mAP"] == pytest.approx(100.0) and results[f"{mode}/Rank-1"] == pytest.approx(100.0)
