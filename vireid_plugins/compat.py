"""Shims that make the unmodified ``fastreid==1.4.0`` wheel run correctly on Python >= 3.10 and torch 2, and make
fast-reid's own tools (``DefaultTrainer``, ``build_reid_train_loader``, ``launch``) handle this package's parts.

``import vireid_plugins`` applies every shim once, before anything imports the rest of fastreid
(:func:`apply_fastreid_compat`; without fastreid installed it stops with an ``ImportError`` naming
:data:`FASTREID_INSTALL`); a fast-reid project only has to import ``vireid_plugins`` first. Each shim is one function
below, changing fast-reid from outside (no file of the wheel is edited):

* :func:`_shim_import_time_breakages`: ``torch._six`` (removed in torch 2.0, ``fastreid.data.build`` imports
  ``string_classes`` from it) and ``collections.Mapping`` & co. (removed in Python 3.10) are provided again.
* :func:`_shim_dataloaderx`: ``DataLoaderX`` creates CUDA streams unconditionally; without CUDA it is a plain
  ``DataLoader``.
* :func:`_shim_reid_evaluator_compile`: ``ReidEvaluator`` runs ``make`` inside site-packages to compile its Cython
  ranking (and ``sys.exit(1)`` without Cython); it no longer compiles, and falls back to fast-reid's Python ranking.
* :func:`_shim_checkpoint_loading`: ``Checkpointer`` calls ``torch.load`` without ``weights_only``; it now reads
  with ``weights_only=True`` and names the path of an empty, truncated or non-checkpoint file
  (:func:`vireid_plugins.engine.checkpoint.read_checkpoint`).
* :func:`_shim_metric_printer`: ``CommonMetricPrinter`` divides by zero when it writes twice at one iteration
  before the iteration timer has data (runs of fewer than 4 iterations); the second write is skipped.
* :func:`_shim_contiguous_optimizer`: ``build_optimizer`` (``contiguous=True``, what ``DefaultTrainer`` uses)
  flattens the parameters into one buffer per group (``ContiguousParams``), each parameter's gradient a view of
  the buffer's. torch 2's ``optimizer.zero_grad()`` sets the buffer's gradient to ``None``, so the optimizer never
  sees a gradient and **no weight is ever updated**, silently. The optimizer it returns with a ``ContiguousParams``
  now zeroes the gradients in place (``zero_grad(set_to_none=False)``), as torch 1 did.
* :func:`_shim_dataset_evaluators`: ``DefaultTrainer.build_evaluator`` scores every dataset with ``ReidEvaluator``
  (one query/gallery split). A dataset that names its protocol's evaluator (``EVALUATOR``: SYSU-MM01's 10 gallery
  trials with the camera-3/camera-2 rule, RegDB, LLCM) now gets it, in any trainer; other datasets are unchanged.
* :func:`_shim_train_loader_samplers`: ``build_reid_train_loader(cfg)`` knows five sampler names; it now also
  builds the samplers of ``vireid_plugins``' registry (e.g. ``DualModalitySampler``, with our keys at their defaults
  when the config lacks them). (``VIReIDTrainer`` knows fast-reid's five names: ``data/samplers/fastreid_samplers.py``.)
* :func:`_shim_comm_dataset_modality`: ``CommDataset`` batches carry no modality, so a two-stream model trained by
  fast-reid's loader could only refuse to run; items that have one (the visible-infrared datasets'
  ``(path, pid, camid, modality)``) now add it to their sample as ``"modality"``.
* :func:`_shim_baseline_preprocess`: ``Baseline.preprocess_image`` normalises the input batch *in place*, so the
  flip test of ``inference_on_dataset`` (which flips the already-normalised tensor and runs the model again)
  normalises the flipped view twice; it now normalises a copy.
* :func:`_shim_launch`: ``launch`` asserts CUDA and uses NCCL, its spawned workers import fastreid without these
  shims, and ``DefaultTrainer`` passes CUDA device ids to ``DistributedDataParallel`` on the CPU. The workers now
  run the entry of :mod:`vireid_plugins.engine.launch` (importing ``vireid_plugins`` first; gloo on the CPU, NCCL on
  GPUs; data-loader processes started the platform's default way rather than spawned without the shims), and
  CPU models get no device ids.
"""
import collections
import collections.abc
import logging
import sys
import types

import torch

__all__ = ["apply_fastreid_compat", "require_fastreid", "FASTREID_INSTALL"]

FASTREID_INSTALL = "pip install --no-deps fastreid==1.4.0"

_APPLIED = False

logger = logging.getLogger("fastreid.vireid.compat")


def require_fastreid():
    """Raise a clear ``ImportError`` naming the install command when fastreid is not importable."""
    try:
        import fastreid  # noqa: F401  (its __init__ imports nothing that needs the shims)
    except ImportError as e:
        raise ImportError(
            f"vireid_plugins needs fast-reid 1.4.0, which is not installed ({e}). fast-reid pins torch 1.13, so "
            f"install it without its pins (vireid_plugins declares what it really needs): {FASTREID_INSTALL}"
        ) from e


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


def _shim_reid_evaluator_compile():
    from fastreid.evaluation import reid_evaluation

    reid_evaluation.ReidEvaluator._compile_dependencies = lambda self: None


def _shim_checkpoint_loading():
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


def _zero_grad_in_place(self, set_to_none: bool = False):
    """``zero_grad`` of an optimizer over ``ContiguousParams`` buffers: the gradients are views of one buffer,
    which must stay allocated (``set_to_none`` is ignored)."""
    type(self).zero_grad(self, set_to_none=False)


