"""Train items: fast-reid visible datasets (Market-1501) and visible-only pre-training (DATASETS.PSEUDO_INFRARED)."""
import pytest
import torch
from conftest import SYSU_COUNTS, SYSU_TRAIN_IDS, SYSU_VAL_IDS, write_image
from PIL import Image

from vireid_plugins.data.build import _as_vireid_items, train_items
from vireid_plugins.data.datasets import INFRARED, VISIBLE
from vireid_plugins.data.transforms import build_vireid_transforms

MARKET_TRAIN = {(2, 1): 2, (2, 3): 1, (7, 2): 2, (11, 1): 1, (11, 6): 2}  # (pid, camera): images


@pytest.fixture
def market_root(tmp_path):
    """A tiny ``Market-1501-v15.09.15`` folder in the official file-name format; returns its parent."""
    root = tmp_path / "Market-1501-v15.09.15"
    for (pid, cam), count in MARKET_TRAIN.items():
        for i in range(count):
            write_image(str(root / "bounding_box_train" / f"{pid:04d}_c{cam}s1_{i:06d}_01.jpg"), value=pid + i)
    write_image(str(root / "query" / "0003_c1s1_000001_00.jpg"))
    write_image(str(root / "bounding_box_test" / "0003_c2s1_000001_00.jpg"))
    write_image(str(root / "bounding_box_test" / "-1_c2s1_000002_00.jpg"))  # junk, ignored by fast-reid
    return tmp_path


def test_fastreid_market_items_become_visible_items(cfg, market_root):
    cfg.DATASETS.ROOT, cfg.DATASETS.NAMES = str(market_root), ("Market1501",)
    items = train_items(cfg)
    assert len(items) == sum(MARKET_TRAIN.values())
    assert {it[3] for it in items} == {VISIBLE}
    by_path = {path.rsplit("/", 1)[1]: (pid, camid) for path, pid, camid, _ in items}
    # string pids "market1501_2" < "market1501_11"... are numbered in sorted (string) order, camids likewise
    pid_order = sorted((f"market1501_{p}" for p in {2, 7, 11}))
    cam_order = sorted((f"market1501_{c - 1}" for c in {1, 2, 3, 6}))
    for (pid, cam), count in MARKET_TRAIN.items():
        for i in range(count):
            got = by_path[f"{pid:04d}_c{cam}s1_{i:06d}_01.jpg"]
            assert got == (pid_order.index(f"market1501_{pid}"), cam_order.index(f"market1501_{cam - 1}"))


def test_pseudo_infrared_replaces_infrared_by_visible(cfg, sysu_root):
    cfg.DATASETS.ROOT, cfg.DATASETS.NAMES = str(sysu_root), ("SYSUMM01",)
    real = train_items(cfg)
    cfg.DATASETS.PSEUDO_INFRARED = True
    items = train_items(cfg)
    visible = [it for it in real if it[3] == VISIBLE]
    ids = set(SYSU_TRAIN_IDS + SYSU_VAL_IDS)
    assert len(visible) == sum(n for (pid, cam), n in SYSU_COUNTS.items() if pid in ids and cam in (1, 2, 4, 5))
    assert items[:len(visible)] == visible
    assert items[len(visible):] == [(p, pid, cam, INFRARED) for p, pid, cam, _ in visible]
    assert not any("/cam3/" in it[0] or "/cam6/" in it[0] for it in items)  # real infrared images dropped


def test_pseudo_infrared_transform_makes_one_channel_images(cfg):
    cfg.INPUT.SIZE_TRAIN = cfg.INPUT.SIZE_TEST = [8, 4]
    cfg.INPUT.FLIP.ENABLED = cfg.INPUT.PADDING.ENABLED = False
    cfg.INPUT.REA.ENABLED = False
    cfg.DATASETS.PSEUDO_INFRARED = True
    torch.manual_seed(0)
    infrared = build_vireid_transforms(cfg, is_train=True)[INFRARED]
    pil = Image.new("RGB", (4, 8), (200, 100, 10))
    luminance = 0.2989 * 200 + 0.587 * 100 + 0.114 * 10  # ITU-R 601 weights as in CA
    seen = set()
    for _ in range(60):
        out = infrared(pil)
        assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])
        seen.add(round(float(out[0, 0, 0]), 3))
    assert seen == {200.0, 100.0, 10.0, round(luminance, 3)}
    visible = build_vireid_transforms(cfg, is_train=True)[VISIBLE](pil)
    assert torch.allclose(visible[:, 0, 0], torch.tensor([200.0, 100.0, 10.0]))  # visible images untouched


def test_bad_train_items_name_the_dataset():
    with pytest.raises(ValueError, match="'Odd'.*2 fields"):
        _as_vireid_items("Odd", [("a.jpg", 1)])
    with pytest.raises(ValueError, match="'Empty' has no training images"):
        _as_vireid_items("Empty", [])
