"""fast-reid ``DatasetEvaluator``s for the SYSU-MM01 and RegDB cross-modality protocols.

Both extract the features of every test image once (query set and the union of all galleries), then
rank each (mode, trial) pair with the official metrics of :mod:`vireid_plugins.evaluation.rank` and
report mean and std over trials, ×100, under keys ``"<mode>/<metric>"``, e.g. ``"all/Rank-1"`` or
``"v2t/mAP_std"``, plus ``"metric" = (Rank-1 + mAP) / 2`` of the first mode for fast-reid's best-model
logic (used only where ``TEST.SELECT_ON_TEST`` allows it).
"""
from collections import OrderedDict
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

from ..data.datasets.bases import Item
from ..modeling.features import image_features
from .build import EVALUATOR_REGISTRY
from .features import FeatureCollector
from .rank import eval_cross_camera, eval_regdb, eval_sysu, llcm_removed, summarize_trials, sysu_removed

__all__ = ["CrossModalityEvaluator", "SYSUEvaluator", "RegDBEvaluator"]

Run = Tuple[np.ndarray, np.ndarray]  # (query item indices, gallery item indices)


class CrossModalityEvaluator(FeatureCollector):
    """Extract every test item once, then evaluate ``runs = {mode: [(query_idx, gallery_idx), ...]}``."""

    ranklist = None  # TEST.RANKLIST: called as ranklist(self, mode, trial, query, gallery, distmat) on each run

    def __init__(self, items: Sequence[Item], runs: Dict[str, List[Run]], max_rank: int = 20):
        super().__init__(len(items))
        self.items, self.runs, self.max_rank = list(items), runs, max_rank
        self.pids = np.asarray([it[1] for it in self.items])
        self.camids = np.asarray([it[2] for it in self.items])

    def rank(self, distmat: np.ndarray, query: np.ndarray, gallery: np.ndarray):
        raise NotImplementedError

    def removed(self, query: np.ndarray, gallery: np.ndarray):
        """``(num_q, num_g)`` bool of the gallery items the protocol drops for each query; ``None``: none."""
        return None

    def evaluate(self):
        feats = self.features()
        if feats is None:  # not the main process
            return None
        feats = image_features(feats)  # per-token features are compared by their concatenation
        results = OrderedDict()
        for mode, runs in self.runs.items():
            scores = []
            for trial, (query, gallery) in enumerate(runs):
                distmat = -(feats[torch.as_tensor(query)] @ feats[torch.as_tensor(gallery)].T).numpy()
                scores.append(self.rank(distmat, query, gallery))
                if self.ranklist is not None:
                    self.ranklist(self, mode, trial, query, gallery, distmat)
            for key, value in summarize_trials(scores).items():
                results[f"{mode}/{key}"] = value
        first = next(iter(self.runs))
        results["metric"] = (results[f"{first}/Rank-1"] + results[f"{first}/mAP"]) / 2
        return results


@EVALUATOR_REGISTRY.register()
class SYSUEvaluator(CrossModalityEvaluator):
    """SYSU-MM01: infrared queries against ``DATASETS.SYSU.NUM_TRIALS`` random visible galleries per mode.

    With ``DATASETS.SYSU.WITHIN_MODALITY`` it also reports modes ``v2v`` and ``i2i`` (visible->visible and
    infrared->infrared on the test ids, :meth:`SYSUMM01.within_modality_runs`, Market-1501 rule).
    """

    def __init__(self, cfg, dataset):
        modes, num_trials = tuple(cfg.DATASETS.SYSU.MODES), cfg.DATASETS.SYSU.NUM_TRIALS
        shot, within = cfg.DATASETS.SYSU.GALLERY_SHOT, cfg.DATASETS.SYSU.WITHIN_MODALITY
        query, pool = dataset.query, dataset.gallery_pool(modes + (("all",) if within else ()))
        position = {it[0]: i for i, it in enumerate(query + pool)}

        def indices(items):
            return np.asarray([position[it[0]] for it in items])

        query_idx = indices(query)
        runs = {mode: [(query_idx, indices(gallery)) for gallery in galleries]
                for mode, galleries in dataset.trial_galleries(modes, num_trials, shot).items()}
        if within:
            for mode, (queries, galleries) in dataset.within_modality_runs(num_trials, shot).items():
                runs[mode] = [(indices(queries), indices(gallery)) for gallery in galleries]
        super().__init__(query + pool, runs)
        self.modalities = np.asarray([it[3] for it in self.items])
        self.max_rank = min([self.max_rank] + [self._rankable(q, g) for rs in runs.values() for q, g in rs])

    def _rankable(self, query, gallery) -> int:
        """Distinct identities every query keeps: the deduplicated CMC cannot be longer (small test sets)."""
        g_pids, g_cams = self.pids[gallery], self.camids[gallery]
        kept = [g_pids] + ([g_pids[g_cams != 2]] if (self.camids[query] == 3).any() else [])
        return min(len(np.unique(k)) for k in kept)

    def _same_modality(self, query, gallery) -> bool:
        """Within-modality runs (``DATASETS.SYSU.WITHIN_MODALITY``) use the Market-1501 same-camera rule."""
        return np.union1d(self.modalities[query], self.modalities[gallery]).size == 1

    def removed(self, query, gallery):
        rule = llcm_removed if self._same_modality(query, gallery) else sysu_removed
        return rule(self.pids[query], self.pids[gallery], self.camids[query], self.camids[gallery])

    def rank(self, distmat, query, gallery):
        metric = eval_cross_camera if self._same_modality(query, gallery) else eval_sysu
        return metric(distmat, self.pids[query], self.pids[gallery], self.camids[query], self.camids[gallery],
                      max_rank=self.max_rank)


@EVALUATOR_REGISTRY.register()
class RegDBEvaluator(CrossModalityEvaluator):
    """RegDB: visible->thermal and thermal->visible on the test split of ``DATASETS.REGDB.TRIAL``."""

    def __init__(self, cfg, dataset):
        visible, thermal = dataset.test_visible, dataset.test_thermal
        visible_idx = np.arange(len(visible))
        thermal_idx = np.arange(len(visible), len(visible) + len(thermal))
        pairs = {"v2t": (visible_idx, thermal_idx), "t2v": (thermal_idx, visible_idx)}
        super().__init__(visible + thermal, {mode: [pairs[mode]] for mode in cfg.DATASETS.REGDB.MODES})

    def rank(self, distmat, query, gallery):
        return eval_regdb(distmat, self.pids[query], self.pids[gallery], max_rank=self.max_rank)
