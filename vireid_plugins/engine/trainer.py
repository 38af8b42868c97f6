"""The fast-reid trainer for visible-infrared ReID.

:class:`VIReIDTrainer` is a ``DefaultTrainer`` whose parts come from this package:

* the train loader is :func:`~vireid_plugins.data.build_vireid_train_loader` (per-modality transforms,
  ``DATALOADER.SAMPLER_TRAIN``), rebuilt before every epoch on the current labels and reseeded from
  ``(SEED, epoch)`` (:class:`~.hooks.EpochLoaderHook`), and ``DATALOADER.ITERS_PER_EPOCH`` sets the epoch
  length (fast-reid fixes it to ``len(train set) // IMS_PER_BATCH``);
* with ``PSEUDO.ENABLED`` the labels are per-modality pseudo-labels from :class:`~.pseudo_labels.PseudoLabelHook`
  (the true pids are never used for training);
* the optimizer is built with ``contiguous=False``: fast-reid's ``ContiguousParams`` never updates a weight
  on torch >= 2 (fastreid-notes §0);
* evaluators are the cross-modality protocols of the test datasets, printed as SYSU/RegDB tables;
* ``model_best.pth`` is chosen by the test metric only when ``TEST.SELECT_ON_TEST`` is set;
* checkpoints load tensors whose size follows the cluster count (:class:`~.checkpoint.VIReIDCheckpointer`).
"""
import logging
import os
from collections import OrderedDict

from fastreid.engine import DefaultTrainer, hooks
from fastreid.engine.train_loop import AMPTrainer, SimpleTrainer, TrainerBase
from fastreid.evaluation import inference_on_dataset
from fastreid.solver import build_optimizer
from fastreid.utils import comm
from torch.nn.parallel import DistributedDataParallel

from ..data import build_vireid_train_loader, train_items
from ..evaluation import build_vireid_evaluator, format_results_table
from .checkpoint import VIReIDCheckpointer
from .dotla import DOTLAHook
from .hooks import EpochLoaderHook, SelectionAwareCheckpointer, TestSafeEvalHook
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
        self.train_items = self.items  # what the next epoch trains on (hooks may change both)
        self.train_labels = None  # per-item training labels; None = the dataset's pids
        self.train_pairing = None  # how train_labels pair across modalities; None = DATALOADER.DUAL_PAIRING
        data_loader = self.build_epoch_loader(self.train_items, None, 0)
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

    def build_epoch_loader(self, items, labels, epoch: int, pairing=None):
        """Train loader of one epoch. Before the first pseudo-labels exist (``labels`` is None under
        ``PSEUDO.ENABLED``) it is a placeholder that no step draws from."""
        if self.cfg.PSEUDO.ENABLED and labels is None:
            return build_vireid_train_loader(self.cfg, items, [-1] * len(items), epoch, "RandomSampler")
        return build_vireid_train_loader(self.cfg, items, labels, epoch, pairing=pairing)

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
                if self.cfg.PSEUDO.ENABLED:
                    self.pseudo_label_hook = PseudoLabelHook(self.cfg, self.items)
                    self.checkpointer.checkpointables["pseudo_labels"] = self.pseudo_label_hook
                    ret.append(self.pseudo_label_hook)
                if self.cfg.DOTLA.ENABLED:
                    ret.append(DOTLAHook(self.cfg, self.items))
                ret.append(EpochLoaderHook(self.build_epoch_loader))
                continue
            if isinstance(hook, hooks.EvalHook):
                hook = TestSafeEvalHook(self.cfg.TEST.EVAL_PERIOD, hook._func, self.cfg.TEST.EVAL_AT_START)
            elif isinstance(hook, hooks.PeriodicCheckpointer):
                hook = SelectionAwareCheckpointer(self.checkpointer, self.cfg.SOLVER.CHECKPOINT_PERIOD,
                                                  self.cfg.TEST.SELECT_ON_TEST)
            ret.append(hook)
        return ret

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
