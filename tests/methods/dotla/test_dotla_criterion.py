"""DOTLA's criteria against hand computations: Eq. 16 (stage 1), Eq. 11-12 (both branches), CNCR and its ALPHA,
the config's loss weights, classifier resizing with a consistent optimizer."""
import torch
import torch.nn.functional as F
from fastreid.modeling.losses import triplet_loss

from vireid_plugins.data import LabelSpace, TrainTargets
from vireid_plugins.engine import forget_stale_optimizer_state
from vireid_plugins.methods.dotla.criterion import DOTLACriterion, ModalityClassifierLoss
from vireid_plugins.modeling.losses import ClusterMemory

# 6 visible items (clusters 0,0,1,1,2,-1) and 4 infrared items (clusters 0,1,1,0)
ITEMS = [(f"v{i}", i, 1, 0) for i in range(6)] + [(f"r{i}", i, 3, 1) for i in range(4)]
OWN = {0: torch.tensor([0, 0, 1, 1, 2, -1]), 1: torch.tensor([0, 1, 1, 0])}


def setup(cfg, eps=0.1, ce=1.0, tri=1.0, cncr=False, alpha=0.3, cross=1.0):
    cfg.MODEL.BACKBONE.FEAT_DIM = 4
    cfg.MODEL.LOSSES.CE.EPSILON, cfg.MODEL.LOSSES.CE.SCALE, cfg.MODEL.LOSSES.TRI.SCALE = eps, ce, tri
    cfg.DOTLA.CNCR.ENABLED, cfg.DOTLA.CNCR.K, cfg.DOTLA.CNCR.ALPHA, cfg.DOTLA.CROSS_SCALE = cncr, 2, alpha, cross
    g = torch.Generator().manual_seed(0)
    features = F.normalize(torch.randn(len(ITEMS), 4, generator=g), dim=1)
    return TrainTargets.from_modality_clusters(ITEMS, OWN), features


def smoothed_ce(logits, y, eps):
    """Label-smoothed cross-entropy as Eq. 1 with fast-reid's smoothing: eps spread over the K - 1 other classes."""
    k = logits.shape[1]
    t = torch.full_like(logits, eps / (k - 1))
    t[torch.arange(len(y)), y] = 1 - eps
    return -(t * F.log_softmax(logits, 1)).sum(1).mean()


def soft_ce(logits, t):
    return -(t * F.log_softmax(logits, 1)).sum(1).mean()


