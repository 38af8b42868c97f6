"""MULT's config keys (every one under ``MULT``)."""
from fastreid.config import CfgNode as CN

from ..build import METHOD_CONFIG_CHECK_REGISTRY, METHOD_CONFIG_REGISTRY, hook_criterion_problems

__all__ = ["add_mult_config", "check_mult_config"]


@METHOD_CONFIG_REGISTRY.register()
def add_mult_config(cfg):
    """Declare ``MULT.*`` on ``cfg`` in place (used with ``MODEL.CRITERION.NAME MULTCriterion`` and
    ``PSEUDO.ASSOCIATION ("MULTAssociation",)``)."""
    _C = cfg
    _C.MULT = CN()
    _C.MULT.START_EPOCH = 40  # first epoch of label transfer + AMIRL; before it the DCL baseline
    _C.MULT.TEMPERATURE = 0.05  # initial soft labels softmax(F c^T / T)
    _C.MULT.LAMBDA = 25.0  # lambda of both transports (cross labels to centroids, instance plan)
    _C.MULT.REG_M = 0.0  # > 0: KL-relaxed marginals of weight REG_M in both transports (0: exact, the authors')
    _C.MULT.ALPHA = 0.2  # weight of the initial labels in the fixed point
    _C.MULT.BETA = 0.7  # soft targets: beta onehot(argmax) + (1 - beta) Y-hat
    _C.MULT.MAX_ITER = 20  # fixed-point iterations at most
    _C.MULT.TOL = 0.01  # stop when the relative L1 change of the labels is below this
    _C.MULT.MS_SCALE = 1.0  # weight of the intra-modality memory losses (loss_ms)
    _C.MULT.ALTERNATE = True  # AMIRL: the label space alternates with the epoch parity (False: visible space only)
    _C.MULT.CROSS_MEMORY = CN({"ENABLED": True})  # AMIRL's cross-modality memories M^va, M^ra (loss_ma)
    _C.MULT.CROSS_MEMORY.SCALE = 1.0  # weight of loss_ma
    _C.MULT.OCLR = CN({"ENABLED": True})  # online cross-memory label refinement (needs CROSS_MEMORY)
    _C.MULT.OCLR.SCALE = 1.0  # weight of loss_oclr
    _C.MULT.OCLR.TEMPERATURE = 0.2  # sharpening of the intra-memory targets
    _C.MULT.OCLR.DETACH = False  # stop the gradient through the targets (the authors' code does not)


@METHOD_CONFIG_CHECK_REGISTRY.register()
def check_mult_config(cfg) -> list:
    """Problems of a config that uses MULT (its association hook or criterion); ``[]`` otherwise."""
    problems = hook_criterion_problems(cfg, "MULTAssociation", "MULTCriterion", "its label spaces")
    if problems is None:
        return []
    m = cfg.MULT
    if "MULTAssociation" in cfg.PSEUDO.ASSOCIATION and cfg.PSEUDO.PERIOD != 1:
        problems.append(f"PSEUDO.PERIOD={cfg.PSEUDO.PERIOD}: MULT transfers the labels of every epoch's clustering "
                        "(its features and Jaccard graphs); expected 1")
    if cfg.MODEL.CRITERION.NAME == "MULTCriterion" and not cfg.MODEL.CRITERION.CA_VIEW:
        problems.append("MODEL.CRITERION.CA_VIEW=False: MULTCriterion trains on the channel-augmented view too "
                        "(DCL and AMIRL); expected True")
    if m.OCLR.ENABLED and not m.CROSS_MEMORY.ENABLED:
        problems.append("MULT.OCLR.ENABLED=True: OCLR refines the cross-modality memories' predictions; expected "
                        "MULT.CROSS_MEMORY.ENABLED True")
    for key in ("ALPHA", "BETA"):
        if not 0 <= m[key] <= 1:
            problems.append(f"MULT.{key}={m[key]!r}: expected a value in [0, 1]")
    if not m.REG_M >= 0:
        problems.append(f"MULT.REG_M={m.REG_M!r}: expected >= 0 (0: exact marginals)")
    for key in ("TEMPERATURE", "LAMBDA", "TOL"):
        if not m[key] > 0:
            problems.append(f"MULT.{key}={m[key]!r}: expected > 0")
    if not m.OCLR.TEMPERATURE > 0:
        problems.append(f"MULT.OCLR.TEMPERATURE={m.OCLR.TEMPERATURE!r}: expected > 0")
    if m.MAX_ITER < 1:
        problems.append(f"MULT.MAX_ITER={m.MAX_ITER!r}: expected >= 1")
    return problems
