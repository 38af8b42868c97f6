"""fast-reid's own ``launch`` + ``DefaultTrainer`` in two CPU processes (gloo), as fast-reid's tools/train_net.py runs
them with ``--num-gpus 2``: the spawned workers apply the shims, use gloo without CUDA, and DDP gets no device ids."""
import os

import pytest
import torch
from conftest import ROOT
from fastreid.config import get_cfg
from fastreid.engine import launch
from stock_launch_worker import train
from test_stock_fastreid import TINY_STOCK


@pytest.mark.slow
def test_fastreid_launch_trains_a_stock_model_in_two_cpu_processes(tiny_market, tmp_path, monkeypatch):
    monkeypatch.setenv("FASTREID_DATASETS", str(tiny_market))  # the workers' fastreid reads it at import
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(ROOT, "configs/Market1501/bagtricks_R50.yml"))
    cfg.merge_from_list([*TINY_STOCK, "OUTPUT_DIR", str(tmp_path / "out"), "MODEL.BACKBONE.DEPTH", "18x",
                         "MODEL.BACKBONE.FEAT_DIM", "512", "DATALOADER.NUM_INSTANCE", "2"])
    (tmp_path / "out").mkdir()  # fast-reid's default_setup would make it
    launch(train, 2, dist_url="auto", args=(cfg, str(tmp_path)))
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    for rank in ranks:
        assert rank["world_size"] == 2 and rank["shims"] and rank["ddp"] == "CPUAwareDistributedDataParallel"
    for key, value in ranks[0]["after"].items():
        torch.testing.assert_close(value, ranks[1]["after"][key], msg=key)  # DDP kept the ranks in step
    unchanged = [k for k, value in ranks[0]["after"].items() if torch.equal(ranks[0]["before"][k], value)]
    assert len(ranks[0]["after"]) > 50 and not unchanged  # every trainable parameter moved
    assert {"Rank-1", "mAP"} <= set(ranks[0]["results"])  # evaluated over both ranks' features
