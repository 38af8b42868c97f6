"""Compatibility shims that let the unmodified ``fastreid==1.4.0`` wheel run on Python >= 3.10 and torch 2.

Every shim is applied from outside the package, exactly once, by :func:`apply_fastreid_compat`
(``vireid_plugins/__init__.py`` calls it before anything imports fastreid). The numbers refer to
the table in ``shared/docs/fastreid-notes.md`` §2:

1. ``torch._six`` was removed in torch 2.0; ``fastreid.data.build`` imports ``string_classes`` from it.
2. ``collections.Mapping`` was removed in Python 3.10; two fastreid modules import it.
4. ``DataLoaderX`` creates CUDA streams unconditionally; without CUDA it falls back to a plain loader.
5. ``ReidEvaluator`` runs ``make`` inside site-packages (and ``sys.exit(1)`` without Cython).
6. ``Checkpointer._load_file`` calls ``torch.load`` without ``weights_only``: it now reads with
   ``weights_only=True`` and names the path of an empty, truncated or non-checkpoint file
   (:func:`vireid_plugins.engine.checkpoint.read_checkpoint`; our checkpoints hold only tensors, numbers,
   strings and plain containers).
7. ``CommonMetricPrinter`` divides by zero when it writes twice at one iteration before the iteration
   timer has data (runs of fewer than 4 iterations, e.g. smoke tests): the second write is skipped.

Shim 3 (the ``ContiguousParams`` optimizer that never updates a weight on torch 2, §0) is not a
monkey-patch: :class:`vireid_plugins.engine.VIReIDTrainer` builds its optimizer with
``contiguous=False``.
"""
import collections
import collections.abc
import logging
import sys
import types

import torch

__all__ = ["apply_fastreid_compat"]

_APPLIED = False


def _shim_import_time_breakages():
    if "torch._six" not in sys.modules:
        six = types.ModuleType("torch._six")
        six.string_classes = (str, bytes)
        six.inf = float("inf")
        sys.modules["torch._six"] = six
        torch._six = six
    for name in ("Mapping", "MutableMapping", "Sequence", "Iterable"):
        if not hasattr(collections, name):
            setattr(collections, name, getattr(collections.abc, name))


def _shim_dataloaderx():
    """Make ``DataLoaderX`` behave like a plain ``DataLoader`` when CUDA is not available."""
    from fastreid.data import data_utils
    from torch.utils.data import DataLoader

    cls = data_utils.DataLoaderX
    cuda_init, cuda_iter, cuda_next = cls.__init__, cls.__iter__, cls.__next__
    cuda_shutdown = cls.shutdown

    def __init__(self, local_rank, **kwargs):
        self._use_cuda = torch.cuda.is_available()
        if self._use_cuda:
            cuda_init(self, local_rank, **kwargs)
        else:
            kwargs["pin_memory"] = False
            DataLoader.__init__(self, **kwargs)
            self.local_rank = local_rank

    def __iter__(self):
        if self._use_cuda:
            return cuda_iter(self)
        self.iter = DataLoader.__iter__(self)
        return self

    def __next__(self):
        if self._use_cuda:
            return cuda_next(self)
        return next(self.iter)

    def shutdown(self):
        if self._use_cuda and hasattr(self, "iter"):
            cuda_shutdown(self)

    cls.__init__, cls.__iter__, cls.__next__, cls.shutdown = __init__, __iter__, __next__, shutdown


def _shim_reid_evaluator():
    """Never compile the Cython ranking helper at run time (it would ``sys.exit(1)``)."""
    from fastreid.evaluation import reid_evaluation

    reid_evaluation.ReidEvaluator._compile_dependencies = lambda self: None


def _shim_checkpoint_loading():
    """Read checkpoints with ``weights_only=True`` and a clear error naming a bad file."""
    from fastreid.utils.checkpoint import Checkpointer

    def _load_file(self, f):
        from .engine.checkpoint import read_checkpoint  # the engine imports fastreid: not at shim time

        return read_checkpoint(f, "checkpoint")

    Checkpointer._load_file = _load_file


def _shim_metric_printer():
    from fastreid.utils.events import CommonMetricPrinter, get_event_storage

    write = CommonMetricPrinter.write

    def guarded_write(self):
        last = getattr(self, "_last_write", None)
        if last is not None and last[0] == get_event_storage().iter:
            return
        write(self)

    CommonMetricPrinter.write = guarded_write


def apply_fastreid_compat():
    """Apply every shim once; later calls are no-ops."""
    global _APPLIED
    if _APPLIED:
        return
    _shim_import_time_breakages()
    _shim_dataloaderx()
    _shim_reid_evaluator()
    _shim_checkpoint_loading()
    _shim_metric_printer()
    _APPLIED = True
    logging.getLogger("fastreid.vireid.compat").debug("fast-reid compatibility shims applied")
