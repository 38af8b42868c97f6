"""PseudoLabelHook faults: non-finite features (PSEUDO.NON_FINITE error / drop) and a modality without any cluster
(the error says which way to move PSEUDO.EPS and PSEUDO.MIN_SAMPLES)."""
import pytest
import torch
import torch.nn.functional as F
from fastreid.config import get_cfg

from vireid_plugins import add_vireid_config
from vireid_plugins.association import cluster_features
from vireid_plugins.engine.pseudo_labels import PseudoLabelHook

VISIBLE, INFRARED = 0, 1


def hook(**pseudo):
    cfg = get_cfg()
    add_vireid_config(cfg)
    cfg.PSEUDO.K1, cfg.PSEUDO.K2, cfg.PSEUDO.MIN_SAMPLES, cfg.PSEUDO.EPS = 4, 2, 2, [0.6, 0.6]
    for key, value in pseudo.items():
        setattr(cfg.PSEUDO, key, value)
    items = [(f"{i}.jpg", i // 4, 1, VISIBLE) for i in range(12)]
    return PseudoLabelHook(cfg, items)


def clustered_features():
    """Three tight groups of four L2-normalised 8-d features."""
    g = torch.Generator().manual_seed(0)
    centres = torch.eye(8)[:3] * 4
    return F.normalize(centres.repeat_interleave(4, 0) + 0.05 * torch.randn(12, 8, generator=g), dim=1)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_features_are_an_error_naming_modality_and_count(bad):
    features = clustered_features()
    features[[1, 6], 3] = bad
    with pytest.raises(FloatingPointError, match=r"2 of 12 infrared features are NaN or inf.*PSEUDO.NON_FINITE 'drop'"):
        hook()._cluster(features, INFRARED)


def test_drop_leaves_non_finite_rows_unclustered_and_clusters_the_rest(caplog):
    features = clustered_features()
    features[5] = float("nan")
    with caplog.at_level("WARNING", logger="fastreid.vireid"):
        labels = hook(NON_FINITE="drop")._cluster(features, VISIBLE)
    assert "PSEUDO.NON_FINITE drop: 1 of 12 visible features are NaN or inf" in caplog.text
    keep = torch.arange(12) != 5
    expected = cluster_features(features[keep], eps=0.6, min_samples=2, k1=4, k2=2)
    assert labels[5] == -1 and torch.equal(labels[keep], expected)
    assert len(set(expected.tolist()) - {-1}) == 3  # the three groups are found


def test_a_modality_without_clusters_says_raise_eps_or_lower_min_samples():
    with pytest.raises(RuntimeError, match=r"every infrared image is a DBSCAN outlier; raise PSEUDO.EPS\[1\] "
                                           r"\(now 0.6.*lower PSEUDO.MIN_SAMPLES \(now 13\)"):
        hook(MIN_SAMPLES=13)._cluster(clustered_features(), INFRARED)  # 12 images: no core point
