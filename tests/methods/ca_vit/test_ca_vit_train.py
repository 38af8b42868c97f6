"""The CA multi-module framework end to end on the tiny synthetic set with a tiny ViT (tools/train_net.py): a short
supervised source pre-training (TokenClassifierHead), then from its weights phase 1 in epoch 0 and phase 2 (VRA,
VRNL, UM) from epoch 1, every loss in the log and the association accuracy in history.json."""
import json

import pytest
import torch
from conftest import final_metrics, train_net

TINY_VIT = ["MODEL.BACKBONE.FEAT_DIM", "32", "MODEL.BACKBONE.VIT.EMBED_DIM", "32", "MODEL.BACKBONE.VIT.DEPTH", "2",
            "MODEL.BACKBONE.VIT.NUM_HEADS", "2"]
PHASES = ["CA_VIT.PHASE2_START_EPOCH", "1", "SOLVER.MAX_EPOCH", "3", "SOLVER.STEPS", "[1]", "PSEUDO.K1", "10",
          "PSEUDO.EPS", "[0.45,0.45]", "PSEUDO.MIN_SAMPLES", "2", "CA_VIT.VRNL.CAMERA_FILTER.MIN_SAMPLES", "2"]
LOSSES = ["loss_base_visible", "loss_base_ca", "loss_base_infrared", "loss_pacbam_visible", "loss_pacbam_infrared",
          "loss_maal_d", "loss_maal_a", "loss_vra_visible", "loss_vra_infrared", "loss_vrnl_vv", "loss_vrnl_rr",
          "loss_vrnl_vr", "loss_vrnl_rv", "loss_um_visible", "loss_um_infrared"]


@pytest.mark.slow
def test_ca_vit_runs_both_phases_with_every_module(tiny_sysu, tmp_path):
    source = tmp_path / "source"
    train_net("configs/Synthetic/source_pretrain_vit.yml", tiny_sysu, source,
              opts=TINY_VIT + ["SOLVER.MAX_EPOCH", "1", "SOLVER.IMS_PER_BATCH", "8"])
    weights = torch.load(source / "model_final.pth", weights_only=True)["model"]
    assert "heads.classifier.weight" in weights and not any(k.startswith("criterion.") for k in weights)
    log = train_net("configs/Synthetic/ca_vit.yml", tiny_sysu, tmp_path,
                    opts=TINY_VIT + PHASES + ["MODEL.WEIGHTS", str(source / "model_final.pth")])
    assert "source/model_final.pth" in log
    assert "CAViTAssociation at epoch 1" in log and "CAViTAssociation at epoch 2" in log
    assert "CAViTAssociation at epoch 0" not in log
    phase1, phase2 = (next(line for line in log.splitlines() if f"epoch/iter: {e}/" in line) for e in (0, 2))
    assert all(name in phase2 for name in LOSSES), phase2
    assert "loss_maal_d" in phase1 and "loss_pacbam_visible" in phase1 and "loss_vra" not in phase1

    history = json.loads((tmp_path / "pseudo_labels" / "history.json").read_text())
    assert [r["epoch"] for r in history] == [0, 1, 2] and "association" not in history[0]
    for record in history[1:]:
        assert set(record["association"]) == {"visible->infrared", "infrared->visible"}
        assert all(0 <= v <= 1 for v in record["association"].values())
        assert {"linked/visible", "neighbours/vv", "neighbours/rv", "um_partnered/infrared"} <= set(record["ca_vit"])

    state = torch.load(tmp_path / "model_final.pth", weights_only=True)["model"]
    assert state["criterion.discriminator.fc2.weight"].shape == (3, 64)  # E: 4 tokens x 32 -> 64 -> 3
    assert state["criterion.shared.visible.features"].shape[0] >= 1  # phase-2 shared memories are saved
    assert not any(key.endswith(".bank") for key in state)  # the instance features are rebuilt, not saved
    final = final_metrics(tmp_path)["final"]
    assert 0 <= final["all/mAP"] <= 100 and 0 <= final["indoor/Rank-1"] <= 100
