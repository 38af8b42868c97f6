#!/usr/bin/env python
"""Plot the per-epoch pseudo-label quality of a run: cluster count, outlier ratio, NMI/ARI (when the run had
identities to compare with) and cross-modality association accuracy (when the method reports it), per
modality or direction, from ``RUN_DIR/pseudo_labels/history.json``; one PNG.

    python tools/plot_pseudo_labels.py logs/synthetic/usl_baseline [--out curves.png]

The default output is ``RUN_DIR/pseudo_labels/curves.png``.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vireid_plugins.visualization.embeddings import save_figure  # noqa: E402
from vireid_plugins.visualization.pseudo_label_curves import load_history, plot_history  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="OUTPUT_DIR of a run with PSEUDO.ENABLED")
    parser.add_argument("--out", help="output PNG (default RUN_DIR/pseudo_labels/curves.png)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    history = load_history(os.path.join(args.run_dir, "pseudo_labels", "history.json"))
    out = args.out or os.path.join(args.run_dir, "pseudo_labels", "curves.png")
    save_figure(plot_history(history), out)
    print(f"wrote {out}: {len(history)} epochs ({history[0]['epoch']}..{history[-1]['epoch']})")
    return out


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, ValueError) as exc:
        sys.exit(f"error: {exc}")
