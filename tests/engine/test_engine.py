"""Trainer, meta-architecture and evaluator behaviour on the small hand-made SYSU-MM01 folder."""
from collections import OrderedDict

import numpy as np
import pytest
import torch
from fastreid.evaluation import inference_on_dataset
from fastreid.utils.events import EventStorage

from vireid_plugins.data import build_vireid_dataset
from vireid_plugins.engine import VIReIDTrainer
from vireid_plugins.evaluation import SYSUEvaluator, build_vireid_evaluator, eval_sysu, summarize_trials


def tiny_cfg(cfg, root, out):
    cfg.merge_from_file("configs/Synthetic/agw_supervised.yml")
    cfg.merge_from_list([
        "DATASETS.ROOT", str(root), "OUTPUT_DIR", str(out), "INPUT.SIZE_TRAIN", [32, 16], "INPUT.SIZE_TEST", [32, 16],
        "SOLVER.IMS_PER_BATCH", 8, "DATALOADER.NUM_INSTANCE", 2, "DATALOADER.NUM_WORKERS", 0,
        "DATALOADER.ITERS_PER_EPOCH", 2, "SOLVER.MAX_EPOCH", 1, "DATASETS.SYSU.NUM_TRIALS", 3,
        "TEST.EVAL_AT_START", False, "SOLVER.WARMUP_ITERS", 0,
    ])
    return cfg


def test_a_training_step_changes_the_weights(cfg, sysu_root, tmp_path):
    """fast-reid's stock ContiguousParams optimizer never updates a weight on torch 2 (zero_grad(set_to_none=True))."""
    trainer = VIReIDTrainer(tiny_cfg(cfg, sysu_root, tmp_path))
    model = trainer.model
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    with EventStorage(0):
        for _ in range(2):
            trainer._trainer.run_step()
    changed = {k for k, v in model.named_parameters() if not torch.equal(v, before[k])}
    for name in ("backbone.stems.0.conv1.weight", "backbone.stems.1.conv1.weight", "backbone.layer1.0.conv1.weight",
                 "heads.weight"):
        assert name in changed
    assert trainer.iters_per_epoch == 2


def test_meta_arch_normalises_out_of_place_and_flip_test_sees_raw_images(cfg, sysu_root, tmp_path):
    trainer = VIReIDTrainer(tiny_cfg(cfg, sysu_root, tmp_path))
    model = trainer.model.eval()
    images = torch.rand(4, 3, 32, 16) * 255
    batch = {"images": images.clone(), "modality": torch.tensor([0, 1, 0, 1])}
    with torch.no_grad():
        feats = model(batch)
        flipped = model({"images": images.flip(3), "modality": batch["modality"]})
    assert torch.equal(batch["images"], images)  # not normalised in place
    assert torch.allclose(feats.norm(dim=1), torch.ones(4), atol=1e-5)
    assert not torch.allclose(feats[0], model({"images": images[:1], "modality": torch.tensor([1])})[0])

    class OneBatch(list):
        dataset = [0] * 4

    class Keep:
        def reset(self):
            self.out = None

        def process(self, inputs, outputs):
            self.out = outputs

        def evaluate(self):
            return {}

    keep = Keep()
    inference_on_dataset(model, OneBatch([dict(batch, images=images.clone())]), keep, flip_test=True)
    assert torch.allclose(keep.out, (feats + flipped) / 2, atol=1e-5)


def test_sysu_evaluator_equals_direct_official_metrics(cfg, sysu_root):
    cfg.DATASETS.ROOT, cfg.DATASETS.SYSU.NUM_TRIALS = str(sysu_root), 4
    loader, evaluator = build_vireid_evaluator(cfg, "SYSUMM01")
    assert isinstance(evaluator, SYSUEvaluator) and len(loader.dataset) == len(evaluator.items)
    dataset = build_vireid_dataset(cfg, "SYSUMM01")
    rng = np.random.default_rng(0)
    feats = {it[0]: torch.from_numpy(rng.normal(size=8)).float() for it in evaluator.items}
    evaluator.reset()
    evaluator.process({"index": torch.arange(len(evaluator.items))},
                      torch.stack([feats[it[0]] for it in evaluator.items]))
    results = evaluator.evaluate()

    def unit(items):
        return torch.nn.functional.normalize(torch.stack([feats[it[0]] for it in items]), dim=1)

    q = dataset.query
    for mode in ("all", "indoor"):
        runs = []
        for trial in range(4):
            g = dataset.sample_gallery(mode, trial)
            dist = -(unit(q) @ unit(g).T).numpy()
            runs.append(eval_sysu(dist, np.array([it[1] for it in q]), np.array([it[1] for it in g]),
                                  np.array([it[2] for it in q]), np.array([it[2] for it in g]),
                                  max_rank=evaluator.max_rank))
        for key, value in summarize_trials(runs).items():
            assert results[f"{mode}/{key}"] == pytest.approx(value)
    assert results["metric"] == pytest.approx((results["all/Rank-1"] + results["all/mAP"]) / 2)
    assert isinstance(results, OrderedDict)


def test_no_model_best_unless_selection_on_test_is_allowed(cfg, sysu_root, tmp_path):
    trainer = VIReIDTrainer(tiny_cfg(cfg, sysu_root, tmp_path))
    trainer.train()
    assert (tmp_path / "model_final.pth").exists() and not (tmp_path / "model_best.pth").exists()


def test_supervised_checkpoint_initialises_the_unsupervised_bn_neck(tmp_path):
    """MODEL.WEIGHTS from a supervised (EmbeddingHead) run loads the BN-neck of the unsupervised BNNeckHead too."""
    from fastreid.config import get_cfg
    from fastreid.modeling import build_model
    from fastreid.utils.checkpoint import Checkpointer

    from vireid_plugins import add_vireid_config

    def model_of(config):
        c = get_cfg()
        add_vireid_config(c)
        c.merge_from_file(config)
        return build_model(c)

    supervised = model_of("configs/Synthetic/agw_supervised.yml")
    bn = supervised.heads.bottleneck[0]
    with torch.no_grad():
        bn.running_mean.copy_(torch.linspace(-1.0, 1.0, bn.num_features))
        bn.weight.mul_(3.0)
    torch.save({"model": supervised.state_dict()}, tmp_path / "supervised.pth")
    unsupervised = model_of("configs/Synthetic/usl_baseline.yml")
    Checkpointer(unsupervised).load(str(tmp_path / "supervised.pth"))
    for key, value in bn.state_dict().items():
        assert torch.equal(unsupervised.heads.bottleneck[0].state_dict()[key], value), key
