"""A stock fast-reid project after ``import vireid_plugins``: fast-reid's own ``DefaultTrainer``, ``Baseline``,
loaders and configs (``get_cfg()`` without our keys), on fast-reid's Market-1501 and on our SYSU-MM01."""
import os

import fastreid.data.build
import pytest
import torch
from conftest import ROOT, SYSU_TEST_IDS
from fastreid.config import get_cfg
from fastreid.data import build_reid_train_loader
from fastreid.engine import DefaultTrainer
from fastreid.evaluation import inference_on_dataset
from fastreid.modeling import build_model
from fastreid.solver import build_optimizer
from fastreid.utils.events import EventStorage
from fastreid.utils.params import ContiguousParams
from torch import nn

from vireid_plugins import add_vireid_config
from vireid_plugins.evaluation import SYSUEvaluator, build_vireid_evaluator

# fast-reid's configs, adapted only in budget, input size and device (CPU: no AMP, no ImageNet download)
TINY_STOCK = ["MODEL.DEVICE", "cpu", "MODEL.BACKBONE.PRETRAIN", "False", "SOLVER.AMP.ENABLED", "False",
              "INPUT.SIZE_TRAIN", "[64,32]", "INPUT.SIZE_TEST", "[64,32]", "SOLVER.IMS_PER_BATCH", "8",
              "DATALOADER.NUM_WORKERS", "0", "SOLVER.MAX_EPOCH", "1", "SOLVER.WARMUP_ITERS", "0",
              "TEST.IMS_PER_BATCH", "16"]


def stock_cfg(config, out, *opts):
    """What fast-reid's tools/train_net.py builds: fast-reid's defaults (no vireid key), a config file, options."""
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(ROOT, config))
    cfg.merge_from_list([*TINY_STOCK, "OUTPUT_DIR", str(out), *opts])
    return cfg


@pytest.fixture
def market(tiny_market, monkeypatch):
    """fast-reid's loaders read FASTREID_DATASETS once, at import: point them at the tiny Market-1501."""
    monkeypatch.setattr(fastreid.data.build, "_root", str(tiny_market))
    return tiny_market


def trainable(model):
    return {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}


def test_stock_default_trainer_updates_every_weight(market, tmp_path):
    """fast-reid's DefaultTrainer builds its optimizer over ContiguousParams; on torch 2 it used to update nothing."""
    cfg = stock_cfg("configs/Market1501/bagtricks_R50.yml", tmp_path)
    trainer = DefaultTrainer(cfg)
    assert isinstance(trainer._trainer.param_wrapper, ContiguousParams)  # fast-reid's flattened optimizer
    before = trainable(trainer.model)
    results = trainer.train()
    after = trainable(trainer.model)
    unchanged = [k for k in before if torch.equal(before[k], after[k])]
    assert len(before) > 100 and not unchanged  # ResNet-50 + BN neck + classifier: every weight moved
    assert {"Rank-1", "mAP", "mINP"} <= set(results)  # Market-1501 keeps fast-reid's own ReidEvaluator
    assert trainer.iters_per_epoch == 32 // 8


def test_contiguous_optimizer_steps_like_a_plain_one():
    """Same model, same batches: fast-reid's contiguous optimizer (shimmed) equals ``contiguous=False`` step for step;
    with torch 2's default ``zero_grad(set_to_none=True)`` it would never move."""
    cfg = get_cfg()
    cfg.SOLVER.OPT, cfg.SOLVER.BASE_LR = "Adam", 0.01
    torch.manual_seed(0)
    reference = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 3))
    models = {name: __import__("copy").deepcopy(reference) for name in ("shimmed", "plain", "stock")}
    optimizers = {"shimmed": build_optimizer(cfg, models["shimmed"])[0],
                  "plain": build_optimizer(cfg, models["plain"], contiguous=False)[0],
                  "stock": build_optimizer(cfg, models["stock"])[0]}
    for step in range(3):
        x = torch.randn(8, 6, generator=torch.Generator().manual_seed(step))
        for name, model in models.items():
            optimizer = optimizers[name]
            if name == "stock":
                type(optimizer).zero_grad(optimizer)  # torch's own zero_grad: set_to_none=True
            else:
                optimizer.zero_grad()
            model(x).pow(2).sum().backward()
            optimizer.step()
    for (key, shimmed), plain, stock, initial in zip(models["shimmed"].state_dict().items(),
                                                     models["plain"].state_dict().values(),
                                                     models["stock"].state_dict().values(),
                                                     reference.state_dict().values()):
        torch.testing.assert_close(shimmed, plain, msg=key)
        if key.endswith(("weight", "bias")):
            assert not torch.equal(shimmed, initial), key
            assert torch.equal(stock, initial), key  # the bug the shim removes: nothing is updated


