"""DOTLA's real-data pipeline, dry-run on tiny synthetic data laid out like the real sets: Market-1501 pre-training
from an ImageNet-style torchvision file -> stage 0 (Cluster-Contrast) -> stages 1 and 2, with the shipped configs."""
import json

import pytest
import torch
import torchvision
from conftest import final_metrics, train_net, write_image

from vireid_plugins.data.synthetic import generate

# the shipped configs with a ResNet-18 (the model's size is not what this dry run checks) and tiny settings
TINY = ["MODEL.DEVICE", "cpu", "MODEL.BACKBONE.DEPTH", "18x", "MODEL.BACKBONE.FEAT_DIM", "512",
        "MODEL.BACKBONE.NL_LAYERS", "[0,1,1,0]", "PSEUDO.K1", "10", "PSEUDO.EPS", "[0.5,0.5]",
        "PSEUDO.MIN_SAMPLES", "2", "DATALOADER.ITERS_PER_EPOCH", "1", "TEST.IMS_PER_BATCH", "32"]


def market_folder(root, num_ids=6, per_id=4):
    for pid in range(1, num_ids + 1):
        for i in range(per_id):
            name = f"{pid:04d}_c{1 + i % 3}s1_{i:06d}_01.jpg"
            write_image(str(root / "Market-1501-v15.09.15" / "bounding_box_train" / name), size=(64, 32),
                        value=pid * 10 + i)
    write_image(str(root / "Market-1501-v15.09.15" / "query" / "0100_c1s1_000001_00.jpg"))
    write_image(str(root / "Market-1501-v15.09.15" / "bounding_box_test" / "0100_c2s1_000001_00.jpg"))


@pytest.mark.slow
@pytest.mark.parametrize("dataset,layout", [("SYSU-MM01", "sysu"), ("RegDB", "regdb")])
def test_pretrain_stage0_stage1_stage2_run_with_the_shipped_configs(tmp_path, dataset, layout):
    root = tmp_path / "data"
    generate(layout, root / dataset, preset="tiny", seed=0, workers=1)
    market_folder(root)
    imagenet = tmp_path / "resnet18.pth"  # an ImageNet-style torchvision file (random weights: nothing downloads)
    torch.save(torchvision.models.resnet18().state_dict(), imagenet)
    test_set = {"sysu": "SYSUMM01", "regdb": "RegDB"}[layout]

    pretrain = tmp_path / "pretrain"
    log = train_net("configs/Market1501/agw_ca_pretrain.yml", root, pretrain, opts=[
        "MODEL.BACKBONE.PRETRAIN_PATH", str(imagenet), "DATASETS.TESTS", f"('{test_set}',)", "SOLVER.MAX_EPOCH", "1",
        *TINY])
    assert "Loaded torchvision ResNet-18 weights" in log and "DATASETS.PSEUDO_INFRARED" in log

    stage0 = tmp_path / "stage0"
    train_net(f"configs/{dataset}/dotla_stage0.yml", root, stage0, opts=[
        "MODEL.WEIGHTS", str(pretrain / "model_final.pth"), "SOLVER.MAX_EPOCH", "2", *TINY])
    assert [r["epoch"] for r in json.loads((stage0 / "pseudo_labels" / "history.json").read_text())] == [0, 1]

    dotla = tmp_path / "dotla"
    train_net(f"configs/{dataset}/dotla.yml", root, dotla, opts=[
        "MODEL.WEIGHTS", str(stage0 / "model_final.pth"), "DOTLA.START_EPOCH", "1", "SOLVER.MAX_EPOCH", "2",
        "SOLVER.STEPS", "[1]", *TINY, "PSEUDO.EPS", "[0.35,0.35]", "SOLVER.BASE_LR", "0.001"])  # 1 step, no warm-up
    history = json.loads((dotla / "pseudo_labels" / "history.json").read_text())
    assert [r["epoch"] for r in history] == [0, 1] and set(history[1]["association"]) == {
        "visible->infrared", "infrared->visible"}
    for out in (pretrain, stage0, dotla):
        assert final_metrics(out)["final"]
