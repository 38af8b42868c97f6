#!/usr/bin/env python
"""Side-by-side table of finished runs, read from their ``OUTPUT_DIR/final_metrics.json``.

``make demo`` prints the source-pretrained start (the initial evaluation of the DOTLA run), the DOTLA result and
the supervised ceiling (when ``make demo-supervised`` has been run) this way::

    python tools/demo_summary.py "start=logs/synthetic/dotla:initial" "DOTLA=logs/synthetic/dotla" \\
        "ceiling=logs/synthetic/agw_supervised"

A row is ``LABEL=RUN_DIR[:initial|:final]`` (default ``final``). A run directory without ``final_metrics.json``
is listed as not run, with no numbers; a file that lacks the requested evaluation is an error.
"""
import argparse
import json
import os
import sys

from tabulate import tabulate

COLUMNS = ("Rank-1", "mAP", "mINP")


def parse_row(spec: str):
    """``"LABEL=DIR[:initial|:final]"`` -> (label, dir, which)."""
    if "=" not in spec:
        raise ValueError(f"row {spec!r}: expected LABEL=RUN_DIR[:initial|:final]")
    label, rest = spec.split("=", 1)
    run_dir, which = rest, "final"
    if rest.endswith((":initial", ":final")):
        run_dir, which = rest.rsplit(":", 1)
    return label, run_dir, which


def read_results(run_dir: str, which: str):
    """``{mode: {metric: value}}`` of one evaluation of a run, ``None`` when the run has not finished."""
    path = os.path.join(run_dir, "final_metrics.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        results = json.load(f)[which]
    if results is None:
        raise ValueError(f"{path}: has no {which!r} evaluation "
                         f"({'TEST.EVAL_AT_START was off' if which == 'initial' else 'TEST.EVAL_PERIOD 0'})")
    flat = {}
    for key, value in results.items():  # "<dataset>/<mode>/<metric>" or "<mode>/<metric>" keys, or nested
        if isinstance(value, dict):
            for sub, v in value.items():
                flat[f"{key}/{sub}"] = v
        else:
            flat[key] = value
    table = {}
    for key, value in flat.items():
        *mode, metric = key.split("/")
        if metric in COLUMNS and mode:
            table.setdefault(mode[-1], {})[metric] = value
    return table


def summary_table(rows) -> str:
    lines = []
    for label, run_dir, which in rows:
        results = read_results(run_dir, which)
        if results is None:
            lines.append([label, "-", "not run", "", "", run_dir])
            continue
        for mode, metrics in results.items():
            lines.append([label, mode, *(f"{metrics.get(c, float('nan')):.2f}" for c in COLUMNS),
                          f"{run_dir} ({which})"])
    return tabulate(lines, headers=("model", "mode", *COLUMNS, "run"), tablefmt="pipe", disable_numparse=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rows", nargs="+", help="LABEL=RUN_DIR[:initial|:final]")
    args = parser.parse_args(argv)
    print(summary_table([parse_row(r) for r in args.rows]))


if __name__ == "__main__":
    sys.exit(main())