def test_stock_trainer_scores_sysu_with_the_official_protocol(sysu_root, tmp_path, monkeypatch):
    """fast-reid's DefaultTrainer on our SYSU-MM01: trained by fast-reid's loader and sampler, scored by the dataset's
    own evaluator (10 gallery trials, camera-3 queries skip camera 2), equal to ours on the same model."""
    monkeypatch.setattr(fastreid.data.build, "_root", str(sysu_root))
    cfg = stock_cfg("configs/Market1501/bagtricks_R50.yml", tmp_path, "MODEL.BACKBONE.DEPTH", "18x",
                    "MODEL.BACKBONE.FEAT_DIM", "512", "DATASETS.NAMES", "('SYSUMM01',)", "DATASETS.TESTS",
                    "('SYSUMM01',)", "SOLVER.IMS_PER_BATCH", "4", "DATALOADER.NUM_INSTANCE", "2")
    assert "ROOT" not in cfg.DATASETS and "SYSU" not in cfg.DATASETS  # a stock config: none of our keys
    loader, evaluator = DefaultTrainer.build_evaluator(cfg, "SYSUMM01")
    assert isinstance(evaluator, SYSUEvaluator)
    assert {mode: len(runs) for mode, runs in evaluator.runs.items()} == {"all": 10, "indoor": 10}
    assert len(loader.dataset) == len(evaluator.items)

    trainer = DefaultTrainer(cfg)
    stock_results = trainer.train()
    assert {"all/Rank-1", "all/mAP", "all/mINP", "indoor/Rank-1", "all/Rank-1_std"} <= set(stock_results)

    ours = get_cfg()
    add_vireid_config(ours)
    ours.merge_from_other_cfg(cfg)
    ours.DATASETS.ROOT = str(sysu_root)
    loader, evaluator = build_vireid_evaluator(ours, "SYSUMM01")
    our_results = inference_on_dataset(trainer.model, loader, evaluator, flip_test=cfg.TEST.FLIP.ENABLED)
    assert set(our_results) == set(stock_results)
    for key, value in our_results.items():
        assert stock_results[key] == pytest.approx(value, abs=1e-9), key
    assert evaluator.pids[len(evaluator.items) - 1] in SYSU_TEST_IDS


def test_stock_baseline_flip_test_sees_the_raw_images(tmp_path):
    """fast-reid's Baseline normalised the batch in place, so inference_on_dataset's flip test normalised the flipped
    view twice; it now equals the mean of the features of the image and of its true mirror image."""
    cfg = stock_cfg("configs/Market1501/bagtricks_R50.yml", tmp_path, "MODEL.BACKBONE.DEPTH", "18x",
                    "MODEL.BACKBONE.FEAT_DIM", "512", "MODEL.HEADS.NUM_CLASSES", "4")
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    images = torch.rand(3, 3, 64, 32) * 255
    with torch.no_grad():
        plain, mirrored = model({"images": images.clone()}), model({"images": images.flip(3)})

    class OneBatch(list):
        dataset = [0] * 3

    class Keep:
        def reset(self):
            self.out = None

        def process(self, inputs, outputs):
            self.out, self.images = outputs, inputs["images"]

        def evaluate(self):
            return {}

    keep = Keep()
    batch = {"images": images.clone()}
    inference_on_dataset(model, OneBatch([batch]), keep, flip_test=True)
    torch.testing.assert_close(keep.out, (plain + mirrored) / 2)
    torch.testing.assert_close(keep.images, images.flip(3))  # the loader's tensor was never normalised
    cosine = torch.nn.functional.cosine_similarity(mirrored, model({"images": (images.flip(3) - 123.0) / 58.0}))
    assert (cosine < 0.999).all()  # a twice-normalised view is a different feature: the test can tell


