"""Visible-infrared datasets, registered in fast-reid's ``DATASET_REGISTRY``."""
from .bases import INFRARED, MODALITY_NAMES, VISIBLE, DatasetLayoutError, VIReIDImageDataset
from .llcm import LLCM, LLCM_MODES, LLCM_TEST_CAMS
from .regdb import REGDB_MODES, RegDB
from .sysu_mm01 import SYSU_GALLERY_CAMS, SYSUMM01

__all__ = [k for k in globals() if not k.startswith("_")]
