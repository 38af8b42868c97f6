"""End-to-end: tools/train_net.py trains, evaluates, resumes and evaluates only, on the tiny synthetic set."""
import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, final_metrics, train_net

pytestmark = pytest.mark.slow  # subprocess end-to-end runs


def table_rows(log):
    """The rows of the results table a run printed: ``[(mode, "mean ± std" cells...)]``."""
    return [tuple(c.strip() for c in line.split("|")[2:-1]) for line in log.splitlines()
            if line.startswith("| SYSUMM01 ")]


def test_supervised_train_eval_resume_and_eval_only(tiny_sysu, tmp_path):
    out = tmp_path / "sup"
    log = train_net("configs/Synthetic/agw_supervised.yml", tiny_sysu, out, opts=["SOLVER.MAX_EPOCH", "2",
                                                                                   "SOLVER.CHECKPOINT_PERIOD", "1"])
    rows = table_rows(log)
    assert [r[0] for r in rows] == ["all", "indoor", "v2v", "i2i"]  # the config adds the within-modality rows
    final = final_metrics(out)
    assert final["epoch"] == 1 and final["initial"] is None
    assert rows[0][5].startswith(f"{final['final']['all/mAP']:.2f} ± ")  # the table and the file agree
    assert (out / "model_0000.pth").exists() and (out / "model_final.pth").exists()
    assert not (out / "model_best.pth").exists()  # no selection on the test set by default

    # resume from epoch 0's checkpoint: only epoch 1 runs
    (out / "last_checkpoint").write_text("model_0000.pth")
    log = train_net("configs/Synthetic/agw_supervised.yml", tiny_sysu, out, "--resume",
                    opts=["SOLVER.MAX_EPOCH", "2", "SOLVER.CHECKPOINT_PERIOD", "1"])
    assert "Starting training from epoch 1" in log

    eval_log = train_net("configs/Synthetic/agw_supervised.yml", tiny_sysu, tmp_path / "eval", "--eval-only",
                         opts=["MODEL.WEIGHTS", str(out / "model_final.pth")])
    assert table_rows(eval_log) == table_rows(log)[-4:]  # same weights, same metrics
    with open(tmp_path / "eval" / "eval_metrics.json") as f:
        evaluated = json.load(f)
    assert evaluated["weights"] == str(out / "model_final.pth") and evaluated["initial"] is None
    assert evaluated["final"] == final_metrics(out)["final"]


def test_eval_only_without_weights_is_refused(tiny_sysu, tmp_path):
    cmd = [sys.executable, os.path.join(ROOT, "tools", "train_net.py"), "--config-file",
           os.path.join(ROOT, "configs/Synthetic/agw_supervised.yml"), "--eval-only", "DATASETS.ROOT", str(tiny_sysu),
           "OUTPUT_DIR", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "MODEL.WEIGHTS" in proc.stderr


def test_missing_model_weights_are_named(tiny_sysu, tmp_path):
    missing = tmp_path / "no_such_model.pth"
    cmd = [sys.executable, os.path.join(ROOT, "tools", "train_net.py"), "--config-file",
           os.path.join(ROOT, "configs/Synthetic/dotla.yml"), "DATASETS.ROOT", str(tiny_sysu),
           "OUTPUT_DIR", str(tmp_path / "out"), "MODEL.WEIGHTS", str(missing)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "MODEL.WEIGHTS" in proc.stderr and str(missing) in proc.stderr and "does not exist" in proc.stderr


@pytest.mark.parametrize("period", [1])
def test_unsupervised_resume_reproduces_pseudo_labels(tiny_sysu, tmp_path, period):
    opts = ["PSEUDO.K1", "10", "PSEUDO.PERIOD", str(period), "SOLVER.CHECKPOINT_PERIOD", "1", "TEST.EVAL_PERIOD", "0"]
    full, part = tmp_path / "full", tmp_path / "part"
    train_net("configs/Synthetic/usl_baseline.yml", tiny_sysu, full, opts=["SOLVER.MAX_EPOCH", "3", *opts])
    train_net("configs/Synthetic/usl_baseline.yml", tiny_sysu, part, opts=["SOLVER.MAX_EPOCH", "3", *opts])
    (part / "last_checkpoint").write_text("model_0001.pth")
    for f in (part / "pseudo_labels").glob("epoch_0002.pt"):
        f.unlink()
    log = train_net("configs/Synthetic/usl_baseline.yml", tiny_sysu, part, "--resume",
                    opts=["SOLVER.MAX_EPOCH", "3", *opts])
    assert "Starting training from epoch 2" in log
    for epoch in range(3):
        a = torch.load(full / "pseudo_labels" / f"epoch_{epoch:04d}.pt")
        b = torch.load(part / "pseudo_labels" / f"epoch_{epoch:04d}.pt")
        assert torch.equal(a["labels"], b["labels"]), epoch
    a = torch.load(full / "model_final.pth", weights_only=True)["model"]
    b = torch.load(part / "model_final.pth", weights_only=True)["model"]
    for key in ("criterion.memories.visible.features", "backbone.stems.1.conv1.weight"):
        assert torch.allclose(a[key], b[key], atol=1e-5), key
