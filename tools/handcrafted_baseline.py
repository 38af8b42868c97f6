#!/usr/bin/env python
"""Training-free baselines on a SYSU-MM01-layout set: HOG and raw-pixel descriptors of grey images, scored
with the project's official SYSU protocol (``SYSUEvaluator``: every test infrared image against the trial
galleries, ``eval_sysu``), side by side; ``--within-modality`` adds visible->visible and infrared->infrared.

    python tools/handcrafted_baseline.py --root datasets/synthetic/demo [--size 64 32] [--trials 10] \
        [--within-modality]

Every image (visible ones converted to grey luminance) is resized to ``--size`` (height width) with area
interpolation, the size the networks see. A learned model that does not beat these numbers has learnt less
than a fixed gradient histogram.
"""
import argparse
import os
import sys
import time

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import vireid_plugins  # noqa: E402,F401  (compat shims before fastreid)
from vireid_plugins.data.datasets import SYSUMM01  # noqa: E402
from vireid_plugins.evaluation import SYSUEvaluator, format_results_table  # noqa: E402
from vireid_plugins.evaluation.handcrafted import hog_descriptors, pixel_descriptors  # noqa: E402

DESCRIPTORS = {"HOG": hog_descriptors, "pixels": pixel_descriptors}


def read_grey(paths, size) -> torch.Tensor:
    """``(N, H, W)`` grey levels in [0, 1] of the images at ``paths``, resized to ``size = (H, W)``."""
    out = np.empty((len(paths), *size), np.float32)
    for i, path in enumerate(paths):
        with Image.open(path) as img:
            out[i] = np.asarray(img.convert("L").resize(size[::-1], Image.BOX), np.float32) / 255.0
    return torch.from_numpy(out)


def evaluate(root: str, size=(64, 32), trials: int = 10, within_modality: bool = False, descriptors=("HOG", "pixels")):
    """``{descriptor: results}`` with the evaluator's ``"<mode>/<metric>"`` keys (x100)."""
    from fastreid.config import get_cfg

    cfg = get_cfg()
    vireid_plugins.add_vireid_config(cfg)
    cfg.DATASETS.SYSU.NUM_TRIALS, cfg.DATASETS.SYSU.WITHIN_MODALITY = trials, within_modality
    dataset = SYSUMM01(root=root, shot=cfg.DATASETS.SYSU.GALLERY_SHOT)
    evaluator = SYSUEvaluator(cfg, dataset)
    images = read_grey([it[0] for it in evaluator.items], size)
    results = {}
    for name in descriptors:
        evaluator.reset()
        evaluator.process({"index": torch.arange(len(images))}, DESCRIPTORS[name](images))
        results[name] = evaluator.evaluate()
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="datasets/synthetic/demo", help="DATASETS.ROOT holding SYSU-MM01/")
    parser.add_argument("--size", type=int, nargs=2, default=[64, 32], metavar=("H", "W"))
    parser.add_argument("--trials", type=int, default=10, help="gallery trials (official seeds 0..N-1)")
    parser.add_argument("--within-modality", action="store_true", help="also report v2v and i2i retrieval")
    parser.add_argument("--descriptors", nargs="+", default=list(DESCRIPTORS), choices=list(DESCRIPTORS))
    args = parser.parse_args(argv)
    start = time.perf_counter()
    results = evaluate(args.root, tuple(args.size), args.trials, args.within_modality, args.descriptors)
    for name, res in results.items():
        print(f"{name} ({args.size[0]}x{args.size[1]} grey, no training):")
        print(format_results_table(name, res))
    print(f"seconds: {time.perf_counter() - start:.1f}")
    return results


if __name__ == "__main__":
    main()
