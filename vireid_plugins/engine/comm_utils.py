"""Small multi-process helpers on top of ``fastreid.utils.comm``."""
from fastreid.utils import comm

__all__ = ["broadcast_from_main", "unwrap"]


def broadcast_from_main(obj):
    """``obj`` of the main process, on every rank (picklable objects)."""
    if comm.get_world_size() == 1:
        return obj
    return comm.all_gather(obj if comm.is_main_process() else None)[0]


def unwrap(model):
    """The model inside a ``DistributedDataParallel`` wrapper (or the model itself)."""
    return model.module if hasattr(model, "module") else model
