"""Worker for test_memory_ranks.py (importable by ``torch.multiprocessing.spawn``)."""
import os

import torch
import torch.nn.functional as F
from fastreid.utils import comm

from vireid_plugins.modeling.losses import ClusterMemory

STEPS, PER_RANK, DIM, CLUSTERS = 4, 6, 8, 5


def global_batch(step: int, world: int, tokens: int = 0):
    """The step's batch of every rank, in rank order: ``(world * PER_RANK, [T,] DIM)`` inputs and labels."""
    g = torch.Generator().manual_seed(100 + step)
    shape = (world * PER_RANK, tokens, DIM) if tokens else (world * PER_RANK, DIM)
    labels = torch.randint(-1, CLUSTERS, (world * PER_RANK,), generator=g)
    return torch.randn(*shape, generator=g), labels


def initial_memory(tokens: int = 0, update: str = "sequential"):
    g = torch.Generator().manual_seed(7)
    shape = (CLUSTERS * 3, tokens, DIM) if tokens else (CLUSTERS * 3, DIM)
    feats = F.normalize(torch.randn(*shape, generator=g), dim=-1)
    return ClusterMemory.from_features(feats, torch.arange(CLUSTERS).repeat(3), momentum=0.5, update=update)


def train(out_dir: str, tokens: int = 0, update: str = "sequential"):
    """STEPS steps of a memory loss; rank r trains on its slice of each global batch; saves the memory."""
    memory = initial_memory(tokens, update).train()
    rank, world = comm.get_rank(), comm.get_world_size()
    for step in range(STEPS):
        inputs, labels = global_batch(step, world, tokens)
        part = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
        x = inputs[part].clone().requires_grad_(True)
        memory(x, labels[part]).backward()
        memory.flush()  # what MemoryFlushHook does after every step
    torch.save(memory.features, os.path.join(out_dir, f"memory_rank{rank}_of_{world}.pt"))
