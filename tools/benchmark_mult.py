"""Benchmark MULT's label transfer (both label spaces) against a dense reference written like the authors' code.

Inputs, prepared once in the parent (not timed as part of either path): seeded SYSU-like synthetic features
(``benchmark_pseudo_labels.synthetic_features``: 22,258 visible + 11,909 infrared, 2048-d, L2-normalised, at
``--scale sysu``), each modality's sparse k-reciprocal Jaccard graph (``jaccard_distance``, k1 = 30, k2 = 6) and its
DBSCAN labels (eps 0.6, min_samples 4; outliers kept, they take part in the transfer).

Two paths, each in its own fresh subprocess, on the same inputs:

* ``ours``: :func:`vireid_plugins.association.mult.mult_label_transfer` (sparse homogeneous affinities, the
  instance plan held once in bfloat16 by ``sinkhorn_blocks``, bfloat16 products, over-relaxed Sinkhorn to an L1
  marginal error of 1e-4).
* ``dense``: the computation of the authors' ``MULT()`` (``cross_association.py``): their ``sinkhorn_solver``
  (linear domain ``exp(-25 P)``, plain iterations, ``err = sum |beta / beta_new - 1| < 0.1`` checked every 10
  steps, at most 500) for the two instance-to-centroid problems and the dense ``N_v x N_r`` instance plan;
  ``1 - D`` dense Jaccard affinities; dense row normalisations; their ``lp()`` loop with dense products. Two
  deviations, both in its favour: the plan is scaled by broadcasting instead of their ``torch.diag(alpha) @ PS @
  torch.diag(beta)`` (which allocates a 2 GiB ``N_v x N_v`` diagonal and costs ~9 TFLOP at SYSU size), and its
  dense Jaccard matrices (``dist_rgb``, ``dist_ir``: inputs of their ``MULT()``, made by their dense Jaccard code
  for DBSCAN) are built from the graphs *before* its clock starts and before its memory baseline, so they are not
  counted.

Time: wall seconds of the path, and its CPU time (user + system, all threads): on a machine shared with other jobs
the wall time depends on the load, the CPU time much less (it still counts OpenMP spin-waiting with several
threads; ``--threads 1`` gives the cleanest figure). Memory: as in ``benchmark_pseudo_labels.py``, each worker
imports everything and loads its inputs before the clock; its resident high-water mark then is the baseline, and a
path's *peak memory* is its high-water mark at the end less that baseline (the whole-process figure is printed
too). Agreement: the fraction of equal hard labels in each of the four label sets (visible space: ``y^v`` of the
visible images, ``y^{r->v}`` of the infrared ones; infrared space: ``y^r``, ``y^{v->r}``). ``--scale small`` also
checks our instance affinity against the exact plan (solved densely in float64 to an L1 marginal error of 1e-9):
L1 distance of the rows of ``A^{vr}`` and ``A^{rv}``.

Usage (from the repository root; 1-2 threads, the dense path needs ~9 GiB at ``sysu``)::

    python tools/benchmark_mult.py --scale small
    OMP_NUM_THREADS=2 python tools/benchmark_mult.py --scale sysu --threads 2
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from benchmark_pseudo_labels import SCALES, _path_peak_mb, _peak_rss_mb, synthetic_features  # noqa: E402

import vireid_plugins  # noqa: E402,F401  (fast-reid compat shims, imported first)

LABEL_SETS = ("y_v", "y_r2v", "y_r", "y_v2r")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads in both workers (0: torch's)")
    parser.add_argument("--skip-dense", action="store_true", help="run our path only")
    parser.add_argument("--storage", choices=["bfloat16", "float32"], default="bfloat16",
                        help="our instance plan's storage dtype")
    parser.add_argument("--eps", type=float, default=0.6, help="DBSCAN eps of the input labels")
    parser.add_argument("--worker", choices=["ours", "dense"], help=argparse.SUPPRESS)
    parser.add_argument("--inputs", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------------------
def prepare_inputs(args, path: Path) -> dict:
    """Features, Jaccard graphs and DBSCAN labels of both modalities, saved to ``path`` (npz)."""
    import torch

    from vireid_plugins.association.dbscan import dbscan
    from vireid_plugins.association.jaccard import jaccard_distance

    data = synthetic_features(args.seed, args.scale)
    arrays, info = {}, {}
    for m, key in (("visible", "v"), ("infrared", "r")):
        feats, ids = data[m]
        graph = jaccard_distance(torch.from_numpy(feats))
        labels = dbscan(graph, args.eps, 4).numpy()
        arrays.update({f"feats_{key}": feats, f"labels_{key}": labels, f"indptr_{key}": graph.indptr.numpy(),
                       f"indices_{key}": graph.indices.numpy(), f"dist_{key}": graph.distances.numpy()})
        info[m] = (feats.shape[0], int(labels.max()) + 1, int((labels < 0).sum()), graph.nnz)
    np.savez(path, **arrays)
    return info


def load_inputs(path: Path):
    import torch

    from vireid_plugins.association.graph import NeighbourGraph

    z = np.load(path)
    out = {}
    for key in ("v", "r"):
        out[f"feats_{key}"] = torch.from_numpy(z[f"feats_{key}"])
        out[f"labels_{key}"] = torch.from_numpy(z[f"labels_{key}"]).long()
        out[f"graph_{key}"] = NeighbourGraph(*(torch.from_numpy(z[f"{part}_{key}"]) for part in
                                               ("indptr", "indices", "dist")), max_distance=1.0)
    return out


# ----------------------------------------------------------------------------------------------------------------
# The dense reference (the authors' computation)
# ----------------------------------------------------------------------------------------------------------------
def _authors_sinkhorn(cost, lam: float = 25.0, max_iter: int = 500):
    """Their ``sinkhorn_solver``; the plan scaled by broadcasting (their ``torch.diag`` products are not run)."""
    import torch

    n, k = cost.shape
    beta = torch.ones(k, 1) / k
    ps = torch.exp(-lam * cost)
    err, step = 1e6, 0
    while err > 1e-1 and step < max_iter:
        alpha = (1.0 / n) / (ps @ beta)
        beta_new = (1.0 / k) / (alpha.T @ ps).T
        if step % 10 == 0:
            err = float(torch.nansum((beta / beta_new - 1).abs()))
        beta = beta_new
        step += 1
    return ps.mul_(alpha).mul_(beta.T), step


def _pairwise_distance(x, y):
    return (x * x).sum(1, keepdim=True) + (y * y).sum(1) - 2.0 * x @ y.T


def _centers(feats, labels):
    import torch

    k = int(labels.max()) + 1
    member = labels >= 0
    sums = torch.zeros(k, feats.shape[1]).index_add_(0, labels[member], feats[member])
    return sums / torch.bincount(labels[member], minlength=k).unsqueeze(1)


def _lp(aff_a, aff_b, aff_ab, aff_ba, y_a, y_b, alpha=0.2):
    """Their ``lp()``: own label space ``a``, the other modality ``b``."""
    y_a_old, y_b_old, y_b_new = y_a.clone(), y_b.clone(), y_b.clone()
    eps, it = 1e6, 0
    while eps > 1e-2 and it < 20:
        y_a_new = (1 - alpha) * aff_ab.mm(y_b_new) + alpha * y_a
        y_b_new = (1 - alpha) * aff_ba.mm(y_a_new) + alpha * y_b
        y_a_new = 0.5 * aff_a.mm(y_a_new) + 0.5 * y_a_new
        y_b_new = 0.5 * aff_b.mm(y_b_new) + 0.5 * y_b_new
        eps = max(float((y_b_new - y_b_old).abs().sum() / y_b_old.sum()),
                  float((y_a_new - y_a_old).abs().sum() / y_a_old.sum()))
        y_a_old, y_b_old = y_a_new.clone(), y_b_new.clone()
        it += 1
    return y_a_new, y_b_new, it


def dense_mult(fv, fr, lv, lr, dist_v, dist_r, timings: dict) -> dict:
    import torch
    import torch.nn.functional as F

    t0 = time.perf_counter()
    cv, cr = _centers(fv, lv), _centers(fr, lr)
    y_v = torch.softmax(fv.mm(cv.T) / 0.05, dim=1)
    y_r = torch.softmax(fr.mm(cr.T) / 0.05, dim=1)
    y_v2r = F.one_hot(_authors_sinkhorn(_pairwise_distance(fv, cr))[0].argmax(1), cr.shape[0]).float()
    y_r2v = F.one_hot(_authors_sinkhorn(_pairwise_distance(fr, cv))[0].argmax(1), cv.shape[0]).float()
    t1 = time.perf_counter()
    p_cross, steps = _authors_sinkhorn(_pairwise_distance(fv, fr))
    t2 = time.perf_counter()
    aff_v = 1 - dist_v
    aff_r = 1 - dist_r
    aff_v = aff_v / aff_v.sum(1).unsqueeze(1)
    aff_r = aff_r / aff_r.sum(1).unsqueeze(1)
    aff_vr = p_cross / p_cross.sum(1).unsqueeze(1)
    aff_rv = p_cross.t() / p_cross.t().sum(1).unsqueeze(1)
    del p_cross
    t3 = time.perf_counter()
    y_v_new, y_r2v_new, it_v = _lp(aff_v, aff_r, aff_vr, aff_rv, y_v, y_r2v)
    t4 = time.perf_counter()
    y_r_new, y_v2r_new, it_r = _lp(aff_r, aff_v, aff_rv, aff_vr, y_r, y_v2r)
    t5 = time.perf_counter()
    timings.update({"initial_labels": t1 - t0, "instance_plan": t2 - t1, "affinities": t3 - t2,
                    "propagation_visible": t4 - t3, "propagation_infrared": t5 - t4})
    labels = {"y_v": y_v_new.argmax(1), "y_r2v": y_r2v_new.argmax(1), "y_r": y_r_new.argmax(1),
              "y_v2r": y_v2r_new.argmax(1)}
    return {"labels": labels, "iterations": (it_v, it_r), "plan_iterations": steps}


# ----------------------------------------------------------------------------------------------------------------
# Workers
# ----------------------------------------------------------------------------------------------------------------
def _plan_check(inputs, storage_dtype) -> dict:
    """Small scale only: our A^{vr}, A^{rv} against the exact plan (dense float64 solve to 1e-9)."""
    from vireid_plugins.association.mult import instance_affinity, squared_distances
    from vireid_plugins.association.sinkhorn import sinkhorn

    fv, fr = inputs["feats_v"], inputs["feats_r"]
    ours_vr, ours_rv = instance_affinity(fv, fr, storage_dtype=storage_dtype).dense()
    exact = sinkhorn(squared_distances(fv, fr).double(), reg=1 / 25.0, tol=1e-9, max_iter=5000).plan()
    ex_vr, ex_rv = exact / exact.sum(1, keepdim=True), exact.T / exact.T.sum(1, keepdim=True)
    rows_vr = (ours_vr.double() - ex_vr).abs().sum(1)
    rows_rv = (ours_rv.double() - ex_rv).abs().sum(1)
    return {"l1_vr_mean": float(rows_vr.mean()), "l1_vr_max": float(rows_vr.max()),
            "l1_rv_mean": float(rows_rv.mean()), "l1_rv_max": float(rows_rv.max()),
            "argmax_vr": float((ours_vr.argmax(1) == ex_vr.argmax(1)).double().mean())}


def _cpu_seconds() -> float:
    """User + system CPU time of this process (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_worker(args) -> None:
    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    from vireid_plugins.association.mult import mult_label_transfer

    inputs = load_inputs(args.inputs)
    if args.worker == "dense":  # the authors' inputs: dense Jaccard matrices, made before the clock
        dist_v, dist_r = inputs["graph_v"].to_dense(), inputs["graph_r"].to_dense()
    load_before = os.getloadavg()[0]
    baseline = _peak_rss_mb()
    timings = {}
    cpu_start = _cpu_seconds()
    start = time.perf_counter()
    if args.worker == "ours":
        storage = getattr(torch, args.storage)
        res = mult_label_transfer(inputs["feats_v"], inputs["feats_r"], inputs["labels_v"], inputs["labels_r"],
                                  inputs["graph_v"], inputs["graph_r"], storage_dtype=storage, timings=timings)
        labels = {"y_v": res.visible.own_labels, "y_r2v": res.visible.cross_labels,
                  "y_r": res.infrared.own_labels, "y_v2r": res.infrared.cross_labels}
        extra = {"iterations": (res.visible.iterations, res.infrared.iterations),
                 "plan_iterations": res.plan_iterations, "plan_marginal_error": res.plan_marginal_error}
    else:
        out = dense_mult(inputs["feats_v"], inputs["feats_r"], inputs["labels_v"], inputs["labels_r"], dist_v, dist_r,
                         timings)
        labels, extra = out["labels"], {"iterations": out["iterations"], "plan_iterations": out["plan_iterations"]}
    total = time.perf_counter() - start
    cpu = _cpu_seconds() - cpu_start
    peak = _peak_rss_mb()
    load_after = os.getloadavg()[0]
    if args.worker == "ours" and inputs["feats_v"].shape[0] <= 5000:
        extra["plan_check"] = _plan_check(inputs, getattr(torch, args.storage))
    np.savez(args.out, **{k: v.numpy() for k, v in labels.items()})
    result = {"total_s": total, "cpu_s": cpu, "stages": timings, "peak_rss_mb": peak, "baseline_rss_mb": baseline,
              "threads": torch.get_num_threads(), "load": (load_before, load_after), **extra}
    print("RESULT " + json.dumps(result), flush=True)


def launch(path: str, inputs: Path, out: Path, args) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", path, "--inputs", str(inputs), "--out",
           str(out), "--threads", str(args.threads), "--storage", args.storage]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(ROOT))
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{path} worker failed (rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    result = json.loads(lines[-1][len("RESULT "):])
    z = np.load(out)
    result["labels"] = {k: z[k] for k in LABEL_SETS}
    return result


# ----------------------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------------------
def _format(path: str, r: dict) -> str:
    stages = ", ".join(f"{k} {v:.2f}" for k, v in r["stages"].items())
    line = (f"  {path:5s}: total {r['total_s']:8.2f} s (CPU time {r['cpu_s']:.1f} s) | peak memory "
            f"{_path_peak_mb(r):7.0f} MiB (whole process "
            f"{r['peak_rss_mb']:.0f}, baseline {r['baseline_rss_mb']:.0f}) | fixed-point iterations (visible, "
            f"infrared space) {tuple(r['iterations'])} | instance-plan Sinkhorn iterations {r['plan_iterations']}")
    if "plan_marginal_error" in r:
        line += f" (L1 marginal error {r['plan_marginal_error']:.1e})"
    line += (f"\n         stages (s): {stages}\n         torch threads {r['threads']}, 1-min load average "
             f"{r['load'][0]:.1f} -> {r['load'][1]:.1f} (machine shared with other jobs)")
    if "plan_check" in r:
        c = r["plan_check"]
        line += (f"\n         instance affinity vs the exact plan: row L1 of A^vr mean {c['l1_vr_mean']:.1e} "
                 f"max {c['l1_vr_max']:.1e}, of A^rv mean {c['l1_rv_mean']:.1e} max {c['l1_rv_max']:.1e}; "
                 f"row argmax equal {100 * c['argmax_vr']:.2f}%")
    return line


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:
        run_worker(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "inputs.npz"
        t0 = time.perf_counter()
        info = prepare_inputs(args, inputs)
        print(f"scale={args.scale} seed={args.seed} storage={args.storage} cpu_threads={os.cpu_count()} "
              f"(inputs prepared in {time.perf_counter() - t0:.1f} s, not part of either path)")
        for m, (n, k, outliers, nnz) in info.items():
            print(f"  {m}: N={n:,} clusters={k} outliers={outliers} Jaccard pairs stored={nnz:,}")
        results = {}
        for name in ["ours"] + ([] if args.skip_dense else ["dense"]):
            results[name] = launch(name, inputs, Path(tmp) / f"{name}.npz", args)
            print(_format(name, results[name]), flush=True)
    if "dense" in results:
        ours, dense = results["ours"], results["dense"]
        agree = {k: float((ours["labels"][k] == dense["labels"][k]).mean()) for k in LABEL_SETS}
        total = sum(ours["labels"][k].size for k in LABEL_SETS)
        overall = sum(float((ours["labels"][k] == dense["labels"][k]).sum()) for k in LABEL_SETS) / total
        speed = dense["total_s"] / ours["total_s"]
        cpu_ratio = dense["cpu_s"] / ours["cpu_s"]
        memory = _path_peak_mb(dense) / _path_peak_mb(ours)
        whole = dense["peak_rss_mb"] / ours["peak_rss_mb"]
        print("  hard labels equal: " + ", ".join(f"{k} {100 * v:.2f}%" for k, v in agree.items())
              + f" (all {100 * overall:.2f}%)")
        print(f"\nsummary: {speed:.2f}x faster ({cpu_ratio:.2f}x less CPU time), {memory:.2f}x less peak memory "
              f"({whole:.2f}x less whole-process RSS), "
              f"{100 * overall:.2f}% of hard labels equal (min over the four sets {100 * min(agree.values()):.2f}%)")


if __name__ == "__main__":
    main()
