"""The LLCM cross-modality evaluator (protocol of :mod:`vireid_plugins.data.datasets.llcm`)."""
import numpy as np

from ..data.datasets.bases import INFRARED, VISIBLE
from .build import EVALUATOR_REGISTRY
from .cross_modality import CrossModalityEvaluator
from .rank import eval_llcm, llcm_removed

__all__ = ["LLCMEvaluator", "V2I_SCORINGS"]

V2I_SCORINGS = ("transposed", "direct")


@EVALUATOR_REGISTRY.register()
class LLCMEvaluator(CrossModalityEvaluator):
    """LLCM: infrared->visible and visible->infrared against ``DATASETS.LLCM.NUM_TRIALS`` random galleries.

    Every test image of both modalities is extracted once; each trial's gallery is the official draw
    (:meth:`~vireid_plugins.data.datasets.LLCM.sample_gallery`). ``i2v`` ranks the drawn visible gallery for
    every infrared query. ``v2i`` follows ``DATASETS.LLCM.V2I_SCORING``: ``"transposed"`` scores it as the
    authors' ``test.py`` does (it evaluates the transposed distance matrix, so each drawn *infrared* image
    ranks every visible test image), ``"direct"`` as their ``train.py`` (visible queries rank the drawn
    infrared gallery).
    """

    def __init__(self, cfg, dataset):
        scoring = cfg.DATASETS.LLCM.V2I_SCORING
        if scoring not in V2I_SCORINGS:
            raise ValueError(f"DATASETS.LLCM.V2I_SCORING: unknown value {scoring!r}; expected one of {V2I_SCORINGS}")
        visible, infrared = dataset.test_visible, dataset.test_infrared
        items = visible + infrared
        position = {it[0]: i for i, it in enumerate(items)}
        every = {VISIBLE: np.arange(len(visible)), INFRARED: np.arange(len(visible), len(items))}
        runs = {}
        for mode, galleries in dataset.trial_galleries(tuple(cfg.DATASETS.LLCM.MODES),
                                                       cfg.DATASETS.LLCM.NUM_TRIALS).items():
            queries = every[INFRARED if mode == "i2v" else VISIBLE]
            drawn = [np.asarray([position[it[0]] for it in gallery]) for gallery in galleries]
            transposed = mode == "v2i" and scoring == "transposed"
            runs[mode] = [(g, queries) if transposed else (queries, g) for g in drawn]
        super().__init__(items, runs)
        self.max_rank = min([self.max_rank] + [self._rankable(q, g) for rs in runs.values() for q, g in rs])

    def removed(self, query, gallery) -> np.ndarray:
        return llcm_removed(self.pids[query], self.pids[gallery], self.camids[query], self.camids[gallery])

    def _rankable(self, query, gallery) -> int:
        """Distinct identities every query keeps: a query loses its own identity when all of that identity's
        gallery images come from the query's camera (the deduplicated CMC cannot be longer)."""
        g_pids, g_cams, q_pids, q_cams = self.pids[gallery], self.camids[gallery], self.pids[query], self.camids[query]
        base = int(max(g_cams.max(), q_cams.max())) + 1
        ids, id_counts = np.unique(g_pids, return_counts=True)
        pairs, pair_counts = np.unique(g_pids * base + g_cams, return_counts=True)
        lost = (_count_of(q_pids, ids, id_counts) > 0) & (
            _count_of(q_pids * base + q_cams, pairs, pair_counts) == _count_of(q_pids, ids, id_counts))
        return len(ids) - int(lost.any())

    def rank(self, distmat, query, gallery):
        return eval_llcm(distmat, self.pids[query], self.pids[gallery], self.camids[query], self.camids[gallery],
                         max_rank=self.max_rank)


def _count_of(values: np.ndarray, keys: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``counts[keys == v]`` for every ``v`` of ``values`` (0 where absent); ``keys`` sorted and unique."""
    pos = np.minimum(np.searchsorted(keys, values), len(keys) - 1)
    return np.where(keys[pos] == values, counts[pos], 0)
