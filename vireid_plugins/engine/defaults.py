"""Set-up helpers shared by ``tools/*.py``: argument parser, config set-up and seeding."""
import os
import random

import numpy as np
import torch
from fastreid.config import get_cfg
from fastreid.engine import default_argument_parser, default_setup
from fastreid.utils import comm

from ..config import add_vireid_config
from .validation import validate_config

__all__ = ["vireid_argument_parser", "default_vireid_setup", "check_device", "check_weights_exist", "seed_everything"]


def vireid_argument_parser():
    """fast-reid's parser: ``--config-file``, ``--resume``, ``--eval-only``, ``--num-gpus``, ``KEY VALUE`` opts."""
    return default_argument_parser()


def seed_everything(seed: int, rank: int = 0):
    """Seed python, numpy and torch (per rank) from ``cfg.SEED``; a negative seed leaves them random."""
    if seed < 0:
        return
    seed = int(seed) + rank
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def check_weights_exist(cfg) -> None:
    """Fail early, naming the key, when ``MODEL.WEIGHTS`` names a missing local file (fast-reid's checkpointer
    would stop later on a bare assertion)."""
    path = cfg.MODEL.WEIGHTS
    if path and "://" not in path and not os.path.isfile(path):
        raise FileNotFoundError(f"MODEL.WEIGHTS: checkpoint file {path!r} does not exist (expected a fast-reid "
                                "checkpoint .pth; the synthetic demos make theirs with `make source-pretrain`)")


def check_device(cfg) -> None:
    """Fail early, naming the key, when ``MODEL.DEVICE`` asks for CUDA on a machine without it."""
    if str(cfg.MODEL.DEVICE).startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"MODEL.DEVICE={cfg.MODEL.DEVICE!r}, but no CUDA device is available on this machine; "
                           "add MODEL.DEVICE cpu to the command line (or the config)")


def default_vireid_setup(args):
    """Config (fast-reid defaults + vireid keys + file + opts), validated (:func:`.validation.validate_config`)
    before anything else, then logging, output dir and seeding."""
    cfg = get_cfg()
    add_vireid_config(cfg)
    if args.config_file:
        cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    validate_config(cfg, comm.get_world_size())
    check_device(cfg)
    check_weights_exist(cfg)
    default_setup(cfg, args)  # logging, config dump; it also seeds at random, which seed_everything overrides
    seed_everything(cfg.SEED, comm.get_rank())
    return cfg
