"""Config validation at set-up (validate_config, called by default_vireid_setup before any work)."""
import glob
import os
import subprocess
import sys

import pytest
from conftest import ROOT

from vireid_plugins.engine.validation import ConfigError, uses_triplet_loss, validate_config


def config(cfg, path):
    cfg.merge_from_file(os.path.join(ROOT, path))
    return cfg


def fresh(path):
    from fastreid.config import get_cfg

    from vireid_plugins import add_vireid_config

    cfg = get_cfg()
    add_vireid_config(cfg)
    return config(cfg, path)


def problems(cfg, world_size=1):
    with pytest.raises(ConfigError) as info:
        validate_config(cfg, world_size)
    assert str(info.value).startswith("invalid config (nothing was run):")
    return info.value.problems


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "configs", "*", "*.yml"))))
def test_shipped_configs_are_valid(cfg, path):
    validate_config(config(cfg, path))


def test_one_eps_for_two_modalities(cfg):
    config(cfg, "configs/Synthetic/dotla.yml").PSEUDO.EPS = [0.45]
    assert problems(cfg) == ["PSEUDO.EPS=[0.45]: expected one DBSCAN eps per modality, 2 values [visible, "
                             "infrared], e.g. [0.6, 0.6]"]


@pytest.mark.parametrize("eps, which", [([0.6, 1.2], "infrared eps 1.2"), ([0.0, 0.5], "visible eps 0.0"),
                                        ([-0.1, 0.5], "visible eps -0.1"), ([0.5, 1], "infrared eps 1")])
def test_eps_outside_the_jaccard_range(cfg, eps, which):
    config(cfg, "configs/Synthetic/usl_baseline.yml").PSEUDO.EPS = eps
    assert problems(cfg) == [f"PSEUDO.EPS={eps}: the {which} is not in (0, 1); Jaccard distances lie in [0, 1] "
                             "(SYSU-MM01 0.6, RegDB 0.3)"]


def test_eps_is_not_checked_without_pseudo_labels(cfg):
    config(cfg, "configs/Synthetic/agw_supervised.yml").PSEUDO.EPS = [0.45]
    validate_config(cfg)


@pytest.mark.parametrize("batch, k, world, unit", [(66, 4, 1, 8), (64, 4, 3, 24), (48, 16, 1, 32), (256, 16, 3, 96)])
def test_batch_must_split_into_modalities_instances_and_ranks(cfg, batch, k, world, unit):
    config(cfg, "configs/Synthetic/usl_baseline.yml")
    cfg.SOLVER.IMS_PER_BATCH, cfg.DATALOADER.NUM_INSTANCE = batch, k
    found = problems(cfg, world)
    if batch % world:
        assert found == [f"SOLVER.IMS_PER_BATCH={batch}: expected a positive multiple of the world size {world}"]
    else:
        assert len(found) == 1 and found[0].startswith(
            f"SOLVER.IMS_PER_BATCH={batch}: expected a multiple of world size x 2 modalities x DATALOADER.NUM_INSTANCE "
            f"= {world} x 2 x {k} = {unit} (DualModalitySampler)")
        lower = batch - batch % unit
        assert found[0].endswith(f"e.g. {lower} or {lower + unit}" if lower else f"e.g. {unit}")


def test_one_identity_per_batch_cannot_form_a_triplet(cfg):
    config(cfg, "configs/Synthetic/agw_supervised.yml")
    cfg.SOLVER.IMS_PER_BATCH, cfg.DATALOADER.NUM_INSTANCE = 8, 4
    assert problems(cfg) == [
        "SOLVER.IMS_PER_BATCH=8 with DATALOADER.NUM_INSTANCE=4 and world size 1: 1 label per modality in each batch "
        "(DualModalitySampler), but the triplet loss of MODEL.LOSSES.NAME=('CrossEntropyLoss', 'TripletLoss') needs at "
        "least 2 (with one there is no negative and the loss is 0); expected IMS_PER_BATCH >= 2 x 8 = 16, or a smaller "
        "NUM_INSTANCE"]
    cfg.SOLVER.IMS_PER_BATCH = 16
    validate_config(cfg)
    problems(cfg, world_size=2)  # 16 images over 2 ranks: one label per rank again
    cfg.SOLVER.IMS_PER_BATCH, cfg.MODEL.LOSSES.NAME = 8, ("CrossEntropyLoss",)
    validate_config(cfg)  # no triplet loss: one identity per batch is allowed


