"""Datasets, transforms, samplers and loaders for visible-infrared ReID (imports register them)."""
from . import datasets, samplers, transforms  # noqa: F401  (registration)
from .build import build_vireid_dataset, build_vireid_test_loader, build_vireid_train_loader, train_items
from .common import VIReIDDataset, VIReIDTrainSet, read_image
from .datasets import INFRARED, MODALITY_NAMES, VISIBLE
from .targets import LabelSpace, TrainTargets, other_modality

__all__ = [k for k in globals() if not k.startswith("_")]
