"""The CA-ViT association hook on hand-made per-token features: VRA matching and cross labels written into the shared
label spaces of both modalities (-1 rows for outliers), the branches left as they are, the extras (UM partners by
parity, VRNL sets with the camera filter and the cross-pair alternation), the association accuracy per direction,
and the hook's hand-over of features to trainer.set_targets."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vireid_plugins.association import camera_filter, cluster_features, token_neighbours
from vireid_plugins.data import TrainTargets
from vireid_plugins.engine import LabelHistory, association_accuracy
from vireid_plugins.methods.ca_vit import association as assoc
from vireid_plugins.methods.ca_vit.association import (
    UM_PARTNERS,
    VRA_MATCHING,
    VRNL_NEIGHBOURS,
    CAViTAssociation,
    ca_vit_links,
    intra_camera_clusters,
    with_ca_vit_targets,
)

# (path, pid, camera, modality): visible v0-v4 (cameras 0, 0, 1, 1, 1), infrared r0-r3 (cameras 2, 2, 5, 5)
ITEMS = [("v0", 1, 0, 0), ("v1", 1, 0, 0), ("v2", 2, 1, 0), ("v3", 2, 1, 0), ("v4", 3, 1, 0),
         ("r0", 2, 2, 1), ("r1", 1, 2, 1), ("r2", 1, 5, 1), ("r3", 4, 5, 1)]
OWN = {0: torch.tensor([0, 0, 1, 1, -1]), 1: torch.tensor([0, 0, 1, -1])}
ANGLES = [(0, 0), (10, 10), (90, 90), (100, 100), (200, 200), (92, 95), (98, 92), (5, 8), (250, 250)]


def per_token(angles):
    rad = torch.tensor(angles, dtype=torch.float32) * math.pi / 180
    return torch.stack([rad.cos(), rad.sin()], dim=-1)  # (N, T=2, 2)


FEATS = per_token(ANGLES)


@pytest.fixture
def ca_cfg(cfg):
    cfg.MODEL.BACKBONE.NUM_TOKENS = 2
    cfg.CA_VIT.VRNL.CAMERA_FILTER.ENABLED = False
    return cfg


def targets():
    return TrainTargets.from_modality_clusters(ITEMS, OWN, epoch=6)


def test_cross_labels_in_both_shared_spaces(ca_cfg):
    base = targets()
    links = ca_vit_links(ca_cfg, FEATS, base, epoch=6)
    # visible cluster 0 (~5 deg) <-> infrared cluster 1 (r2), visible 1 (~95 deg) <-> infrared 0 (r0, r1)
    assert links.matching.vis_to_ir.tolist() == [[1], [0]] and links.matching.ir_to_vis.tolist() == [[1], [0]]
    new = with_ca_vit_targets(base, links, epoch=6)
    # visible_shared: the visible clusters; infrared images by y~^r; outliers -1
    assert new.spaces["visible_shared"].labels.tolist() == [0, 0, 1, 1, -1, 1, 1, 0, -1]
    assert new.spaces["infrared_shared"].labels.tolist() == [1, 1, 0, 0, -1, 0, 0, 1, -1]
    assert new.spaces["visible_shared"].modality == 0 and new.spaces["infrared_shared"].num_classes == 2
    assert new.cross_labels("infrared_shared").tolist() == [1, 1, 0, 0, -1]
    # the train set is still drawn per modality from its own clusters
    assert new.branches == ("visible", "infrared") and new.pairing == "independent" and new.epoch == 6
    assert new.samples() == base.samples()
    assert set(new.extras) == {VRA_MATCHING, UM_PARTNERS, VRNL_NEIGHBOURS}
    # r1 (pid 1) was clustered with pid 2's r0: infrared->visible 2/3; pid 1's infrared cluster is the tie-broken
    # cluster 0, so v0, v1 (-> 1) are wrong: visible->infrared 1/2; the outliers' pids are not counted
    assert association_accuracy(new) == pytest.approx({"visible->infrared": 0.5, "infrared->visible": 2 / 3})


def test_partners_follow_the_epoch_parity(ca_cfg):
    # three infrared clusters (r0 alone at 2 deg, r1 alone at 8 deg, r2 + r3 at 120 deg) for two visible clusters
    # (0-4 deg, 120-124 deg): the infrared clusters are the rows; r-clusters 0 and 1 both go to visible cluster 0
    own = {0: torch.tensor([0, 0, 1, 1, -1]), 1: torch.tensor([0, 1, 2, 2])}
    feats = per_token([(0, 0), (4, 4), (120, 120), (124, 124), (200, 200), (2, 2), (8, 8), (118, 118), (122, 122)])
    base = TrainTargets.from_modality_clusters(ITEMS, own)
    ca_cfg.CA_VIT.VRNL.ENABLED = False
    even, odd = (ca_vit_links(ca_cfg, feats, base, epoch=e) for e in (4, 5))
    assert even.matching.swapped and even.matching.ir_to_vis.tolist() == [[0], [0], [1]]
    assert even.matching.vis_to_ir.tolist() == [[0, 1], [2, -1]]
    # infrared group [0, 1]: 0 -> 1 in even epochs, 1 -> 0 in odd ones; cluster 2 and the visible ones alone
    assert even.partners["infrared"].tolist() == [1, -1, -1] and odd.partners["infrared"].tolist() == [-1, 0, -1]
    assert even.partners["visible"].tolist() == [-1, -1] == odd.partners["visible"].tolist()
    new = with_ca_vit_targets(base, odd, epoch=5)
    assert new.extras[UM_PARTNERS]["infrared"].tolist() == [-1, 0, -1] and VRNL_NEIGHBOURS not in new.extras
    # primary links: visible 0 -> r-cluster 0, visible 1 -> 2; every infrared cluster -> its visible one
    assert new.spaces["infrared_shared"].labels.tolist() == [0, 0, 2, 2, -1, 0, 1, 2, 2]
    assert new.spaces["visible_shared"].labels.tolist() == [0, 0, 1, 1, -1, 0, 0, 1, 1]


def brute_force_sets(queries, database, rho):
    """Neighbours in every token space: cosine > rho x the row's best, intersected over the T spaces."""
    out = []
    for q in queries:
        keep = None
        for t in range(q.shape[0]):
            sims = F.cosine_similarity(q[t][None], database[:, t], dim=1)
            found = set(torch.nonzero(sims > rho * sims.max(), as_tuple=True)[0].tolist())
            keep = found if keep is None else keep & found
        out.append(sorted(keep))
    return out


