"""Registry of evaluators: the datasets' protocols.

Call contract: a dataset class names its evaluator in ``EVALUATOR`` (the cross-modality protocols: SYSU-MM01,
RegDB, LLCM); a dataset that names none (fast-reid's single-modality datasets, e.g. ``Market1501``) gets
``SingleModalityEvaluator`` (fast-reid's ``ReidEvaluator``). ``EVALUATOR_REGISTRY.get(name)(cfg, dataset)`` returns a
fast-reid ``DatasetEvaluator`` exposing ``items`` (the images to extract, in order);
``build_vireid_evaluator(cfg, dataset_name) -> (data_loader, evaluator)``, the pair fast-reid's
``DefaultTrainer.build_evaluator`` returns (``vireid_plugins.compat`` makes fast-reid's own trainer use it for the
datasets that name an evaluator); with ``TEST.RANKLIST.ENABLED`` the cross-modality evaluators also write rank-list
PNGs (:class:`~vireid_plugins.visualization.ranklist_writer.RankListWriter`).
"""
from fastreid.utils.registry import Registry

__all__ = ["EVALUATOR_REGISTRY", "DEFAULT_EVALUATOR", "build_vireid_evaluator"]

DEFAULT_EVALUATOR = "SingleModalityEvaluator"  # for datasets that name no EVALUATOR

EVALUATOR_REGISTRY = Registry("VIREID_EVALUATOR")
EVALUATOR_REGISTRY.__doc__ = __doc__


def build_vireid_evaluator(cfg, dataset_name: str):
    from ..data.build import build_vireid_dataset, build_vireid_test_loader
    from ..visualization.ranklist_writer import RankListWriter

    dataset = build_vireid_dataset(cfg, dataset_name)
    evaluator = EVALUATOR_REGISTRY.get(getattr(dataset, "EVALUATOR", None) or DEFAULT_EVALUATOR)(cfg, dataset)
    if hasattr(evaluator, "runs"):  # cross-modality protocols; set-up refuses TEST.RANKLIST for the others
        evaluator.ranklist = RankListWriter.from_config(cfg, dataset_name, evaluator)  # None unless enabled
    return build_vireid_test_loader(cfg, evaluator.items), evaluator
