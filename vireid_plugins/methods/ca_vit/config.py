"""The CA multi-module framework's config keys (every one under ``CA_VIT``).

PA-CBAM itself is a backbone option (``MODEL.BACKBONE.PA_CBAM.*``); its regulariser weight ``lambda`` and margin are
``MODEL.BACKBONE.PA_CBAM.REG_WEIGHT`` / ``REG_MARGIN``, which this method's criterion reads.
"""
from fastreid.config import CfgNode as CN

from ..build import METHOD_CONFIG_CHECK_REGISTRY, METHOD_CONFIG_REGISTRY, hook_criterion_problems

__all__ = ["add_ca_vit_config", "check_ca_vit_config"]

CRITERION_NAME = "CAViTCriterion"
HOOK_NAME = "CAViTAssociation"
CROSS_PAIR_MODES = ("both", "alternate")  # VRNL.CROSS_PAIRS


@METHOD_CONFIG_REGISTRY.register()
def add_ca_vit_config(cfg):
    """Declare ``CA_VIT.*`` on ``cfg`` in place (used with ``MODEL.CRITERION.NAME CAViTCriterion`` and
    ``PSEUDO.ASSOCIATION ("CAViTAssociation",)``)."""
    _C = cfg
    _C.CA_VIT = CN()
    _C.CA_VIT.PHASE2_START_EPOCH = 50  # first epoch of phase 2 (VRA, VRNL, UM added; association every epoch)
    _C.CA_VIT.MEMORY = CN()
    _C.CA_VIT.MEMORY.TEMPERATURE = 0.05  # tau of every memory logit (baseline, VRA, VRNL, UM)
    _C.CA_VIT.MEMORY.MOMENTUM = 0.2  # m of the per-modality memories M^v, M^r (and M^c) (TokenMatcher 0.2)
    _C.CA_VIT.MEMORY.SHARED_MOMENTUM = 0.8  # m of VRA's shared memories phi^vs, phi^rs (TokenMatcher 0.8)
    _C.CA_VIT.MEMORY.UPDATE = "sequential"  # ClusterMemory update: "sequential", "mean" or "hard"
    _C.CA_VIT.BASE = CN()
    _C.CA_VIT.BASE.WEIGHT = 1.0  # weight of the baseline terms CE(M^v f_v), CE(M^v f_c), CE(M^r f_r) (loss_base_*)
    _C.CA_VIT.BASE.CA_MEMORY = False  # the CA view gets its own memory M^c (from the visible clusters) instead of M^v
    _C.CA_VIT.MAAL = CN({"ENABLED": True})  # three-modality adversarial learning (Eq. 17), both phases
    _C.CA_VIT.MAAL.ALPHA = 1.0  # alpha: weight of L_D (trains the modality classifier E only; loss_maal_d)
    _C.CA_VIT.MAAL.BETA = 0.1  # beta: weight of L_A (trains the backbone only, through frozen E; loss_maal_a)
    _C.CA_VIT.MAAL.DROPOUT = 0.5  # dropout inside E
    _C.CA_VIT.VRA = CN({"ENABLED": True})  # varied regional alignment (phase 2): matching + shared memories
    _C.CA_VIT.VRA.MU = 3  # mu: at most mu clusters of the larger side matched to one cluster (TokenMatcher 2)
    _C.CA_VIT.VRA.WEIGHT = 0.4  # alpha_1: weight of L_VRA (loss_vra_*)
    _C.CA_VIT.VRNL = CN({"ENABLED": True})  # varied regional neighbour learning (phase 2)
    _C.CA_VIT.VRNL.RHO = 0.9  # rho: neighbours are above rho x the row's best cosine, in each token space
    _C.CA_VIT.VRNL.MIN_SPACES = 0  # x: token spaces a neighbour must appear in; 0 = all of them (intersection)
    _C.CA_VIT.VRNL.TOPK = 256  # cap on each token space's candidate neighbours (exact top-k, then the threshold)
    _C.CA_VIT.VRNL.CROSS_PAIRS = "both"  # "both": vr and rv every epoch (the paper); "alternate": vr even, rv odd
    _C.CA_VIT.VRNL.WEIGHT = 0.5  # alpha_2: weight of L_VRNL (loss_vrnl_*)
    # CALR's camera filter: drop same-camera neighbours outside the query's intra-camera cluster
    _C.CA_VIT.VRNL.CAMERA_FILTER = CN({"ENABLED": True})
    # intra-camera clusters: Jaccard + DBSCAN on each camera's features, every phase-2 epoch (TokenMatcher reads
    # clusters made once after a per-camera fine-tune; ours come from the current features)
    _C.CA_VIT.VRNL.CAMERA_FILTER.EPS = 0.6  # DBSCAN eps of the per-camera clustering
    _C.CA_VIT.VRNL.CAMERA_FILTER.MIN_SAMPLES = 4  # DBSCAN min_samples of the per-camera clustering
    _C.CA_VIT.VRNL.CAMERA_FILTER.K1 = 30  # k-reciprocal neighbours of the per-camera Jaccard distance
    _C.CA_VIT.VRNL.CAMERA_FILTER.K2 = 6  # query-expansion neighbours of the per-camera Jaccard distance
    _C.CA_VIT.UM = CN({"ENABLED": True})  # uniform merging (phase 2): pull split clusters onto their partner
    _C.CA_VIT.UM.DELTA_V = 0.6  # delta_1: share of the visible term (loss_um_visible weight = WEIGHT x DELTA_V)
    _C.CA_VIT.UM.DELTA_R = 0.4  # delta_2: share of the infrared term (loss_um_infrared weight = WEIGHT x DELTA_R)
    _C.CA_VIT.UM.WEIGHT = 0.03  # alpha_3: weight of L_UM
    _C.CA_VIT.UM.WRAP = False  # cyclic partners in groups of >= 3 (False: none past a group's ends, TokenMatcher)


