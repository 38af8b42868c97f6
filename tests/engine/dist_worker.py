"""Worker for test_distributed.py (a module of its own so ``torch.multiprocessing.spawn`` can import it)."""
import os

import torch
from fastreid.utils import comm

from vireid_plugins.engine import VIReIDTrainer, seed_everything


def train_one_epoch(cfg, out_dir):
    """Build the trainer from a seed, train one epoch, save this rank's pseudo-labels and memory size."""
    seed_everything(cfg.SEED)
    trainer = VIReIDTrainer(cfg)
    trainer.train()
    torch.save({"labels": trainer.pseudo_label_hook.labels,
                "world_size": comm.get_world_size(),
                "visible_memory": unwrap(trainer.model).criterion.memories["visible"].features.shape},
               os.path.join(out_dir, f"rank{comm.get_rank()}_of_{comm.get_world_size()}.pt"))


def unwrap(model):
    return model.module if hasattr(model, "module") else model
