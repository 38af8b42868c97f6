"""Per-modality transforms: fast-reid's ReID augmentations plus channel augmentation.

Call contract: ``build_vireid_transforms(cfg, is_train) -> {VISIBLE: Compose, INFRARED: Compose}``. The
common prefix is exactly fast-reid's ``build_transforms`` (resize, pad + crop, flip, colour jitter,
random erasing, ...; all ``INPUT.*`` keys), producing ``3 x H x W`` float tensors on the 0-255 scale;
``INPUT.CA.*`` then appends, at training time only, ``ChannelRandomErasing`` (both modalities),
``ChannelExchange`` (visible) and ``ChannelAdapGray`` (infrared). With ``DATASETS.PSEUDO_INFRARED`` the
infrared transform starts its tensor stage with ``ChannelExchange(gray=3, prob=1)`` (one of R, G, B or the
grey), which turns a visible image into a one-channel "infrared" one and leaves a real infrared image as it is.
"""
from typing import Dict

import numpy as np
import torch
import torchvision.transforms as T
from fastreid.data.transforms import build_transforms
from fastreid.data.transforms.transforms import ToTensor as FastReIDToTensor

from ..datasets.bases import INFRARED, VISIBLE
from .channel_aug import ChannelAdapGray, ChannelExchange, ChannelRandomErasing

__all__ = ["build_vireid_transforms", "ToFloatTensor"]


class ToFloatTensor:
    """PIL image -> ``3 x H x W`` float32 tensor on the 0-255 scale (fast-reid's convention)."""

    def __call__(self, img) -> torch.Tensor:
        return torch.from_numpy(np.asarray(img, dtype=np.float32).transpose(2, 0, 1).copy())

    def __repr__(self):
        return f"{type(self).__name__}()"


def _fastreid_prefix(cfg, is_train):
    # fast-reid's ToTensor goes through the deprecated TypedStorage API: swap in an equivalent one.
    return [ToFloatTensor() if isinstance(t, FastReIDToTensor) else t
            for t in build_transforms(cfg, is_train=is_train).transforms]


def build_vireid_transforms(cfg, is_train: bool = True) -> Dict[int, T.Compose]:
    common = _fastreid_prefix(cfg, is_train)
    if not is_train:
        return {VISIBLE: T.Compose(common), INFRARED: T.Compose(common)}
    ca = cfg.INPUT.CA
    visible, infrared = list(common), list(common)
    if cfg.DATASETS.PSEUDO_INFRARED:
        infrared.append(ChannelExchange(gray=3, prob=1.0))
    if ca.RANDOM_ERASING.ENABLED:
        erasing = ChannelRandomErasing(ca.RANDOM_ERASING.PROB, ca.RANDOM_ERASING.AREA,
                                       ca.RANDOM_ERASING.MIN_ASPECT, ca.RANDOM_ERASING.MEAN)
        visible.append(erasing)
        infrared.append(erasing)
    if ca.CHANNEL_EXCHANGE.ENABLED:
        visible.append(ChannelExchange(ca.CHANNEL_EXCHANGE.GRAY, ca.CHANNEL_EXCHANGE.PROB))
    if ca.ADAP_GRAY.ENABLED:
        infrared.append(ChannelAdapGray(ca.ADAP_GRAY.PROB))
    return {VISIBLE: T.Compose(visible), INFRARED: T.Compose(infrared)}
