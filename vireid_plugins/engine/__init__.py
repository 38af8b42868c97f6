"""Trainer, hooks and set-up helpers."""
from .defaults import default_vireid_setup, seed_everything, vireid_argument_parser
from .hooks import SelectionAwareCheckpointer, TestSafeEvalHook
from .trainer import VIReIDTrainer

__all__ = [k for k in globals() if not k.startswith("_")]
