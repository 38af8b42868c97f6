"""Config checks run at set-up (``default_vireid_setup``), before any image is read or any model is built.

Each check guards a failure that would otherwise come late or never:

* ``PSEUDO.EPS`` needs one eps per modality (``[visible, infrared]``), each in (0, 1): the Jaccard distance
  (Eq. 4 of k-reciprocal re-ranking) lies in [0, 1]. A single value used to die with an ``IndexError`` after the
  first feature extraction.
* the dual-modality sampler needs ``SOLVER.IMS_PER_BATCH`` divisible by ``world_size x 2 x NUM_INSTANCE`` (each rank
  draws P labels x K instances from each modality); unsupervised runs used to find out after the first clustering.
  fast-reid's identity samplers (``NaiveIdentitySampler``, ``BalancedIdentitySampler``, ``SetReWeightSampler``) need
  it divisible by ``world_size x NUM_INSTANCE`` (P labels x K instances, any modality); otherwise they never complete
  a batch and the loader hangs.
* a triplet loss needs at least 2 labels in each rank's batch (``P >= 2``, per modality for the dual-modality
  sampler): with one there is no negative and the loss is silently 0 (e.g. ``IMS_PER_BATCH 8``, ``NUM_INSTANCE 4``).
* ``TEST.EVAL_PERIOD`` is epochs between evaluations, ``0`` for none (a negative value is refused), and rank lists
  (``TEST.RANKLIST``) exist for the cross-modality protocols only (test datasets that name an ``EVALUATOR``).
* keys read by enumeration (``PSEUDO.OUTLIERS``, ``PSEUDO.NON_FINITE``, ``DATALOADER.DUAL_PAIRING``,
  ``DATASETS.MISSING_IDS``), the names of registered parts (``PSEUDO.ASSOCIATION``, ``MODEL.CRITERION.NAME``) and
  the features a key depends on (``PSEUDO`` needs a model with a criterion; association hooks need ``PSEUDO``);
* every method's own checks (:data:`~vireid_plugins.methods.build.METHOD_CONFIG_CHECK_REGISTRY`).

Every problem is reported at once in one :class:`ConfigError`, each naming the key, its value and what is expected.
"""
from typing import List

from fastreid.data.datasets import DATASET_REGISTRY
from fastreid.modeling.meta_arch import META_ARCH_REGISTRY

from ..data.datasets.bases import MISSING_IDS_POLICIES, MODALITY_NAMES
from ..data.samplers import SAMPLER_REGISTRY
from ..data.samplers.dual_modality import PAIRINGS
from ..modeling.losses import CRITERION_REGISTRY
from ..modeling.meta_arch import UnsupervisedVIReID
from .build import ASSOCIATION_HOOK_REGISTRY

__all__ = ["ConfigError", "validate_config", "uses_triplet_loss"]

OUTLIER_MODES = ("drop", "singleton")  # PSEUDO.OUTLIERS, see association.dbscan.relabel_outliers
NON_FINITE_POLICIES = ("error", "drop")  # PSEUDO.NON_FINITE, see engine.pseudo_labels


class ConfigError(ValueError):
    """The config cannot work; ``problems`` lists one line per key."""

    def __init__(self, problems: List[str]):
        super().__init__("invalid config (nothing was run):\n  " + "\n  ".join(problems))
        self.problems = problems


def _meta_arch(cfg):
    name = cfg.MODEL.META_ARCHITECTURE
    return META_ARCH_REGISTRY.get(name) if name in META_ARCH_REGISTRY._obj_map else None


def _criterion(cfg):
    name = cfg.MODEL.CRITERION.NAME
    return CRITERION_REGISTRY.get(name) if name in CRITERION_REGISTRY._obj_map else None


def _is_unsupervised(cfg) -> bool:
    meta = _meta_arch(cfg)
    return meta is not None and issubclass(meta, UnsupervisedVIReID)


def uses_triplet_loss(cfg) -> bool:
    """Whether training computes a triplet loss: the criterion's ``uses_triplet`` for unsupervised models,
    ``"TripletLoss" in MODEL.LOSSES.NAME`` for fast-reid-loss models."""
    if _is_unsupervised(cfg):
        return bool(getattr(_criterion(cfg), "uses_triplet", False))
    return "TripletLoss" in tuple(cfg.MODEL.LOSSES.NAME)


