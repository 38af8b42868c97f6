#!/usr/bin/env python
"""DOTLA ablation (Table 3 of DOTLA): every row is a config of the same method, run for several seeds.

    python tools/run_ablation.py --config-file configs/Synthetic/dotla.yml --seeds 0 1 2 \
        --out logs/ablation [--jobs 2] [KEY VALUE ...]

Rows: baseline (Eq. 16 only), +DOTLA, +DOTLA+NCLR, +DOTLA+CNCR, full, and full with class marginals
proportional to the cluster sizes. Each run is ``tools/train_net.py`` in its own process; the final
cross-modality Rank-1/mAP (all-search, mean over gallery trials) and the last epoch's association accuracy
(both directions) are read from the run's log, and the table of mean ± std over seeds is printed and written
to ``<out>/ablation.md``.
"""
import argparse
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ROWS = {
    "baseline": ["DOTLA.ENABLED", "False", "MODEL.CRITERION.CNCR.ENABLED", "False"],
    "+DOTLA": ["DOTLA.NCLR.ENABLED", "False", "MODEL.CRITERION.CNCR.ENABLED", "False"],
    "+DOTLA+NCLR": ["DOTLA.NCLR.ENABLED", "True", "MODEL.CRITERION.CNCR.ENABLED", "False"],
    "+DOTLA+CNCR": ["DOTLA.NCLR.ENABLED", "False", "MODEL.CRITERION.CNCR.ENABLED", "True"],
    "full": ["DOTLA.NCLR.ENABLED", "True", "MODEL.CRITERION.CNCR.ENABLED", "True"],
    "full, cluster-size marginals": ["DOTLA.NCLR.ENABLED", "True", "MODEL.CRITERION.CNCR.ENABLED", "True",
                                     "DOTLA.MARGINALS", "cluster_size"],
}

_RESULT = re.compile(r"\| \S+ +\| all +\| ([\d.]+) ± [\d.]+ +\|.*\| ([\d.]+) ± [\d.]+ +\| [\d.]+ ± [\d.]+ +\|$")
_ASSOC = re.compile(r"(visible->infrared|infrared->visible): association accuracy ([\d.na]+)")


def parse_log(text: str):
    """Final all-search (Rank-1, mAP) and the last association accuracies of a train_net log."""
    results = [m.groups() for m in map(_RESULT.search, text.splitlines()) if m]
    if not results:
        raise RuntimeError("no evaluation table in the log")
    rank1, mean_ap = map(float, results[-1])
    accuracy = dict(_ASSOC.findall(text))
    return {"Rank-1": rank1, "mAP": mean_ap,
            "acc v->r": float(accuracy.get("visible->infrared", "nan")),
            "acc r->v": float(accuracy.get("infrared->visible", "nan"))}


def run(config, out_dir, seed, row_opts, extra, threads=0):
    """One training run in its own process; ``threads > 0`` caps its torch/OpenMP threads (parallel jobs)."""
    cmd = [sys.executable, os.path.join(ROOT, "tools", "train_net.py"), "--config-file", config,
           "SEED", str(seed), "OUTPUT_DIR", out_dir, "TEST.EVAL_AT_START", "False", *row_opts, *extra]
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)} if threads else {}))
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"run failed ({' '.join(cmd)}):\n{proc.stderr[-3000:]}")
    return parse_log(proc.stdout + proc.stderr)


def format_table(scores) -> str:
    columns = ["Rank-1", "mAP", "acc v->r", "acc r->v"]
    lines = ["| row | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for row, runs in scores.items():
        cells = []
        for col in columns:
            values = np.array([r[col] for r in runs], dtype=float)
            scale = 100.0 if col.startswith("acc") else 1.0
            if np.isnan(values).all():  # e.g. no association without DOTLA
                cells.append("-")
                continue
            cells.append(f"{np.nanmean(values) * scale:.2f} ± {np.nanstd(values) * scale:.2f}")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", default=os.path.join(ROOT, "configs", "Synthetic", "dotla.yml"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--out", default=os.path.join(ROOT, "logs", "ablation"))
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs in parallel, each with cpu_count // jobs threads and one loader worker")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides for every run")
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else 0
    extra = args.opts + (["DATALOADER.NUM_WORKERS", "1"] if args.jobs > 1 else [])
    runs = [(row, seed) for row in args.rows for seed in args.seeds]

    def one(row_seed):
        row, seed = row_seed
        out_dir = os.path.join(args.out, re.sub(r"[^\w+]+", "_", row), f"seed{seed}")
        result = run(args.config_file, out_dir, seed, ROWS[row], extra, threads)
        print(f"{row} seed {seed}: {result}", flush=True)
        return result

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:  # threads only wait on the training processes
        results = list(pool.map(one, runs))
    scores = {}
    for (row, _), result in zip(runs, results):
        scores.setdefault(row, []).append(result)
    table = format_table(scores)
    print(table)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "ablation.md")
    with open(path + ".tmp", "w") as f:
        f.write(table + "\n")
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()
