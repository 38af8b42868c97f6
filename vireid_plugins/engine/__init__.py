"""Trainer, hooks and set-up helpers."""
from .association import AssociationHook, association_accuracy
from .build import ASSOCIATION_HOOK_REGISTRY, build_association_hooks
from .checkpoint import VIReIDCheckpointer, resize_to_checkpoint
from .comm_utils import broadcast_from_main, unwrap
from .defaults import default_vireid_setup, seed_everything, vireid_argument_parser
from .hooks import EpochLoaderHook, MemoryFlushHook, SelectionAwareCheckpointer, TestSafeEvalHook
from .label_history import LabelHistory, atomic_write_json
from .optim import forget_stale_optimizer_state
from .pseudo_labels import PseudoLabelHook, extract_item_features
from .trainer import VIReIDTrainer

__all__ = [k for k in globals() if not k.startswith("_")]
