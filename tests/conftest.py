"""Shared fixtures: small hand-made SYSU-MM01 and RegDB folders in the official layouts."""
import os
import sys

import numpy as np
import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import vireid_plugins  # noqa: E402,F401  (compat shims before fastreid is imported by any test)

SYSU_TRAIN_IDS, SYSU_VAL_IDS, SYSU_TEST_IDS = [1, 2, 4], [5], [7, 8, 10]
# files per (pid, cam); 0 or missing = no folder
SYSU_COUNTS = {
    (1, 1): 2, (1, 3): 2, (2, 2): 1, (2, 6): 3, (4, 4): 2, (4, 3): 1, (5, 5): 2, (5, 6): 1,
    (7, 1): 3, (7, 2): 2, (7, 4): 2, (7, 3): 2, (8, 2): 4, (8, 5): 1, (8, 6): 2,
    (10, 1): 1, (10, 5): 3, (10, 3): 1, (10, 6): 1,
}


def write_image(path, size=(16, 8), mode="RGB", value=0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(value)
    shape = (size[0], size[1], 3) if mode == "RGB" else size
    Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(path)


@pytest.fixture
def sysu_root(tmp_path):
    """``tmp/SYSU-MM01`` with ids/cameras of :data:`SYSU_COUNTS`; returns ``tmp``."""
    root = tmp_path / "SYSU-MM01"
    for cam in range(1, 7):
        (root / f"cam{cam}").mkdir(parents=True)
    for (pid, cam), count in SYSU_COUNTS.items():
        for i in range(count):
            mode = "L" if cam in (3, 6) else "RGB"
            write_image(str(root / f"cam{cam}" / f"{pid:04d}" / f"{i + 1:04d}.jpg"), mode=mode, value=pid * 100 + i)
    (root / "exp").mkdir()
    for name, ids in (("train_id", SYSU_TRAIN_IDS), ("val_id", SYSU_VAL_IDS), ("test_id", SYSU_TEST_IDS)):
        (root / "exp" / f"{name}.txt").write_text(",".join(map(str, ids)) + "\n")
    return tmp_path


REGDB_IDS = list(range(1, 7))  # 6 ids, 2 images per modality


@pytest.fixture
def regdb_root(tmp_path):
    """``tmp/RegDB`` with trials 1 and 2 (3 train / 3 test ids each); returns ``tmp``."""
    root = tmp_path / "RegDB"
    for pid in REGDB_IDS:
        for i in range(2):
            write_image(str(root / "Visible" / str(pid) / f"p_v_{pid}_{i}.bmp"), value=pid * 10 + i)
            write_image(str(root / "Thermal" / str(pid) / f"p_t_{pid}_{i}.bmp"), mode="L", value=pid * 10 + i)
    (root / "idx").mkdir()
    for trial, (train, test) in {1: ([1, 2, 3], [4, 5, 6]), 2: ([4, 5, 6], [1, 2, 3])}.items():
        for split, ids in (("train", train), ("test", test)):
            for modality, folder, tag in (("visible", "Visible", "v"), ("thermal", "Thermal", "t")):
                lines = [f"{folder}/{pid}/p_{tag}_{pid}_{i}.bmp {label}" for label, pid in enumerate(ids)
                         for i in range(2)]
                (root / "idx" / f"{split}_{modality}_{trial}.txt").write_text("\n".join(lines) + "\n")
    return tmp_path


MARKET_TRAIN_IDS, MARKET_TEST_IDS = range(1, 9), range(21, 27)  # train: 4 images each in cameras 1 and 2


@pytest.fixture(scope="session")
def tiny_market(tmp_path_factory):
    """A tiny ``Market-1501-v15.09.15`` folder in the official file-name format (8 train ids x 4 images; 6 test ids
    with one query in camera 1 and two gallery images in cameras 2 and 3, plus a junk and a distractor image);
    returns its parent (fast-reid's ``FASTREID_DATASETS``)."""
    parent = tmp_path_factory.mktemp("market")
    root = parent / "Market-1501-v15.09.15"
    for pid in MARKET_TRAIN_IDS:
        for i in range(4):
            cam = 1 + i % 2
            write_image(str(root / "bounding_box_train" / f"{pid:04d}_c{cam}s1_{i:06d}_01.jpg"), size=(32, 16),
                        value=pid * 10 + i)
    for pid in MARKET_TEST_IDS:
        write_image(str(root / "query" / f"{pid:04d}_c1s1_000001_00.jpg"), size=(32, 16), value=pid * 10)
        for cam in (2, 3):
            write_image(str(root / "bounding_box_test" / f"{pid:04d}_c{cam}s1_000002_00.jpg"), size=(32, 16),
                        value=pid * 10 + cam)
    write_image(str(root / "bounding_box_test" / "-1_c2s1_000009_00.jpg"), size=(32, 16))  # junk: ignored
    write_image(str(root / "bounding_box_test" / "0000_c3s1_000009_00.jpg"), size=(32, 16))  # distractor
    return parent


@pytest.fixture
def cfg():
    from fastreid.config import get_cfg

    from vireid_plugins import add_vireid_config

    c = get_cfg()
    add_vireid_config(c)
    c.DATALOADER.NUM_WORKERS = 0  # fast-reid's default is 8 worker processes; tests load in-process
    return c


@pytest.fixture(scope="session")
def tiny_sysu(tmp_path_factory):
    """The ``tiny`` synthetic SYSU-MM01 set (generated once per session); returns its DATASETS.ROOT."""
    from vireid_plugins.data.synthetic import generate

    root = tmp_path_factory.mktemp("tiny_sysu")
    generate("sysu", root / "SYSU-MM01", preset="tiny", seed=0, workers=1)
    return root


TINY_OPTS = [
    "INPUT.SIZE_TRAIN", "[64,32]", "INPUT.SIZE_TEST", "[64,32]", "SOLVER.IMS_PER_BATCH", "16",
    "DATALOADER.NUM_INSTANCE", "2", "DATALOADER.NUM_WORKERS", "0", "DATALOADER.ITERS_PER_EPOCH", "2",
    "SOLVER.WARMUP_ITERS", "0", "DATASETS.SYSU.NUM_TRIALS", "2", "TEST.EVAL_AT_START", "False",
    "MODEL.WEIGHTS", "",  # the demo configs start from the source-pretrained model; tests from scratch
]


def train_net(config, root, out, *extra, opts=(), check=True):
    """Run ``tools/train_net.py`` on ``config`` with the tiny options; returns the log (stdout + stderr)."""
    import subprocess

    cmd = [sys.executable, os.path.join(ROOT, "tools", "train_net.py"), "--config-file", os.path.join(ROOT, config),
           *extra, "DATASETS.ROOT", str(root), "OUTPUT_DIR", str(out), *TINY_OPTS, *opts]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def final_metrics(out):
    """The ``final_metrics.json`` a finished run wrote to ``out``."""
    import json

    with open(os.path.join(str(out), "final_metrics.json")) as f:
        return json.load(f)


def make_checkpoint(path, config="configs/Synthetic/agw_supervised.yml", opts=(), seed=1, num_classes=6):
    """Save a freshly built tiny model (seeded, ``num_classes`` classifier rows) as a fast-reid checkpoint."""
    import torch
    from fastreid.modeling import build_model

    from vireid_plugins.deployment.inference import setup_cfg

    cfg = setup_cfg(os.path.join(ROOT, config), TINY_OPTS + ["SEED", str(seed), "MODEL.HEADS.NUM_CLASSES",
                                                             str(num_classes), "MODEL.DEVICE", "cpu", *opts])
    torch.manual_seed(seed)
    torch.save({"model": build_model(cfg).state_dict(), "iteration": 0}, str(path))
    return str(path)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A tiny supervised AGW checkpoint (configs/Synthetic/agw_supervised.yml with TINY_OPTS, seed 1)."""
    return make_checkpoint(tmp_path_factory.mktemp("tiny_ckpt") / "model.pth")
