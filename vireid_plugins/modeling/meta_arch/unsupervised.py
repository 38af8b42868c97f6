"""Meta-architecture for unsupervised VI-ReID trained on pseudo-labels.

Same two-stream backbone and out-of-place preprocessing as :class:`VIReIDBaseline`; the head returns a dict of
BN-neck features (``{"features": (B, D)}``, plus ``"tokens": (B, T, D)`` for multi-token heads such as
:class:`~vireid_plugins.modeling.heads.TokenBNNeckHead` and ``"pooled": (B, D)``, the features before the BN neck,
for heads that have them), and training losses come from a registered criterion
(``MODEL.CRITERION.NAME``, see :mod:`vireid_plugins.modeling.losses.build`) that owns the cluster memories or
classifiers. When the criterion asks for it (``needs_ca_view``), the batch's visible images are also passed
through the visible stem as a channel-exchanged copy (channel augmentation as an extra view, ADCA/DCL). When the
backbone has an attention module that exposes its channel attention (PA-CBAM's ``last_channel_attention``), the
criterion also receives it.

At test time the model returns the ``tokens`` (``(B, T, D)``) when the head gives them, else the ``features``
(``(B, D)``), L2-normalised over the last dimension (raw within :func:`raw_test_features`).
"""
import torch
import torch.nn.functional as F
from fastreid.config import configurable
from fastreid.modeling.meta_arch import META_ARCH_REGISTRY

from ...data.datasets.bases import VISIBLE
from ...data.transforms import channel_exchange_batch
from ..losses import build_criterion
from .vireid_baseline import VIReIDBaseline

__all__ = ["UnsupervisedVIReID"]

_BATCH_KEYS = ("targets", "branch", "item")


@META_ARCH_REGISTRY.register()
class UnsupervisedVIReID(VIReIDBaseline):
    @configurable
    def __init__(self, *, criterion, ca_gray: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.criterion = criterion
        self.ca_gray = ca_gray

    @classmethod
    def from_config(cls, cfg):
        kwargs = super().from_config(cfg)
        kwargs.update(criterion=build_criterion(cfg), ca_gray=cfg.INPUT.CA.CHANNEL_EXCHANGE.GRAY)
        return kwargs

    def forward(self, batched_inputs):
        images = self.preprocess_image(batched_inputs)
        modality = self.modality(batched_inputs)
        if not self.training:
            out = self.heads(self.backbone(images, modality))
            feats = out.get("tokens", out["features"])
            return F.normalize(feats, dim=-1) if self.normalize_test_features else feats
        if modality is None:
            raise KeyError("UnsupervisedVIReID: training batches must carry a 'modality' tensor")
        num = images.shape[0]
        if self.criterion.needs_ca_view:
            visible = modality == VISIBLE
            ca_images = channel_exchange_batch(images[visible], self.ca_gray)
            images = torch.cat([images, ca_images])
            modality = torch.cat([modality, modality.new_full((ca_images.shape[0],), VISIBLE)])
        out = self.heads(self.backbone(images, modality))
        outputs = {"modality": modality[:num]}
        for key in ("features", "tokens", "pooled"):
            if key in out:
                outputs[key], outputs["ca_" + key] = out[key][:num], out[key][num:]
        attention = getattr(getattr(self.backbone, "attention", None), "last_channel_attention", None)
        if attention is not None:  # of this forward (the module sets it on every call)
            outputs["channel_attention"], outputs["ca_channel_attention"] = attention[:num], attention[num:]
        for key in _BATCH_KEYS:
            if key in batched_inputs:
                outputs[key] = batched_inputs[key].to(self.device, non_blocking=True)
        return self.criterion(outputs)