@pytest.mark.parametrize("epoch", [2, 3])
def test_vrnl_sets_per_pair_and_alternation(ca_cfg, epoch):
    ca_cfg.CA_VIT.VRA.ENABLED = ca_cfg.CA_VIT.UM.ENABLED = False
    ca_cfg.CA_VIT.VRNL.RHO = 0.5
    links = ca_vit_links(ca_cfg, FEATS, targets(), epoch)
    assert links.matching is None and links.partners is None
    vis, ir = FEATS[:5], FEATS[5:]
    expected = {"vv": brute_force_sets(vis, vis, 0.5), "rr": brute_force_sets(ir, ir, 0.5),
                "vr": brute_force_sets(vis, ir, 0.5), "rv": brute_force_sets(ir, vis, 0.5)}
    for pair, sets in links.neighbours.items():
        assert sets.to_lists() == expected[pair], pair
    assert set(links.neighbours) == {"vv", "rr", "vr", "rv"}
    ca_cfg.CA_VIT.VRNL.CROSS_PAIRS = "alternate"  # TokenMatcher: vr in even epochs, rv in odd ones
    links = ca_vit_links(ca_cfg, FEATS, targets(), epoch)
    assert set(links.neighbours) == {"vv", "rr", "vr" if epoch % 2 == 0 else "rv"}


def test_intra_camera_clusters_cluster_each_camera_alone():
    feats = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.99, 0.05], [0.02, 1.0], [-1.0, 0.1], [1.0, 0.01]]),
                        dim=1)
    cams = torch.tensor([0, 1, 0, 1, 0, 3])
    labels = intra_camera_clusters(feats, cams, eps=0.5, min_samples=2, k1=2, k2=1)
    # camera 0: items 0 and 2 together, 4 alone; camera 1: items 1 and 3; camera 3: a single image (outlier)
    assert labels.tolist() == [0, 0, 0, 0, -1, -1]
    for cam in (0, 1, 3):
        index = torch.nonzero(cams == cam, as_tuple=True)[0]
        expected = cluster_features(feats[index], eps=0.5, min_samples=2, k1=2, k2=1)
        assert labels[index].tolist() == expected.tolist()


