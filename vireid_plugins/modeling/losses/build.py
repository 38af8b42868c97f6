"""Registry of training criteria for unsupervised VI-ReID.

Call contract: ``CRITERION_REGISTRY.get(cfg.MODEL.CRITERION.NAME)(cfg)`` returns an ``nn.Module`` with

* ``forward(outputs) -> {name: scalar loss}``, where ``outputs`` holds
  ``"features"`` (``B x D`` BN-neck features of the batch), ``"modality"`` (``B``, 0 visible / 1 infrared),
  ``"targets"`` (``B`` per-modality pseudo-labels, ``-1`` = none) and, when the criterion's
  ``needs_ca_view`` is true, ``"ca_features"`` (``V x D`` features of the channel-exchanged copies of the
  batch's ``V`` visible images, in batch order);
* ``reset(labels, features)`` with ``labels = {modality: LongTensor[N_m]}`` and
  ``features = {modality: Tensor[N_m, D]}`` (L2-normalised features of every training image), called by the
  pseudo-label hook whenever the labels change, to rebuild memories or resize classifiers;
* optionally a class attribute ``uses_triplet = True`` when ``forward`` includes a triplet loss (the config
  validation then requires at least 2 labels per modality in each batch).

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
