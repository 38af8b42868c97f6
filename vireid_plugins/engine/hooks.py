"""Hooks that replace fast-reid defaults where those misbehave for VI-ReID training."""
import logging
import os

from fastreid.engine import hooks
from fastreid.engine.train_loop import HookBase
from fastreid.utils import comm

from ..evaluation import format_comparison_table
from ..modeling.losses import ClusterMemory
from .defaults import seed_everything
from .label_history import atomic_write_json

__all__ = ["TestSafeEvalHook", "SelectionAwareCheckpointer", "EpochLoaderHook", "MemoryFlushHook"]

logger = logging.getLogger("fastreid.vireid.hooks")


class TestSafeEvalHook(hooks.EvalHook):
    """fast-reid's ``EvalHook`` (every ``TEST.EVAL_PERIOD`` epochs and after the last one) that reads
    ``TEST.EVAL_PERIOD 0`` as "never evaluate" (fast-reid's hook fails on 0) and can evaluate the initial model before
    training (``TEST.EVAL_AT_START``, also with period 0).

    At the end of a finished run the main process writes ``OUTPUT_DIR/final_metrics.json``: ``{"epoch", "initial",
    "final"}``, results per mode and metric for scripts that compare runs; ``initial`` is ``null`` without
    ``TEST.EVAL_AT_START``, ``final`` is ``null`` with ``TEST.EVAL_PERIOD 0`` (nothing was evaluated after training).
    """

    def __init__(self, eval_period, eval_function, eval_at_start: bool = False):
        if eval_period < 0:
            raise ValueError(f"TEST.EVAL_PERIOD={eval_period}: expected epochs between evaluations >= 1, or 0 for none")
        super().__init__(eval_period, eval_function)
        self.eval_at_start = eval_at_start

    def before_train(self):
        self.initial_results = None
        if self._period == 0:
            logger.info("TEST.EVAL_PERIOD 0: the model is not evaluated during or after training"
                        + (" (only the initial model, TEST.EVAL_AT_START)" if self.eval_at_start else ""))
        if self.eval_at_start and self.trainer.start_iter == 0:
            logger.info("Evaluating the initial model (TEST.EVAL_AT_START)")
            self.initial_results = self._func()
            self.trainer.__dict__.pop("_last_eval_results", None)  # the trainer's results are the trained model's

    def after_train(self):
        if not hasattr(self.trainer, "epoch"):  # training failed before the first epoch
            return
        next_epoch = self.trainer.epoch + 1
        if self._period > 0 and next_epoch >= self.trainer.max_epoch and next_epoch % self._period != 0:
            self._do_eval()
        final = getattr(self.trainer, "_last_eval_results", None)
        finished = self.trainer.iter >= self.trainer.max_iter  # not after an exception
        if finished and comm.is_main_process():
            if self.initial_results and final:
                logger.info("Before and after training:\n" + format_comparison_table(self.initial_results, final))
            if self.trainer.cfg.OUTPUT_DIR:
                write_metrics_json(os.path.join(self.trainer.cfg.OUTPUT_DIR, "final_metrics.json"),
                                   self.initial_results, final, epoch=self.trainer.epoch)
        del self._func


def write_metrics_json(path: str, initial, final, **info):
    """Write ``{**info, "initial", "final"}`` (evaluation results, ``None`` kept) atomically; main process only."""
    atomic_write_json(path, {**info, "initial": _as_json(initial), "final": _as_json(final)})


def _as_json(results):
    """Evaluation results (possibly nested per dataset) with plain floats, ``None`` kept."""
    if results is None:
        return None
    return {k: _as_json(v) if isinstance(v, dict) else float(v) for k, v in results.items()}


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
    """Before every epoch, after the label hooks: reseed python/numpy/torch from ``(SEED, epoch)``, rebuild the train
    loader on ``trainer.targets`` with the sampler seeded by ``(SEED, epoch)``, and (main process) write the label
    history to ``OUTPUT_DIR/pseudo_labels/history.json``. An epoch's batches and augmentations therefore depend only
    on the seed, the epoch and the targets, so ``--resume`` continues exactly where an uninterrupted run would be
    (on CPU)."""

    def __init__(self, build_loader):
        self.build_loader = build_loader

    def before_epoch(self):
        trainer = self.trainer
        seed_everything(trainer.cfg.SEED + 7919 * trainer.epoch if trainer.cfg.SEED >= 0 else -1, comm.get_rank())
        trainer.set_train_loader(self.build_loader(trainer.targets, trainer.epoch))
        if comm.is_main_process() and trainer.cfg.OUTPUT_DIR and trainer.label_history.records:
            trainer.label_history.write(os.path.join(trainer.cfg.OUTPUT_DIR, "pseudo_labels", "history.json"))


class MemoryFlushHook(HookBase):
    """After every step, apply the cluster-memory updates that a multi-process step deferred
    (:meth:`~vireid_plugins.modeling.losses.ClusterMemory.flush`), so checkpoints and evaluations see them. Runs on
    every rank (the flush gathers every rank's batch); a no-op in one process."""

    def after_step(self):
        for module in self.trainer.model.modules():
            if isinstance(module, ClusterMemory):
                module.flush()
