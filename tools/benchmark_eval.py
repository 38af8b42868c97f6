"""Time the full SYSU-MM01 test protocol (10 trials x all/indoor search) with ``eval_sysu``.

Usage (from the repository root)::

    python tools/benchmark_eval.py                      # seeded synthetic SYSU-like features
    python tools/benchmark_eval.py --features feats.npz --trials 10

``--features`` is an ``.npz`` with ``q_feats, q_pids, q_camids`` (the IR queries) and ``g_feats,
g_pids, g_camids`` (the whole RGB test pool). Each trial draws its gallery as the official
``process_gallery_sysu`` does: ``random.seed(trial)``, then for every id in sorted order and every
camera in order (1, 2, 4, 5 for all-search; 1, 2 for indoor-search), ``random.choice`` over that
(id, camera)'s images -- the pool's row order stands in for the sorted file names. Every
evaluation computes ``distmat = -q @ g.T`` on L2-normalised features and calls ``eval_sysu``; the
timed loop covers the draw, the matmul and the evaluation.
"""
import argparse
import random
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import vireid_plugins  # noqa: E402,F401  (fast-reid compat shims, needed before importing fastreid)
from vireid_plugins.evaluation.rank import eval_sysu, summarize_trials  # noqa: E402

MODES = {"all": (1, 2, 4, 5), "indoor": (1, 2)}
FEAT_DIM = 2048
NOISE, CAM_OFFSET = 4.0, 2.0  # relative to unit identity prototypes: Rank-1 about 55%, mAP about 48%
FEATURE_KEYS = ("q_feats", "q_pids", "q_camids", "g_feats", "g_pids", "g_camids")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--features", type=Path, help="npz with q_*/g_* features, pids and camids")
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic features")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed runs of the whole protocol (the best is reported)")
    return parser.parse_args()


def synthetic_features(seed: int, num_ids: int = 96, num_query: int = 3803, num_missing: int = 83) -> Dict:
    """SYSU-like test set: 96 ids, 3,803 IR queries (cams 3, 6), an RGB pool over cams 1, 2, 4, 5.

    ``num_missing`` of the 96 x 4 (id, RGB camera) pairs are empty, so an all-search gallery has
    384 - 83 = 301 images. Features are identity prototype + camera offset + noise.
    """
    rng = np.random.default_rng(seed)
    pids = np.sort(rng.choice(np.arange(1, 534), num_ids, replace=False))
    rgb_pairs = _rgb_pairs(rng, pids, num_missing)
    g_pids, g_camids = _expand(rgb_pairs, rng.integers(10, 36, len(rgb_pairs)))
    ir_pairs = [(pid, cam) for pid in pids for cam in (3, 6) if cam == 3 or rng.random() < 0.8]
    counts = 1 + rng.multinomial(num_query - len(ir_pairs), np.full(len(ir_pairs), 1 / len(ir_pairs)))
    q_pids, q_camids = _expand(ir_pairs, counts)

    prototypes = dict(zip(pids, rng.standard_normal((num_ids, FEAT_DIM), dtype=np.float32)))
    cam_offsets = dict(zip(range(1, 7), CAM_OFFSET * rng.standard_normal((6, FEAT_DIM), dtype=np.float32)))

    def features(feat_pids, feat_camids):
        feats = NOISE * rng.standard_normal((len(feat_pids), FEAT_DIM), dtype=np.float32)
        feats += np.stack([prototypes[pid] for pid in feat_pids])
        feats += np.stack([cam_offsets[cam] for cam in feat_camids])
        return feats

    return dict(q_feats=features(q_pids, q_camids), q_pids=q_pids, q_camids=q_camids,
                g_feats=features(g_pids, g_camids), g_pids=g_pids, g_camids=g_camids)


def _rgb_pairs(rng, pids, num_missing):
    """(pid, cam) pairs with images, dropping ``num_missing`` pairs but keeping >= 1 camera per id."""
    pairs = [(pid, cam) for pid in pids for cam in MODES["all"]]
    cams_left = {pid: len(MODES["all"]) for pid in pids}
    missing = set()
    for i in rng.permutation(len(pairs)):
        pid = pairs[i][0]
        if len(missing) < num_missing and cams_left[pid] > 1:
            missing.add(i)
            cams_left[pid] -= 1
    return [pair for i, pair in enumerate(pairs) if i not in missing]


def _expand(pairs, counts):
    pids = np.repeat([pid for pid, _ in pairs], counts)
    camids = np.repeat([cam for _, cam in pairs], counts)
    return pids, camids


def l2_normalise(feats: np.ndarray) -> np.ndarray:
    feats = np.asarray(feats, dtype=np.float32)
    return feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)


def images_per_pair(g_pids: np.ndarray, g_camids: np.ndarray) -> Dict:
    """{(pid, cam): pool indices in pool order} -- the sorted file list of one id folder."""
    groups: Dict = {}
    for index, key in enumerate(zip(g_pids.tolist(), g_camids.tolist())):
        groups.setdefault(key, []).append(index)
    return groups