def test_camera_filter_is_applied_with_the_intra_camera_clusters(ca_cfg):
    ca_cfg.CA_VIT.VRA.ENABLED = ca_cfg.CA_VIT.UM.ENABLED = False
    c = ca_cfg.CA_VIT.VRNL
    c.RHO, c.CAMERA_FILTER.ENABLED, c.CAMERA_FILTER.MIN_SAMPLES, c.CAMERA_FILTER.K1 = 0.0, True, 2, 2
    feats = per_token(ANGLES[:4] + [(130, 130)] + ANGLES[5:])  # v4 near v2, v3 (camera 1) but not clustered
    links = ca_vit_links(ca_cfg, feats, targets(), epoch=2)
    cams = torch.tensor([it[2] for it in ITEMS])
    flat = F.normalize(feats.flatten(1), dim=1)
    cam_labels = intra_camera_clusters(flat, cams, c.CAMERA_FILTER.EPS, 2, 2, c.CAMERA_FILTER.K2)
    assert cam_labels[:5].tolist() == [0, 0, 0, 0, -1]  # camera 0: v0 v1; camera 1: v2 v3, v4 an outlier
    masks = {"v": slice(0, 5), "r": slice(5, 9)}
    for pair, sets in links.neighbours.items():
        a, b = masks[pair[0]], masks[pair[1]]
        raw = token_neighbours(feats[a], feats[b], rho=0.0)
        expected = camera_filter(raw, cams[a], cams[b], cam_labels[a], cam_labels[b], same_set=pair[0] == pair[1])
        assert sets.to_lists() == expected.to_lists(), pair
    # vv with rho 0: positive cosine in both spaces. v4 (130 deg) would have v2, v3, but they are camera-1 images
    # outside its intra-camera cluster; v2 keeps v1 (camera 0) and v3, and loses v4
    raw = token_neighbours(feats[:5], feats[:5], rho=0.0).to_lists()
    assert raw[4] == [2, 3, 4] and raw[2] == [1, 2, 3, 4]
    assert links.neighbours["vv"].to_lists()[4] == [4] and links.neighbours["vv"].to_lists()[2] == [1, 2, 3]


# ------------------------------------------------------------------------------------------------ the hook
class _Criterion:
    def __init__(self, bank):
        self.bank = bank

    def item_features(self):
        return self.bank


class _Model(nn.Module):
    def __init__(self, bank):
        super().__init__()
        self.criterion = _Criterion(bank)


class _Trainer:
    def __init__(self, epoch, bank):
        self.epoch, self.model, self.storage = epoch, _Model(bank), None
        self.targets, self.label_history, self.calls = targets(), LabelHistory(), []

    def set_targets(self, targets, features=None):
        self.targets = targets
        self.calls.append(features)


def run_hook(cfg, epoch, bank):
    hook = CAViTAssociation(cfg)
    hook.trainer = _Trainer(epoch, bank)
    hook.before_epoch()
    return hook.trainer


def test_hook_installs_targets_and_features_from_phase_2_on(ca_cfg):
    ca_cfg.CA_VIT.PHASE2_START_EPOCH = 3
    bank = F.normalize(F.normalize(FEATS, dim=-1).flatten(1), dim=1)  # the criterion's image-level features
    idle = run_hook(ca_cfg, 2, bank)
    assert idle.calls == [] and "visible_shared" not in idle.targets.spaces  # phase 1: nothing to do
    trainer = run_hook(ca_cfg, 3, bank)
    assert len(trainer.calls) == 2 and trainer.calls[0] is bank and trainer.calls[1] is None  # rebuild, then install
    assert trainer.targets.spaces["visible_shared"].labels.tolist() == [0, 0, 1, 1, -1, 1, 1, 0, -1]
    record = trainer.label_history.records[0]
    assert record["epoch"] == 3 and record["association"] == pytest.approx({"visible->infrared": 0.5,
                                                                            "infrared->visible": 2 / 3})
    assert record["ca_vit"]["linked/visible"] == 1.0 and "neighbours/vv" in record["ca_vit"]


def test_hook_extracts_features_when_the_criterion_has_none(ca_cfg, monkeypatch):
    ca_cfg.CA_VIT.PHASE2_START_EPOCH = 0
    calls = []

    def fake_extract(cfg, model, items, normalize=True):
        calls.append(len(items))
        return F.normalize(FEATS, dim=-1)

    monkeypatch.setattr(assoc, "extract_item_features", fake_extract)
    trainer = run_hook(ca_cfg, 0, None)
    assert calls == [9]
    torch.testing.assert_close(trainer.calls[0], F.normalize(F.normalize(FEATS, dim=-1).flatten(1), dim=1))
    assert trainer.targets.spaces["infrared_shared"].labels.tolist() == [1, 1, 0, 0, -1, 0, 0, 1, -1]
