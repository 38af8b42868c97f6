#!/usr/bin/env python
"""Ablation table of a method: every row is a config override of the same method, run for several seeds.

    python tools/run_ablation.py --rows-file configs/Synthetic/ablations/dotla.yml --seeds 0 1 2 \
        --out logs/ablation/dotla [--jobs 2] [--rows full baseline] [KEY VALUE ...]

The rows file (YAML) names the method's ``config`` and its ``rows``, each a list of ``KEY VALUE`` overrides. Each run
is ``tools/train_net.py`` in its own process; the final cross-modality Rank-1/mAP (``--mode``, mean over gallery
trials) are read from the run's ``final_metrics.json`` and the last epoch's association accuracy per direction from
``pseudo_labels/history.json``. The table of mean ± std over seeds is printed and written to ``<out>/ablation.md``
(and every run's numbers to ``<out>/runs.json``).
"""
import argparse
import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from vireid_plugins.engine.label_history import atomic_write_json  # noqa: E402


def read_rows(path: str):
    """``(config path, {row: [KEY, VALUE, ...]})`` of a rows file (keys and values as strings)."""
    with open(path) as f:
        spec = yaml.safe_load(f)
    if not isinstance(spec, dict) or "config" not in spec or not isinstance(spec.get("rows"), dict):
        raise ValueError(f"{path}: expected a YAML mapping with 'config' (a config file) and 'rows' "
                         "(row name -> list of KEY VALUE overrides)")
    rows = {}
    for name, opts in spec["rows"].items():
        if not isinstance(opts, list) or len(opts) % 2:
            raise ValueError(f"{path}: row {name!r} must be a list of KEY VALUE pairs, got {opts!r}")
        rows[str(name)] = [str(o) for o in opts]
    return os.path.join(ROOT, spec["config"]), rows


def read_run(out_dir: str, mode: str = "all"):
    """Final ``Rank-1`` / ``mAP`` of ``mode`` and the last epoch's association accuracies (``acc <direction>``)."""
    with open(os.path.join(out_dir, "final_metrics.json")) as f:
        final = json.load(f)["final"]
    if final is None:
        raise ValueError(f"{out_dir}/final_metrics.json: the run evaluated nothing after training "
                         "(TEST.EVAL_PERIOD 0); expected a positive TEST.EVAL_PERIOD")
    if all(isinstance(v, dict) for v in final.values()):  # several test sets: the first
        final = next(iter(final.values()))
    result = {"Rank-1": final[f"{mode}/Rank-1"], "mAP": final[f"{mode}/mAP"]}
    history = os.path.join(out_dir, "pseudo_labels", "history.json")
    if os.path.exists(history):
        with open(history) as f:
            records = [r for r in json.load(f) if "association" in r]
        if records:
            result.update({f"acc {k}": v for k, v in records[-1]["association"].items()})
    return result


def run(config, out_dir, seed, row_opts, extra, threads=0, mode="all"):
    """One training run in its own process; ``threads > 0`` caps its torch/OpenMP threads (parallel jobs)."""
    cmd = [sys.executable, os.path.join(ROOT, "tools", "train_net.py"), "--config-file", config,
           "SEED", str(seed), "OUTPUT_DIR", out_dir, "TEST.EVAL_AT_START", "False", *row_opts, *extra]
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)} if threads else {}))
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"run failed ({' '.join(cmd)}):\n{proc.stderr[-3000:]}")
    return read_run(out_dir, mode)


def format_table(scores) -> str:
    columns = list(dict.fromkeys(k for runs in scores.values() for r in runs for k in r))
    lines = ["| row | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for row, runs in scores.items():
        cells = []
        for col in columns:
            values = np.array([r.get(col, np.nan) for r in runs], dtype=float)
            if np.isnan(values).all():  # e.g. no association in the baseline row
                cells.append("-")
                continue
            scale = 100.0 if col.startswith("acc") else 1.0
            cells.append(f"{np.nanmean(values) * scale:.2f} ± {np.nanstd(values) * scale:.2f}")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows-file", default=os.path.join(ROOT, "configs", "Synthetic", "ablations", "dotla.yml"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rows", nargs="+", help="run only these rows (default: every row of the file)")
    parser.add_argument("--mode", default="all", help="evaluation mode whose Rank-1/mAP the table reports")
    parser.add_argument("--out", default=None, help="default: logs/ablation/<rows file name>")
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs in parallel, each with cpu_count // jobs threads and one loader worker")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides for every run")
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    config, rows = read_rows(args.rows_file)
    unknown = sorted(set(args.rows or []) - set(rows))
    if unknown:
        parser.error(f"--rows: {unknown} not in {args.rows_file} (rows: {list(rows)})")
    out = args.out or os.path.join(ROOT, "logs", "ablation", os.path.splitext(os.path.basename(args.rows_file))[0])
    threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else 0
    extra = args.opts + (["DATALOADER.NUM_WORKERS", "1"] if args.jobs > 1 else [])
    runs = [(row, seed) for row in (args.rows or rows) for seed in args.seeds]

    def one(row_seed):
        row, seed = row_seed
        out_dir = os.path.join(out, re.sub(r"[^\w+]+", "_", row), f"seed{seed}")
        result = run(config, out_dir, seed, rows[row], extra, threads, args.mode)
        print(f"{row} seed {seed}: {result}", flush=True)
        return result

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:  # threads only wait on the training processes
        results = list(pool.map(one, runs))
    scores = {}
    for (row, _), result in zip(runs, results):
        scores.setdefault(row, []).append(result)
    table = format_table(scores)
    print(table)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "ablation.md.tmp"), "w") as f:
        f.write(table + "\n")
    os.replace(os.path.join(out, "ablation.md.tmp"), os.path.join(out, "ablation.md"))
    atomic_write_json(os.path.join(out, "runs.json"),
                      [{"row": row, "seed": seed, **result} for (row, seed), result in zip(runs, results)])


if __name__ == "__main__":
    main()
