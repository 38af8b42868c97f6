"""``launch`` like fast-reid's, but with a CPU path: without CUDA the processes use the gloo backend.

fast-reid's ``launch`` asserts CUDA and hard-codes NCCL. This one spawns ``num_processes_per_machine``
workers with NCCL on GPUs (one device each) or gloo on the CPU (useful for testing distributed code paths,
e.g. that every rank receives the same pseudo-labels), sets up fast-reid's local process group, then calls
``main_func(*args)`` in each. ``vireid_plugins.compat`` makes fast-reid's own ``launch`` spawn this worker too.

A spawned worker starts its data-loader processes with the platform's default method (``fork`` on Linux), as a
single-process run does, not with ``spawn`` inherited from ``launch``: a spawned data-loader process would unpickle
fast-reid's datasets before anything applied the compatibility shims, and re-import everything for each loader.
"""
import logging

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from fastreid.engine.launch import _find_free_port
from fastreid.utils import comm

__all__ = ["launch"]


def launch(main_func, num_processes_per_machine, num_machines=1, machine_rank=0, dist_url=None, args=()):
    world_size = num_machines * num_processes_per_machine
    if world_size == 1:
        return main_func(*args)
    if dist_url in (None, "auto"):
        if num_machines != 1:
            raise ValueError("dist_url='auto' only works on one machine; pass --dist-url tcp://HOST:PORT")
        dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
    mp.spawn(_worker, nprocs=num_processes_per_machine, daemon=False,
             args=(main_func, world_size, num_processes_per_machine, machine_rank, dist_url, args))


def _worker(local_rank, main_func, world_size, num_per_machine, machine_rank, dist_url, args):
    mp.set_start_method(None, force=True)  # the platform's default for data-loader processes (see module docstring)
    use_cuda = torch.cuda.is_available()
    if use_cuda and num_per_machine > torch.cuda.device_count():
        raise ValueError(f"{num_per_machine} processes per machine but only {torch.cuda.device_count()} GPUs")
    global_rank = machine_rank * num_per_machine + local_rank
    try:
        dist.init_process_group(backend="NCCL" if use_cuda else "gloo", init_method=dist_url,
                                world_size=world_size, rank=global_rank)
    except Exception:
        logging.getLogger("fastreid.vireid.launch").error(f"Process group URL: {dist_url}")
        raise
    comm.synchronize()
    if use_cuda:
        torch.cuda.set_device(local_rank)
    for i in range(world_size // num_per_machine):
        group = dist.new_group(list(range(i * num_per_machine, (i + 1) * num_per_machine)))
        if i == machine_rank:
            comm._LOCAL_PROCESS_GROUP = group
    try:
        main_func(*args)
        comm.synchronize()  # no rank leaves while a peer may still talk to it
    finally:
        _shut_down_process_group()


def _shut_down_process_group():
    """Leave the process group explicitly: a worker that exits with gloo's threads still alive can abort in its
    C++ destructors ("terminate called without an active exception") after its work has succeeded."""
    if dist.is_initialized():
        comm._LOCAL_PROCESS_GROUP = None
        dist.destroy_process_group()
