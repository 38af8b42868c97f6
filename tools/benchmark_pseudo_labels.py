"""Benchmark the per-epoch pseudo-labelling step: k-reciprocal Jaccard distance + DBSCAN, per modality.

Two paths on the same seeded synthetic SYSU-like features (L2-normalised, 2048-d):

* ``ours``:  ``jaccard_distance`` (sparse, O(N·k) memory) -> ``vireid_plugins.association.dbscan.dbscan``.
* ``dense``: ``jaccard_distance_dense`` (the dense N x N reference) -> scikit-learn
  ``DBSCAN(eps, min_samples, metric="precomputed", n_jobs=-1)`` on the dense matrix.

Each (modality, path) runs in its own fresh subprocess. Both workers import every module either path needs and
load the same features before the clock starts; the resident high-water mark (``VmHWM``) at that point is the
*baseline* (the interpreter, torch (~540 MiB for the CUDA build), fast-reid, ``vireid_plugins`` and the N x 2048
features), identical for both paths. The headline *peak memory* of a path is its ``VmHWM`` at the end minus that
baseline: the memory the algorithm itself needed. The whole-process ``VmHWM`` is printed beside it (and its
ratio in the summary), so nothing is hidden: with a ~0.8 GiB baseline the whole-process ratio is bounded well
below the algorithmic one.
The parent prints seconds per stage and in total, both memory figures, the cluster / outlier counts and the
adjusted Rand index between the two label sets (and of each against the synthetic identities).

Usage (from the repository root)::

    python tools/benchmark_pseudo_labels.py --scale small
    python tools/benchmark_pseudo_labels.py --scale sysu            # 22,258 visible + 11,909 infrared
    python tools/benchmark_pseudo_labels.py --scale sysu --skip-dense
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

import vireid_plugins  # noqa: E402,F401  (fast-reid compat shims, imported first)

SCALES = {"sysu": {"visible": 22258, "infrared": 11909}, "small": {"visible": 3000, "infrared": 1500}}
CAMERAS = {"visible": 4, "infrared": 2}
NUM_IDS = {"sysu": 395, "small": 60}
FEAT_DIM = 2048


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="small")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="device of our path")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-dense", action="store_true", help="run our path only")
    parser.add_argument("--k1", type=int, default=30)
    parser.add_argument("--k2", type=int, default=6)
    parser.add_argument("--eps", type=float, default=0.6)
    parser.add_argument("--min-samples", type=int, default=4)
    parser.add_argument("--modalities", nargs="+", choices=["visible", "infrared"], default=["visible", "infrared"])
    parser.add_argument("--threads", type=int, default=0,
                        help="torch intra-op threads in both workers (0: torch's default, all cores)")
    # internal: run one path in this process
    parser.add_argument("--worker", choices=["ours", "dense"], help=argparse.SUPPRESS)
    parser.add_argument("--features", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--labels-out", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------------------------------------------
# Synthetic features
# ----------------------------------------------------------------------------------------------------------------
def synthetic_features(seed: int, scale: str, dim: int = FEAT_DIM) -> dict:
    """Seeded SYSU-like training features of both modalities.

    Identity prototypes come in groups of ~5 look-alike identities (cosine ~0.4 within a group). Every
    (identity, camera) pair has its own offset (4 visible, 2 infrared cameras), so DBSCAN tends to split
    identities by camera as it does on SYSU-MM01. Samples add isotropic noise whose level varies per sample (5%
    with three times the noise); 6% keep only 35% of the identity signal and 4% almost none (these become
    outliers). Identity sizes are log-normal (heavy-tailed, from 2 upwards), and each modality has its own
    offset; the two modalities are clustered independently as in ADCA / PGM.

    Returns:
        ``{modality: (features (N, dim) float32 L2-normalised, identities (N,) int64)}``.
    """
    rng = np.random.default_rng(seed)
    num_ids = NUM_IDS[scale]
    num_groups = max(1, num_ids // 5)

    def gauss(*shape, scale=1.0):
        return np.float32(scale / np.sqrt(dim)) * rng.standard_normal(shape, dtype=np.float32)

    groups = gauss(num_groups, dim, scale=np.sqrt(dim))  # unit-ish group centres
    groups /= np.linalg.norm(groups, axis=1, keepdims=True)
    prototypes = groups[rng.integers(0, num_groups, num_ids)] + gauss(num_ids, dim, scale=1.2)
    out = {}
    for modality, total in SCALES[scale].items():
        weights = rng.lognormal(0.0, 0.6, num_ids)
        sizes = 2 + rng.multinomial(total - 2 * num_ids, weights / weights.sum())
        ids = np.repeat(np.arange(num_ids), sizes)
        cams = rng.integers(0, CAMERAS[modality], ids.size)
        modality_shift = gauss(dim, scale=0.3)
        cam_offsets = gauss(num_ids, CAMERAS[modality], dim, scale=0.55)
        noise_level = rng.uniform(0.75, 1.15, ids.size).astype(np.float32)
        noise_level[rng.random(ids.size) < 0.05] *= 3.0
        signal = np.ones(ids.size, dtype=np.float32)
        draw = rng.random(ids.size)
        signal[draw < 0.10] = 0.35  # occluded / badly cropped images: weak identity signal
        signal[draw < 0.04] = 0.05  # nearly no identity signal: should end up as DBSCAN outliers
        feats = signal[:, None] * (prototypes[ids] + cam_offsets[ids, cams]) + modality_shift
        feats += noise_level[:, None] * gauss(ids.size, dim)
        feats /= np.linalg.norm(feats, axis=1, keepdims=True)
        perm = rng.permutation(ids.size)  # no identity order in the rows
        out[modality] = (np.ascontiguousarray(feats[perm], dtype=np.float32), ids[perm])
    return out


# ----------------------------------------------------------------------------------------------------------------
# Workers (one path, one modality, own process)
# ----------------------------------------------------------------------------------------------------------------
def _peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB.

    ``VmHWM`` of ``/proc/self/status`` is the high-water mark of this process's own address space. ``ru_maxrss``
    is the fallback off Linux; on Linux it is not used because it keeps the parent's high-water mark across the
    ``fork``/``exec`` of the worker (it would report the parent's peak when that is larger).
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_worker(args) -> None:
    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    # Import everything either path needs before measuring the baseline, so neither path pays for imports.
    from sklearn.cluster import DBSCAN

    from vireid_plugins.association.dbscan import dbscan
    from vireid_plugins.association.jaccard import jaccard_distance, jaccard_distance_dense

    load_before = os.getloadavg()[0]
    feats = torch.from_numpy(np.load(args.features))
    baseline = _peak_rss_mb()
    timings = {}
    start = time.perf_counter()
    if args.worker == "ours":
        device = torch.device(args.device)
        x = feats.to(device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        graph = jaccard_distance(x, k1=args.k1, k2=args.k2, timings=timings)
        t0 = time.perf_counter()
        labels = dbscan(graph, args.eps, args.min_samples).numpy()
        timings["dbscan"] = time.perf_counter() - t0
        extra = {"nnz": graph.nnz}
    else:
        dist = jaccard_distance_dense(feats, k1=args.k1, k2=args.k2, timings=timings).numpy()
        t0 = time.perf_counter()
        labels = DBSCAN(eps=args.eps, min_samples=args.min_samples, metric="precomputed",
                        n_jobs=-1).fit_predict(dist)
        timings["dbscan"] = time.perf_counter() - t0
        extra = {"nnz": int((dist < 1).sum())}
    total = time.perf_counter() - start
    np.save(args.labels_out, labels.astype(np.int64))
    result = {"total_s": total, "stages": timings, "peak_rss_mb": _peak_rss_mb(), "baseline_rss_mb": baseline,
              "threads": torch.get_num_threads(), "load": (load_before, os.getloadavg()[0]), **extra}
    if args.worker == "ours" and args.device == "cuda":
        result["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
    print("RESULT " + json.dumps(result), flush=True)


def launch(path: str, features: Path, labels_out: Path, args) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", path, "--features", str(features),
           "--labels-out", str(labels_out), "--device", args.device, "--k1", str(args.k1), "--k2", str(args.k2),
           "--eps", str(args.eps), "--min-samples", str(args.min_samples), "--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(ROOT))
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{path} worker failed (rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    result = json.loads(lines[-1][len("RESULT "):])
    result["labels"] = np.load(labels_out)
    return result


# ----------------------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------------------
def _describe(labels: np.ndarray) -> str:
    clusters = len(set(labels.tolist()) - {-1})
    return f"{clusters} clusters, {int((labels == -1).sum())} outliers"


def _path_peak_mb(result: dict) -> float:
    """Peak memory the path itself needed: its process's high-water mark above the common baseline (>= 1 MiB)."""
    return max(result["peak_rss_mb"] - result["baseline_rss_mb"], 1.0)


