"""DOTLA's association glue on hand-made features: which classifier predicts which images, -1 rows, the labels and
soft targets installed in each branch's label space (no label offsets), NCLR's output passed through."""
import math

import torch
import torch.nn.functional as F

from vireid_plugins.association.nclr import refine_labels_by_neighbours
from vireid_plugins.data import TrainTargets
from vireid_plugins.methods.dotla.association import dotla_cross_targets, with_cross_targets


def unit(*deg):
    a = torch.tensor(deg, dtype=torch.float32) * math.pi / 180
    return torch.stack([a.cos(), a.sin()], dim=1)


# visible: clusters 0 (0, 4 deg), 1 (86, 90 deg), an outlier at 180 deg;
# infrared: cluster 0 (88, 92 deg), cluster 1 (2 deg), an outlier at 180 deg
ITEMS = [(f"v{i}", i, 1, 0) for i in range(5)] + [(f"r{i}", i, 3, 1) for i in range(4)]
FEATS = unit(0, 4, 86, 90, 180, 88, 92, 2, 180)
OWN = {0: torch.tensor([0, 0, 1, 1, -1]), 1: torch.tensor([0, 0, 1, -1])}
CENTRES = {"visible": unit(0, 90), "infrared": unit(90, 0)}


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, f, space):
        self.calls.append((space, f.clone()))
        return 10 * f @ CENTRES[space].T


def run(cfg, nclr=False, transport="clustered"):
    cfg.DOTLA.NCLR.ENABLED, cfg.DOTLA.NCLR.K, cfg.DOTLA.TRANSPORT_SET = nclr, 2, transport
    targets = TrainTargets.from_modality_clusters(ITEMS, OWN)
    predict = Recorder()
    return targets, predict, dotla_cross_targets(cfg, predict, FEATS, targets)


def test_each_modality_is_predicted_by_the_other_modalitys_classifier(cfg):
    _, predict, cross = run(cfg)
    spaces = {space: f for space, f in predict.calls}
    assert torch.equal(spaces["visible"], FEATS[[5, 6, 7]])  # clustered infrared images, visible classifier
    assert torch.equal(spaces["infrared"], FEATS[[0, 1, 2, 3]])  # clustered visible images, infrared classifier
    assert cross["visible"]["source"].tolist() == [5, 6, 7] and cross["infrared"]["source"].tolist() == [0, 1, 2, 3]
    assert cross["visible"]["labels"].tolist() == [1, 1, 0]  # 88, 92 deg -> visible cluster 1; 2 deg -> 0
    assert cross["infrared"]["labels"].tolist() == [1, 1, 0, 0]  # 0, 4 deg -> infrared cluster 1; 86, 90 -> 0
    assert torch.equal(cross["visible"]["soft"], F.one_hot(torch.tensor([1, 1, 0]), 2).float())


def test_the_whole_training_set_is_transported_by_default(cfg):
    """The paper's stage 2 (``DOTLA.TRANSPORT_SET all``): the DBSCAN outliers (items 4 and 8) get labels too, and the
    uniform class marginal splits each modality's images equally among the other's classes."""
    _, predict, cross = run(cfg, transport="all")
    assert cross["visible"]["source"].tolist() == [5, 6, 7, 8]
    assert cross["infrared"]["source"].tolist() == [0, 1, 2, 3, 4]
    assert torch.bincount(cross["visible"]["labels"], minlength=2).tolist() == [2, 2]
    assert cross["visible"]["labels"][2] == 0  # 2 deg: the visible cluster at 0 deg whatever the balancing


def test_installed_targets_label_both_branches_in_their_own_spaces(cfg):
    targets, _, cross = run(cfg)
    new = with_cross_targets(targets, cross, epoch=3)
    assert new.branches == ("visible", "infrared") and new.pairing == "shared" and new.epoch == 3
    assert new.spaces["visible"].labels.tolist() == [0, 0, 1, 1, -1, 1, 1, 0, -1]
    assert new.spaces["infrared"].labels.tolist() == [1, 1, 0, 0, -1, 0, 0, 1, -1]
    soft_r = new.spaces["infrared"].soft
    assert torch.equal(soft_r[4], torch.zeros(2)) and torch.equal(soft_r[0], torch.tensor([0.0, 1.0]))
    items, branches, labels = new.samples()
    infrared_branch = [(i, y) for i, b, y in zip(items, branches, labels) if b == 1]
    assert infrared_branch == [(0, 1), (1, 1), (2, 0), (3, 0), (5, 0), (6, 0), (7, 1)]  # no K_v offset
    assert new.cross_labels("infrared").tolist() == [1, 1, 0, 0, -1]


def test_nclr_soft_targets_are_the_refinement_of_the_assigned_labels(cfg):
    targets, _, plain = run(cfg)
    _, _, refined = run(cfg, nclr=True)
    own = targets.mask(0)
    expected = refine_labels_by_neighbours(plain["visible"]["labels"], 2, FEATS[[5, 6, 7]], FEATS[own],
                                           targets.spaces["visible"].labels[own], k=2, tau=1.0, gamma=0.25)
    assert torch.equal(refined["visible"]["soft"], expected.soft_labels)
    assert torch.equal(refined["visible"]["noisy"], expected.noisy)
