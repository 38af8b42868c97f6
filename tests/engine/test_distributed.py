"""Two CPU processes (gloo): features are gathered, clustering runs on rank 0, every rank gets its labels."""
import torch
from conftest import TINY_OPTS
from dist_worker import train_one_epoch

from vireid_plugins.engine.launch import launch


def test_two_processes_get_identical_pseudo_labels(cfg, tiny_sysu, tmp_path):
    cfg.merge_from_file("configs/Synthetic/usl_baseline.yml")
    cfg.merge_from_list(["DATASETS.ROOT", str(tiny_sysu), "OUTPUT_DIR", str(tmp_path / "out"), *TINY_OPTS,
                         "SOLVER.IMS_PER_BATCH", "32", "SOLVER.MAX_EPOCH", "1", "PSEUDO.K1", "10",
                         "TEST.EVAL_PERIOD", "0", "DATASETS.SYSU.MODES", "('all',)"])
    launch(train_one_epoch, 2, dist_url="auto", args=(cfg, str(tmp_path)))
    ranks = [torch.load(tmp_path / f"rank{r}_of_2.pt") for r in range(2)]
    assert ranks[0]["world_size"] == 2
    assert torch.equal(ranks[0]["labels"], ranks[1]["labels"])
    assert ranks[0]["visible_memory"] == ranks[1]["visible_memory"]

    # the same seed in one process clusters the same initial features into the same labels
    train_one_epoch(cfg, str(tmp_path))
    single = torch.load(tmp_path / "rank0_of_1.pt")
    assert torch.equal(single["labels"], ranks[0]["labels"])