def draw_gallery(groups: Dict, cams, trial: int) -> np.ndarray:
    """The official single-shot draw: one random image per (id, camera), seeded by the trial."""
    random.seed(trial)
    picks = []
    for pid in sorted({pid for pid, _ in groups}):
        for cam in cams:
            if (pid, cam) in groups:
                picks.append(random.choice(groups[(pid, cam)]))
    return np.asarray(picks)


class Protocol:
    """Normalised features and the per-(id, camera) image lists, prepared once (not timed)."""

    def __init__(self, data: Dict):
        self.q_feats, self.g_pool = l2_normalise(data["q_feats"]), l2_normalise(data["g_feats"])
        self.q_pids, self.q_camids = np.asarray(data["q_pids"]), np.asarray(data["q_camids"])
        self.g_pids, self.g_camids = np.asarray(data["g_pids"]), np.asarray(data["g_camids"])
        self.groups = images_per_pair(self.g_pids, self.g_camids)

    def distmat(self, gallery: np.ndarray) -> np.ndarray:
        return -(self.q_feats @ self.g_pool[gallery].T)

    def evaluate(self, distmat: np.ndarray, gallery: np.ndarray):
        return eval_sysu(distmat, self.q_pids, self.g_pids[gallery], self.q_camids, self.g_camids[gallery])

    def run(self, trials: int):
        """All modes and trials: the results per mode, and the [wall, CPU] seconds of each part."""
        results: Dict[str, List] = {mode: [] for mode in MODES}
        matmul, total = np.zeros(2), np.zeros(2)
        for mode, cams in MODES.items():
            for trial in range(trials):
                start = _clock()
                gallery = draw_gallery(self.groups, cams, trial)
                before = _clock()
                distmat = self.distmat(gallery)
                matmul += _clock() - before
                results[mode].append((len(gallery), self.evaluate(distmat, gallery)))
                total += _clock() - start
        return results, {"total": total, "distance matmul": matmul, "draw + eval_sysu": total - matmul}


def _clock() -> np.ndarray:
    return np.array([time.perf_counter(), time.process_time()])


def time_single(protocol: Protocol):
    """eval_sysu vs fast-reid's pure-python ``evaluate_rank`` once on the all-search trial-0 distmat."""
    from fastreid.evaluation.rank import evaluate_rank

    gallery = draw_gallery(protocol.groups, MODES["all"], 0)
    distmat = protocol.distmat(gallery)
    tic = time.perf_counter()
    protocol.evaluate(distmat, gallery)
    ours = time.perf_counter() - tic
    tic = time.perf_counter()
    evaluate_rank(distmat, protocol.q_pids, protocol.g_pids[gallery], protocol.q_camids,
                  protocol.g_camids[gallery], max_rank=20, use_metric_cuhk03=False, use_cython=False)
    return ours, time.perf_counter() - tic, distmat.shape


def main():
    args = parse_args()
    if args.features:
        with np.load(args.features) as npz:
            data = {key: npz[key] for key in FEATURE_KEYS}
        source = str(args.features)
    else:
        data = synthetic_features(args.seed)
        source = f"synthetic SYSU-like features (seed {args.seed})"
    print(f"features: {source}; queries {len(data['q_pids'])}, RGB pool {len(data['g_pids'])}, "
          f"dim {data['q_feats'].shape[1]}")

    protocol = Protocol(data)
    runs = [protocol.run(args.trials) for _ in range(args.repeats)]
    results, seconds = min(runs, key=lambda run: run[1]["total"][0])
    num_evals = sum(len(trials) for trials in results.values())
    walls = ", ".join(f"{run[1]['total'][0]:.3f}" for run in runs)
    print(f"{num_evals} evaluations ({args.trials} trials x {len(MODES)} modes); total wall time of the "
          f"{args.repeats} runs: {walls} s. Best run:")
    for part, (wall, cpu) in seconds.items():
        print(f"  {part:17s} wall {wall:.3f} s = {1e3 * wall / num_evals:6.1f} ms per evaluation "
              f"(process CPU time {cpu:.3f} s = {1e3 * cpu / num_evals:6.1f} ms)")
    for mode, trials in results.items():
        summary = summarize_trials([result for _, result in trials])
        sizes = sorted({size for size, _ in trials})
        print(f"  {mode:6s} gallery size {sizes}: Rank-1 {summary['Rank-1']:.2f} "
              f"(std {summary['Rank-1_std']:.2f}), mAP {summary['mAP']:.2f}, mINP {summary['mINP']:.2f}")

    ours, fastreid, shape = time_single(protocol)
    print(f"one evaluation of a {shape[0]}x{shape[1]} distmat: eval_sysu {1e3 * ours:.1f} ms, "
          f"fast-reid evaluate_rank(use_cython=False) {1e3 * fastreid:.1f} ms")


if __name__ == "__main__":
    main()
