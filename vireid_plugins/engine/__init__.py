"""Trainer, hooks and set-up helpers."""
from .checkpoint import VIReIDCheckpointer, resize_to_checkpoint
from .defaults import default_vireid_setup, seed_everything, vireid_argument_parser
from .hooks import EpochLoaderHook, SelectionAwareCheckpointer, TestSafeEvalHook
from .optim import forget_stale_optimizer_state
from .pseudo_labels import PseudoLabelHook, broadcast_from_main
from .trainer import VIReIDTrainer

__all__ = [k for k in globals() if not k.startswith("_")]
