"""VIReIDTrainer evaluates any dataset (fast-reid's ReidEvaluator for single-modality ones), prints a table for both
kinds, and reads TEST.EVAL_PERIOD 0 as "no evaluation"."""
import json

import numpy as np
import pytest
import torch
from conftest import MARKET_TEST_IDS, TINY_OPTS

from vireid_plugins.data import build_vireid_dataset
from vireid_plugins.data.build import build_vireid_test_loader
from vireid_plugins.engine import VIReIDTrainer
from vireid_plugins.evaluation import SingleModalityEvaluator, build_vireid_evaluator, extract_features
from vireid_plugins.evaluation.table import format_comparison_table, format_results_table


def market_cfg(cfg, root, out, *opts):
    """CA-style visible-only pre-training on Market-1501 (DATASETS.PSEUDO_INFRARED), evaluated on Market-1501."""
    cfg.merge_from_file("configs/Synthetic/agw_supervised.yml")
    cfg.merge_from_list([*TINY_OPTS, "DATASETS.ROOT", str(root), "OUTPUT_DIR", str(out), "DATASETS.NAMES",
                         "('Market1501',)", "DATASETS.TESTS", "('Market1501',)", "DATASETS.PSEUDO_INFRARED", "True",
                         "SOLVER.MAX_EPOCH", "1", "TEST.EVAL_PERIOD", "1", *opts])
    return cfg


def brute_force_market(dist, q_pids, g_pids, q_cams, g_cams):
    """Rank-1, mAP, mINP (x100) of Market-1501's protocol, one query at a time: a query's gallery drops the images of
    its own identity and camera; AP = mean precision at each true match; INP = matches / rank of the last one."""
    rank1, aps, inps = [], [], []
    for i in range(len(q_pids)):
        keep = ~((g_pids == q_pids[i]) & (g_cams == q_cams[i]))
        order = np.argsort(dist[i][keep], kind="stable")
        match = (g_pids[keep][order] == q_pids[i]).astype(float)
        ranks = np.flatnonzero(match) + 1
        rank1.append(match[0])
        aps.append(np.mean(np.arange(1, len(ranks) + 1) / ranks))
        inps.append(len(ranks) / ranks[-1])
    return {"Rank-1": 100 * np.mean(rank1), "mAP": 100 * np.mean(aps), "mINP": 100 * np.mean(inps)}


def test_vireid_trainer_evaluates_a_single_modality_dataset(cfg, tiny_market, tmp_path):
    trainer = VIReIDTrainer(market_cfg(cfg, tiny_market, tmp_path))
    results = trainer.train()
    assert set(results) == {"Rank-1", "Rank-5", "Rank-10", "mAP", "mINP", "metric"}

    loader, evaluator = build_vireid_evaluator(trainer.cfg, "Market1501")
    assert isinstance(evaluator, SingleModalityEvaluator)
    items = evaluator.items
    assert {it[3] for it in items} == {0}  # visible items: two-stream models take the visible stem
    feats = extract_features(trainer.model, build_vireid_test_loader(trainer.cfg, items), flip=True)
    num_q = len(build_vireid_dataset(trainer.cfg, "Market1501").query)
    assert num_q == len(MARKET_TEST_IDS)
    pids, cams = np.array([it[1] for it in items]), np.array([it[2] for it in items])
    dist = 1 - (feats[:num_q] @ feats[num_q:].T).numpy()  # fast-reid's TEST.METRIC "cosine"
    expected = brute_force_market(dist, pids[:num_q], pids[num_q:], cams[:num_q], cams[num_q:])
    for key, value in expected.items():
        assert results[key] == pytest.approx(value, abs=1e-3), key

    table = format_results_table("Market1501", results)
    row = table.splitlines()[2].split("|")
    assert [c.strip() for c in row[1:3]] == ["Market1501", "-"]
    assert row[3].strip() == f"{results['Rank-1']:.2f}" and row[6].strip() == "-"  # no Rank-20 from fast-reid
    assert row[7].strip() == f"{results['mAP']:.2f}" and "metric" not in table
    comparison = format_comparison_table(results, results)
    assert f"{results['mAP']:.2f} -> {results['mAP']:.2f}" in comparison


def test_tables_of_cross_modality_results_keep_modes_and_spread():
    results = {"all/Rank-1": 10.0, "all/Rank-1_std": 1.5, "all/mAP": 20.0, "indoor/Rank-1": 30.0,
               "indoor/mAP": 40.0, "metric": 15.0}
    lines = format_results_table("SYSUMM01", results).splitlines()
    assert len(lines) == 4 and "| all " in lines[2] and "10.00 ± 1.50" in lines[2] and "| 20.00 " in lines[2]
    assert "| indoor " in lines[3] and "30.00" in lines[3]


@pytest.mark.parametrize("at_start", [False, True])
def test_eval_period_zero_means_no_evaluation(cfg, tiny_market, tmp_path, monkeypatch, at_start):
    calls = []
    test = VIReIDTrainer.test.__func__
    monkeypatch.setattr(VIReIDTrainer, "test", classmethod(lambda cls, c, m: calls.append(1) or test(cls, c, m)))
    out = tmp_path / "run"
    cfg = market_cfg(cfg, tiny_market, out, "TEST.EVAL_PERIOD", "0", "TEST.EVAL_AT_START", str(at_start))
    trainer = VIReIDTrainer(cfg)
    before = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    assert trainer.train() is None
    assert len(calls) == int(at_start)  # only the initial model, when asked
    metrics = json.loads((out / "final_metrics.json").read_text())
    assert metrics["final"] is None and metrics["epoch"] == 0
    assert (metrics["initial"] is not None) == at_start
    if at_start:
        assert set(metrics["initial"]) == {"Rank-1", "Rank-5", "Rank-10", "mAP", "mINP", "metric"}
    assert any(not torch.equal(v, before[k]) for k, v in trainer.model.named_parameters())  # it did train
    assert (out / "model_final.pth").exists()
