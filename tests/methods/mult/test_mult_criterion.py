"""MULT's criterion against hand computations: the DCL stage, AMIRL in both label spaces (parity), OCLR, which
memories each epoch updates, the config's switches and weights."""
import pytest
import torch
import torch.nn.functional as F

from vireid_plugins.data import LabelSpace, TrainTargets
from vireid_plugins.methods.mult.criterion import _SPACE_OF_MEMORY, AMIRL_TERMS, MULTCriterion
from vireid_plugins.modeling.losses import ClusterMemory

ITEMS = [(f"v{i}", i, 1, 0) for i in range(4)] + [(f"r{i}", i, 3, 1) for i in range(3)]
OWN = {0: torch.tensor([0, 0, 1, 1]), 1: torch.tensor([0, 1, 1])}
TAU = 0.05


def setup(cfg, **mult):
    cfg.MODEL.BACKBONE.FEAT_DIM = 4
    for key, value in mult.items():
        node, _, leaf = key.rpartition(".")
        (cfg.MULT[node] if node else cfg.MULT)[leaf] = value
    g = torch.Generator().manual_seed(0)
    features = F.normalize(torch.randn(7, 4, generator=g), dim=1)
    clusters = TrainTargets.from_modality_clusters(ITEMS, OWN, epoch=0)
    criterion = MULTCriterion(cfg)
    criterion.set_targets(clusters, features)
    soft = {name: torch.softmax(torch.randn(7, k, generator=g), 1) for name, k in (("visible", 2), ("infrared", 2))}
    spaces = {"visible": LabelSpace(torch.tensor([0, 0, 1, 1, 1, 0, 0]), 2, 0, soft["visible"]),
              "infrared": LabelSpace(torch.tensor([1, 1, 0, 0, 0, 1, 1]), 2, 1, soft["infrared"])}
    transfer = clusters.replace(spaces=spaces, pairing="shared")
    batch = {"features": torch.randn(7, 4, generator=g), "ca_features": torch.randn(4, 4, generator=g),
             "modality": torch.tensor([0, 0, 0, 0, 1, 1, 1]), "item": torch.arange(7),
             "branch": torch.tensor([0, 0, 0, 0, 1, 1, 1]), "targets": torch.zeros(7, dtype=torch.long)}
    return criterion, clusters, transfer, features, batch


def centroids(features):
    c_v = ClusterMemory.cluster_centroids(features[:4], OWN[0])
    c_r = ClusterMemory.cluster_centroids(features[4:], OWN[1])
    return {"v": c_v, "va": c_v, "rcm": c_v, "r": c_r, "ra": c_r, "vcm": c_r}


def z(x, memory):
    return F.normalize(x, dim=1) @ memory.T / TAU


def ce(logits, target):
    return -(target * F.log_softmax(logits, 1)).sum(1).mean()


def sce(pred, target, t=0.2):
    return -(torch.softmax(target / t, 1) * F.log_softmax(pred, 1)).sum(1).mean()


def test_the_terms_table_is_consistent():
    """Each loss term's target lies in its memory's label space: own targets for a view of that space's modality."""
    own_space = {"v": "visible", "a": "visible", "r": "infrared"}
    for space, terms in AMIRL_TERMS.items():
        for memory, view, target in terms["ms"] + terms["ma"]:
            expected = own_space[view] if target == "own" else ({"visible", "infrared"} - {own_space[view]}).pop()
            assert _SPACE_OF_MEMORY[memory] == expected, (space, memory, view, target)


def test_before_the_transfer_it_is_the_dcl_baseline(cfg):
    criterion, clusters, _, features, batch = setup(cfg)
    criterion.eval()
    batch["targets"] = torch.tensor([0, 0, 1, 1, 0, 1, 1])
    losses = criterion(batch)
    m = centroids(features)
    f_v = torch.cat([batch["features"][:4], batch["ca_features"]])
    assert torch.allclose(losses["loss_memory_visible"], F.cross_entropy(z(f_v, m["v"]), torch.cat([OWN[0]] * 2)),
                          atol=1e-5)
    assert torch.allclose(losses["loss_memory_infrared"], F.cross_entropy(z(batch["features"][4:], m["r"]), OWN[1]),
                          atol=1e-5)


