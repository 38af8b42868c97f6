"""Criteria of the unsupervised baselines, classifier resizing with a consistent optimizer, resizable checkpoints."""
import torch
import torch.nn.functional as F
from fastreid.modeling.losses import cross_entropy_loss, triplet_loss

from vireid_plugins.engine import VIReIDCheckpointer, forget_stale_optimizer_state
from vireid_plugins.modeling.losses import ClusterMemory, DualClusterMemoryLoss, ModalityClassifierLoss


def batch(num_per_modality=8, dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = F.normalize(torch.randn(2 * num_per_modality, dim, generator=g), dim=1)
    modality = torch.tensor([0] * num_per_modality + [1] * num_per_modality)
    targets = torch.tensor([0, 0, 1, 1, 2, 2, 0, -1] + [1, 1, 0, 0, 1, 0, 1, 1])
    return {"features": feats, "modality": modality, "targets": targets}


def pool(dim=8):
    g = torch.Generator().manual_seed(1)
    features = {0: F.normalize(torch.randn(9, dim, generator=g), dim=1),
                1: F.normalize(torch.randn(6, dim, generator=g), dim=1)}
    labels = {0: torch.tensor([0, 0, 1, 1, 2, 2, -1, 2, 0]), 1: torch.tensor([0, 1, 1, 0, -1, 1])}
    return labels, features


def test_dual_memory_loss_equals_manual_cross_entropy(cfg):
    cfg.MODEL.BACKBONE.FEAT_DIM = 8
    criterion = DualClusterMemoryLoss(cfg).eval()  # eval: no memory update, the formula only
    labels, features = pool()
    criterion.reset(labels, features)
    out = batch()
    out["ca_features"] = F.normalize(torch.randn(8, 8), dim=1)
    losses = criterion(out)
    mv = ClusterMemory.cluster_centroids(features[0], labels[0])
    mr = ClusterMemory.cluster_centroids(features[1], labels[1])
    f_v = torch.cat([out["features"][:8], out["ca_features"]])
    y_v = torch.cat([out["targets"][:8]] * 2)
    keep = y_v >= 0
    expected_v = F.cross_entropy(f_v[keep] @ mv.T / 0.05, y_v[keep])
    expected_r = F.cross_entropy(out["features"][8:] @ mr.T / 0.05, out["targets"][8:])
    assert torch.allclose(losses["loss_memory_visible"], expected_v, atol=1e-5)
    assert torch.allclose(losses["loss_memory_infrared"], expected_r, atol=1e-5)


def test_classifier_resize_keeps_the_optimizer_consistent(cfg):
    cfg.MODEL.BACKBONE.FEAT_DIM = 8
    criterion = ModalityClassifierLoss(cfg)
    labels, features = pool()
    criterion.reset(labels, features)
    weight = criterion.classifiers["visible"].weight
    assert weight.shape == (3, 8)
    assert torch.allclose(weight, ClusterMemory.cluster_centroids(features[0], labels[0]))
    optimizer = torch.optim.Adam(criterion.parameters(), lr=0.1)
    sum(criterion(batch()).values()).backward()
    optimizer.step()
    assert optimizer.state[weight]["exp_avg"].shape == (3, 8)

    labels[0] = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 4])  # the clustering found 5 visible clusters
    criterion.reset(labels, features)
    assert criterion.classifiers["visible"].weight is weight and weight.shape == (5, 8)
    assert forget_stale_optimizer_state(optimizer) == 1  # only the resized parameter lost its Adam state
    assert weight not in optimizer.state and criterion.classifiers["infrared"].weight in optimizer.state
    before = weight.detach().clone()
    optimizer.zero_grad()
    out = batch()
    out["targets"][:8] = torch.tensor([0, 0, 4, 4, 3, 3, 1, 1])
    losses = criterion(out)
    sum(losses.values()).backward()
    optimizer.step()
    assert not torch.equal(before, weight)
    f, y = out["features"][:8], out["targets"][:8]
    expected = cross_entropy_loss(f @ before.T, y, cfg.MODEL.LOSSES.CE.EPSILON, 0.2)
    assert torch.allclose(losses["loss_cls_visible"], expected, atol=1e-6)
    assert torch.allclose(losses["loss_triplet_visible"], triplet_loss(f, y, 0.3, False, False), atol=1e-6)


def test_checkpoint_with_other_cluster_counts_loads(cfg, tmp_path):
    cfg.MODEL.BACKBONE.FEAT_DIM = 8
    trained = torch.nn.ModuleDict({"a": ModalityClassifierLoss(cfg), "b": DualClusterMemoryLoss(cfg)})
    labels, features = pool()
    trained["a"].reset(labels, features)
    trained["b"].reset(labels, features)
    VIReIDCheckpointer(trained, str(tmp_path)).save("ckpt")
    fresh = torch.nn.ModuleDict({"a": ModalityClassifierLoss(cfg), "b": DualClusterMemoryLoss(cfg)})
    VIReIDCheckpointer(fresh, str(tmp_path)).load(str(tmp_path / "ckpt.pth"))
    for key, value in trained.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


def test_dotla_criterion_stage2_losses_and_empty_branches(cfg):
    from vireid_plugins.modeling.losses import DOTLACriterion, soft_cross_entropy

    cfg.MODEL.BACKBONE.FEAT_DIM = 8
    cfg.MODEL.CRITERION.CNCR.ENABLED = True
    cfg.MODEL.CRITERION.CNCR.K = 2
    criterion = DOTLACriterion(cfg)
    labels, features = pool()
    criterion.reset(labels, features)  # K_v = 3, K_r = 2
    n = 16  # images in the two-branch dataset: index i (visible branch) and n + i (infrared branch)
    soft_v = torch.zeros(n, 3)
    soft_v[8:] = torch.tensor([0.75, 0.25, 0.0])  # infrared images in the visible label space
    soft_r = torch.zeros(n, 2)
    soft_r[:8] = torch.tensor([0.0, 1.0])  # visible images in the infrared label space
    criterion.set_cross_targets({0: soft_v, 1: soft_r})
    out = batch()
    out["index"] = torch.arange(16)  # every image in the visible branch
    out["targets"] = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1] + [0] * 8)
    losses = criterion(out)
    f = out["features"]
    phi_v = criterion.classifiers["visible"]
    assert torch.allclose(losses["loss_cross_visible"], soft_cross_entropy(phi_v(f[8:]), soft_v[8:]), atol=1e-6)
    for key in ("loss_cls_infrared", "loss_triplet_infrared", "loss_cross_infrared"):
        assert losses[key] == 0  # no image of the infrared branch in this batch
    assert losses["loss_cncr"] > 0
    criterion.set_cross_targets(None)
    assert set(criterion(batch())) == {"loss_cls_visible", "loss_triplet_visible", "loss_cls_infrared",
                                       "loss_triplet_infrared"}  # back to stage 1 (Eq. 16)
