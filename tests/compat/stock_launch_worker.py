"""Worker of test_stock_launch.py: what fast-reid's tools/train_net.py runs in each process, importing fastreid only
(a module of its own so ``torch.multiprocessing.spawn`` can import it)."""
import os
import sys

import torch
from fastreid.engine import DefaultTrainer
from fastreid.utils import comm


def train(cfg, out_dir):
    """Train fast-reid's DefaultTrainer; save this rank's parameters before and after (BN statistics stay per rank:
    fast-reid's DDP has ``broadcast_buffers=False``), and what the process had."""
    trainer = DefaultTrainer(cfg)
    model = trainer.model.module if hasattr(trainer.model, "module") else trainer.model
    before = {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}
    results = trainer.train()
    torch.save({"world_size": comm.get_world_size(), "before": before,
                "after": {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad},
                "ddp": type(trainer.model).__name__, "shims": "vireid_plugins" in sys.modules,
                "results": dict(results) if results else None},
               os.path.join(out_dir, f"rank{comm.get_rank()}.pt"))
