"""DOTLA end to end on the tiny synthetic set: stage 1, then stage 2 from epoch 1 (tools/train_net.py)."""
import json

import pytest
from conftest import final_metrics, train_net

DOTLA_OPTS = ["DOTLA.START_EPOCH", "1", "SOLVER.MAX_EPOCH", "3", "SOLVER.STEPS", "[1]", "PSEUDO.K1", "10",
              "PSEUDO.EPS", "[0.45,0.45]", "PSEUDO.MIN_SAMPLES", "2", "DATALOADER.ITERS_PER_EPOCH", "3"]


@pytest.mark.slow
def test_dotla_runs_both_stages_and_reports_association(tiny_sysu, tmp_path):
    log = train_net("configs/Synthetic/dotla.yml", tiny_sysu, tmp_path, opts=DOTLA_OPTS)
    assert "DOTLAAssociation at epoch 1" in log and "DOTLAAssociation at epoch 2" in log
    assert "loss_cross_visible" in log and "loss_cncr" in log  # stage-2 losses
    history = json.loads((tmp_path / "pseudo_labels" / "history.json").read_text())
    assert [r["epoch"] for r in history] == [0, 1, 2]
    assert "association" not in history[0]  # stage 1 (Eq. 16) makes no cross-modality labels
    for record in history[1:]:
        assert set(record["association"]) == {"visible->infrared", "infrared->visible"}
        assert set(record["dotla"]) == {"noisy_ratio/visible->infrared", "noisy_ratio/infrared->visible"}
    final = final_metrics(tmp_path)["final"]
    assert 0 <= final["all/mAP"] <= 100 and 0 <= final["indoor/Rank-1"] <= 100