@pytest.mark.parametrize("sampler", ["NaiveIdentitySampler", "BalancedIdentitySampler"])
def test_fastreid_identity_samplers_are_checked_too(cfg, sampler):
    """fast-reid's P x K samplers count NUM_INSTANCE per identity (any modality): 4 / 4 is one identity per batch,
    and a batch that is not a multiple of K never completes (the loader would hang)."""
    config(cfg, "configs/Market1501/bagtricks_R50.yml")
    assert cfg.DATALOADER.SAMPLER_TRAIN == "NaiveIdentitySampler"
    cfg.DATALOADER.SAMPLER_TRAIN = sampler
    cfg.SOLVER.IMS_PER_BATCH = 4
    assert problems(cfg) == [
        f"SOLVER.IMS_PER_BATCH=4 with DATALOADER.NUM_INSTANCE=4 and world size 1: 1 label in each batch ({sampler}), "
        "but the triplet loss of MODEL.LOSSES.NAME=('CrossEntropyLoss', 'TripletLoss') needs at least 2 (with one "
        "there is no negative and the loss is 0); expected IMS_PER_BATCH >= 2 x 4 = 8, or a smaller NUM_INSTANCE"]
    cfg.SOLVER.IMS_PER_BATCH = 10
    assert problems(cfg) == [f"SOLVER.IMS_PER_BATCH=10: expected a multiple of world size x DATALOADER.NUM_INSTANCE "
                             f"= 1 x 4 = 4 ({sampler}), e.g. 8 or 12"]
    cfg.SOLVER.IMS_PER_BATCH = 8
    validate_config(cfg)
    assert len(problems(cfg, world_size=2)) == 1  # 4 images per rank: one identity per rank
    cfg.DATALOADER.SAMPLER_TRAIN = "TrainingSampler"  # no identity structure to check
    cfg.SOLVER.IMS_PER_BATCH = 6
    validate_config(cfg)


def test_eval_period_and_rank_lists(cfg):
    config(cfg, "configs/Market1501/bagtricks_R50.yml")
    cfg.TEST.EVAL_PERIOD = 0
    validate_config(cfg)  # 0: no evaluation
    cfg.TEST.EVAL_PERIOD = -1
    assert problems(cfg) == ["TEST.EVAL_PERIOD=-1: expected epochs between evaluations (an integer >= 1), or 0 for "
                             "no evaluation"]
    cfg.TEST.EVAL_PERIOD, cfg.TEST.RANKLIST.ENABLED = 1, True
    assert problems(cfg) == [
        "TEST.RANKLIST.ENABLED=True: rank lists are drawn for the cross-modality protocols only, but DATASETS.TESTS "
        "has single-modality dataset(s) ['Market1501'] (fast-reid's ReidEvaluator); expected TEST.RANKLIST.ENABLED "
        "False, or only SYSUMM01/RegDB/LLCM test sets"]
    cfg.DATASETS.TESTS = ("SYSUMM01",)
    validate_config(cfg)


def test_triplet_detection_follows_the_criterion(cfg):
    config(cfg, "configs/Synthetic/dotla.yml")
    assert uses_triplet_loss(cfg)  # DOTLACriterion (Eq. 16 of DOTLA: CE + triplet)
    cfg.SOLVER.IMS_PER_BATCH, cfg.DATALOADER.NUM_INSTANCE = 16, 8
    assert "MODEL.CRITERION.NAME='DOTLACriterion'" in problems(cfg)[0]
    cfg = fresh("configs/Synthetic/usl_baseline.yml")  # cluster memories: no triplet
    cfg.SOLVER.IMS_PER_BATCH, cfg.DATALOADER.NUM_INSTANCE = 32, 16
    assert not uses_triplet_loss(cfg)
    validate_config(cfg)


