"""The base class of every training criterion (see :mod:`.build` for the call contract)."""
from typing import Dict, Optional

from torch import Tensor, nn

__all__ = ["VIReIDCriterion"]


class VIReIDCriterion(nn.Module):
    """A criterion: named losses, each multiplied by a weight from the config.

    Subclasses implement :meth:`losses` (unweighted losses) and declare ``loss_weights``, a map from loss-name
    prefixes to weights (the longest matching prefix wins; e.g. ``{"loss_cls": CE.SCALE}`` weights
    ``loss_cls_visible`` and ``loss_cls_infrared``). A loss without a weight is an error, so an ablation row is a
    config override for every loss of every method. They may override :meth:`reset` (rebuild memories or
    classifiers after a clustering) and :meth:`predict` (class predictions for association hooks).
    """

    needs_ca_view = False  # the meta-architecture also feeds a channel-exchanged copy of the visible images
    uses_triplet = False  # forward includes a triplet loss (config validation: >= 2 labels per modality per batch)

    def __init__(self, loss_weights: Dict[str, float]):
        super().__init__()
        self.loss_weights = {name: float(w) for name, w in loss_weights.items()}
        self.train_targets = None  # the epoch's TrainTargets (set_targets)

    def weight_of(self, name: str) -> float:
        matches = [prefix for prefix in self.loss_weights if name.startswith(prefix)]
        if not matches:
            raise KeyError(f"{type(self).__name__}: loss {name!r} has no weight; declared prefixes: "
                           f"{sorted(self.loss_weights)}")
        return self.loss_weights[max(matches, key=len)]

    def forward(self, outputs) -> Dict[str, Tensor]:
        return {name: self.weight_of(name) * loss for name, loss in self.losses(outputs).items()}

    def losses(self, outputs) -> Dict[str, Tensor]:
        raise NotImplementedError

    def set_targets(self, targets, features: Optional[Tensor] = None) -> None:
        """Take the epoch's :class:`~vireid_plugins.data.targets.TrainTargets`; with ``features`` (the ``(N, D)`` or
        ``(N, T, D)`` L2-normalised features of ``targets.items`` its label spaces were just built from), also
        :meth:`reset` the memories or classifiers."""
        self.train_targets = targets
        if features is not None:
            self.reset(targets, features)

    def reset(self, targets, features: Tensor) -> None:
        """Rebuild state that follows the label spaces (memories, classifiers); nothing by default."""

    def predict(self, features: Tensor, space: str) -> Tensor:
        """``(n, K)`` logits of ``features`` (``(n, D)``) in label space ``space``."""
        raise NotImplementedError(f"{type(self).__name__} makes no predictions in label space {space!r}")