@METHOD_CONFIG_CHECK_REGISTRY.register()
def check_ca_vit_config(cfg) -> list:
    """Problems of a config that uses the CA-ViT method (its association hook or criterion); ``[]`` otherwise."""
    problems = hook_criterion_problems(cfg, HOOK_NAME, CRITERION_NAME, "its matching and neighbour sets")
    if problems is None:
        return []
    c = cfg.CA_VIT
    uses_hook = HOOK_NAME in cfg.PSEUDO.ASSOCIATION
    phase2 = c.VRA.ENABLED or c.VRNL.ENABLED or c.UM.ENABLED
    if not uses_hook and phase2 and cfg.MODEL.CRITERION.NAME == CRITERION_NAME:
        problems.append(f"PSEUDO.ASSOCIATION={tuple(cfg.PSEUDO.ASSOCIATION)}: CA_VIT.VRA/VRNL/UM are enabled, so "
                        f"phase 2 needs the association hook {HOOK_NAME!r} (or disable the three)")
    if not isinstance(c.PHASE2_START_EPOCH, int) or c.PHASE2_START_EPOCH < 0:
        problems.append(f"CA_VIT.PHASE2_START_EPOCH={c.PHASE2_START_EPOCH!r}: expected an integer >= 0")
    if not c.MEMORY.TEMPERATURE > 0:
        problems.append(f"CA_VIT.MEMORY.TEMPERATURE={c.MEMORY.TEMPERATURE!r}: expected > 0")
    for key in ("MOMENTUM", "SHARED_MOMENTUM"):
        if not 0 <= c.MEMORY[key] <= 1:
            problems.append(f"CA_VIT.MEMORY.{key}={c.MEMORY[key]!r}: expected a momentum in [0, 1]")
    if c.MEMORY.UPDATE not in ("sequential", "mean", "hard"):
        problems.append(f"CA_VIT.MEMORY.UPDATE={c.MEMORY.UPDATE!r}: expected 'sequential', 'mean' or 'hard'")
    weights = {"BASE.WEIGHT": c.BASE.WEIGHT, "MAAL.ALPHA": c.MAAL.ALPHA, "MAAL.BETA": c.MAAL.BETA,
               "VRA.WEIGHT": c.VRA.WEIGHT, "VRNL.WEIGHT": c.VRNL.WEIGHT, "UM.WEIGHT": c.UM.WEIGHT,
               "UM.DELTA_V": c.UM.DELTA_V, "UM.DELTA_R": c.UM.DELTA_R}
    problems += [f"CA_VIT.{k}={v!r}: expected a weight >= 0" for k, v in weights.items() if not v >= 0]
    if not 0 <= c.MAAL.DROPOUT < 1:
        problems.append(f"CA_VIT.MAAL.DROPOUT={c.MAAL.DROPOUT!r}: expected a probability in [0, 1)")
    if not isinstance(c.VRA.MU, int) or c.VRA.MU < 1:
        problems.append(f"CA_VIT.VRA.MU={c.VRA.MU!r}: expected an integer >= 1 (matches per cluster)")
    if not 0 <= c.VRNL.RHO <= 1:
        problems.append(f"CA_VIT.VRNL.RHO={c.VRNL.RHO!r}: expected a ratio in [0, 1]")
    tokens = max(1, cfg.MODEL.BACKBONE.NUM_TOKENS)
    if not isinstance(c.VRNL.MIN_SPACES, int) or not 0 <= c.VRNL.MIN_SPACES <= tokens:
        problems.append(f"CA_VIT.VRNL.MIN_SPACES={c.VRNL.MIN_SPACES!r}: expected 0 (all) or 1..{tokens} token spaces "
                        f"(MODEL.BACKBONE.NUM_TOKENS={cfg.MODEL.BACKBONE.NUM_TOKENS})")
    if not isinstance(c.VRNL.TOPK, int) or c.VRNL.TOPK < 1:
        problems.append(f"CA_VIT.VRNL.TOPK={c.VRNL.TOPK!r}: expected an integer >= 1")
    if c.VRNL.CROSS_PAIRS not in CROSS_PAIR_MODES:
        problems.append(f"CA_VIT.VRNL.CROSS_PAIRS={c.VRNL.CROSS_PAIRS!r}: expected one of {CROSS_PAIR_MODES}")
    cam = c.VRNL.CAMERA_FILTER
    if c.VRNL.ENABLED and cam.ENABLED:
        if not 0 < cam.EPS < 1:
            problems.append(f"CA_VIT.VRNL.CAMERA_FILTER.EPS={cam.EPS!r}: expected a Jaccard distance in (0, 1)")
        for key in ("MIN_SAMPLES", "K1", "K2"):
            if not isinstance(cam[key], int) or cam[key] < 1:
                problems.append(f"CA_VIT.VRNL.CAMERA_FILTER.{key}={cam[key]!r}: expected an integer >= 1")
    if not cfg.MODEL.CRITERION.CA_VIEW:
        problems.append("MODEL.CRITERION.CA_VIEW=False: the CA-ViT criterion treats the channel-augmented view as a "
                        "third modality and always needs it; expected True")
    return problems