def test_enumerations_and_dependencies(cfg):
    config(cfg, "configs/Synthetic/dotla.yml")
    cfg.PSEUDO.OUTLIERS, cfg.DATALOADER.DUAL_PAIRING, cfg.DATASETS.MISSING_IDS = "keep", "paired", "ignore"
    cfg.DOTLA.MARGINALS, cfg.DOTLA.LAMBDA, cfg.PSEUDO.K1 = "sizes", 0.0, 0
    cfg.DATASETS.NAMES = ("SYSU",)
    found = problems(cfg)
    assert found == [
        "DATASETS.NAMES=('SYSU',): unknown dataset(s) ['SYSU']; registered: " + found[0].split("registered: ")[1],
        "DATASETS.MISSING_IDS='ignore': expected one of ('error', 'warn')",
        "PSEUDO.K1=0: expected an integer >= 1",
        "PSEUDO.OUTLIERS='keep': expected one of ('drop', 'singleton')",
        "DATALOADER.DUAL_PAIRING='paired': expected one of ('auto', 'shared', 'independent')",
        "DOTLA.MARGINALS='sizes': expected one of ('uniform', 'cluster_size', 'relaxed')",
        "DOTLA.LAMBDA=0.0: expected > 0 (the entropic regularisation is 1 / lambda)",
    ]
    assert "SYSUMM01" in found[0] and "RegDB" in found[0]


def test_features_need_their_parts(cfg):
    config(cfg, "configs/Synthetic/dotla.yml")
    cfg.PSEUDO.ENABLED, cfg.MODEL.CRITERION.NAME = False, "DualClusterMemoryLoss"
    assert problems(cfg) == [
        "PSEUDO.ASSOCIATION=('DOTLAAssociation',): expected PSEUDO.ENABLED True (association hooks transform the "
        "pseudo-labels)",
        "MODEL.CRITERION.NAME='DualClusterMemoryLoss': DOTLAAssociation needs the criterion that trains on its "
        "cross-modality targets, DOTLACriterion"]
    cfg.PSEUDO.ENABLED, cfg.PSEUDO.ASSOCIATION, cfg.MODEL.CRITERION.NAME = True, ("DOTLA",), "Nope"
    found = problems(cfg)
    assert found[0].startswith("PSEUDO.ASSOCIATION=('DOTLA',): unknown association hook(s) ['DOTLA']; registered: ")
    assert "DOTLAAssociation" in found[0] and found[1].startswith("MODEL.CRITERION.NAME='Nope': expected one of ")
    cfg = fresh("configs/Synthetic/agw_supervised.yml")
    cfg.PSEUDO.ENABLED = True
    assert problems(cfg) == ["PSEUDO.ENABLED=True: expected a MODEL.META_ARCHITECTURE whose criterion the "
                             "pseudo-labels rebuild (UnsupervisedVIReID), got 'VIReIDBaseline'"]


@pytest.mark.slow
def test_train_net_refuses_a_bad_config_before_any_work(tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, os.path.join(ROOT, "tools", "train_net.py"), "--config-file",
           os.path.join(ROOT, "configs/Synthetic/dotla.yml"), "DATASETS.ROOT", str(tmp_path / "no_data"),
           "OUTPUT_DIR", str(out), "MODEL.WEIGHTS", "", "PSEUDO.EPS", "[0.45]", "SOLVER.IMS_PER_BATCH", "66"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "ConfigError: invalid config (nothing was run):" in proc.stderr
    assert "PSEUDO.EPS=[0.45]: expected one DBSCAN eps per modality" in proc.stderr
    assert "SOLVER.IMS_PER_BATCH=66: expected a multiple of" in proc.stderr
    assert not out.exists()  # refused before the output folder, the data or the model
