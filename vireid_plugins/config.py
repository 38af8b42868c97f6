"""Every configuration key that vireid_plugins adds to fast-reid's defaults.

Use it like every fast-reid project::

    cfg = get_cfg()
    add_vireid_config(cfg)
    cfg.merge_from_file(path)

:func:`add_vireid_config` only *adds* keys: every key fast-reid declares keeps its value and meaning, so a stock
fast-reid config resolves to the same values with or without it (our configs set what our parts need, e.g.
``configs/Base-AGW.yml`` sets ``DATALOADER.SAMPLER_TRAIN: DualModalitySampler``). Two fast-reid keys are read
differently by our parts only: ``DATALOADER.NUM_INSTANCE`` is K instances per identity *per modality* for
``DualModalitySampler`` (per identity for fast-reid's samplers), and ``TEST.EVAL_PERIOD 0`` means "never evaluate"
for :class:`~vireid_plugins.engine.VIReIDTrainer` (fast-reid's trainer fails on 0).

The core keys are declared here; each method package (``vireid_plugins/methods/<name>/config.py``) declares its
own under one node, and :func:`add_vireid_config` adds them all (:mod:`vireid_plugins.methods.build`).
"""
import os

from fastreid.config import CfgNode as CN
from fastreid.config import get_cfg

__all__ = ["add_vireid_config", "with_vireid_keys"]


def add_vireid_config(cfg):
    """Add the vireid keys (with their defaults) that ``cfg`` lacks, in place: the core keys, then every registered
    method's. Keys ``cfg`` already has keep their values (fast-reid's defaults, or a second call)."""
    _add_missing(cfg, _declared())


def with_vireid_keys(cfg):
    """A frozen copy of ``cfg`` with every vireid key it lacks at its default (e.g. a stock fast-reid config handed
    to our evaluators). A missing ``DATASETS.ROOT`` is the folder fast-reid's own loaders read
    (``FASTREID_DATASETS``, else ``datasets``, read when fastreid was imported)."""
    from fastreid.data import build as data_build

    out = cfg.clone()
    out.defrost()
    has_root = "ROOT" in out.DATASETS
    add_vireid_config(out)
    if not has_root:
        out.DATASETS.ROOT = data_build._root
    out.freeze()
    return out


def _add_missing(cfg, declared):
    for key, value in declared.items():
        if key not in cfg:
            setattr(cfg, key, value.clone() if isinstance(value, CN) else value)
        elif isinstance(value, CN) and isinstance(cfg[key], CN):
            _add_missing(cfg[key], value)


