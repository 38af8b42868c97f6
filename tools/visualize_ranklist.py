#!/usr/bin/env python
"""Draw rank lists of a model on a test protocol: one PNG per query (the query and its top-k gallery images,
correct matches framed green, wrong ones red) and a contact sheet of all of them.

    python tools/visualize_ranklist.py --config-file configs/SYSU-MM01/agw_supervised.yml \
        --mode all --trial 0 --num-random 16 --seed 0 --out vis/ranklists MODEL.WEIGHTS logs/sysu/model_final.pth

The gallery is the protocol's: a SYSU-MM01/LLCM trial is that trial's official random gallery (``--trial``
is its seed), RegDB's ``--trial`` is the split 1..10; the items a query drops (SYSU-MM01 camera-3 queries
never see camera-2 images, LLCM queries never see their own identity from their own camera) are not shown.
Query positions (``--queries``) index the mode's query list. ``MODEL.WEIGHTS ""`` draws the untrained model.
"""
import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

import vireid_plugins  # noqa: E402,F401  (compat shims + registration)
from vireid_plugins.data.datasets import LLCM_MODES, REGDB_MODES, SYSU_GALLERY_CAMS  # noqa: E402
from vireid_plugins.deployment.inference import build_inference_model, setup_cfg  # noqa: E402
from vireid_plugins.evaluation import build_vireid_evaluator, extract_features  # noqa: E402
from vireid_plugins.modeling.features import image_features  # noqa: E402
from vireid_plugins.visualization import RankListLayout, RankListWriter  # noqa: E402

logger = logging.getLogger("fastreid.vireid.visualize_ranklist")

# per evaluator: (config key of the search modes, the modes, config key of the trial, whether the trial is a run)
PROTOCOL_KEYS = {
    "SYSUEvaluator": ("DATASETS.SYSU.MODES", tuple(SYSU_GALLERY_CAMS), "DATASETS.SYSU.NUM_TRIALS", True),
    "LLCMEvaluator": ("DATASETS.LLCM.MODES", LLCM_MODES, "DATASETS.LLCM.NUM_TRIALS", True),
    "RegDBEvaluator": ("DATASETS.REGDB.MODES", REGDB_MODES, "DATASETS.REGDB.TRIAL", False),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--dataset", help="registered test dataset (default: the first of DATASETS.TESTS)")
    parser.add_argument("--mode", help="search mode (SYSU-MM01: all/indoor; RegDB: v2t/t2v; LLCM: i2v/v2i); "
                                       "default: the first of the dataset's MODES")
    parser.add_argument("--trial", type=int, help="SYSU-MM01/LLCM gallery trial (default 0); RegDB split 1..10 "
                                                  "(default DATASETS.REGDB.TRIAL)")
    picks = parser.add_mutually_exclusive_group()
    picks.add_argument("--queries", type=int, nargs="+", default=[], help="query positions to draw")
    picks.add_argument("--num-random", type=int, default=16, help="number of random queries (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random queries")
    parser.add_argument("--topk", type=int, default=10, help="gallery images per row")
    parser.add_argument("--size", type=int, nargs=2, default=[128, 64], metavar=("H", "W"), help="image size")
    parser.add_argument("--out", required=True, help="output folder (replaced as a whole)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides, e.g. MODEL.WEIGHTS")
    return parser.parse_args(argv)


def protocol_options(cfg, dataset_name, mode, trial):
    """``(opts, mode, run index)`` restricting the evaluator to one mode and to the runs up to ``trial``."""
    from fastreid.data.datasets import DATASET_REGISTRY

    if dataset_name not in DATASET_REGISTRY._obj_map:
        raise KeyError(f"--dataset: unknown dataset {dataset_name!r}; registered: {sorted(DATASET_REGISTRY._obj_map)}")
    evaluator = getattr(DATASET_REGISTRY.get(dataset_name), "EVALUATOR", None)
    if evaluator not in PROTOCOL_KEYS:
        raise ValueError(f"--dataset {dataset_name}: no cross-modality protocol ({evaluator!r})")
    modes_key, valid_modes, trial_key, trial_is_run = PROTOCOL_KEYS[evaluator]
    mode = mode or _get(cfg, modes_key)[0]
    if mode not in valid_modes:
        raise ValueError(f"--mode: {dataset_name} has the search modes {valid_modes}, got {mode!r}")
    opts = [modes_key, f"('{mode}',)"]
    if trial_is_run:
        trial = 0 if trial is None else trial
        if trial < 0:
            raise ValueError(f"--trial must be >= 0 for {dataset_name}, got {trial}")
        return opts + [trial_key, str(trial + 1)], mode, trial
    if trial is not None:
        opts += [trial_key, str(trial)]
    return opts, mode, 0


def _get(cfg, key):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def main(argv=None):
    args = parse_args(argv)
    cfg = setup_cfg(args.config_file, args.opts)
    dataset_name = args.dataset or cfg.DATASETS.TESTS[0]
    opts, mode, run = protocol_options(cfg, dataset_name, args.mode, args.trial)
    cfg = setup_cfg(args.config_file, list(args.opts) + opts + ["TEST.RANKLIST.ENABLED", "False"])
    if not cfg.MODEL.WEIGHTS:
        logger.warning("MODEL.WEIGHTS is empty: drawing the untrained model")
    model = build_inference_model(cfg)
    loader, evaluator = build_vireid_evaluator(cfg, dataset_name)
    feats = image_features(extract_features(model, loader, flip=cfg.TEST.FLIP.ENABLED, desc="features"))
    query, gallery = evaluator.runs[mode][run]
    distmat = -(feats[torch.as_tensor(query)] @ feats[torch.as_tensor(gallery)].T).numpy()
    cmc, m_ap, _ = evaluator.rank(distmat, query, gallery)
    print(f"{dataset_name} {mode} run {run}: {len(query)} queries, {len(gallery)} gallery images, "
          f"Rank-1 {100 * cmc[0]:.2f}, mAP {100 * m_ap:.2f}")
    layout = RankListLayout(height=args.size[0], width=args.size[1], topk=args.topk)
    writer = RankListWriter(args.out, layout, args.queries, args.num_random, seed=args.seed, source="--queries")
    trial_is_run = PROTOCOL_KEYS[type(evaluator).__name__][3]
    title = f"{dataset_name} {mode} " + (f"trial {run}" if trial_is_run else f"split {cfg.DATASETS.REGDB.TRIAL}")
    files = writer.write(args.out, evaluator, query, gallery, distmat, title=title)
    print(f"wrote {len(files)} PNGs to {args.out}")
    return files


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        main()
    except (FileNotFoundError, KeyError, ValueError) as exc:
        sys.exit(f"error: {exc}")
