"""MULT + AMIRL + OCLR (He, Cheng, Wang, Gao, "Exploring Homogeneous and Heterogeneous Consistent Label Associations
for Unsupervised Visible-Infrared Person ReID", IJCV'24, arXiv 2402.00672) as a method package.

* :mod:`.config`: ``add_mult_config``, every key under ``MULT.*``;
* :mod:`.criterion`: ``MULTCriterion``, the DCL baseline then AMIRL's six memories with OCLR;
* :mod:`.association`: ``MULTAssociation``, the label transfer of every epoch (both label spaces).

The pure algorithms are shared: the label transfer in :mod:`vireid_plugins.association.mult`, the transport in
:mod:`~vireid_plugins.association.sinkhorn`, the memories in :mod:`vireid_plugins.modeling.losses.cluster_memory`.
Importing the package registers everything.
"""
from . import association, criterion  # noqa: F401  (registration)
from .config import add_mult_config

__all__ = ["add_mult_config"]
