"""DOTLA's config keys (every one under ``DOTLA``)."""
from fastreid.config import CfgNode as CN

from ..build import METHOD_CONFIG_CHECK_REGISTRY, METHOD_CONFIG_REGISTRY, hook_criterion_problems

__all__ = ["add_dotla_config", "check_dotla_config"]

MARGINALS = ("uniform", "cluster_size", "relaxed")  # see association.dotla
TRANSPORT_SETS = ("all", "clustered")
NCLR_NORMALIZATIONS = ("k", "clean")  # see association.nclr


@METHOD_CONFIG_REGISTRY.register()
def add_dotla_config(cfg):
    """Declare ``DOTLA.*`` on ``cfg`` in place (used with ``MODEL.CRITERION.NAME DOTLACriterion`` and
    ``PSEUDO.ASSOCIATION ("DOTLAAssociation",)``)."""
    _C = cfg
    _C.DOTLA = CN()
    _C.DOTLA.START_EPOCH = 40  # first epoch of stage 2 (association every epoch, Eq. 17); before it Eq. 16 only
    _C.DOTLA.LAMBDA = 25.0  # lambda of Eq. 3 (entropic regularisation 1 / lambda)
    _C.DOTLA.MARGINALS = "uniform"  # class marginal: "uniform" (the paper), "cluster_size" or "relaxed" (KL)
    _C.DOTLA.REG_M = 1.0  # "relaxed": weight of the KL penalties on both marginals (in units of the cost -log P)
    _C.DOTLA.TRANSPORT_SET = "all"  # images transported: "all" (the paper: DBSCAN outliers too) or "clustered"
    _C.DOTLA.MAX_ITER = 1000  # Sinkhorn iteration cap
    _C.DOTLA.TOL = 1e-4  # Sinkhorn marginal error tolerance
    _C.DOTLA.CLASSIFIER_INIT_SCALE = 1.0  # new classifier weights = scale x L2-normalised cluster centroids
    _C.DOTLA.CROSS_SCALE = 1.0  # weight of the cross-modality terms of Eq. 11-12 (loss_cross_*)
    _C.DOTLA.NCLR = CN({"ENABLED": False})  # neighbour-consistency label refinement (Eq. 6-10)
    _C.DOTLA.NCLR.K = 10  # cross- and same-modality neighbours
    _C.DOTLA.NCLR.TAU = 1.0  # inconsistency threshold: noisy if s > tau
    _C.DOTLA.NCLR.GAMMA = 0.25  # refinement degree of Eq. 10
    _C.DOTLA.NCLR.NORMALIZE = "k"  # Eq. 10 divides the clean votes by "k" (as written) or by the "clean" count
    _C.DOTLA.CNCR = CN({"ENABLED": False})  # in-batch cross-modality neighbour consistency (Eq. 13-15)
    _C.DOTLA.CNCR.K = 10  # in-batch cross-modality neighbours
    _C.DOTLA.CNCR.ALPHA = 0.3  # alpha of Eq. 17 (weight of loss_cncr)


@METHOD_CONFIG_CHECK_REGISTRY.register()
def check_dotla_config(cfg) -> list:
    """Problems of a config that uses DOTLA (its association hook or criterion); ``[]`` otherwise."""
    problems = hook_criterion_problems(cfg, "DOTLAAssociation", "DOTLACriterion", "its cross-modality targets")
    if problems is None:
        return []
    d = cfg.DOTLA
    if d.MARGINALS not in MARGINALS:
        problems.append(f"DOTLA.MARGINALS={d.MARGINALS!r}: expected one of {MARGINALS}")
    if d.MARGINALS == "relaxed" and not d.REG_M > 0:
        problems.append(f"DOTLA.REG_M={d.REG_M!r}: expected > 0 (the weight of the relaxed marginals' KL penalties)")
    if d.TRANSPORT_SET not in TRANSPORT_SETS:
        problems.append(f"DOTLA.TRANSPORT_SET={d.TRANSPORT_SET!r}: expected one of {TRANSPORT_SETS}")
    if d.NCLR.NORMALIZE not in NCLR_NORMALIZATIONS:
        problems.append(f"DOTLA.NCLR.NORMALIZE={d.NCLR.NORMALIZE!r}: expected one of {NCLR_NORMALIZATIONS}")
    if not d.LAMBDA > 0:
        problems.append(f"DOTLA.LAMBDA={d.LAMBDA!r}: expected > 0 (the entropic regularisation is 1 / lambda)")
    for key in ("TAU", "GAMMA"):
        if not d.NCLR[key] >= 0:
            problems.append(f"DOTLA.NCLR.{key}={d.NCLR[key]!r}: expected >= 0")
    if d.NCLR.K < 1 or d.CNCR.K < 1:
        problems.append(f"DOTLA.NCLR.K={d.NCLR.K}, DOTLA.CNCR.K={d.CNCR.K}: expected neighbour counts >= 1")
    return problems
