"""tools/compare_marginals.py: the marginals' effect on hand-made imbalanced clusters, and the tool end to end."""
import importlib.util
import json
import math
import os

import pytest
import torch
from conftest import ROOT, TINY_OPTS

spec = importlib.util.spec_from_file_location("compare_marginals", os.path.join(ROOT, "tools", "compare_marginals.py"))
compare = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare)


def unit(*deg):
    a = torch.tensor(deg, dtype=torch.float32) * math.pi / 180
    return torch.stack([a.cos(), a.sin()], dim=1)


def test_uniform_marginals_misassign_an_imbalanced_cluster_that_size_aware_ones_keep():
    """Visible clusters of 6 and 2 images, infrared likewise: the uniform marginal must move images of the large
    cluster to the small one; the size-aware marginal and the nearest centroid need not."""
    feats = {0: unit(0, 2, 4, 6, 8, 10, 90, 92), 1: unit(1, 3, 5, 7, 9, 11, 89, 91)}
    labels = {0: torch.tensor([0] * 6 + [1] * 2), 1: torch.tensor([0] * 6 + [1] * 2)}
    out = compare.assignments(feats, labels, temperature=0.05, lam=25.0, reg_ms=[1.0])
    truth = torch.tensor([0] * 6 + [1] * 2)
    assert torch.equal(out["nearest centroid"][1], truth) and torch.equal(out["cluster_size"][1], truth)
    assert torch.bincount(out["uniform"][1], minlength=2).tolist() == [4, 4]  # equal split forced
    assert set(out) == {"nearest centroid", "uniform", "cluster_size", "relaxed (reg_m 1)"}


@pytest.mark.slow
def test_the_tool_reports_every_assignment(tiny_sysu, tmp_path):
    out = tmp_path / "m.json"
    table = compare.main(["--config-file", os.path.join(ROOT, "configs/Synthetic/usl_baseline.yml"), "--out", str(out),
                          "--reg-m", "1", "--", *TINY_OPTS, "DATASETS.ROOT", str(tiny_sysu), "PSEUDO.K1", "10",
                          "PSEUDO.EPS", "[0.5,0.5]", "PSEUDO.MIN_SAMPLES", "2", "OUTPUT_DIR", str(tmp_path)])
    assert json.loads(out.read_text()) == table
    for acc in table.values():
        assert set(acc) == {"visible->infrared", "infrared->visible"}
        assert all(0.0 <= v <= 1.0 for v in acc.values())
