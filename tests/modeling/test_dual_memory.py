"""The DCL/ADCA dual-memory criterion on TrainTargets, per-token memories, loss weights, resizable checkpoints."""
import pytest
import torch
import torch.nn.functional as F

from vireid_plugins.data import TrainTargets
from vireid_plugins.engine import VIReIDCheckpointer
from vireid_plugins.modeling.losses import ClusterMemory, DualClusterMemoryLoss

ITEMS = [(f"v{i}", 0, 1, 0) for i in range(9)] + [(f"r{i}", 0, 3, 1) for i in range(6)]
LABELS = {0: torch.tensor([0, 0, 1, 1, 2, 2, -1, 2, 0]), 1: torch.tensor([0, 1, 1, 0, -1, 1])}


def pool(dim=8, tokens=0, seed=1):
    g = torch.Generator().manual_seed(seed)
    shape = (len(ITEMS), tokens, dim) if tokens else (len(ITEMS), dim)
    return TrainTargets.from_modality_clusters(ITEMS, LABELS), F.normalize(torch.randn(*shape, generator=g), dim=-1)


def batch(dim=8, tokens=0, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (16, tokens, dim) if tokens else (16, dim)
    feats = F.normalize(torch.randn(*shape, generator=g), dim=-1)
    out = {"modality": torch.tensor([0] * 8 + [1] * 8), "branch": torch.tensor([0] * 8 + [1] * 8),
           "targets": torch.tensor([0, 0, 1, 1, 2, 2, 0, -1] + [1, 1, 0, 0, 1, 0, 1, 1]),
           "ca_" + ("tokens" if tokens else "features"): F.normalize(torch.randn(8, *shape[1:], generator=g), dim=-1)}
    out["tokens" if tokens else "features"] = feats
    if tokens:
        out["features"], out["ca_features"] = feats.flatten(1), out["ca_tokens"].flatten(1)
    return out


def criterion_for(cfg, dim=8, tokens=0, scale=1.0):
    cfg.MODEL.BACKBONE.FEAT_DIM = dim
    cfg.MODEL.CRITERION.MEMORY.NUM_TOKENS = tokens
    cfg.MODEL.CRITERION.MEMORY.SCALE = scale
    return DualClusterMemoryLoss(cfg).eval()  # eval: no memory update, the formula only


def test_dual_memory_loss_equals_manual_cross_entropy_and_honours_the_scale(cfg):
    criterion = criterion_for(cfg, scale=0.5)
    targets, features = pool()
    criterion.set_targets(targets, features)
    out = batch()
    losses = criterion(out)
    mv = ClusterMemory.cluster_centroids(features[:9], LABELS[0])
    mr = ClusterMemory.cluster_centroids(features[9:], LABELS[1])
    f_v = torch.cat([out["features"][:8], out["ca_features"]])
    y_v = torch.cat([out["targets"][:8]] * 2)
    keep = y_v >= 0
    expected_v = F.cross_entropy(f_v[keep] @ mv.T / 0.05, y_v[keep])
    expected_r = F.cross_entropy(out["features"][8:] @ mr.T / 0.05, out["targets"][8:])
    assert torch.allclose(losses["loss_memory_visible"], 0.5 * expected_v, atol=1e-5)
    assert torch.allclose(losses["loss_memory_infrared"], 0.5 * expected_r, atol=1e-5)


def test_per_token_memories_average_the_per_token_losses(cfg):
    criterion = criterion_for(cfg, dim=4, tokens=3)
    targets, features = pool(dim=4, tokens=3)
    criterion.set_targets(targets, features)
    assert criterion.memories["visible"].features.shape == (3, 3, 4)
    out = batch(dim=4, tokens=3)
    losses = criterion(out)
    expected = []
    for t in range(3):
        mr = ClusterMemory.cluster_centroids(features[9:, t], LABELS[1])
        expected.append(F.cross_entropy(out["tokens"][8:, t] @ mr.T / 0.05, out["targets"][8:]))
    assert torch.allclose(losses["loss_memory_infrared"], torch.stack(expected).mean(), atol=1e-5)


def test_image_level_memory_of_a_multi_token_model_uses_the_concatenation(cfg):
    cfg.MODEL.BACKBONE.NUM_TOKENS = 3
    criterion = criterion_for(cfg, dim=4)
    targets, features = pool(dim=4, tokens=3)
    criterion.set_targets(targets, features)
    concat = F.normalize(features.flatten(1), dim=1)
    assert torch.allclose(criterion.memories["infrared"].features,
                          ClusterMemory.cluster_centroids(concat[9:], LABELS[1]), atol=1e-6)


def test_a_token_count_mismatch_is_named(cfg):
    criterion = criterion_for(cfg, dim=4, tokens=2)
    targets, features = pool(dim=4, tokens=3)
    with pytest.raises(ValueError, match="NUM_TOKENS is 2"):
        criterion.set_targets(targets, features)


def test_checkpoint_with_other_cluster_counts_loads(cfg, tmp_path):
    trained = criterion_for(cfg)
    targets, features = pool()
    trained.set_targets(targets, features)
    VIReIDCheckpointer(trained, str(tmp_path)).save("ckpt")
    fresh = DualClusterMemoryLoss(cfg)
    VIReIDCheckpointer(fresh, str(tmp_path)).load(str(tmp_path / "ckpt.pth"))
    for key, value in trained.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
