"""DOTLA + NCLR + CNCR (Cheng et al., "Unsupervised Visible-Infrared Person ReID by Collaborative Learning with
Neighbor-Guided Label Refinement", ACM MM'23) as a method package.

* :mod:`.config`: ``add_dotla_config``, every key under ``DOTLA.*`` (NCLR and CNCR included);
* :mod:`.criterion`: ``ModalityClassifierLoss`` (Eq. 16, stage 1) and ``DOTLACriterion`` (Eq. 11-17, stage 2);
* :mod:`.association`: ``DOTLAAssociation``, the association hook of stage 2 (Eq. 3-10).

The pure algorithms are shared: the transport in :mod:`vireid_plugins.association.dotla` and
:mod:`~vireid_plugins.association.sinkhorn`, NCLR in :mod:`~vireid_plugins.association.nclr`, CNCR in
:mod:`vireid_plugins.modeling.losses.neighbour_consistency`. Importing the package registers everything.
"""
from . import association, criterion  # noqa: F401  (registration)
from .config import add_dotla_config

__all__ = ["add_dotla_config"]
