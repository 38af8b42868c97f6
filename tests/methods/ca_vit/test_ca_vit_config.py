"""CA_VIT config keys and check_ca_vit_config: the shipped configs pass, every bad value is named."""
import os

import pytest
from conftest import ROOT

from vireid_plugins.engine.validation import ConfigError, validate_config
from vireid_plugins.methods.ca_vit.config import check_ca_vit_config

CONFIGS = ["configs/Base-CA-ViT.yml", "configs/SYSU-MM01/ca_vit.yml", "configs/RegDB/ca_vit.yml",
           "configs/LLCM/ca_vit.yml", "configs/Synthetic/ca_vit.yml"]


def test_defaults_follow_the_paper(cfg):
    c = cfg.CA_VIT
    assert (c.MAAL.ALPHA, c.MAAL.BETA, c.VRA.MU, c.VRA.WEIGHT) == (1.0, 0.1, 3, 0.4)
    assert (c.VRNL.RHO, c.VRNL.MIN_SPACES, c.VRNL.WEIGHT) == (0.9, 0, 0.5)
    assert (c.UM.DELTA_V, c.UM.DELTA_R, c.UM.WEIGHT) == (0.6, 0.4, 0.03)
    assert (c.MEMORY.TEMPERATURE, c.MEMORY.MOMENTUM, c.MEMORY.SHARED_MOMENTUM) == (0.05, 0.2, 0.8)
    assert cfg.MODEL.BACKBONE.PA_CBAM.REG_WEIGHT == 0.1
    assert check_ca_vit_config(cfg) == []  # the method is not used


@pytest.mark.parametrize("path", CONFIGS)
def test_shipped_configs_are_valid(cfg, path):
    cfg.merge_from_file(os.path.join(ROOT, path))
    assert check_ca_vit_config(cfg) == []
    validate_config(cfg)
    assert cfg.MODEL.CRITERION.NAME == "CAViTCriterion" and cfg.PSEUDO.ASSOCIATION == ("CAViTAssociation",)


def test_regdb_uses_six_tokens_and_no_camera_filter(cfg):
    cfg.merge_from_file(os.path.join(ROOT, "configs/RegDB/ca_vit.yml"))
    assert cfg.MODEL.BACKBONE.NUM_TOKENS == 6 and not cfg.CA_VIT.VRNL.CAMERA_FILTER.ENABLED
    assert list(cfg.PSEUDO.EPS) == [0.6, 0.6]


BAD = [
    ("CA_VIT.VRA.MU", 0, "CA_VIT.VRA.MU=0"),
    ("CA_VIT.VRNL.RHO", 1.5, "CA_VIT.VRNL.RHO=1.5"),
    ("CA_VIT.VRNL.MIN_SPACES", 5, "CA_VIT.VRNL.MIN_SPACES=5: expected 0 (all) or 1..4"),
    ("CA_VIT.VRNL.CROSS_PAIRS", "odd", "CA_VIT.VRNL.CROSS_PAIRS='odd'"),
    ("CA_VIT.VRNL.CAMERA_FILTER.EPS", 1.0, "CA_VIT.VRNL.CAMERA_FILTER.EPS=1.0"),
    ("CA_VIT.VRNL.CAMERA_FILTER.K1", 0, "CA_VIT.VRNL.CAMERA_FILTER.K1=0"),
    ("CA_VIT.MEMORY.SHARED_MOMENTUM", 1.2, "CA_VIT.MEMORY.SHARED_MOMENTUM=1.2"),
    ("CA_VIT.MEMORY.TEMPERATURE", 0.0, "CA_VIT.MEMORY.TEMPERATURE=0.0"),
    ("CA_VIT.MEMORY.UPDATE", "fast", "CA_VIT.MEMORY.UPDATE='fast'"),
    ("CA_VIT.UM.DELTA_R", -0.4, "CA_VIT.UM.DELTA_R=-0.4"),
    ("CA_VIT.MAAL.DROPOUT", 1.0, "CA_VIT.MAAL.DROPOUT=1.0"),
    ("CA_VIT.PHASE2_START_EPOCH", -1, "CA_VIT.PHASE2_START_EPOCH=-1"),
    ("MODEL.CRITERION.CA_VIEW", False, "MODEL.CRITERION.CA_VIEW=False"),
    ("MODEL.CRITERION.NAME", "DualClusterMemoryLoss", "needs the criterion"),
    ("PSEUDO.ASSOCIATION", (), "needs the association hook"),
]


@pytest.mark.parametrize("key,value,message", BAD)
def test_each_bad_value_is_named(cfg, key, value, message):
    cfg.merge_from_file(os.path.join(ROOT, "configs/Synthetic/ca_vit.yml"))
    cfg.merge_from_list([key, value])
    problems = check_ca_vit_config(cfg)
    assert len(problems) == 1 and message in problems[0], problems
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate_config(cfg)


def test_phase_1_only_needs_no_hook(cfg):
    cfg.merge_from_file(os.path.join(ROOT, "configs/Synthetic/ca_vit.yml"))
    cfg.merge_from_list(["PSEUDO.ASSOCIATION", "()", "CA_VIT.VRA.ENABLED", "False", "CA_VIT.VRNL.ENABLED", "False",
                         "CA_VIT.UM.ENABLED", "False"])
    assert check_ca_vit_config(cfg) == []


def test_ablation_rows_follow_table_3_and_are_valid(cfg):
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_ablation", os.path.join(ROOT, "tools", "run_ablation.py"))
    run_ablation = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_ablation)
    config, rows = run_ablation.read_rows(os.path.join(ROOT, "configs", "Synthetic", "ablations", "ca_vit.yml"))
    assert list(rows) == ["baseline", "+PA-CBAM", "+UM", "+VRNL", "+VRA", "+VRA+VRNL", "full"]
    enabled = {}
    for name, opts in rows.items():
        row = cfg.clone()
        row.merge_from_file(config)
        row.merge_from_list(opts)
        assert check_ca_vit_config(row) == [], name
        validate_config(row)
        c = row.CA_VIT
        enabled[name] = {key for key, on in (("PA-CBAM", row.MODEL.BACKBONE.PA_CBAM.ENABLED), ("MAAL", c.MAAL.ENABLED),
                                             ("VRA", c.VRA.ENABLED), ("VRNL", c.VRNL.ENABLED), ("UM", c.UM.ENABLED))
                         if on}
    assert enabled == {"baseline": set(), "+PA-CBAM": {"PA-CBAM"}, "+UM": {"UM"}, "+VRNL": {"VRNL"},
                       "+VRA": {"MAAL", "VRA"}, "+VRA+VRNL": {"MAAL", "VRA", "VRNL"},
                       "full": {"PA-CBAM", "MAAL", "VRA", "VRNL", "UM"}}
