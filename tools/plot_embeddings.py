#!/usr/bin/env python
"""t-SNE of both modalities' features, coloured by identity and marked by modality (circle visible, triangle
infrared), for one or two models side by side (e.g. before and after training); one PNG.

    python tools/plot_embeddings.py --config-file configs/Synthetic/usl_baseline.yml \
        --weights "" logs/synthetic/usl_baseline/model_final.pth --labels untrained trained \
        --split test --num-ids 20 --seed 0 --out vis/embeddings.png

``--weights ""`` is the model as built from the config (seeded by SEED), before any training; a first checkpoint of
another model (e.g. a source pre-training, whose checkpoint carries its classifier) is built from
``--first-config-file``. ``--split test``
takes every test image of both modalities (SYSU-MM01: the queries and every image a gallery can draw),
``train`` the training images; ``--num-ids`` identities seen in both modalities are drawn with ``--seed``.
"""
import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import vireid_plugins  # noqa: E402,F401  (compat shims + registration)
from vireid_plugins.data.build import build_vireid_dataset, build_vireid_test_loader  # noqa: E402
from vireid_plugins.data.datasets.bases import INFRARED, VISIBLE  # noqa: E402
from vireid_plugins.deployment.inference import build_inference_model, setup_cfg  # noqa: E402
from vireid_plugins.evaluation import build_vireid_evaluator, extract_features  # noqa: E402
from vireid_plugins.modeling.features import image_features  # noqa: E402
from vireid_plugins.visualization import plot_embeddings, save_figure, tsne_2d  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", nargs="+", required=True, help="one or two checkpoints; '' = untrained model")
    parser.add_argument("--first-config-file", help="config of the first checkpoint's model (default: --config-file; "
                                                    "the KEY VALUE overrides apply to both)")
    parser.add_argument("--labels", nargs="+", help="panel titles (default: the checkpoint file names)")
    parser.add_argument("--dataset", help="registered dataset (default: the first of DATASETS.TESTS for --split "
                                          "test, of DATASETS.NAMES for train)")
    parser.add_argument("--split", choices=("test", "train"), default="test")
    parser.add_argument("--num-ids", type=int, default=20, help="identities drawn (0: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the identity draw and of t-SNE")
    parser.add_argument("--perplexity", type=float, default=30.0)
    parser.add_argument("--out", required=True, help="output PNG")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args(argv)
    if len(args.weights) > 2:
        parser.error("--weights takes one or two checkpoints")
    if args.labels is not None and len(args.labels) != len(args.weights):
        parser.error(f"--labels needs one title per checkpoint ({len(args.weights)})")
    return args


def split_items(cfg, dataset_name, split):
    """Every image of the split, both modalities."""
    if split == "train":
        items = list(build_vireid_dataset(cfg, dataset_name).train)
        if not items or len(items[0]) != 4:
            raise ValueError(f"--split train: {dataset_name} has no visible-infrared training items")
        return items
    _, evaluator = build_vireid_evaluator(cfg, dataset_name)
    return evaluator.items


def draw_identities(items, num_ids, seed):
    """Items of ``num_ids`` identities (drawn with ``seed``) that appear in both modalities, in item order."""
    by_modality = {m: {it[1] for it in items if it[3] == m} for m in (VISIBLE, INFRARED)}
    both = sorted(by_modality[VISIBLE] & by_modality[INFRARED])
    if not both:
        raise ValueError("no identity appears in both modalities of this split")
    if 0 < num_ids < len(both):
        both = sorted(np.random.default_rng(seed).choice(both, num_ids, replace=False).tolist())
    keep = set(both)
    return [it for it in items if it[1] in keep]


def main(argv=None):
    args = parse_args(argv)
    opts = list(args.opts) + ["TEST.RANKLIST.ENABLED", "False"]
    cfg = setup_cfg(args.config_file, opts)
    model_cfgs = [setup_cfg(args.first_config_file, opts) if args.first_config_file else cfg, cfg]
    dataset_name = args.dataset or (cfg.DATASETS.TESTS if args.split == "test" else cfg.DATASETS.NAMES)[0]
    items = draw_identities(split_items(cfg, dataset_name, args.split), args.num_ids, args.seed)
    pids = np.asarray([it[1] for it in items])
    modalities = np.asarray([it[3] for it in items])
    panels = []
    for i, weights in enumerate(args.weights):
        model = build_inference_model(model_cfgs[i], weights)
        loader = build_vireid_test_loader(cfg, items)
        desc = f"features ({i + 1}/{len(args.weights)})"
        feats = image_features(extract_features(model, loader, flip=cfg.TEST.FLIP.ENABLED, desc=desc))
        title = args.labels[i] if args.labels else (os.path.basename(weights) if weights else "untrained")
        panels.append((f"{title} ({dataset_name} {args.split})", tsne_2d(feats.numpy(), args.seed, args.perplexity),
                       pids, modalities))
    save_figure(plot_embeddings(panels), args.out)
    print(f"wrote {args.out}: {len(items)} images of {len(set(pids.tolist()))} identities, {len(panels)} panel(s)")
    return args.out


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        main()
    except (FileNotFoundError, KeyError, ValueError) as exc:
        sys.exit(f"error: {exc}")
