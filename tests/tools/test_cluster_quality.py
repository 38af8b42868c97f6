"""``tools/cluster_quality.py`` on the tiny synthetic set: per-modality rows, the eps sweep, weight checks."""
import importlib.util
import os

import numpy as np
import pytest
import torch
from conftest import TINY_OPTS

from vireid_plugins.association import cluster_features, pseudo_label_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(ROOT, "configs", "Synthetic", "source_pretrain.yml")


def load_tool():
    spec = importlib.util.spec_from_file_location("cluster_quality", os.path.join(ROOT, "tools", "cluster_quality.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


@pytest.fixture(scope="module")
def tool():
    return load_tool()


def opts(root, weights):
    return TINY_OPTS + ["DATASETS.ROOT", str(root), "MODEL.WEIGHTS", str(weights), "PSEUDO.K1", "4",
                        "PSEUDO.K2", "2", "PSEUDO.MIN_SAMPLES", "2"]


def test_cluster_quality_rows_match_a_direct_computation(tool, tiny_sysu, tmp_path):
    torch.manual_seed(0)
    cfg = tool.setup(CONFIG, opts(tiny_sysu, ""))
    assert not cfg.DATASETS.PSEUDO_INFRARED  # the source config's visible-only mode is switched off
    from vireid_plugins.engine import VIReIDTrainer

    model = VIReIDTrainer.build_model(cfg)
    weights = tmp_path / "model.pth"
    torch.save({"model": model.state_dict()}, weights)
    rows = tool.main(["--config-file", CONFIG, "--eps", "0.3,0.6"] + opts(tiny_sysu, weights))
    assert [(r[0], r[1]) for r in rows] == [("visible", 0.3), ("visible", 0.6), ("infrared", 0.3), ("infrared", 0.6)]

    # the same numbers from the model's own features, clustered directly
    cfg = tool.setup(CONFIG, opts(tiny_sysu, weights))
    model.eval()
    from vireid_plugins.data.build import train_items

    features = tool.modality_features(cfg, model, train_items(cfg))
    for row in rows:
        m = 0 if row[0] == "visible" else 1
        feats, pids = features[m]
        assert row[2:4] == [len(np.unique(pids)), len(pids)] and len(pids) > 0
        labels = cluster_features(feats, eps=row[1], min_samples=2, k1=4, k2=2)
        assert row[4:] == list(pseudo_label_metrics(labels.numpy(), pids).values())


def test_cluster_quality_refuses_weights_without_the_feature_tensors(tool, tiny_sysu, tmp_path):
    cfg = tool.setup(CONFIG, opts(tiny_sysu, ""))
    from vireid_plugins.engine import VIReIDTrainer

    model = VIReIDTrainer.build_model(cfg)
    partial = {k: v for k, v in model.state_dict().items() if not k.startswith("heads.bottleneck")}
    torch.save({"model": partial}, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match="lacks .* feature tensors"):
        tool.load_feature_weights(model, str(tmp_path / "partial.pth"))
    with pytest.raises(FileNotFoundError, match="not found"):
        tool.load_feature_weights(model, str(tmp_path / "absent.pth"))
