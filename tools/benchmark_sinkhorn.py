"""Benchmark the shared Sinkhorn solver at SYSU-MM01 scale: DOTLA's infrared -> visible assignment.

Problem: ``N = 11,909`` infrared images (the SYSU-MM01 training set) transported onto ``K = 500`` visible classes,
``Q = diag(u) P^lam diag(v)`` with ``lam = 25`` and uniform marginals (Eq. 3 of DOTLA), where ``P`` is a seeded
synthetic softmax prediction matrix (float32):

* ``--logits randn`` (default): ``logits = scale * randn(N, K)`` with ``scale = 5``: peaky rows (a few classes
  within ``80 / lam`` log-units of each row's maximum), as a trained classifier on the other modality gives;
* ``--logits clustered``: each image has a hidden identity (DBSCAN-like uneven sizes) whose logit is raised by
  ``--margin`` over ``scale * randn`` noise.

Two solvers, timed end to end from the probabilities:

* ``ours``: :func:`vireid_plugins.association.sinkhorn.assign_labels_by_sinkhorn` (log-domain potentials,
  absorbed sparse kernel, adaptive over-relaxation) run until the L1 column-marginal error is below ``--tol``
  (``1e-4``); prints seconds, iterations, final error, and the same for plain Sinkhorn (``omega=1``), whose
  iteration count is what any plain implementation (POT included) needs for that error.
* ``POT``: ``ot.sinkhorn(a, b, M, 1/lam, method="sinkhorn_log", numItermax=n, stopThr=0)`` on ``M = -log P``
  (numpy float64, POT's usual input) for a fixed number of iterations ``--pot-iters-total`` (default 1,000). To
  keep the run short, ``--pot-iters n`` runs only ``n`` iterations and extrapolates linearly (labelled
  ``extrapolated``); its L1 column error is that of the iterations actually run. ``--skip-pot`` skips it.

Usage (from the repository root)::

    python tools/benchmark_sinkhorn.py --pot-iters 50
    python tools/benchmark_sinkhorn.py --skip-pot --threads 1 --repeat 3
    python tools/benchmark_sinkhorn.py --logits clustered --compare-log
"""
import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vireid_plugins.association.sinkhorn import assign_labels_by_sinkhorn  # noqa: E402


def make_probs(n: int, k: int, kind: str, scale: float, margin: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(n, k, generator=g)
    if kind == "clustered":
        sizes = torch.randint(4, 60, (k,), generator=g).float()  # uneven, DBSCAN-like
        identity = torch.multinomial(sizes, n, replacement=True, generator=g)
        logits[torch.arange(n), identity] += margin
    return torch.softmax(logits, 1)


def col_error(plan: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(plan.sum(0) - b).sum())


def run_ours(probs, lam, tol, repeat, **kwargs):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = assign_labels_by_sinkhorn(probs, lam, tol=tol, max_iter=5000, **kwargs)
        times.append(time.perf_counter() - t0)
    return min(times), out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=11909, help="infrared images (rows)")
    ap.add_argument("--k", type=int, default=500, help="visible classes (columns)")
    ap.add_argument("--lam", type=float, default=25.0)
    ap.add_argument("--logits", choices=["randn", "clustered"], default="randn")
    ap.add_argument("--scale", type=float, default=5.0, help="logit noise scale")
    ap.add_argument("--margin", type=float, default=6.0, help="--logits clustered: raise of the identity's logit")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tol", type=float, default=1e-4, help="our stopping tolerance (L1 column-marginal error)")
    ap.add_argument("--repeat", type=int, default=2, help="runs of ours; the fastest is reported")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--skip-plain", action="store_true", help="skip our plain (omega=1) run")
    ap.add_argument("--compare-log", action="store_true", help="also run method='log' (two full log-sum-exps "
                    "per iteration) and compare plans and labels")
    ap.add_argument("--skip-pot", action="store_true")
    ap.add_argument("--pot-iters", type=int, default=None,
                    help="POT iterations actually run (default: --pot-iters-total); time extrapolated linearly")
    ap.add_argument("--pot-iters-total", type=int, default=1000, help="POT iterations to report the time of")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    probs = make_probs(args.n, args.k, args.logits, args.scale, args.margin, args.seed)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"problem: N={args.n} x K={args.k}, lam={args.lam:g}, logits={args.logits} (scale {args.scale:g}), "
          f"float32 softmax; max prob per row: median {probs.max(1).values.median():.3f}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads, {os.cpu_count()} CPUs, "
          f"1-min load average {load:.2f}")

    secs, (labels, res) = run_ours(probs, args.lam, args.tol, args.repeat)
    counts = torch.bincount(labels, minlength=args.k)
    print(f"ours (stabilized, omega=auto): {secs:.3f} s (best of {args.repeat}), {res.iterations} iterations, "
          f"marginal error {float(res.marginal_error):.2e} (tol {args.tol:g}), converged={res.converged}; "
          f"labels per class min/median/max {int(counts.min())}/{int(counts.median())}/{int(counts.max())}")
    plain_iters = None
    if not args.skip_plain:
        secs_p, (labels_p, res_p) = run_ours(probs, args.lam, args.tol, 1, omega=1.0)
        plain_iters = res_p.iterations
        print(f"ours (stabilized, plain omega=1): {secs_p:.3f} s, {res_p.iterations} iterations, marginal error "
              f"{float(res_p.marginal_error):.2e}; labels differing from omega=auto: "
              f"{int((labels_p != labels).sum())}")
    if args.compare_log:
        secs_l, (labels_l, res_l) = run_ours(probs, args.lam, args.tol, 1, method="log")
        diff = float((res_l.plan() - res.plan()).abs().sum())
        print(f"ours (log, omega=auto): {secs_l:.3f} s, {res_l.iterations} iterations, marginal error "
              f"{float(res_l.marginal_error):.2e}; sum|plan - stabilized plan| = {diff:.2e}, labels differing: "
              f"{int((labels_l != labels).sum())}")

    if not args.skip_pot:
        import ot

        n_run = args.pot_iters or args.pot_iters_total
        cost = -np.log(np.maximum(probs.double().numpy(), np.finfo(np.float32).tiny))
        a, b = np.full(args.n, 1.0 / args.n), np.full(args.k, 1.0 / args.k)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            plan = ot.sinkhorn(a, b, cost, 1.0 / args.lam, method="sinkhorn_log", numItermax=n_run, stopThr=0.0)
            secs_pot = time.perf_counter() - t0
        per_iter = secs_pot / n_run
        err = col_error(plan, b)
        label = "measured" if n_run == args.pot_iters_total else f"extrapolated from {n_run} iterations"
        print(f"POT ot.sinkhorn(method='sinkhorn_log', numpy float64): {n_run} iterations in {secs_pot:.2f} s "
              f"({per_iter * 1e3:.0f} ms/iteration), marginal error after {n_run} iterations {err:.2e}")
        print(f"POT {args.pot_iters_total} iterations: {per_iter * args.pot_iters_total:.1f} s ({label})")
        if plain_iters is not None:
            print(f"POT to marginal error {args.tol:g} (~{plain_iters} plain Sinkhorn iterations, as ours with "
                  f"omega=1): ~{per_iter * plain_iters:.1f} s (extrapolated)")
        print(f"speed-up of ours over POT's {args.pot_iters_total} iterations: "
              f"{per_iter * args.pot_iters_total / secs:.0f}x ({label})")


if __name__ == "__main__":
    main()
