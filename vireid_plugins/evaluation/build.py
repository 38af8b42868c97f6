"""Registry of cross-modality evaluators.

Call contract: a dataset class names its evaluator in ``EVALUATOR``; ``EVALUATOR_REGISTRY.get(name)(cfg,
dataset)`` returns a fast-reid ``DatasetEvaluator`` exposing ``items`` (the images to extract, in order);
``build_vireid_evaluator(cfg, dataset_name) -> (data_loader, evaluator)``, the pair fast-reid's
``DefaultTrainer.build_evaluator`` returns; with ``TEST.RANKLIST.ENABLED`` the evaluator also writes rank-list
PNGs (:class:`~vireid_plugins.visualization.ranklist_writer.RankListWriter`).
"""
from fastreid.utils.registry import Registry

__all__ = ["EVALUATOR_REGISTRY", "build_vireid_evaluator"]

EVALUATOR_REGISTRY = Registry("VIREID_EVALUATOR")
EVALUATOR_REGISTRY.__doc__ = __doc__


def build_vireid_evaluator(cfg, dataset_name: str):
    from ..data.build import build_vireid_dataset, build_vireid_test_loader
    from ..visualization.ranklist_writer import RankListWriter

    dataset = build_vireid_dataset(cfg, dataset_name)
    evaluator_name = getattr(dataset, "EVALUATOR", None)
    if evaluator_name is None:
        raise NotImplementedError(f"dataset {dataset_name!r} names no cross-modality EVALUATOR")
    evaluator = EVALUATOR_REGISTRY.get(evaluator_name)(cfg, dataset)
    evaluator.ranklist = RankListWriter.from_config(cfg, dataset_name, evaluator)  # None unless TEST.RANKLIST.ENABLED
    return build_vireid_test_loader(cfg, evaluator.items), evaluator