def _declared():
    """fast-reid's defaults with every vireid key declared on them."""
    _C = get_cfg()

    _C.SEED = 0  # seeds python/numpy/torch, the samplers and the gallery trials; < 0 draws one at random

    # ---------------------------------------------------------------- datasets
    # folder holding SYSU-MM01/, RegDB/ and LLCM/ (or one dataset folder itself); default: $FASTREID_DATASETS, the
    # folder fast-reid's own loaders read, else "datasets"
    _C.DATASETS.ROOT = os.getenv("FASTREID_DATASETS", "datasets")
    _C.DATASETS.SYSU = CN()
    _C.DATASETS.SYSU.MODES = ("all", "indoor")  # search modes evaluated on SYSU-MM01
    _C.DATASETS.SYSU.NUM_TRIALS = 10  # random single-shot gallery draws (official seeds 0..N-1)
    _C.DATASETS.SYSU.GALLERY_SHOT = "single"  # "single" (1 image per id per cam) or "multi" (10)
    _C.DATASETS.SYSU.WITHIN_MODALITY = False  # also report v2v / i2i retrieval on the test ids (not official)
    _C.DATASETS.REGDB = CN()
    _C.DATASETS.REGDB.TRIAL = 1  # train/test split 1..10 (one model per split, as the official protocol)
    _C.DATASETS.REGDB.MODES = ("v2t", "t2v")  # visible->thermal and thermal->visible
    _C.DATASETS.LLCM = CN()
    _C.DATASETS.LLCM.MODES = ("i2v", "v2i")  # infrared->visible and visible->infrared
    _C.DATASETS.LLCM.NUM_TRIALS = 10  # random single-shot gallery draws (official seeds 0..N-1)
    # How v2i is scored: "transposed" as the authors' test.py (each drawn infrared gallery image ranks every
    # visible test image), "direct" as their train.py (visible queries rank the drawn infrared gallery)
    _C.DATASETS.LLCM.V2I_SCORING = "transposed"
    # Visible-only labelled pre-training (CA / DOTLA's Market-1501 stage): every visible train image is also used
    # as an infrared one after a channel exchange (R, G, B or grey); real infrared train images are dropped.
    _C.DATASETS.PSEUDO_INFRARED = False
    _C.DATASETS.MISSING_IDS = "error"  # ids/images listed by the split files but absent: "error" or "warn" (dropped)
    _C.DATASETS.VERIFY_IMAGES = False  # open every image at start and report all unreadable files at once

    # ---------------------------------------------------------------- data loading
    # DATALOADER.SAMPLER_TRAIN (fast-reid's key) may name any sampler of vireid's SAMPLER_REGISTRY, fast-reid's
    # included; DATALOADER.NUM_INSTANCE (fast-reid's key) is K per identity *per modality* for DualModalitySampler
    _C.DATALOADER.DUAL_PAIRING = "auto"  # DualModalitySampler: "shared", "independent" or "auto" labels
    _C.DATALOADER.BRANCH_BALANCE = False  # DualModalitySampler: split a batch's labels equally among the branches
    _C.DATALOADER.ITERS_PER_EPOCH = 0  # iterations per epoch; 0 = len(train set) // IMS_PER_BATCH

    # channel augmentation (Ye et al., ICCV'21); each part is applied to its modality only
    _C.INPUT.CA = CN()
    _C.INPUT.CA.CHANNEL_EXCHANGE = CN({"ENABLED": False})  # visible: copy one random channel to all three
    _C.INPUT.CA.CHANNEL_EXCHANGE.GRAY = 2  # 2: R/G/B only (ADCA); 3: also luminance grey
    _C.INPUT.CA.CHANNEL_EXCHANGE.PROB = 1.0  # probability to apply it to a visible image
    _C.INPUT.CA.ADAP_GRAY = CN({"ENABLED": False})  # infrared: ChannelAdapGray
    _C.INPUT.CA.ADAP_GRAY.PROB = 0.5  # probability of the grey branch inside ChannelAdapGray
    _C.INPUT.CA.RANDOM_ERASING = CN({"ENABLED": False})  # both modalities: ChannelRandomErasing
    _C.INPUT.CA.RANDOM_ERASING.PROB = 0.5  # probability to erase one rectangle
    _C.INPUT.CA.RANDOM_ERASING.AREA = [0.02, 0.4]  # erased area fraction range (sl, sh)
    _C.INPUT.CA.RANDOM_ERASING.MIN_ASPECT = 0.3  # r1: aspect ratio drawn from [r1, 1/r1]
    _C.INPUT.CA.RANDOM_ERASING.MEAN = [0.4914 * 255, 0.4822 * 255, 0.4465 * 255]  # fill value (0-255 scale)

    # ---------------------------------------------------------------- model
    # MODEL.WEIGHTS must fit the model (keys, shapes); True loads only what fits and logs a WARNING listing the rest
    _C.MODEL.WEIGHTS_PARTIAL = False
    _C.MODEL.BACKBONE.NUM_MODALITIES = 2  # modality-specific stems: 0 visible, 1 infrared
    _C.MODEL.BACKBONE.NL_LAYERS = [0, 2, 3, 0]  # AGW: non-local blocks after the last n blocks of each stage
    _C.MODEL.BACKBONE.PRETRAIN_STRICT = False  # raise if PRETRAIN_PATH misses backbone weights
    _C.MODEL.BACKBONE.NUM_TOKENS = 1  # class tokens per image T: features (B, D) for 1, (B, T, D) for T > 1
    # (TokenViT: the "regional spaces" N of the CA multi-module framework, 4 SYSU-MM01, 6 RegDB)
    # PA-CBAM (multimodule framework §3.2) on the backbone's last map: AGW layer4 output, or TokenViT's patch grid
    # before its last block; output F + M_s(F') * F' with F' = a * F
    _C.MODEL.BACKBONE.PA_CBAM = CN({"ENABLED": False})
    _C.MODEL.BACKBONE.PA_CBAM.STRIPES = 6  # K horizontal stripes of the part-aware channel attention
    _C.MODEL.BACKBONE.PA_CBAM.REDUCTION = 16  # r: hidden width C // r of the channel-attention MLP
    _C.MODEL.BACKBONE.PA_CBAM.KERNELS = [1, 3, 7]  # kernel sizes of the multi-scale spatial attention
    _C.MODEL.BACKBONE.PA_CBAM.REG_MARGIN = 0.1  # m of the identity-guided regulariser (read by the criterion)
    _C.MODEL.BACKBONE.PA_CBAM.REG_WEIGHT = 0.1  # lambda of the identity-guided regulariser (read by the criterion)

    # multi-token two-stream ViT (NAME: build_token_vit_backbone); input size = INPUT.SIZE_TRAIN, FEAT_DIM = EMBED_DIM
    _C.MODEL.BACKBONE.VIT = CN()
    _C.MODEL.BACKBONE.VIT.EMBED_DIM = 768  # D, width of every token (ViT-B)
    _C.MODEL.BACKBONE.VIT.DEPTH = 12  # transformer blocks; blocks[:-1] shared, the last one per class token
    _C.MODEL.BACKBONE.VIT.NUM_HEADS = 12  # attention heads
    _C.MODEL.BACKBONE.VIT.MLP_RATIO = 4.0  # MLP hidden width / D
    _C.MODEL.BACKBONE.VIT.QKV_BIAS = True  # bias in the qkv projection (timm / TransReID ViT-B)
    _C.MODEL.BACKBONE.VIT.PATCH_SIZE = 16  # patch size in pixels
    _C.MODEL.BACKBONE.VIT.STRIDE = 16  # patch stride in pixels (< PATCH_SIZE: overlapping patches)
    _C.MODEL.BACKBONE.VIT.CONV_STEM = False  # TransReID-SSL convolutional stem (IBN) before each patch projection
    _C.MODEL.BACKBONE.VIT.STEM_CHANNELS = 64  # channels of the convolutional stem
    _C.MODEL.BACKBONE.VIT.LAST_BLOCK = "per_token"  # "per_token": token n sees itself + patches; "joint": all tokens
    _C.MODEL.BACKBONE.VIT.DROP = 0.0  # dropout after the embeddings and the block projections
    _C.MODEL.BACKBONE.VIT.ATTN_DROP = 0.0  # dropout on the attention weights
    _C.MODEL.BACKBONE.VIT.DROP_PATH = 0.3  # maximum stochastic-depth rate (TokenMatcher 0.3)
    _C.MODEL.BACKBONE.VIT.LN_EPS = 1e-6  # LayerNorm epsilon
    _C.MODEL.BACKBONE.VIT.PRETRAIN_GRID = []  # (h, w) patch grid of PRETRAIN_PATH's position embedding; [] = square
    _C.MODEL.BACKBONE.VIT.ALLOW_MISSING = False  # load a PRETRAIN_PATH lacking model keys (warned) instead of raising

    # unsupervised criteria (modeling/losses/build.py); used by META_ARCHITECTURE "UnsupervisedVIReID"
    _C.MODEL.CRITERION = CN()
    _C.MODEL.CRITERION.NAME = "DualClusterMemoryLoss"  # any name in CRITERION_REGISTRY
    _C.MODEL.CRITERION.CA_VIEW = True  # also feed a channel-exchanged copy of the visible images (DCL/ADCA)
    _C.MODEL.CRITERION.MEMORY = CN()
    _C.MODEL.CRITERION.MEMORY.SCALE = 1.0  # weight of the cluster-memory losses (loss_memory_*)
    _C.MODEL.CRITERION.MEMORY.TEMPERATURE = 0.05  # tau of the memory logits
    _C.MODEL.CRITERION.MEMORY.MOMENTUM = 0.1  # m in M <- m M + (1 - m) f (ADCA 0.1, PGM 0.2)
    _C.MODEL.CRITERION.MEMORY.UPDATE = "sequential"  # "sequential" (per sample), "mean" or "hard"
    _C.MODEL.CRITERION.MEMORY.NUM_TOKENS = 0  # 0: memories on the image-level feature; T: one memory per token

    # ---------------------------------------------------------------- pseudo-labels (engine/pseudo_labels.py)
    _C.PSEUDO = CN({"ENABLED": False})  # re-cluster each modality and rebuild memories/loader every PERIOD epochs
    _C.PSEUDO.PERIOD = 1  # epochs between two clusterings
    _C.PSEUDO.K1 = 30  # k-reciprocal neighbours of the Jaccard distance
    _C.PSEUDO.K2 = 6  # query-expansion neighbours of the Jaccard distance
    _C.PSEUDO.EPS = [0.6, 0.6]  # DBSCAN eps for [visible, infrared] (SYSU 0.6; RegDB 0.3)
    _C.PSEUDO.MIN_SAMPLES = 4  # DBSCAN min_samples
    _C.PSEUDO.OUTLIERS = "drop"  # "drop": -1 never sampled; "singleton": each outlier its own cluster
    _C.PSEUDO.FLIP = True  # flip-average the features used for clustering
    _C.PSEUDO.CHUNK_SIZE = 4096  # rows per chunk of the k-NN / Jaccard computation
    _C.PSEUDO.DIAGNOSTICS = True  # log cluster quality against the true pids when the data has them
    _C.PSEUDO.PER_TOKEN = False  # multi-token models: also cluster every token (per-token labels (T, N))
    _C.PSEUDO.NON_FINITE = "error"  # NaN/inf features: "error", or "drop" (left unclustered, with a warning)
    _C.PSEUDO.ASSOCIATION = ()  # association hooks (ASSOCIATION_HOOK_REGISTRY) run after clustering, in order

    # ---------------------------------------------------------------- evaluation
    _C.TEST.SELECT_ON_TEST = False  # let model_best.pth be chosen by the test-set metric (off: never)
    # also evaluate the initial model before the first epoch (with TEST.EVAL_PERIOD 0, "no evaluation", only it)
    _C.TEST.EVAL_AT_START = False
    # rank-list PNGs of every evaluation: OUTPUT_DIR/ranklists/<dataset>/[iter_<n>/]<mode>/query_<position>.png
    _C.TEST.RANKLIST = CN({"ENABLED": False})
    _C.TEST.RANKLIST.NUM_QUERIES = 16  # random queries per search mode (drawn with SEED)
    _C.TEST.RANKLIST.QUERIES = []  # positions in the mode's query list to draw instead of random ones
    _C.TEST.RANKLIST.TOPK = 10  # gallery images per row
    _C.TEST.RANKLIST.TRIAL = 0  # the gallery trial drawn (SYSU-MM01 and LLCM; RegDB has one run per mode)
    _C.TEST.RANKLIST.SIZE = [128, 64]  # height, width of every image in the PNGs

    from .methods.build import add_method_configs  # the method packages import the engine, which imports this

    add_method_configs(_C)
    return _C
