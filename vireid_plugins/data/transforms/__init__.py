"""Transforms: fast-reid's ReID augmentations plus channel augmentation, per modality."""
from .build import ToFloatTensor, build_vireid_transforms
from .channel_aug import (
                          ChannelAdapGray,
                          ChannelExchange,
                          ChannelRandomErasing,
                          channel_exchange_batch,
                          luminance,
                          luminance_batch,
)

__all__ = [k for k in globals() if not k.startswith("_")]
