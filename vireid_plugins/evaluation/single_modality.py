"""fast-reid's ``ReidEvaluator`` for datasets without a cross-modality protocol (e.g. ``Market1501``).

The query and gallery of the dataset are extracted once, in order, as visible items (their batches carry the
modality, so two-stream models route them through the visible stem), and ranked by fast-reid's
``evaluate_rank`` (one query/gallery split, same-camera matches of a query's identity dropped, ``TEST.METRIC``,
``TEST.AQE``, ``TEST.RERANK``). Results are fast-reid's keys ``Rank-1/5/10``, ``mAP``, ``mINP``, ``metric``
(x100). Per-token ``(B, T, D)`` features are compared by their concatenation.
"""
from fastreid.evaluation import ReidEvaluator

from ..data.datasets.bases import VISIBLE
from .build import EVALUATOR_REGISTRY

__all__ = ["SingleModalityEvaluator"]


@EVALUATOR_REGISTRY.register()
class SingleModalityEvaluator(ReidEvaluator):
    """``ReidEvaluator`` over ``dataset.query + dataset.gallery``; ``items`` are the images to extract."""

    def __init__(self, cfg, dataset):
        query = [(path, int(pid), int(camid), VISIBLE) for path, pid, camid, *_ in dataset.query]
        gallery = [(path, int(pid), int(camid), VISIBLE) for path, pid, camid, *_ in dataset.gallery]
        super().__init__(cfg, num_query=len(query))
        self.items = query + gallery

    def process(self, inputs, outputs):
        super().process(inputs, outputs.flatten(1))