def test_our_two_stream_backbone_refuses_fastreids_baseline(cfg, tmp_path):
    """fast-reid's Baseline calls backbone(images): our AGW would silently route every image through its visible
    stem; it refuses, naming the fixes, and runs as a one-stream network only when asked (NUM_MODALITIES 1)."""
    cfg.merge_from_file(os.path.join(ROOT, "configs/Synthetic/agw_supervised.yml"))
    cfg.merge_from_list(["MODEL.META_ARCHITECTURE", "Baseline", "MODEL.HEADS.NUM_CLASSES", "4"])
    images = {"images": torch.rand(2, 3, 64, 32) * 255, "targets": torch.tensor([0, 1]),
              "modality": torch.tensor([0, 1])}
    model = build_model(cfg)
    with pytest.raises(ValueError, match="AGWBackbone: called without `modality`.*VIReIDBaseline or "
                                         "UnsupervisedVIReID.*NUM_MODALITIES 1"):
        model(images)
    cfg.MODEL.BACKBONE.NUM_MODALITIES = 1
    with EventStorage(0):  # fast-reid's losses log the batch accuracy
        losses = build_model(cfg)(images)
    assert set(losses) == {"loss_cls", "loss_triplet"}


def test_stock_loader_builds_our_dual_modality_sampler(sysu_root, tmp_path, monkeypatch):
    """fast-reid's build_reid_train_loader(cfg) accepts our sampler names; batches carry the items' modality."""
    monkeypatch.setattr(fastreid.data.build, "_root", str(sysu_root))
    cfg = stock_cfg("configs/Market1501/bagtricks_R50.yml", tmp_path, "DATASETS.NAMES", "('SYSUMM01',)",
                    "DATALOADER.SAMPLER_TRAIN", "DualModalitySampler", "DATALOADER.NUM_INSTANCE", "2")
    loader = build_reid_train_loader(cfg)
    batch = next(iter(loader))
    infrared = torch.tensor([("/cam3/" in p or "/cam6/" in p) for p in batch["img_paths"]]).long()
    assert torch.equal(batch["modality"], infrared)
    assert batch["modality"].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]  # P = 2 labels x K = 2, visible then infrared
    assert batch["targets"][:4].tolist() == batch["targets"][4:].tolist()  # shared identities (true labels)
    cfg.DATALOADER.SAMPLER_TRAIN = "NoSuchSampler"
    with pytest.raises(KeyError, match="unknown sampler 'NoSuchSampler'.*DualModalitySampler.*NaiveIdentitySampler"):
        build_reid_train_loader(cfg)


def test_stock_trainer_trains_our_two_stream_model(sysu_root, tmp_path, monkeypatch):
    """Our parts in fast-reid's DefaultTrainer: our config (VIReIDBaseline + AGW, DualModalitySampler) built by
    fast-reid's loader, whose batches carry the modality: both stems are trained, the protocol scores it."""
    monkeypatch.setattr(fastreid.data.build, "_root", str(sysu_root))
    cfg = get_cfg()
    add_vireid_config(cfg)
    cfg.merge_from_file(os.path.join(ROOT, "configs/Synthetic/agw_supervised.yml"))
    cfg.merge_from_list([*TINY_STOCK, "OUTPUT_DIR", str(tmp_path), "DATASETS.ROOT", str(sysu_root),
                         "DATALOADER.NUM_INSTANCE", "2", "TEST.EVAL_PERIOD", "1", "DATASETS.SYSU.NUM_TRIALS", "2"])
    trainer = DefaultTrainer(cfg)
    before = trainable(trainer.model)
    results = trainer.train()
    after = trainable(trainer.model)
    for stem in ("backbone.stems.0.conv1.weight", "backbone.stems.1.conv1.weight"):
        assert not torch.equal(before[stem], after[stem]), stem
    assert {"all/mAP", "indoor/mAP", "all/mAP_std"} <= set(results)  # SYSU-MM01's protocol (2 trials here)