def _shim_contiguous_optimizer():
    import fastreid.engine.defaults
    import fastreid.solver
    from fastreid.solver import build as solver_build
    from fastreid.utils.params import ContiguousParams

    stock = solver_build.build_optimizer

    def build_optimizer(cfg, model, contiguous=True):
        optimizer, param_wrapper = stock(cfg, model, contiguous=contiguous)
        if isinstance(param_wrapper, ContiguousParams):
            optimizer.zero_grad = types.MethodType(_zero_grad_in_place, optimizer)
        return optimizer, param_wrapper

    build_optimizer.__doc__ = stock.__doc__
    for module in (solver_build, fastreid.solver, fastreid.engine.defaults):
        module.build_optimizer = build_optimizer


def _shim_dataset_evaluators():
    from fastreid.data.datasets import DATASET_REGISTRY
    from fastreid.engine import defaults

    stock = defaults.DefaultTrainer.build_evaluator.__func__

    def build_evaluator(cls, cfg, dataset_name, output_dir=None):
        """The dataset's own protocol (its ``EVALUATOR``) when it names one, else fast-reid's ``ReidEvaluator``."""
        if dataset_name in DATASET_REGISTRY._obj_map and getattr(DATASET_REGISTRY.get(dataset_name), "EVALUATOR", None):
            from .config import with_vireid_keys
            from .evaluation import build_vireid_evaluator

            return build_vireid_evaluator(with_vireid_keys(cfg), dataset_name)
        return stock(cls, cfg, dataset_name, output_dir)

    defaults.DefaultTrainer.build_evaluator = classmethod(build_evaluator)


def _shim_train_loader_samplers():
    import fastreid.data
    import fastreid.engine.defaults
    from fastreid.config import configurable
    from fastreid.data import build as data_build

    stock_from_config = data_build._train_loader_from_config

    def train_loader_from_config(cfg, *, train_set=None, transforms=None, sampler=None, **kwargs):
        from .config import with_vireid_keys
        from .data.samplers import FASTREID_SAMPLER_NAMES, build_train_sampler

        name = cfg.DATALOADER.SAMPLER_TRAIN
        if sampler is not None or name in FASTREID_SAMPLER_NAMES:  # fast-reid's own dispatch
            return stock_from_config(cfg, train_set=train_set, transforms=transforms, sampler=sampler, **kwargs)

        # any non-None sampler skips fast-reid's name dispatch; ours is built on the train set it makes
        args = stock_from_config(cfg, train_set=train_set, transforms=transforms, sampler=(), **kwargs)
        args["sampler"] = build_train_sampler(with_vireid_keys(cfg), args["train_set"], name=name)
        return args

    loader = configurable(from_config=train_loader_from_config)(data_build.build_reid_train_loader.__wrapped__)
    for module in (data_build, fastreid.data, fastreid.engine.defaults):
        module.build_reid_train_loader = loader


def _shim_comm_dataset_modality():
    from fastreid.data.common import CommDataset

    getitem = CommDataset.__getitem__

    def __getitem__(self, index):
        out = getitem(self, index)
        item = self.img_items[index]
        if len(item) == 4:  # (path, pid, camid, modality) of the visible-infrared datasets
            out["modality"] = int(item[3])
        return out

    CommDataset.__getitem__ = __getitem__


def _shim_baseline_preprocess():
    from fastreid.modeling.meta_arch.baseline import Baseline

    def preprocess_image(self, batched_inputs):
        """Normalise a copy of the batch's images (fast-reid's normalises them in place)."""
        if isinstance(batched_inputs, dict):
            images = batched_inputs["images"]
        elif isinstance(batched_inputs, torch.Tensor):
            images = batched_inputs
        else:
            raise TypeError(f"batched_inputs must be a dict or a torch.Tensor, got {type(batched_inputs)}")
        return (images.to(self.device) - self.pixel_mean) / self.pixel_std

    Baseline.preprocess_image = preprocess_image


def _spawned_worker(*args):
    """Entry of every process ``fastreid.engine.launch.launch`` spawns. Unpickling it imports ``vireid_plugins``
    (hence these shims) before the worker unpickles anything of fastreid."""
    from .engine.launch import _worker

    _worker(*args)


def _shim_launch():
    import importlib

    import fastreid.engine.defaults
    from torch.nn.parallel import DistributedDataParallel

    # the module: ``fastreid.engine.launch`` as an attribute is the function (``from .launch import *``)
    importlib.import_module("fastreid.engine.launch")._distributed_worker = _spawned_worker

    class CPUAwareDistributedDataParallel(DistributedDataParallel):
        """``DistributedDataParallel`` that drops ``device_ids`` for a module on the CPU (torch refuses them)."""

        def __init__(self, module, device_ids=None, **kwargs):
            params = next(module.parameters(), None)
            if params is not None and params.device.type == "cpu":
                device_ids = None
            super().__init__(module, device_ids=device_ids, **kwargs)

    fastreid.engine.defaults.DistributedDataParallel = CPUAwareDistributedDataParallel


def apply_fastreid_compat():
    """Apply every shim once; later calls are no-ops."""
    global _APPLIED
    if _APPLIED:
        return
    require_fastreid()
    _shim_import_time_breakages()
    _shim_dataloaderx()
    _shim_reid_evaluator_compile()
    _shim_checkpoint_loading()
    _shim_metric_printer()
    _shim_contiguous_optimizer()
    _shim_dataset_evaluators()
    _shim_train_loader_samplers()
    _shim_comm_dataset_modality()
    _shim_baseline_preprocess()
    _shim_launch()
    _APPLIED = True
    logger.debug("fast-reid compatibility shims applied")
