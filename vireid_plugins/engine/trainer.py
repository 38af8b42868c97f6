"""The fast-reid trainer for visible-infrared ReID.

:class:`VIReIDTrainer` is a ``DefaultTrainer`` whose parts come from this package:

* what an epoch trains on is one :class:`~vireid_plugins.data.targets.TrainTargets` (``trainer.targets``): the
  dataset's identities (supervised), or, with ``PSEUDO.ENABLED``, per-modality pseudo-labels from
  :class:`~.pseudo_labels.PseudoLabelHook` (the true pids are never used for training) transformed by the
  association hooks named in ``PSEUDO.ASSOCIATION`` (:mod:`.build`); every change goes through
  :meth:`VIReIDTrainer.set_targets`, which also hands the targets to the model's criterion;
* the train loader is :func:`~vireid_plugins.data.build_vireid_train_loader` (per-modality transforms,
  ``DATALOADER.SAMPLER_TRAIN``: ours or fast-reid's by name), rebuilt before every epoch on ``trainer.targets`` and
  reseeded from ``(SEED, epoch)`` (:class:`~.hooks.EpochLoaderHook`), and ``DATALOADER.ITERS_PER_EPOCH`` sets the
  epoch length (fast-reid fixes it to ``len(train set) // IMS_PER_BATCH``);
* the optimizer is built with ``contiguous=False``: resizable classifiers and memories replace a parameter's data,
  which fast-reid's flat ``ContiguousParams`` buffers cannot follow;
* evaluators are the test datasets' protocols (:func:`~vireid_plugins.evaluation.build_vireid_evaluator`: the
  cross-modality ones, fast-reid's ``ReidEvaluator`` for single-modality datasets), printed as one table per dataset;
  ``TEST.EVAL_PERIOD 0`` evaluates nothing during or after training (:class:`~.hooks.TestSafeEvalHook`);
* ``model_best.pth`` is chosen by the test metric only when ``TEST.SELECT_ON_TEST`` is set;
* checkpoints load tensors whose size follows the cluster count (:class:`~.checkpoint.VIReIDCheckpointer`).
"""
import logging
import os
from collections import OrderedDict

import torch
from fastreid.engine import DefaultTrainer, hooks
from fastreid.engine.train_loop import AMPTrainer, SimpleTrainer, TrainerBase
from fastreid.evaluation import inference_on_dataset
from fastreid.solver import build_optimizer
from fastreid.utils import comm
from torch.nn.parallel import DistributedDataParallel

from ..data import LabelSpace, TrainTargets, build_vireid_train_loader, train_items
from ..evaluation import build_vireid_evaluator, format_results_table
from .build import build_association_hooks
from .checkpoint import VIReIDCheckpointer
from .comm_utils import unwrap
from .hooks import EpochLoaderHook, MemoryFlushHook, SelectionAwareCheckpointer, TestSafeEvalHook
from .label_history import LabelHistory
from .optim import forget_stale_optimizer_state
from .pseudo_labels import PseudoLabelHook

__all__ = ["VIReIDTrainer"]

logger = logging.getLogger("fastreid.vireid.trainer")


