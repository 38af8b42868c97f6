#!/usr/bin/env python
"""Extract the test features of a folder of images or of a dataset split into one ``.pt`` file.

    python tools/extract_features.py --config-file configs/SYSU-MM01/agw_supervised.yml \
        --dataset SYSUMM01 --split test --flip --out feats.pt MODEL.WEIGHTS logs/sysu/model_final.pth
    python tools/extract_features.py --config-file CFG --folder my_images/ --modality infrared \
        --out ir_feats.pt MODEL.WEIGHTS model.pth

The file holds ``paths`` (list of str), ``pids``, ``camids``, ``modalities`` (int64, -1 = unknown, 0 visible,
1 infrared), ``features`` (float32, ``N x D``, L2-normalised as the evaluators rank them; flip-averaged before
normalising with ``--flip``), and ``weights``, ``flip``, ``config``. Splits: ``train``, ``query`` and
``gallery`` (the dataset's default mode and trial) and ``test`` (every test image of both modalities, in the
evaluator's order). Images are read in batches of ``--batch-size`` (default ``TEST.IMS_PER_BATCH``) with a
progress bar; the file is written under a temporary name, then renamed.
"""
import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import vireid_plugins  # noqa: E402,F401  (compat shims + registration)
from vireid_plugins.data.build import _as_vireid_items, build_vireid_dataset, build_vireid_test_loader  # noqa: E402
from vireid_plugins.deployment.inference import (  # noqa: E402
    MODALITY_BY_NAME,
    build_inference_model,
    folder_items,
    save_features,
    setup_cfg,
)
from vireid_plugins.evaluation import build_vireid_evaluator, extract_features  # noqa: E402

SPLITS = ("train", "query", "gallery", "test")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--folder", help="a folder of images (searched recursively)")
    source.add_argument("--dataset", help="a registered dataset, read from DATASETS.ROOT")
    parser.add_argument("--modality", choices=tuple(MODALITY_BY_NAME), help="modality of the --folder images")
    parser.add_argument("--split", choices=SPLITS, default="test", help="split of --dataset (default test)")
    parser.add_argument("--flip", action="store_true", help="average the features of each image and its mirror")
    parser.add_argument("--batch-size", type=int, help="images per batch (default TEST.IMS_PER_BATCH)")
    parser.add_argument("--out", required=True, help="output .pt file")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides, e.g. MODEL.WEIGHTS")
    args = parser.parse_args(argv)
    if args.folder and not args.modality:
        parser.error("--folder needs --modality (visible or infrared): it picks the model's stem")
    if args.dataset and args.modality:
        parser.error("--modality is for --folder; dataset items carry their own modality")
    return args


def dataset_items(cfg, name, split):
    if split == "test":
        return build_vireid_evaluator(cfg, name)[1].items
    items = list(getattr(build_vireid_dataset(cfg, name), split))
    # a fast-reid visible-only dataset gives (path, pid, camid), pids possibly strings: visible items, ids numbered
    return _as_vireid_items(name, items) if items and len(items[0]) != 4 else items


def main(argv=None):
    args = parse_args(argv)
    opts = list(args.opts) + ["TEST.RANKLIST.ENABLED", "False"]
    if args.batch_size:
        opts += ["TEST.IMS_PER_BATCH", str(args.batch_size)]
    cfg = setup_cfg(args.config_file, opts)
    items = folder_items(args.folder, args.modality) if args.folder else dataset_items(cfg, args.dataset, args.split)
    if not items:
        raise ValueError(f"--dataset {args.dataset} --split {args.split} has no image")
    model = build_inference_model(cfg)
    features = extract_features(model, build_vireid_test_loader(cfg, items), flip=args.flip, desc="features")
    save_features(args.out, items, features, weights=cfg.MODEL.WEIGHTS, flip=args.flip, config=cfg.dump())
    print(f"wrote {args.out}: {features.shape[0]} x {features.shape[1]} features")
    return args.out


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        main()
    except (FileNotFoundError, KeyError, ValueError) as exc:
        sys.exit(f"error: {exc}")
