"""Hooks that replace fast-reid defaults where those misbehave for VI-ReID training."""
import logging

from fastreid.engine import hooks
from fastreid.engine.train_loop import HookBase
from fastreid.utils import comm

from ..evaluation import format_comparison_table
from .defaults import seed_everything

__all__ = ["TestSafeEvalHook", "SelectionAwareCheckpointer", "EpochLoaderHook"]

logger = logging.getLogger("fastreid.vireid.hooks")


class TestSafeEvalHook(hooks.EvalHook):
    """fast-reid's ``EvalHook`` that also accepts ``TEST.EVAL_PERIOD <= 0`` (evaluate once, at the end) and
    can evaluate the initial model before training (``TEST.EVAL_AT_START``)."""

    def __init__(self, eval_period, eval_function, eval_at_start: bool = False):
        super().__init__(eval_period, eval_function)
        self.eval_at_start = eval_at_start

    def before_train(self):
        self.initial_results = None
        if self.eval_at_start and self.trainer.start_iter == 0:
            logger.info("Evaluating the initial model (TEST.EVAL_AT_START)")
            self.initial_results = self._func()

    def after_train(self):
        if not hasattr(self.trainer, "epoch"):  # training failed before the first epoch
            return
        next_epoch = self.trainer.epoch + 1
        if next_epoch >= self.trainer.max_epoch and (self._period <= 0 or next_epoch % self._period != 0):
            self._do_eval()
        final = getattr(self.trainer, "_last_eval_results", None)
        finished = self.trainer.iter >= self.trainer.max_iter  # not after an exception
        if self.initial_results and final and finished and comm.is_main_process():
            logger.info("Before and after training:\n" + format_comparison_table(self.initial_results, final))
        del self._func


class SelectionAwareCheckpointer(hooks.PeriodicCheckpointer):
    """``PeriodicCheckpointer`` whose ``model_best`` follows the evaluation metric only when allowed.

    The evaluated sets of VI-ReID benchmarks are *test* sets: choosing a checkpoint on them inflates the
    reported numbers. Unless ``select_on_test`` (``TEST.SELECT_ON_TEST``) is set, the metric passed to the
    checkpointer is -1, so no ``model_best.pth`` is written; periodic and final checkpoints are unchanged.
    """

    def __init__(self, checkpointer, period, select_on_test: bool):
        super().__init__(checkpointer, period)
        self.select_on_test = select_on_test

    def step(self, epoch, **kwargs):
        if not self.select_on_test:
            kwargs["metric"] = -1
        super().step(epoch, **kwargs)


class EpochLoaderHook(HookBase):
    """Before every epoch: reseed python/numpy/torch from ``(SEED, epoch)`` and rebuild the train loader on
    the trainer's current ``train_items`` and ``train_labels`` (pseudo-labels; ``None`` = the dataset's pids),
    with the sampler
    seeded by ``(SEED, epoch)``. An epoch's batches and augmentations therefore depend only on the seed, the
    epoch and the labels, so ``--resume`` continues exactly where an uninterrupted run would be (on CPU)."""

    def __init__(self, build_loader):
        self.build_loader = build_loader

    def before_epoch(self):
        trainer = self.trainer
        seed_everything(trainer.cfg.SEED + 7919 * trainer.epoch if trainer.cfg.SEED >= 0 else -1, comm.get_rank())
        trainer.set_train_loader(self.build_loader(trainer.train_items, trainer.train_labels, trainer.epoch,
                                                   trainer.train_pairing))
