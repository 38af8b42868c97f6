"""Two-stream ReID meta-architecture: images are routed through their modality's stem.

Differences from fast-reid's ``Baseline``:

* the batch's ``"modality"`` tensor (0 visible, 1 infrared) is passed to the backbone, whose forward is
  ``backbone(images, modality)`` (e.g. :class:`~vireid_plugins.modeling.backbones.AGWBackbone`);
* images are normalised *out of place*, so fast-reid's flip test flips the raw images (fast-reid's ``Baseline``
  normalises in place, and ``inference_on_dataset`` then flips and normalises the normalised tensor again);
* at test time the BN-neck features are returned L2-normalised, ``B x D``.

Training losses are fast-reid's (``MODEL.LOSSES.NAME``: cross-entropy, triplet, ...), computed over the
whole two-modality batch, so the triplet loss sees cross-modality positives.
"""
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from fastreid.modeling.meta_arch import META_ARCH_REGISTRY
from fastreid.modeling.meta_arch.baseline import Baseline

__all__ = ["VIReIDBaseline", "raw_test_features"]


@contextmanager
def raw_test_features(model):
    """Within the block, ``model`` (a :class:`VIReIDBaseline`, possibly DDP-wrapped) returns un-normalised
    BN-neck features at test time, e.g. to feed its classifiers (DOTLA's predictions)."""
    module = model.module if hasattr(model, "module") else model
    module.normalize_test_features = False
    try:
        yield model
    finally:
        module.normalize_test_features = True


@META_ARCH_REGISTRY.register()
class VIReIDBaseline(Baseline):
    normalize_test_features = True  # see raw_test_features

    def preprocess_image(self, batched_inputs) -> torch.Tensor:
        """``B x 3 x H x W`` images on the 0-255 scale -> normalised copy on the model's device."""
        images = batched_inputs["images"] if isinstance(batched_inputs, dict) else batched_inputs
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"VIReIDBaseline: expected a dict with 'images' or a tensor, got {type(batched_inputs)}")
        images = images.to(self.device, non_blocking=True)
        return (images - self.pixel_mean) / self.pixel_std

    def modality(self, batched_inputs):
        """``B`` long tensor of modalities, or ``None`` when the batch carries none (the backbone then refuses to run
        unless it has a single stem, see :mod:`vireid_plugins.modeling.backbones.modality`)."""
        if isinstance(batched_inputs, dict) and "modality" in batched_inputs:
            return batched_inputs["modality"].to(self.device, non_blocking=True).long()
        return None

    def backbone_features(self, batched_inputs) -> torch.Tensor:
        return self.backbone(self.preprocess_image(batched_inputs), self.modality(batched_inputs))

    def forward(self, batched_inputs):
        features = self.backbone_features(batched_inputs)
        if not self.training:
            features = self.heads(features)
            return F.normalize(features, dim=1) if self.normalize_test_features else features
        targets = batched_inputs["targets"].to(self.device, non_blocking=True)
        outputs = self.heads(features, targets)
        return self.losses(outputs, targets)