class VIReIDTrainer(DefaultTrainer):
    def __init__(self, cfg):  # same order of construction as DefaultTrainer.__init__
        TrainerBase.__init__(self)
        if comm.is_main_process() and cfg.OUTPUT_DIR:
            os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
        self.cfg = cfg
        self.items = train_items(cfg)  # every training image
        self.label_history = LabelHistory()
        self.targets = self.initial_targets(cfg, self.items)  # what the next epoch trains on (set_targets)
        data_loader = self.build_epoch_loader(self.targets, 0)
        cfg = self.auto_scale_hyperparams(cfg, data_loader.dataset.num_classes)
        model = self.build_model(cfg)
        optimizer, param_wrapper = self.build_optimizer(cfg, model)
        if comm.get_world_size() > 1:
            model = DistributedDataParallel(model, device_ids=self._ddp_device_ids(cfg), broadcast_buffers=False,
                                            find_unused_parameters=True)
        trainer_cls = AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer
        self._trainer = trainer_cls(model, data_loader, optimizer, param_wrapper)
        self.iters_per_epoch = self.epoch_length(cfg, data_loader)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer, self.iters_per_epoch)
        self.checkpointer = VIReIDCheckpointer(model, cfg.OUTPUT_DIR, save_to_disk=comm.is_main_process(),
                                               partial=cfg.MODEL.WEIGHTS_PARTIAL, optimizer=optimizer,
                                               **self.scheduler)
        self.start_epoch = 0
        self.max_epoch = cfg.SOLVER.MAX_EPOCH
        self.max_iter = self.max_epoch * self.iters_per_epoch
        self.warmup_iters = cfg.SOLVER.WARMUP_ITERS
        self.delay_epochs = cfg.SOLVER.DELAY_EPOCHS
        self.cfg = cfg  # with HEADS.NUM_CLASSES filled in
        self.register_hooks(self.build_hooks())

    @staticmethod
    def _ddp_device_ids(cfg):
        return [comm.get_local_rank()] if str(cfg.MODEL.DEVICE).startswith("cuda") else None

    @staticmethod
    def epoch_length(cfg, data_loader) -> int:
        iters = cfg.DATALOADER.ITERS_PER_EPOCH or len(data_loader.dataset) // cfg.SOLVER.IMS_PER_BATCH
        if iters < 1:
            raise ValueError(f"an epoch would have 0 iterations: {len(data_loader.dataset)} training images, "
                             f"SOLVER.IMS_PER_BATCH={cfg.SOLVER.IMS_PER_BATCH}; set DATALOADER.ITERS_PER_EPOCH")
        return iters

    # ---------------------------------------------------------------- parts
    @classmethod
    def build_optimizer(cls, cfg, model):
        return build_optimizer(cfg, model, contiguous=False)

    @classmethod
    def build_train_loader(cls, cfg):
        return build_vireid_train_loader(cfg)

    @staticmethod
    def initial_targets(cfg, items) -> TrainTargets:
        """The dataset's identities; with ``PSEUDO.ENABLED``, a placeholder until the first pseudo-labels."""
        if not cfg.PSEUDO.ENABLED:
            return TrainTargets.from_identities(items, cfg.DATALOADER.DUAL_PAIRING)
        unlabelled = LabelSpace(torch.zeros(len(items), dtype=torch.long), 1)
        return TrainTargets(items, {"unlabelled": unlabelled}, ("unlabelled",))

    def build_epoch_loader(self, targets: TrainTargets, epoch: int):
        """Train loader of one epoch. Before the first pseudo-labels exist it is a placeholder (plain shuffling of
        every image) that no step draws from."""
        sampler = "RandomSampler" if targets.branches == ("unlabelled",) else None
        return build_vireid_train_loader(self.cfg, targets, epoch, sampler)

    def set_targets(self, targets: TrainTargets, features=None):
        """Install the epoch's targets: the next loader is built on them, and the model's criterion receives them
        (with ``features`` of every item when the label spaces were rebuilt, see the criterion contract). Called
        on every rank by the label hooks."""
        self.targets = targets
        model = unwrap(self.model)
        criterion = getattr(model, "criterion", None)
        if criterion is None:
            return
        if features is not None:
            features = features.to(next(model.parameters()).device)
        criterion.set_targets(targets, features)
        if features is not None:
            forget_stale_optimizer_state(self.optimizer)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_dir=None):
        return build_vireid_evaluator(cfg, dataset_name)

    def set_train_loader(self, data_loader):
        """Replace the train loader (e.g. new pseudo-labels); the next step draws from it."""
        old = self._trainer.data_loader
        if hasattr(old, "shutdown"):
            old.shutdown()
        self._trainer.data_loader = data_loader
        self._trainer._data_loader_iter = iter(data_loader)

    def build_hooks(self):
        ret = []
        for hook in super().build_hooks():
            if isinstance(hook, hooks.LRScheduler):
                ret.append(hook)
                ret.extend(self.build_label_hooks())
                continue
            if isinstance(hook, hooks.EvalHook):
                hook = TestSafeEvalHook(self.cfg.TEST.EVAL_PERIOD, hook._func, self.cfg.TEST.EVAL_AT_START)
            elif isinstance(hook, hooks.PeriodicCheckpointer):
                hook = SelectionAwareCheckpointer(self.checkpointer, self.cfg.SOLVER.CHECKPOINT_PERIOD,
                                                  self.cfg.TEST.SELECT_ON_TEST)
            ret.append(hook)
        return ret

    def build_label_hooks(self):
        """Pseudo-labels -> association hooks (``PSEUDO.ASSOCIATION``) -> the epoch's loader (see :mod:`.build`)."""
        ret = []
        if self.cfg.PSEUDO.ENABLED:
            self.pseudo_label_hook = PseudoLabelHook(self.cfg, self.items)
            self.checkpointer.checkpointables["pseudo_labels"] = self.pseudo_label_hook
            ret.append(self.pseudo_label_hook)
        ret.extend(build_association_hooks(self.cfg))
        self.checkpointer.checkpointables["label_history"] = self.label_history
        return ret + [EpochLoaderHook(self.build_epoch_loader), MemoryFlushHook()]

    # ---------------------------------------------------------------- loop
    def train(self):
        TrainerBase.train(self, self.start_epoch, self.max_epoch, self.iters_per_epoch)
        return getattr(self, "_last_eval_results", None)

    @classmethod
    def test(cls, cfg, model):
        results = OrderedDict()
        for dataset_name in cfg.DATASETS.TESTS:
            data_loader, evaluator = cls.build_evaluator(cfg, dataset_name)
            results[dataset_name] = inference_on_dataset(model, data_loader, evaluator,
                                                         flip_test=cfg.TEST.FLIP.ENABLED)
            if comm.is_main_process():
                logger.info(f"Evaluation results for {dataset_name}:\n"
                            + format_results_table(dataset_name, results[dataset_name]))
        if len(results) == 1:
            results = list(results.values())[0]
        return results