def _check_pseudo(cfg, problems):
    p = cfg.PSEUDO
    unknown = [n for n in p.ASSOCIATION if n not in ASSOCIATION_HOOK_REGISTRY._obj_map]
    if unknown:
        problems.append(f"PSEUDO.ASSOCIATION={tuple(p.ASSOCIATION)}: unknown association hook(s) {unknown}; "
                        f"registered: {sorted(ASSOCIATION_HOOK_REGISTRY._obj_map)}")
    if p.ASSOCIATION and not p.ENABLED:
        problems.append(f"PSEUDO.ASSOCIATION={tuple(p.ASSOCIATION)}: expected PSEUDO.ENABLED True (association "
                        "hooks transform the pseudo-labels)")
    if not p.ENABLED:
        return
    if _criterion(cfg) is None:
        problems.append(f"MODEL.CRITERION.NAME={cfg.MODEL.CRITERION.NAME!r}: expected one of "
                        f"{sorted(CRITERION_REGISTRY._obj_map)}")
    names = [MODALITY_NAMES[m] for m in sorted(MODALITY_NAMES)]
    eps = list(p.EPS) if isinstance(p.EPS, (list, tuple)) else [p.EPS]
    if len(eps) != len(names):
        problems.append(f"PSEUDO.EPS={eps}: expected one DBSCAN eps per modality, {len(names)} values "
                        f"[{', '.join(names)}], e.g. [0.6, 0.6]")
    for name, value in zip(names, eps):
        if not isinstance(value, (int, float)) or not 0 < value < 1:
            problems.append(f"PSEUDO.EPS={eps}: the {name} eps {value!r} is not in (0, 1); Jaccard distances lie in "
                            "[0, 1] (SYSU-MM01 0.6, RegDB 0.3)")
    for key in ("MIN_SAMPLES", "K1", "K2", "PERIOD", "CHUNK_SIZE"):
        value = p[key]
        if not isinstance(value, int) or value < 1:
            problems.append(f"PSEUDO.{key}={value!r}: expected an integer >= 1")
    if p.OUTLIERS not in OUTLIER_MODES:
        problems.append(f"PSEUDO.OUTLIERS={p.OUTLIERS!r}: expected one of {OUTLIER_MODES}")
    if p.NON_FINITE not in NON_FINITE_POLICIES:
        problems.append(f"PSEUDO.NON_FINITE={p.NON_FINITE!r}: expected one of {NON_FINITE_POLICIES}")
    if not _is_unsupervised(cfg):
        problems.append(f"PSEUDO.ENABLED=True: expected a MODEL.META_ARCHITECTURE whose criterion the pseudo-labels "
                        f"rebuild (UnsupervisedVIReID), got {cfg.MODEL.META_ARCHITECTURE!r}")


# P x K samplers: images per label and modality group (2 modalities for ours, any modality for fast-reid's)
_IDENTITY_SAMPLERS = {"DualModalitySampler": 2, "NaiveIdentitySampler": 1, "BalancedIdentitySampler": 1,
                      "SetReWeightSampler": 1}


