"""A toy multi-token backbone ((B, T, D) features) runs the unsupervised baseline end to end: per-token BN necks,
the feature collector, clustering on the concatenated feature and per token, per-token or image-level memories."""
import json

import pytest
import torch
from conftest import TINY_OPTS
from fastreid.modeling.backbones import BACKBONE_REGISTRY
from torch import nn

from vireid_plugins.engine import VIReIDTrainer


class ToyTokenBackbone(nn.Module):
    """Two modality stems, a shared conv, and T horizontal stripes projected to D: ``(B, T, D)`` tokens."""

    def __init__(self, num_tokens: int, dim: int):
        super().__init__()
        self.stems = nn.ModuleList([nn.Conv2d(3, 8, 3, stride=2, padding=1) for _ in range(2)])
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d((num_tokens, 1)))
        self.proj = nn.Linear(16, dim)

    def forward(self, x, modality=None):
        modality = torch.zeros(len(x), dtype=torch.long) if modality is None else modality
        h = torch.cat([self.stems[m](x[modality == m]) for m in (0, 1)])
        order = torch.cat([torch.nonzero(modality == m, as_tuple=True)[0] for m in (0, 1)])
        h = h[torch.argsort(order)]
        return self.proj(self.body(h).squeeze(-1).transpose(1, 2))


@BACKBONE_REGISTRY.register()
def build_toy_token_backbone(cfg):
    return ToyTokenBackbone(cfg.MODEL.BACKBONE.NUM_TOKENS, cfg.MODEL.BACKBONE.FEAT_DIM)


@pytest.mark.slow
@pytest.mark.parametrize("memory_tokens", [0, 3])
def test_toy_multi_token_backbone_trains_the_unsupervised_baseline(cfg, tiny_sysu, tmp_path, memory_tokens):
    cfg.merge_from_file("configs/Synthetic/usl_baseline.yml")
    cfg.merge_from_list([*TINY_OPTS, "DATASETS.ROOT", str(tiny_sysu), "OUTPUT_DIR", str(tmp_path),
                         "MODEL.BACKBONE.NAME", "build_toy_token_backbone", "MODEL.BACKBONE.NUM_TOKENS", "3",
                         "MODEL.BACKBONE.FEAT_DIM", "16", "MODEL.HEADS.NAME", "TokenBNNeckHead",
                         "MODEL.CRITERION.MEMORY.NUM_TOKENS", str(memory_tokens), "PSEUDO.PER_TOKEN", "True",
                         "PSEUDO.K1", "10", "PSEUDO.EPS", "[0.5,0.5]", "PSEUDO.MIN_SAMPLES", "2",
                         "SOLVER.MAX_EPOCH", "2", "TEST.EVAL_PERIOD", "100"])
    trainer = VIReIDTrainer(cfg)
    trainer.train()
    model = trainer.model
    model.eval()
    with torch.no_grad():
        feats = model({"images": torch.rand(2, 3, 64, 32) * 255, "modality": torch.tensor([0, 1])})
    assert feats.shape == (2, 3, 16) and torch.allclose(feats.norm(dim=-1), torch.ones(2, 3), atol=1e-5)
    memory = model.criterion.memories["infrared"].features
    if memory_tokens:  # one memory per token
        assert memory.dim() == 3 and (memory.shape[0], memory.shape[2]) == (3, 16)
    else:  # one memory on the concatenated feature
        assert memory.dim() == 2 and memory.shape[1] == 48
    labels = torch.load(tmp_path / "pseudo_labels" / "epoch_0001.pt")
    n = len(trainer.items)
    assert labels["labels"].shape == (n,) and labels["token_labels"].shape == (3, n)
    jaccard = trainer.targets.extras["jaccard"]  # the graphs the last clustering used, for association hooks
    for m in (0, 1):
        items, graph = jaccard[m]
        assert graph.num_nodes == len(items) == int(trainer.targets.mask(m).sum())
    space = trainer.targets.spaces["visible"]
    assert space.token_labels.shape == (3, n) and (space.token_labels[:, trainer.targets.mask(1)] == -1).all()
    history = json.loads((tmp_path / "pseudo_labels" / "history.json").read_text())
    assert [r["epoch"] for r in history] == [0, 1] and history[0]["infrared"]["num_clusters"] >= 1
    final = json.loads((tmp_path / "final_metrics.json").read_text())["final"]
    assert 0 <= final["all/mAP"] <= 100
