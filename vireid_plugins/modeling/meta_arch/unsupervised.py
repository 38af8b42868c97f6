"""Meta-architecture for unsupervised VI-ReID trained on per-modality pseudo-labels.

Same two-stream backbone and out-of-place preprocessing as :class:`VIReIDBaseline`; the head returns
BN-neck features (e.g. :class:`~vireid_plugins.modeling.heads.BNNeckHead`), and training losses come from a
registered criterion (``MODEL.CRITERION.NAME``, see :mod:`vireid_plugins.modeling.losses.build`) that owns
the cluster memories or classifiers the pseudo-label hook rebuilds. When the criterion asks for it
(``needs_ca_view``), the batch's visible images are also passed through the visible stem as a
channel-exchanged copy (channel augmentation as an extra view, ADCA/DCL).
"""
import torch
from fastreid.config import configurable
from fastreid.modeling.meta_arch import META_ARCH_REGISTRY

from ...data.datasets.bases import VISIBLE
from ...data.transforms import channel_exchange_batch
from ..losses import build_criterion
from .vireid_baseline import VIReIDBaseline

__all__ = ["UnsupervisedVIReID"]


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
        if not self.training:
            return super().forward(batched_inputs)
        images = self.preprocess_image(batched_inputs)
        modality = self.modality(batched_inputs)
        if modality is None:
            raise KeyError("UnsupervisedVIReID: training batches must carry a 'modality' tensor")
        num = images.shape[0]
        if self.criterion.needs_ca_view:
            visible = modality == VISIBLE
            ca_images = channel_exchange_batch(images[visible], self.ca_gray)
            images = torch.cat([images, ca_images])
            modality = torch.cat([modality, modality.new_full((ca_images.shape[0],), VISIBLE)])
        features = self.heads(self.backbone(images, modality))
        outputs = {
            "features": features[:num],
            "ca_features": features[num:],
            "modality": modality[:num],
            "targets": batched_inputs["targets"].to(self.device, non_blocking=True),
        }
        if "index" in batched_inputs:
            outputs["index"] = batched_inputs["index"].to(self.device, non_blocking=True)
        return self.criterion(outputs)
