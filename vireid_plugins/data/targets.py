"""What an epoch trains on: :class:`TrainTargets`, the one object passed from label producers to consumers.

Producers and consumers, before every epoch (see :mod:`vireid_plugins.engine.build` for the hook order):

1. the pseudo-label hook builds it from the clustering (one label space per modality), or the trainer from the
   dataset's identities (supervised training);
2. association hooks (DOTLA, MULT, ...) return a transformed copy: cross-modality labels, soft tables, branches;
3. the criterion receives it through ``criterion.set_targets(targets, features)`` and the loader hook builds the
   epoch's train set from it (:meth:`TrainTargets.samples`).

Vocabulary:

* **items**: the ``N`` training images ``(path, pid, camid, modality)``; ``pid`` is read only for diagnostics.
* **label space**: a named set of ``K`` classes (:class:`LabelSpace`) with a label for each item (``-1``: none),
  optional soft targets ``(N, K)`` and, for multi-token models, per-token labels ``(T, N)``. Its ``modality`` is
  the modality whose clustering defined the classes (``None`` for a space shared by both).
* **branch**: a label space the train set is drawn from. Every item with a label in a branch's space is one
  training sample of that branch; a batch element carries its ``branch`` (index into :attr:`TrainTargets.branches`)
  and ``item`` index, so no loss re-derives either from a dataset index.
* **pairing**: how the dual-modality sampler pairs labels across modalities (``"shared"``: a label holds images of
  both modalities; ``"independent"``: each modality draws its own labels; ``"auto"``).
* **extras**: per-epoch data a method's association hook makes for the same method's criterion (e.g. neighbour
  sets, cluster matchings), keyed by a name the method documents.
"""
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from .datasets.bases import INFRARED, MODALITY_NAMES, VISIBLE, Item

__all__ = ["LabelSpace", "TrainTargets"]


