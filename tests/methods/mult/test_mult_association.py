"""MULT's association hook: the transferred labels installed in both label spaces for every image, the inputs it
hands to the label transfer (the epoch's features and Jaccard graphs), its errors, and a tiny end-to-end run."""
import json
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from conftest import final_metrics, train_net

from vireid_plugins.association import cluster_features
from vireid_plugins.association.mult import LabelSpaceTransfer, MULTResult, mult_label_transfer
from vireid_plugins.data import TrainTargets
from vireid_plugins.methods.mult.association import MULTAssociation, with_transferred_labels

# items: visible 0, 2, 4 and infrared 1, 3 (interleaved, so item order differs from modality order)
ITEMS = [("v0", 0, 1, 0), ("r0", 0, 3, 1), ("v1", 1, 1, 0), ("r1", 1, 3, 1), ("v2", 1, 2, 0)]


def transfer(own, cross, k):
    return LabelSpaceTransfer(own_labels=torch.tensor(own), cross_labels=torch.tensor(cross),
                              own_targets=F.one_hot(torch.tensor(own), k).float(),
                              cross_targets=F.one_hot(torch.tensor(cross), k).float() * 0.5 + 0.5 / k,
                              initial_cross_labels=torch.tensor(cross), iterations=3, change=0.004)


def test_every_image_gets_a_label_and_a_target_in_both_spaces():
    targets = TrainTargets.from_modality_clusters(ITEMS, {0: torch.tensor([0, 1, -1]), 1: torch.tensor([0, -1])})
    result = MULTResult(visible=transfer([0, 1, 1], [1, 0], 2), infrared=transfer([0, 0], [0, 0, 0], 1),
                        plan_iterations=10, plan_marginal_error=1e-5)
    new = with_transferred_labels(targets, result, epoch=5)
    assert new.branches == ("visible", "infrared") and new.pairing == "shared" and new.epoch == 5
    assert new.spaces["visible"].labels.tolist() == [0, 1, 1, 0, 1]  # v0, r0 (cross), v1, r1 (cross), v2
    assert new.spaces["infrared"].labels.tolist() == [0, 0, 0, 0, 0]
    assert torch.allclose(new.spaces["visible"].soft[1], torch.tensor([0.25, 0.75]))  # r0's cross target
    assert new.spaces["visible"].modality == 0 and new.spaces["infrared"].num_classes == 1
    items, branches, _ = new.samples()
    assert len(items) == 10 and branches.count(0) == 5  # outliers included: every image in both branches


def test_the_hook_transfers_the_epochs_features_on_the_epochs_graphs(cfg):
    g = torch.Generator().manual_seed(0)
    centres = F.normalize(torch.randn(3, 8, generator=g), dim=1)
    pid = torch.arange(24) % 3
    feats = F.normalize(centres[pid] + 0.1 * torch.randn(24, 8, generator=g), dim=1)
    items = [(f"x{i}", int(pid[i]), 1, i % 2) for i in range(24)]
    labels, graphs = {}, {}
    for m in (0, 1):
        index = torch.arange(m, 24, 2)
        labels[m], graph = cluster_features(feats[index], eps=0.5, min_samples=2, k1=6, k2=2, return_graph=True)
        graphs[m] = (index, graph)
    targets = TrainTargets.from_modality_clusters(items, labels)
    targets.extras.update(features=feats, jaccard=graphs)
    hook = MULTAssociation(cfg)
    hook.trainer = SimpleNamespace(epoch=3)
    result = hook._transfer(targets)
    expected = mult_label_transfer(feats[0::2], feats[1::2], labels[0], labels[1], graphs[0][1], graphs[1][1])
    assert torch.equal(result.visible.own_labels, expected.visible.own_labels)
    assert torch.equal(result.infrared.cross_targets, expected.infrared.cross_targets)
    targets.extras.pop("jaccard")
    with pytest.raises(RuntimeError, match="no Jaccard graphs of this epoch's clustering.*PSEUDO.PERIOD 1"):
        hook._transfer(targets)


@pytest.mark.slow
def test_mult_runs_the_dcl_stage_then_the_transfer(tiny_sysu, tmp_path):
    log = train_net("configs/Synthetic/mult.yml", tiny_sysu, tmp_path, opts=[
        "MULT.START_EPOCH", "1", "SOLVER.MAX_EPOCH", "3", "PSEUDO.K1", "10", "PSEUDO.EPS", "[0.45,0.45]",
        "PSEUDO.MIN_SAMPLES", "2", "DATALOADER.ITERS_PER_EPOCH", "2", "TEST.EVAL_PERIOD", "3"])
    assert "MULTAssociation at epoch 1" in log and "MULTAssociation at epoch 2" in log
    assert "loss_memory_visible" in log and "loss_ms" in log and "loss_ma" in log and "loss_oclr" in log
    history = json.loads((tmp_path / "pseudo_labels" / "history.json").read_text())
    assert [r["epoch"] for r in history] == [0, 1, 2] and "association" not in history[0]
    for record in history[1:]:
        assert set(record["association"]) == {"visible->infrared", "infrared->visible"}
        assert 1 <= record["mult"]["visible/iterations"] <= 20
    assert final_metrics(tmp_path)["final"]["all/mAP"] > 0
