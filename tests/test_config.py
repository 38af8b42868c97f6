"""add_vireid_config adds keys and changes no fast-reid default; FASTREID_DATASETS is DATASETS.ROOT's default."""
import glob
import os

import pytest
from conftest import ROOT
from fastreid.config import get_cfg

from vireid_plugins import add_vireid_config
from vireid_plugins.config import _declared, with_vireid_keys

# keys whose default add_vireid_config used to set (fast-reid's own, or ours now read from the environment) and the
# values it set: every shipped config must resolve them as before
MOVED = {"DATALOADER.SAMPLER_TRAIN": "DualModalitySampler", "DATALOADER.NUM_WORKERS": 2, "DATASETS.ROOT": "datasets"}
SHIPPED = sorted(glob.glob(os.path.join(ROOT, "configs", "*.yml")) + glob.glob(os.path.join(ROOT, "configs", "*",
                                                                                              "*.yml")))


def flat(node, prefix=""):
    out = {}
    for key, value in node.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def vireid_cfg():
    cfg = get_cfg()
    add_vireid_config(cfg)
    return cfg


def test_every_fastreid_default_is_kept(monkeypatch):
    monkeypatch.delenv("FASTREID_DATASETS", raising=False)
    stock, ours = flat(get_cfg()), flat(vireid_cfg())
    assert {k: ours[k] for k in stock} == stock
    # no declaration (core or method) tries to change a fast-reid default: it would be silently skipped
    declared = flat(_declared())
    assert {k: declared[k] for k in stock} == stock
    assert len(ours) > len(stock) + 50 and ours["DATASETS.ROOT"] == "datasets" and ours["SEED"] == 0


def test_adding_twice_keeps_what_is_set():
    cfg = vireid_cfg()
    cfg.DATASETS.ROOT, cfg.PSEUDO.EPS, cfg.DATALOADER.SAMPLER_TRAIN = "/data", [0.3, 0.3], "DualModalitySampler"
    add_vireid_config(cfg)
    assert (cfg.DATASETS.ROOT, cfg.PSEUDO.EPS, cfg.DATALOADER.SAMPLER_TRAIN) == ("/data", [0.3, 0.3],
                                                                                 "DualModalitySampler")
    assert flat(cfg).keys() == flat(vireid_cfg()).keys()


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: os.path.relpath(p, ROOT))
def test_shipped_configs_resolve_the_moved_keys_as_before(path, monkeypatch):
    monkeypatch.delenv("FASTREID_DATASETS", raising=False)
    before = vireid_cfg()
    for key, value in MOVED.items():  # the defaults add_vireid_config used to set
        node, _, leaf = key.rpartition(".")
        before[node][leaf] = value
    before.merge_from_file(path)
    after = vireid_cfg()
    after.merge_from_file(path)
    assert {k: flat(after)[k] for k in MOVED} == {k: flat(before)[k] for k in MOVED}


def test_fastreid_datasets_is_the_default_root(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTREID_DATASETS", str(tmp_path))
    cfg = vireid_cfg()
    assert cfg.DATASETS.ROOT == str(tmp_path)
    cfg.merge_from_file(os.path.join(ROOT, "configs/SYSU-MM01/agw_supervised.yml"))
    assert cfg.DATASETS.ROOT == str(tmp_path)  # the real-data configs name no root
    cfg.merge_from_file(os.path.join(ROOT, "configs/Synthetic/agw_supervised.yml"))
    assert cfg.DATASETS.ROOT == "datasets/synthetic/demo"  # an explicit one wins


def test_with_vireid_keys_completes_a_stock_config(monkeypatch, tmp_path):
    import fastreid.data.build

    monkeypatch.setattr(fastreid.data.build, "_root", str(tmp_path))  # FASTREID_DATASETS when fastreid was imported
    stock = get_cfg()
    stock.DATALOADER.NUM_INSTANCE = 7
    full = with_vireid_keys(stock)
    assert full.is_frozen() and full.DATASETS.ROOT == str(tmp_path) and full.DATASETS.SYSU.NUM_TRIALS == 10
    assert full.DATALOADER.NUM_INSTANCE == 7 and "SYSU" not in stock.DATASETS  # the original is untouched
    ours = vireid_cfg()
    ours.DATASETS.ROOT = "elsewhere"
    assert with_vireid_keys(ours).DATASETS.ROOT == "elsewhere"


@pytest.mark.parametrize("path", [p for p in SHIPPED if "/fastreid/" not in p], ids=lambda p: os.path.relpath(p, ROOT))
def test_shipped_configs_evaluate_after_training(path):
    """TEST.EVAL_PERIOD 0 used to mean "at the end only"; it now means "never" (fast-reid's own trainer fails on 0):
    a shipped config that wants one evaluation at the end sets EVAL_PERIOD to MAX_EPOCH."""
    cfg = vireid_cfg()
    cfg.merge_from_file(path)
    assert cfg.TEST.EVAL_PERIOD >= 1, f"{path}: TEST.EVAL_PERIOD 0 evaluates nothing; use MAX_EPOCH for the end only"
