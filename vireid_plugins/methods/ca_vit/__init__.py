"""The CA multi-module framework (Sun, Du, Gao, "A Multimodule Collaborative Framework for Unsupervised
Visible-Infrared Person Re-Identification with Channel Enhancement Modality") as a method package: the
channel-augmented view as a third modality on a multi-token ViT (``N`` "regional spaces"), PA-CBAM, MAAL, VRA,
VRNL and UM, trained in two phases (formulas completed from TokenMatcher, Liu et al., AAAI'25).

* :mod:`.config`: ``add_ca_vit_config``, every key under ``CA_VIT.*`` (PA-CBAM's own keys are the backbone's,
  ``MODEL.BACKBONE.PA_CBAM.*``);
* :mod:`.criterion`: ``CAViTCriterion``, the losses of both phases;
* :mod:`.association`: ``CAViTAssociation``, the phase-2 association hook (VRA matching, UM partners, VRNL sets);
* :mod:`.pretrain`: ``TokenClassifierHead``, for a supervised (source) pre-training of the ViT with fast-reid's
  losses.

The model parts and pure algorithms are shared: :class:`~vireid_plugins.modeling.backbones.TokenViT`,
:class:`~vireid_plugins.modeling.heads.TokenBNNeckHead`, PA-CBAM in :mod:`vireid_plugins.modeling.attention`, MAAL in
:mod:`vireid_plugins.modeling.losses.maal`, VRA/UM in :mod:`vireid_plugins.association.vra` and VRNL in
:mod:`vireid_plugins.association.vrnl`. Importing the package registers everything.
"""
from . import association, criterion, pretrain  # noqa: F401  (registration)
from .config import add_ca_vit_config

__all__ = ["add_ca_vit_config"]