def stage2_targets(targets):
    """Visible space: infrared items 0..3 -> soft rows; infrared space: visible items 0..4 -> labels (5: none)."""
    soft_v = torch.tensor([[0.75, 0.25, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    soft_r = F.one_hot(torch.tensor([1, 0, 0, 1, 1]), 2).float()
    lv, lr = targets.spaces["visible"].labels.clone(), targets.spaces["infrared"].labels.clone()
    lv[6:], lr[:5] = soft_v.argmax(1), soft_r.argmax(1)
    sv, sr = torch.zeros(10, 3), torch.zeros(10, 2)
    sv[6:], sr[:5] = soft_v, soft_r
    spaces = {"visible": LabelSpace(lv, 3, 0, sv), "infrared": LabelSpace(lr, 2, 1, sr)}
    return targets.replace(spaces=spaces, pairing="shared"), soft_v, soft_r


def batch_of(items, branch, targets_space):
    """A batch of (item, branch) samples with their labels in the branch's space."""
    items, branch = torch.tensor(items), torch.tensor(branch)
    names = ("visible", "infrared")
    labels = torch.stack([targets_space.spaces[names[b]].labels[i] for i, b in zip(items.tolist(), branch.tolist())])
    modality = torch.tensor([ITEMS[i][3] for i in items.tolist()])
    return {"item": items, "branch": branch, "targets": labels, "modality": modality}


def test_stage1_is_eq16_with_the_config_weights(cfg):
    targets, features = setup(cfg, ce=0.5, tri=2.0)
    criterion = ModalityClassifierLoss(cfg)
    criterion.set_targets(targets, features)
    out = batch_of([0, 1, 2, 3, 6, 7, 8, 9], [0, 0, 0, 0, 1, 1, 1, 1], targets)
    out["features"] = features[out["item"]] * 2
    losses = criterion(out)
    phi_v, phi_r = (ClusterMemory.cluster_centroids(features[:6], OWN[0]),
                    ClusterMemory.cluster_centroids(features[6:], OWN[1]))
    f = out["features"]
    assert torch.allclose(losses["loss_cls_visible"], 0.5 * smoothed_ce(f[:4] @ phi_v.T, OWN[0][:4], 0.1), atol=1e-6)
    assert torch.allclose(losses["loss_cls_infrared"], 0.5 * smoothed_ce(f[4:] @ phi_r.T, OWN[1], 0.1), atol=1e-6)
    tri = cfg.MODEL.LOSSES.TRI
    expected_tri = 2.0 * triplet_loss(f[4:], OWN[1], tri.MARGIN, tri.NORM_FEAT, tri.HARD_MINING)
    assert torch.allclose(losses["loss_triplet_infrared"], expected_tri, atol=1e-6)


def test_stage2_losses_of_both_branches_by_hand(cfg):
    targets, features = setup(cfg, eps=0.0, cross=0.5)
    criterion = DOTLACriterion(cfg)
    criterion.set_targets(targets, features)
    assert not criterion.stage2()
    targets2, soft_v, soft_r = stage2_targets(targets)
    criterion.set_targets(targets2)  # no features: the classifiers carry on
    assert criterion.stage2()
    # visible branch: visible items 0, 2 (own) and infrared items 6, 8 (cross);
    # infrared branch: infrared items 7, 9 (own) and visible items 1, 3 (cross)
    out = batch_of([0, 2, 6, 8, 7, 9, 1, 3], [0, 0, 0, 0, 1, 1, 1, 1], targets2)
    out["features"] = features[out["item"]]
    losses = criterion(out)
    f = out["features"]
    phi_v, phi_r = criterion.classifiers["visible"].weight, criterion.classifiers["infrared"].weight
    assert torch.allclose(losses["loss_cls_visible"], smoothed_ce(f[:2] @ phi_v.T, torch.tensor([0, 1]), 0.0))
    assert torch.allclose(losses["loss_cross_visible"], 0.5 * soft_ce(f[2:4] @ phi_v.T, soft_v[[0, 2]]), atol=1e-6)
    assert torch.allclose(losses["loss_cls_infrared"], smoothed_ce(f[4:6] @ phi_r.T, torch.tensor([1, 0]), 0.0))
    assert torch.allclose(losses["loss_cross_infrared"], 0.5 * soft_ce(f[6:] @ phi_r.T, soft_r[[1, 3]]), atol=1e-6)
    assert "loss_cncr" not in losses


def test_cncr_value_and_alpha(cfg):
    targets, features = setup(cfg, cncr=True, alpha=0.3)
    criterion = DOTLACriterion(cfg)
    criterion.set_targets(targets, features)
    criterion.set_targets(stage2_targets(targets)[0])
    out = batch_of([0, 2, 6, 8, 7, 9, 1, 3], [0, 0, 0, 0, 1, 1, 1, 1], stage2_targets(targets)[0])
    out["features"] = features[out["item"]]
    loss = criterion(out)["loss_cncr"]
    f, modality = out["features"], out["modality"]
    vis, ir = f[modality == 0], f[modality == 1]

    def kl_to_neighbours(anchors, others, w):  # Eq. 13 by brute force, k = 2 nearest by L2 on normalised features
        p, q = F.softmax(anchors @ w.T, 1), F.softmax(others @ w.T, 1)
        d = torch.cdist(F.normalize(anchors, dim=1), F.normalize(others, dim=1))
        near = d.argsort(1)[:, :2]
        q_bar = q[near].mean(1)
        return (p * (p.log() - q_bar.log())).sum(1).mean()

    expected = (kl_to_neighbours(vis, ir, criterion.classifiers["visible"].weight)
                + kl_to_neighbours(ir, vis, criterion.classifiers["infrared"].weight))
    assert torch.allclose(loss, 0.3 * expected, atol=1e-6)
    cfg.DOTLA.CNCR.ALPHA = 0.6
    doubled = DOTLACriterion(cfg)
    doubled.load_state_dict(criterion.state_dict())
    doubled.set_targets(criterion.train_targets)
    assert torch.allclose(doubled(out)["loss_cncr"], 2 * loss, atol=1e-6)


def test_batches_without_a_branch_give_zero_losses(cfg):
    targets, features = setup(cfg)
    criterion = DOTLACriterion(cfg)
    criterion.set_targets(targets, features)
    targets2 = stage2_targets(targets)[0]
    criterion.set_targets(targets2)
    out = batch_of([0, 2, 6, 8], [0, 0, 0, 0], targets2)
    out["features"] = features[out["item"]]
    losses = criterion(out)
    for key in ("loss_cls_infrared", "loss_triplet_infrared", "loss_cross_infrared"):
        assert losses[key] == 0
    sum(losses.values()).backward()  # still differentiable


def test_classifier_resize_keeps_the_optimizer_consistent(cfg):
    targets, features = setup(cfg)
    criterion = ModalityClassifierLoss(cfg)
    criterion.set_targets(targets, features)
    weight = criterion.classifiers["visible"].weight
    assert weight.shape == (3, 4)
    optimizer = torch.optim.Adam(criterion.parameters(), lr=0.1)
    out = batch_of([0, 1, 2, 3, 6, 7, 8, 9], [0, 0, 0, 0, 1, 1, 1, 1], targets)
    out["features"] = features[out["item"]]
    sum(criterion(out).values()).backward()
    optimizer.step()
    assert optimizer.state[weight]["exp_avg"].shape == (3, 4)
    relabelled = {0: torch.tensor([0, 0, 1, 1, 2, 3]), 1: OWN[1]}  # the clustering found 4 visible clusters
    criterion.set_targets(TrainTargets.from_modality_clusters(ITEMS, relabelled), features)
    assert criterion.classifiers["visible"].weight is weight and weight.shape == (4, 4)
    assert forget_stale_optimizer_state(optimizer) == 1  # only the resized parameter lost its Adam state
    assert weight not in optimizer.state and criterion.classifiers["infrared"].weight in optimizer.state


def test_the_triplet_uses_the_features_before_the_bn_neck_as_agw(cfg):
    targets, features = setup(cfg)
    out = batch_of([0, 1, 2, 3, 6, 7, 8, 9], [0, 0, 0, 0, 1, 1, 1, 1], targets)
    out["features"], out["pooled"] = features[out["item"]], 3 * features[out["item"]].flip(1)
    tri = cfg.MODEL.LOSSES.TRI
    for neck, key in (("before", "pooled"), ("after", "features")):
        cfg.MODEL.HEADS.NECK_FEAT = neck
        criterion = ModalityClassifierLoss(cfg)
        criterion.set_targets(targets, features)
        expected = triplet_loss(out[key][:4], OWN[0][:4], tri.MARGIN, tri.NORM_FEAT, tri.HARD_MINING)
        assert torch.allclose(criterion(out)["loss_triplet_visible"], expected, atol=1e-6), neck