@dataclass
class LabelSpace:
    """``K`` classes and the label of every item in them.

    Attributes:
        labels: ``(N,)`` int64, the class of each item in ``0..K-1``, ``-1`` for none.
        num_classes: ``K``.
        modality: the modality whose clusters define the classes, or ``None``.
        soft: optional ``(N, K)`` float target distributions (all-zero rows for unlabelled items).
        token_labels: optional ``(T, N)`` int64 per-token cluster labels (multi-token models).
    """

    labels: torch.Tensor
    num_classes: int
    modality: Optional[int] = None
    soft: Optional[torch.Tensor] = None
    token_labels: Optional[torch.Tensor] = None

    def __post_init__(self):
        self.labels = torch.as_tensor(self.labels, dtype=torch.long)
        if self.labels.dim() != 1:
            raise ValueError(f"LabelSpace: labels must be (N,), got shape {tuple(self.labels.shape)}")
        if self.labels.numel() and (int(self.labels.min()) < -1 or int(self.labels.max()) >= self.num_classes):
            raise ValueError(f"LabelSpace: labels must lie in -1..{self.num_classes - 1}, got "
                             f"{int(self.labels.min())}..{int(self.labels.max())}")
        if self.soft is not None and tuple(self.soft.shape) != (len(self.labels), self.num_classes):
            raise ValueError(f"LabelSpace: soft targets must be (N, K) = ({len(self.labels)}, {self.num_classes}), "
                             f"got {tuple(self.soft.shape)}")

    def cluster_sizes(self, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``(K,)`` number of labelled items per class, counting only ``mask`` (``(N,)`` bool) when given."""
        labels = self.labels if mask is None else self.labels[mask]
        return torch.bincount(labels[labels >= 0], minlength=self.num_classes)


@dataclass
class TrainTargets:
    """Items, label spaces, the branches the train set is drawn from and their pairing (module docstring).

    Attributes:
        items: the ``N`` training items.
        spaces: ``{name: LabelSpace}``.
        branches: names of the spaces the train set is drawn from, in branch-index order.
        pairing: ``"shared"``, ``"independent"`` or ``"auto"`` (the dual-modality sampler's pairing).
        epoch: the epoch these targets were made for.
        extras: ``{name: object}`` method-specific per-epoch data (see the module docstring).
    """

    items: List[Item]
    spaces: Dict[str, LabelSpace]
    branches: Tuple[str, ...]
    pairing: str = "auto"
    epoch: int = 0
    extras: Dict[str, Any] = field(default_factory=dict)
    modality: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self):
        self.items = list(self.items)
        self.branches = tuple(self.branches)
        self.modality = torch.tensor([int(it[3]) for it in self.items], dtype=torch.long)
        missing = [b for b in self.branches if b not in self.spaces]
        if missing or not self.branches:
            raise ValueError(f"TrainTargets: branches {list(self.branches)} must name spaces of {list(self.spaces)}")
        for name, space in self.spaces.items():
            if len(space.labels) != len(self.items):
                raise ValueError(f"TrainTargets: space {name!r} labels {len(space.labels)} items, "
                                 f"not {len(self.items)}")

    # ---------------------------------------------------------------- constructors
    @classmethod
    def from_identities(cls, items: Sequence[Item], pairing: str = "auto", epoch: int = 0) -> "TrainTargets":
        """Supervised training: one space ``"identity"`` of the items' pids relabelled to ``0..C-1``."""
        pids = sorted({int(it[1]) for it in items})
        index = {p: i for i, p in enumerate(pids)}
        labels = torch.tensor([index[int(it[1])] for it in items], dtype=torch.long)
        return cls(items, {"identity": LabelSpace(labels, len(pids))}, ("identity",), pairing, epoch)

    @classmethod
    def from_modality_clusters(cls, items: Sequence[Item], labels: Dict[int, torch.Tensor], epoch: int = 0,
                               token_labels: Optional[Dict[int, torch.Tensor]] = None) -> "TrainTargets":
        """Per-modality clustering: a space per modality (named as in ``MODALITY_NAMES``) labelling only that
        modality's items, both spaces as branches, independent pairing.

        Args:
            labels: ``{modality: (N_m,)}`` cluster labels of the modality's items, in item order (``-1`` outlier).
            token_labels: optional ``{modality: (T, N_m)}`` per-token cluster labels.
        """
        modality = torch.tensor([int(it[3]) for it in items], dtype=torch.long)
        spaces = {}
        for m, name in MODALITY_NAMES.items():
            mask = modality == m
            full = torch.full((len(items),), -1, dtype=torch.long)
            full[mask] = torch.as_tensor(labels[m], dtype=torch.long)
            tokens = None
            if token_labels is not None:
                per_token = torch.as_tensor(token_labels[m], dtype=torch.long)
                tokens = torch.full((per_token.shape[0], len(items)), -1, dtype=torch.long)
                tokens[:, mask] = per_token
            spaces[name] = LabelSpace(full, int(full.max()) + 1, m, token_labels=tokens)
        return cls(items, spaces, tuple(MODALITY_NAMES.values()), "independent", epoch)

    # ---------------------------------------------------------------- views
    def mask(self, modality: int) -> torch.Tensor:
        """``(N,)`` bool: items of ``modality``."""
        return self.modality == modality

    def own_labels(self, name: str) -> torch.Tensor:
        """``(N_m,)`` labels of the space's own modality's items (the clustering it came from)."""
        space = self.spaces[name]
        if space.modality is None:
            raise ValueError(f"TrainTargets: space {name!r} belongs to no modality")
        return space.labels[self.mask(space.modality)]

    def cross_labels(self, name: str) -> torch.Tensor:
        """``(N_o,)`` labels in space ``name`` of the items of the *other* modality (``-1``: not associated)."""
        space = self.spaces[name]
        return space.labels[self.mask(other_modality(space.modality))]

    def samples(self) -> Tuple[List[int], List[int], List[int]]:
        """The train set: ``(item, branch, label)`` lists, one entry per item labelled in each branch's space."""
        items, branches, labels = [], [], []
        for b, name in enumerate(self.branches):
            labelled = torch.nonzero(self.spaces[name].labels >= 0, as_tuple=True)[0]
            items.extend(labelled.tolist())
            branches.extend([b] * len(labelled))
            labels.extend(self.spaces[name].labels[labelled].tolist())
        return items, branches, labels

    def replace(self, **changes) -> "TrainTargets":
        """A copy with ``changes`` (dataclass fields), e.g. new ``spaces``, ``branches`` or ``pairing``."""
        return replace(self, **changes)


def other_modality(modality: Optional[int]) -> int:
    if modality not in (VISIBLE, INFRARED):
        raise ValueError(f"expected modality {VISIBLE} or {INFRARED}, got {modality!r}")
    return INFRARED if modality == VISIBLE else VISIBLE