@pytest.mark.parametrize("epoch", [0, 1])
def test_amirl_and_oclr_by_hand_in_both_label_spaces(cfg, epoch):
    criterion, _, transfer, features, batch = setup(cfg, **{"CROSS_MEMORY.SCALE": 0.5, "OCLR.SCALE": 2.0})
    criterion.eval()
    criterion.set_targets(transfer.replace(epoch=epoch))
    losses = criterion(batch)
    m = centroids(features)
    f = {"v": batch["features"][:4], "a": batch["ca_features"], "r": batch["features"][4:]}
    sv, sr = transfer.spaces["visible"].soft, transfer.spaces["infrared"].soft
    y = {("v", "visible"): sv[:4], ("a", "visible"): sv[:4], ("r", "visible"): sv[4:],
         ("v", "infrared"): sr[:4], ("a", "infrared"): sr[:4], ("r", "infrared"): sr[4:]}
    if epoch == 0:  # the visible label space
        ms = (ce(z(f["v"], m["v"]), y["v", "visible"]) + ce(z(f["a"], m["v"]), y["a", "visible"])
              + ce(z(f["r"], m["r"]), y["r", "infrared"]) + ce(z(f["r"], m["rcm"]), y["r", "visible"]))
        ma = (ce(z(f["v"], m["va"]), y["v", "visible"]) + ce(z(f["a"], m["va"]), y["a", "visible"])
              + ce(z(f["r"], m["va"]), y["r", "visible"]))
        oclr = (sce(z(f["v"], m["va"]), z(f["a"], m["v"])) + sce(z(f["a"], m["va"]), z(f["v"], m["v"]))
                + sce(z(f["r"], m["va"]), z(f["r"], m["rcm"])) + sce(z(f["v"], m["va"]), z(f["a"], m["rcm"]))
                + sce(z(f["a"], m["va"]), z(f["v"], m["rcm"])) + sce(z(f["r"], m["va"]), z(f["r"], m["v"])))
    else:  # the infrared label space
        ms = (ce(z(f["v"], m["v"]), y["v", "visible"]) + ce(z(f["a"], m["v"]), y["a", "visible"])
              + ce(z(f["v"], m["vcm"]), y["v", "infrared"]) + ce(z(f["a"], m["vcm"]), y["a", "infrared"])
              + ce(z(f["r"], m["r"]), y["r", "infrared"]))
        ma = (ce(z(f["v"], m["ra"]), y["v", "infrared"]) + ce(z(f["a"], m["ra"]), y["a", "infrared"])
              + ce(z(f["r"], m["ra"]), y["r", "infrared"]))
        oclr = (sce(z(f["v"], m["ra"]), z(f["a"], m["vcm"])) + sce(z(f["a"], m["ra"]), z(f["v"], m["vcm"]))
                + sce(z(f["r"], m["ra"]), z(f["r"], m["r"])) + sce(z(f["v"], m["ra"]), z(f["a"], m["r"]))
                + sce(z(f["a"], m["ra"]), z(f["v"], m["r"])) + sce(z(f["r"], m["ra"]), z(f["r"], m["vcm"])))
    assert torch.allclose(losses["loss_ms"], ms, atol=1e-4)
    assert torch.allclose(losses["loss_ma"], 0.5 * ma, atol=1e-4)
    assert torch.allclose(losses["loss_oclr"], 2.0 * oclr, atol=1e-4)


@pytest.mark.parametrize("epoch,updated", [(0, {"v", "r", "rcm", "va"}), (1, {"v", "r", "vcm", "ra"})])
def test_each_epoch_updates_the_memories_of_its_label_space(cfg, epoch, updated):
    criterion, _, transfer, _, batch = setup(cfg)
    criterion.set_targets(transfer.replace(epoch=epoch))
    before = {name: criterion.memory(name).features.clone() for name in _SPACE_OF_MEMORY}
    batch["features"].requires_grad_(True)
    sum(criterion(batch).values()).backward()
    changed = {name for name in _SPACE_OF_MEMORY if not torch.equal(before[name], criterion.memory(name).features)}
    assert changed == updated


def test_switches_drop_their_losses_and_alternation(cfg):
    criterion, _, transfer, _, batch = setup(cfg, **{"CROSS_MEMORY.ENABLED": False, "OCLR.ENABLED": False,
                                                     "ALTERNATE": False})
    criterion.eval()
    criterion.set_targets(transfer.replace(epoch=1))
    odd = criterion(batch)
    assert set(odd) == {"loss_ms"}
    criterion.set_targets(transfer.replace(epoch=0))
    assert torch.equal(criterion(batch)["loss_ms"], odd["loss_ms"])  # no alternation: the visible space always


def test_oclr_targets_can_be_detached(cfg):
    grads = {}
    for detach in (False, True):
        # a soft target (T = 20): at T = 0.2 the target softmax of memory logits is saturated, its gradient ~0
        criterion, _, transfer, _, batch = setup(cfg, **{"OCLR.DETACH": detach, "OCLR.TEMPERATURE": 20.0})
        criterion.eval()
        criterion.set_targets(transfer)
        ca = batch["ca_features"].requires_grad_(True)
        criterion(batch)["loss_oclr"].backward()
        grads[detach] = ca.grad.clone()
    # the CA view is a prediction (M^va f_a) and a target (M^v f_a, M^rcm f_a): detaching removes the latter part
    assert grads[True].abs().sum() > 0 and not torch.allclose(grads[True], grads[False])
