"""Feature extraction through fast-reid's ``inference_on_dataset``.

:class:`FeatureCollector` is a fast-reid ``DatasetEvaluator`` that keeps the model outputs with each item's
``index`` and returns them, gathered over ranks, in dataset order and L2-normalised over the last dimension
(any trailing shape: ``(N, D)`` per image or ``(N, T, D)`` per token). Flip test is done by
``inference_on_dataset`` (our meta-architectures normalise images out of place, so the flipped view is
correct) and features are averaged over the two views before normalisation, as the reference code does.
"""
import logging

import torch
import torch.nn.functional as F
from fastreid.evaluation.evaluator import DatasetEvaluator, inference_on_dataset
from fastreid.utils import comm
from tqdm import tqdm

__all__ = ["FeatureCollector", "extract_features"]

logger = logging.getLogger("fastreid.vireid.features")


class FeatureCollector(DatasetEvaluator):
    """Collect ``(index, feature)`` pairs; :meth:`features` returns an ``(N, *F)`` float32 CPU tensor.

    Args:
        num_items: N, the dataset length (checked after gathering).
        all_ranks: gather to every rank (``all_gather``) rather than to the main process only.
        normalize: L2-normalise the returned features.
    """

    def __init__(self, num_items: int, all_ranks: bool = False, normalize: bool = True):
        self.num_items, self.all_ranks, self.normalize = num_items, all_ranks, normalize
        self.reset()

    def reset(self):
        self._indices, self._feats = [], []

    def process(self, inputs, outputs):
        self._indices.append(inputs["index"].cpu())
        self._feats.append(outputs.detach().float().cpu())

    def features(self):
        """``(N, *F)`` features in dataset order, L2-normalised over the last dimension unless ``normalize`` is off
        (``None`` on non-main ranks unless all_ranks)."""
        local = (torch.cat(self._indices), torch.cat(self._feats))
        if comm.get_world_size() > 1:
            parts = comm.all_gather(local) if self.all_ranks else comm.gather(local)
            if not parts:
                return None
            local = (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))
        indices, feats = local
        out = feats.new_empty(self.num_items, *feats.shape[1:])
        out[indices] = feats
        if torch.unique(indices).numel() != self.num_items:
            raise RuntimeError(f"FeatureCollector: got features for {torch.unique(indices).numel()} of "
                               f"{self.num_items} items")
        return F.normalize(out, dim=-1) if self.normalize else out

    def evaluate(self):
        return None


class _ProgressLoader:
    """A loader seen through a tqdm progress bar (main process only)."""

    def __init__(self, loader, desc: str):
        self.loader, self.desc, self.dataset = loader, desc, loader.dataset

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        return iter(tqdm(self.loader, desc=self.desc, total=len(self.loader), leave=False,
                         disable=not comm.is_main_process()))


def extract_features(model, loader, flip: bool = True, all_ranks: bool = True, desc: str = "",
                     normalize: bool = True) -> torch.Tensor:
    """``(N, D)`` or ``(N, T, D)`` (flip-averaged, by default L2-normalised over the last dimension) features of
    ``loader.dataset`` in order, with a progress bar named ``desc`` when given."""
    collector = FeatureCollector(len(loader.dataset), all_ranks=all_ranks, normalize=normalize)
    inference_on_dataset(model, _ProgressLoader(loader, desc) if desc else loader, collector, flip_test=flip)
    return collector.features()
