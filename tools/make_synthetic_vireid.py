#!/usr/bin/env python
"""Write a synthetic VI-ReID dataset in the official SYSU-MM01, RegDB or LLCM layout.

Examples (from the repository root)::

    python tools/make_synthetic_vireid.py --layout sysu --preset demo --out datasets/SYSU-MM01
    python tools/make_synthetic_vireid.py --layout regdb --preset demo --out datasets/RegDB --workers 2
    python tools/make_synthetic_vireid.py --layout llcm --preset demo --out datasets/LLCM
    python tools/make_synthetic_vireid.py --layout sysu --preset sysu-scale --out /data/syn_sysu --overwrite

The generative model, the presets and the exact layouts are documented in
``vireid_plugins/data/synthetic.py``. The output depends only on the layout, preset, overrides and seed,
never on ``--workers``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from vireid_plugins.data import synthetic  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layout", required=True, choices=synthetic.LAYOUTS)
    parser.add_argument("--out", required=True, type=Path, help="dataset root to create (written atomically)")
    parser.add_argument("--preset", default="demo", choices=sorted(synthetic.PRESETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                        help="render processes (output does not depend on it); default: min(8, CPUs)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out")
    overrides = parser.add_argument_group("preset overrides")
    overrides.add_argument("--ids", type=int, help="SYSU: train+val ids; RegDB: total ids; LLCM: train ids")
    overrides.add_argument("--test-ids", type=int, help="SYSU, LLCM: test ids; RegDB: test ids per trial")
    overrides.add_argument("--height", type=int, help="image height in pixels")
    overrides.add_argument("--width", type=int, help="image width in pixels")
    overrides.add_argument("--vis-per-cam", type=int, help="images per id per visible camera")
    overrides.add_argument("--ir-per-cam", type=int, help="images per id per infrared/thermal camera")
    overrides.add_argument("--val-fraction", type=float, help="SYSU: share of train+val ids in val_id.txt")
    overrides.add_argument("--trials", type=int, help="RegDB: number of train/test splits")
    overrides.add_argument("--occlusion-prob", type=float, help="probability of an occluding block per image")
    overrides.add_argument("--shared-ir", type=float,
                           help="share of garment infrared intensity that follows from the visible colour (0-1)")
    overrides.add_argument("--pattern-freq", type=float, nargs=2, metavar=("LOW", "HIGH"),
                           help="garment pattern frequencies, cycles per figure height")
    overrides.add_argument("--clutter", type=int, nargs=2, metavar=("LOW", "HIGH"),
                           help="background clutter shapes per image, LOW <= n < HIGH")
    overrides.add_argument("--pose-jitter", type=float, help="scale of the per-image pose variation")
    overrides.add_argument("--count-jitter", type=int, help="SYSU: +- spread of the images per (id, camera)")
    args = parser.parse_args(argv)
    for name in ("pattern_freq", "clutter"):  # dataclass fields are tuples
        if getattr(args, name) is not None:
            setattr(args, name, tuple(getattr(args, name)))
    return args


OVERRIDES = ("ids", "test_ids", "height", "width", "vis_per_cam", "ir_per_cam", "val_fraction", "trials",
             "occlusion_prob", "shared_ir", "pattern_freq", "clutter", "pose_jitter", "count_jitter")


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    start = time.perf_counter()
    meta = synthetic.generate(args.layout, args.out, preset=args.preset, seed=args.seed, workers=args.workers,
                              overwrite=args.overwrite, **{name: getattr(args, name) for name in OVERRIDES})
    seconds = time.perf_counter() - start
    print(f"wrote synthetic {args.layout} ({args.preset}, seed {args.seed}) to {args.out}")
    print("params: " + json.dumps(meta["params"], sort_keys=True))
    print("counts: " + json.dumps(meta["counts"], sort_keys=True))
    print(f"seconds: {seconds:.1f} ({args.workers} worker(s))")
    return meta


if __name__ == "__main__":
    try:
        main()
    except (FileExistsError, ValueError) as exc:
        sys.exit(f"error: {exc}")
