"""tools/benchmark_models.py: the budget applied to every config, and a tiny end-to-end benchmark table."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT
from fastreid.config import get_cfg

from vireid_plugins import add_vireid_config

spec = importlib.util.spec_from_file_location("benchmark_models", os.path.join(ROOT, "tools", "benchmark_models.py"))
benchmark_models = importlib.util.module_from_spec(spec)
spec.loader.exec_module(benchmark_models)

HEADER = ["model", "architecture", "params (M)", "all Rank-1", "all mAP", "all mINP", "indoor Rank-1", "indoor mAP",
          "indoor mINP", "train img/s", "peak memory (MiB)"]


def adapted(config, *argv):
    args = benchmark_models.parse_args(["--configs", config, "--data-root", "/data", "--run-one", config, *argv])
    cfg = get_cfg()
    add_vireid_config(cfg)
    cfg.merge_from_file(os.path.join(ROOT, config))
    return benchmark_models.adapt(cfg, args)


def test_budget_scales_each_schedule_to_the_same_length():
    # fast-reid's BoT: 120 epochs of Market-1501 (12,936 images // 64 = 202 iterations); here 8 x 100 iterations
    cfg = adapted("configs/Market1501/bagtricks_R50.yml")
    assert (cfg.SOLVER.MAX_EPOCH, cfg.DATALOADER.ITERS_PER_EPOCH, cfg.SOLVER.IMS_PER_BATCH) == (8, 100, 32)
    assert cfg.SOLVER.STEPS == [3, 6]  # [40, 90] x 8 / 120
    assert cfg.SOLVER.WARMUP_ITERS == round(2000 * 800 / (120 * 202))
    assert (cfg.INPUT.SIZE_TRAIN, cfg.INPUT.SIZE_TEST) == ([64, 32], [64, 32])
    assert not cfg.SOLVER.AMP.ENABLED and not cfg.MODEL.BACKBONE.PRETRAIN and cfg.MODEL.DEVICE == "cpu"
    assert cfg.DATASETS.NAMES == ("SYSUMM01",) and cfg.DATASETS.ROOT == "/data" and cfg.TEST.EVAL_PERIOD == 0
    assert (cfg.MODEL.BACKBONE.DEPTH, cfg.DATALOADER.SAMPLER_TRAIN) == ("50x", "NaiveIdentitySampler")  # the model
    sbs = adapted("configs/Market1501/sbs_R50.yml")  # 60 epochs, cosine after 30, backbone frozen 1000 iterations
    assert sbs.SOLVER.DELAY_EPOCHS == 4 and sbs.SOLVER.FREEZE_ITERS == round(1000 * 800 / (60 * 202))
    assert sbs.SOLVER.WARMUP_ITERS == round(2000 * 800 / (60 * 202)) and sbs.DATALOADER.NUM_INSTANCE == 16
    ours = adapted("configs/Synthetic/agw_supervised.yml")  # written for 10 x 100 iterations, STEPS [8], warm-up 50
    assert (ours.SOLVER.STEPS, ours.SOLVER.WARMUP_ITERS) == ([6], 40)
    assert not ours.DATASETS.SYSU.WITHIN_MODALITY  # the config asks for v2v / i2i; every model gets the same modes
    half = adapted("configs/Synthetic/agw_supervised.yml", "--epochs", "4", "--opts", "SOLVER.BASE_LR", "0.1")
    assert (half.SOLVER.STEPS, half.SOLVER.WARMUP_ITERS, half.SOLVER.BASE_LR) == ([3], 20, 0.1)


def test_unknown_iterations_per_epoch_are_refused(cfg):
    cfg.merge_from_file(os.path.join(ROOT, "configs/Market1501/bagtricks_R50.yml"))
    assert benchmark_models.own_iters_per_epoch(cfg) == 12936 // 64
    cfg.DATASETS.NAMES = ("VeRi",)
    with pytest.raises(ValueError, match=r"DATASETS.NAMES \('VeRi',\) not in .*set DATALOADER.ITERS_PER_EPOCH"):
        benchmark_models.own_iters_per_epoch(cfg)
    cfg.DATALOADER.ITERS_PER_EPOCH = 30
    assert benchmark_models.own_iters_per_epoch(cfg) == 30


@pytest.mark.slow
def test_tiny_benchmark_prints_one_row_per_model(tiny_sysu, tmp_path):
    configs = ["configs/Synthetic/agw_supervised.yml", "configs/Market1501/bagtricks_R50.yml"]
    cmd = [sys.executable, os.path.join(ROOT, "tools", "benchmark_models.py"), "--configs", *configs, "--data-root",
           str(tiny_sysu), "--epochs", "1", "--iters-per-epoch", "2", "--batch", "16", "--workers", "0", "--out",
           str(tmp_path), "--opts", "DATASETS.SYSU.NUM_TRIALS", "2"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[-5].startswith("SYSUMM01 at ") and "1 epochs x 2 iterations x 16 images" in lines[-5]
    assert [c.strip() for c in lines[-4].strip("|").split("|")] == HEADER
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[-2:]]
    assert [r[0] for r in rows] == ["Synthetic/agw_supervised", "Market1501/bagtricks_R50"]
    assert rows[0][1] == "VIReIDBaseline, agw_backbone 18x" and rows[1][1] == "Baseline, resnet_backbone 50x"
    saved = json.loads((tmp_path / "benchmark.json").read_text())["rows"]
    for row, cells in zip(saved, rows):
        assert set(row["modes"]) == {"all", "indoor"}
        for mode in ("all", "indoor"):
            assert all(0 <= row["modes"][mode][m] <= 100 for m in ("Rank-1", "mAP", "mINP"))
        assert row["train_images_per_s"] > 0 and row["peak_memory_mib"] > 100
        assert cells[3] == f"{row['modes']['all']['Rank-1']:.2f}" and cells[9] == f"{row['train_images_per_s']:.1f}"
        assert (tmp_path / row["model"] / "model_final.pth").exists()
    assert 20 < saved[1]["params_m"] < 30 and saved[0]["params_m"] < saved[1]["params_m"]  # ResNet-50 vs -18