def _format(path: str, result: dict) -> str:
    stages = ", ".join(f"{k} {v:.2f}" for k, v in result["stages"].items())
    line = (f"  {path:5s}: total {result['total_s']:8.2f} s | peak memory {_path_peak_mb(result):7.0f} MiB "
            f"(whole process {result['peak_rss_mb']:.0f}, baseline {result['baseline_rss_mb']:.0f}) | "
            f"stored pairs {result['nnz']:,} | "
            f"{_describe(result['labels'])}\n         stages (s): {stages}\n"
            f"         torch threads {result['threads']}, 1-min load average {result['load'][0]:.1f} -> "
            f"{result['load'][1]:.1f} (machine shared with other jobs)")
    if "cuda_peak_mb" in result:
        line += f"\n         CUDA peak allocated {result['cuda_peak_mb']:.0f} MiB"
    return line


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:
        run_worker(args)
        return
    from sklearn.metrics import adjusted_rand_score

    t0 = time.perf_counter()
    data = synthetic_features(args.seed, args.scale)
    print(f"scale={args.scale} seed={args.seed} k1={args.k1} k2={args.k2} eps={args.eps} "
          f"min_samples={args.min_samples} device(ours)={args.device} "
          f"cpu_threads={os.cpu_count()} (features generated in {time.perf_counter() - t0:.1f} s)", flush=True)
    summary = []
    with tempfile.TemporaryDirectory() as tmp:
        for modality in args.modalities:
            feats, ids = data[modality]
            path = Path(tmp) / f"{modality}.npy"
            np.save(path, feats)
            print(f"\n[{modality}] N={feats.shape[0]:,} D={feats.shape[1]} identities={len(np.unique(ids))}",
                  flush=True)
            results = {}
            for name in ["ours"] + ([] if args.skip_dense else ["dense"]):
                results[name] = launch(name, path, Path(tmp) / f"{modality}_{name}.npy", args)
                print(_format(name, results[name]), flush=True)
                print(f"         ARI vs identities: {adjusted_rand_score(ids, results[name]['labels']):.4f}",
                      flush=True)
            if "dense" in results:
                ours, dense = results["ours"], results["dense"]
                ari = adjusted_rand_score(dense["labels"], ours["labels"])
                identical = bool(np.array_equal(dense["labels"], ours["labels"]))
                speed = dense["total_s"] / ours["total_s"]
                memory = _path_peak_mb(dense) / _path_peak_mb(ours)
                whole = dense["peak_rss_mb"] / ours["peak_rss_mb"]
                print(f"  ours vs dense: ARI {ari:.6f} (labels identical: {identical}) | "
                      f"speed-up {speed:.2f}x | peak-memory ratio {memory:.2f}x "
                      f"(whole-process RSS ratio {whole:.2f}x)", flush=True)
                summary.append((modality, ari, speed, memory, whole))
    if summary:
        print("\nsummary: " + "; ".join(f"{m}: ARI {a:.4f}, {s:.2f}x faster, {r:.2f}x less peak memory "
                                        f"({w:.2f}x less whole-process RSS)" for m, a, s, r, w in summary))


if __name__ == "__main__":
    main()