def _check_batch(cfg, world_size, problems):
    batch, k, sampler = cfg.SOLVER.IMS_PER_BATCH, cfg.DATALOADER.NUM_INSTANCE, cfg.DATALOADER.SAMPLER_TRAIN
    if sampler not in SAMPLER_REGISTRY._obj_map:
        problems.append(f"DATALOADER.SAMPLER_TRAIN={sampler!r}: expected one of {sorted(SAMPLER_REGISTRY._obj_map)}")
    if not isinstance(batch, int) or batch < 1 or batch % world_size:
        problems.append(f"SOLVER.IMS_PER_BATCH={batch!r}: expected a positive multiple of the world size {world_size}")
        return
    if sampler not in _IDENTITY_SAMPLERS:
        return
    if sampler == "DualModalitySampler" and cfg.DATALOADER.DUAL_PAIRING not in PAIRINGS:
        problems.append(f"DATALOADER.DUAL_PAIRING={cfg.DATALOADER.DUAL_PAIRING!r}: expected one of {PAIRINGS}")
    if not isinstance(k, int) or k < 1:
        problems.append(f"DATALOADER.NUM_INSTANCE={k!r}: expected an integer >= 1")
        return
    groups = _IDENTITY_SAMPLERS[sampler]
    unit = world_size * groups * k
    factors = f"world size x 2 modalities x DATALOADER.NUM_INSTANCE = {world_size} x 2 x {k}" if groups == 2 else \
        f"world size x DATALOADER.NUM_INSTANCE = {world_size} x {k}"
    if batch % unit:
        nearest = [n for n in (batch - batch % unit, batch - batch % unit + unit) if n > 0]
        problems.append(f"SOLVER.IMS_PER_BATCH={batch}: expected a multiple of {factors} = {unit} ({sampler}), e.g. "
                        + " or ".join(map(str, nearest)))
        return
    labels = batch // unit
    if labels < 2 and uses_triplet_loss(cfg):
        loss = (f"MODEL.CRITERION.NAME={cfg.MODEL.CRITERION.NAME!r}" if _is_unsupervised(cfg)
                else f"MODEL.LOSSES.NAME={tuple(cfg.MODEL.LOSSES.NAME)}")
        per = " per modality" if groups == 2 else ""
        problems.append(f"SOLVER.IMS_PER_BATCH={batch} with DATALOADER.NUM_INSTANCE={k} and world size {world_size}: "
                        f"{labels} label{per} in each batch ({sampler}), but the triplet loss of {loss} needs at least "
                        f"2 (with one there is no negative and the loss is 0); expected IMS_PER_BATCH >= 2 x {unit} = "
                        f"{2 * unit}, or a smaller NUM_INSTANCE")


def _check_evaluation(cfg, problems):
    period = cfg.TEST.EVAL_PERIOD
    if not isinstance(period, int) or period < 0:
        problems.append(f"TEST.EVAL_PERIOD={period!r}: expected epochs between evaluations (an integer >= 1), or 0 "
                        "for no evaluation")
    if cfg.TEST.RANKLIST.ENABLED:
        plain = [n for n in cfg.DATASETS.TESTS
                 if n in DATASET_REGISTRY._obj_map and not getattr(DATASET_REGISTRY.get(n), "EVALUATOR", None)]
        if plain:
            problems.append(f"TEST.RANKLIST.ENABLED=True: rank lists are drawn for the cross-modality protocols only, "
                            f"but DATASETS.TESTS has single-modality dataset(s) {plain} (fast-reid's ReidEvaluator); "
                            "expected TEST.RANKLIST.ENABLED False, or only SYSUMM01/RegDB/LLCM test sets")


def _check_datasets(cfg, problems):
    for key in ("NAMES", "TESTS"):
        unknown = [n for n in cfg.DATASETS[key] if n not in DATASET_REGISTRY._obj_map]
        if unknown:
            problems.append(f"DATASETS.{key}={tuple(cfg.DATASETS[key])}: unknown dataset(s) {unknown}; registered: "
                            f"{sorted(DATASET_REGISTRY._obj_map)}")
    if cfg.DATASETS.MISSING_IDS not in MISSING_IDS_POLICIES:
        problems.append(f"DATASETS.MISSING_IDS={cfg.DATASETS.MISSING_IDS!r}: expected one of {MISSING_IDS_POLICIES}")


def validate_config(cfg, world_size: int = 1) -> None:
    """Raise :class:`ConfigError` listing every problem of ``cfg`` for a run on ``world_size`` processes."""
    problems: List[str] = []
    _check_datasets(cfg, problems)
    _check_pseudo(cfg, problems)
    _check_batch(cfg, world_size, problems)
    _check_evaluation(cfg, problems)
    from ..methods.build import METHOD_CONFIG_CHECK_REGISTRY  # the method packages import the engine

    for check in METHOD_CONFIG_CHECK_REGISTRY._obj_map.values():
        problems.extend(check(cfg))
    if problems:
        raise ConfigError(problems)
