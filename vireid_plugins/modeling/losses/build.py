"""Registry of training criteria for unsupervised VI-ReID.

Call contract: ``CRITERION_REGISTRY.get(cfg.MODEL.CRITERION.NAME)(cfg)`` returns a
:class:`~vireid_plugins.modeling.losses.base.VIReIDCriterion`:

* ``forward(outputs) -> {name: weighted scalar loss}`` (weights from the config), where ``outputs`` holds, for a
  batch of ``B`` samples: ``"features"`` ``(B, D)`` image-level BN-neck features (for a multi-token model the
  concatenation of its tokens), ``"tokens"`` ``(B, T, D)`` (multi-token heads only), ``"pooled"`` ``(B, D)``
  (the features before the BN neck, heads that have one), ``"modality"`` ``(B,)``
  (0 visible, 1 infrared), ``"targets"`` ``(B,)`` labels in each sample's branch label space, ``"branch"``
  ``(B,)`` (index into ``TrainTargets.branches``), ``"item"`` ``(B,)`` (index into ``TrainTargets.items``) and,
  when the criterion's ``needs_ca_view`` is true, ``"ca_features"`` (``"ca_tokens"``): the features of the
  channel-exchanged copies of the batch's ``V`` visible images, in batch order; when the backbone has a channel
  attention (PA-CBAM), ``"channel_attention"`` ``(B, C)`` and ``"ca_channel_attention"`` ``(V, C)``: the attention
  vectors of this forward (with their graph, e.g. for PA-CBAM's identity-guided regulariser);
* ``set_targets(targets, features=None)``, called on every rank by the trainer whenever the epoch's
  :class:`~vireid_plugins.data.targets.TrainTargets` change, with the L2-normalised features of every training
  item (``(N, D)`` or ``(N, T, D)``) when the label spaces were just rebuilt (memories and classifiers follow);
* ``predict(features, space) -> (n, K)`` logits in a label space, for association hooks (criteria with
  classifiers).
* ``uses_triplet``: true when ``forward`` includes a triplet loss (the config validation then requires at least
  2 labels per modality in each batch).

``build_criterion(cfg)`` is the helper the meta-architecture calls.
"""
from fastreid.utils.registry import Registry

__all__ = ["CRITERION_REGISTRY", "build_criterion"]

CRITERION_REGISTRY = Registry("VIREID_CRITERION")
CRITERION_REGISTRY.__doc__ = __doc__


def build_criterion(cfg):
    name = cfg.MODEL.CRITERION.NAME
    if name not in CRITERION_REGISTRY._obj_map:
        raise KeyError(f"MODEL.CRITERION.NAME: unknown criterion {name!r}; registered: "
                       f"{sorted(CRITERION_REGISTRY._obj_map)}")
    return CRITERION_REGISTRY.get(name)(cfg)
