"""Per-epoch pseudo-labels for unsupervised VI-ReID (``PSEUDO.*``; methods-agnostic).

Before every epoch that is due (every ``PSEUDO.PERIOD`` epochs, and whenever no labels exist yet),
:class:`PseudoLabelHook`

1. extracts the flip-averaged, L2-normalised features of every training image on every rank (each modality
   through its own stem; ``(N, D)`` per image or ``(N, T, D)`` per token);
2. on the main process, clusters each modality (k-reciprocal Jaccard + DBSCAN,
   :func:`vireid_plugins.association.cluster_features`) on the image-level feature and, with ``PSEUDO.PER_TOKEN``,
   on every token too; logs cluster quality against the true pids (diagnostics only);
3. broadcasts the labels, so every rank trains on identical pseudo-labels;
4. installs :class:`~vireid_plugins.data.targets.TrainTargets` with one label space per modality through
   ``trainer.set_targets(targets, features)`` (the criterion rebuilds its memories or classifiers). In epochs that
   are not due it re-installs the same labels without features (memories and classifiers carry on). The targets of
   an epoch that clustered carry the features (``extras["features"]``, every rank) and, on the main process, the
   sparse Jaccard graphs the clustering used (``extras["jaccard"] = {modality: (item indices (n,), NeighbourGraph
   over them)}``), for association hooks that build on the same features and distances.

The labels are part of the checkpoint (the hook is a checkpointable), so ``--resume`` continues with the
labels and memories the interrupted run had. Features that are not finite are an error naming the modality and
the count (``PSEUDO.NON_FINITE "error"``) or are left unclustered with a warning (``"drop"``).
"""
import logging
import os
from contextlib import nullcontext
from typing import List, Optional

import numpy as np
import torch
from fastreid.engine.train_loop import HookBase
from fastreid.utils import comm
from tabulate import tabulate

from ..association import cluster_features, pseudo_label_metrics
from ..data import build_vireid_test_loader
from ..data.datasets.bases import MODALITY_NAMES, Item
from ..data.targets import TrainTargets
from ..evaluation import extract_features
from ..modeling.features import image_features, normalize_features, num_tokens
from ..modeling.meta_arch import raw_test_features
from .comm_utils import broadcast_from_main

__all__ = ["PseudoLabelHook", "extract_item_features"]

logger = logging.getLogger("fastreid.vireid.pseudo_labels")


def extract_item_features(cfg, model, items: List[Item], normalize: bool = True) -> torch.Tensor:
    """``(N, D)`` or ``(N, T, D)`` flip-averaged (``PSEUDO.FLIP``) features of ``items`` in item order, on every rank,
    extracted modality by modality; L2-normalised over the last dimension, or raw BN-neck features when
    ``normalize`` is False."""
    modalities = np.asarray([it[3] for it in items])
    parts = {}
    with raw_test_features(model) if not normalize else nullcontext():
        for m, name in MODALITY_NAMES.items():
            index = np.flatnonzero(modalities == m)
            if index.size:
                loader = build_vireid_test_loader(cfg, [items[i] for i in index])
                parts[m] = (index, extract_features(model, loader, flip=cfg.PSEUDO.FLIP, desc=f"features ({name})",
                                                    normalize=normalize))
    first = next(iter(parts.values()))[1]
    out = first.new_empty(len(items), *first.shape[1:])
    for index, feats in parts.values():
        out[torch.from_numpy(index)] = feats
    return out


class PseudoLabelHook(HookBase):
    """Re-cluster the training set every ``PSEUDO.PERIOD`` epochs (see the module docstring).

    Args:
        cfg: the full config (``PSEUDO.*``).
        items: every training item ``(path, pid, camid, modality)``; pids are read only for diagnostics.
    """

    def __init__(self, cfg, items: List[Item]):
        self.cfg = cfg
        self.items = list(items)
        self.modalities = np.asarray([it[3] for it in self.items])
        self.true_pids = np.asarray([it[1] for it in self.items])
        self.masks = {m: torch.from_numpy(self.modalities == m) for m in MODALITY_NAMES}
        self.labels: Optional[torch.Tensor] = None  # (N,) per-modality cluster ids, -1 = unused
        self.token_labels: Optional[torch.Tensor] = None  # (T, N) per-token cluster ids (PSEUDO.PER_TOKEN)
        self.labelled_epoch = -1
        self.graphs = {}  # {modality: (item indices, Jaccard graph)} of this epoch's clustering (main process)

    def _due(self, epoch: int) -> bool:
        return self.labels is None or (epoch % self.cfg.PSEUDO.PERIOD == 0 and epoch != self.labelled_epoch)

    def before_epoch(self):
        epoch = self.trainer.epoch
        self.graphs = {}
        features = self.update(epoch) if self._due(epoch) else None
        targets = self.targets(epoch)
        if features is not None:
            targets.extras["features"] = features
        if self.graphs:
            targets.extras["jaccard"] = self.graphs
        self.trainer.set_targets(targets, features)

    def targets(self, epoch: int) -> TrainTargets:
        """The current labels as per-modality label spaces."""
        labels = {m: self.labels[mask] for m, mask in self.masks.items()}
        tokens = (None if self.token_labels is None
                  else {m: self.token_labels[:, mask] for m, mask in self.masks.items()})
        return TrainTargets.from_modality_clusters(self.items, labels, epoch, tokens)

    # ---------------------------------------------------------------- work
    def _finite_rows(self, features: torch.Tensor, m: int) -> torch.Tensor:
        finite = torch.isfinite(features.flatten(1)).all(dim=1)
        bad = int((~finite).sum())
        if bad:
            name = MODALITY_NAMES[m]
            if self.cfg.PSEUDO.NON_FINITE != "drop":
                raise FloatingPointError(
                    f"pseudo-labels: {bad} of {len(finite)} {name} features are NaN or inf (the model diverged or an "
                    f"image is corrupt); set PSEUDO.NON_FINITE 'drop' to leave them unclustered")
            logger.warning(f"PSEUDO.NON_FINITE drop: {bad} of {len(finite)} {name} features are NaN or inf; "
                           "they stay unclustered this epoch")
        return finite

    def _cluster(self, features: torch.Tensor, m: int, items: torch.Tensor = None) -> torch.Tensor:
        """Labels of one modality's ``features``; with ``items`` (their item indices) keep the Jaccard graph."""
        p = self.cfg.PSEUDO
        labels = torch.full((features.shape[0],), -1, dtype=torch.long)
        finite = self._finite_rows(features, m)
        if bool(finite.any()):
            labels[finite], graph = cluster_features(
                features[finite], eps=p.EPS[m], min_samples=p.MIN_SAMPLES, k1=p.K1, k2=p.K2, outliers=p.OUTLIERS,
                chunk_size=p.CHUNK_SIZE, return_graph=True)
            if items is not None:
                self.graphs[m] = (items[finite], graph)
        if int(labels.max()) < 0:
            raise RuntimeError(
                f"pseudo-labels: every {MODALITY_NAMES[m]} image is a DBSCAN outlier; raise PSEUDO.EPS[{m}] "
                f"(now {p.EPS[m]}: the neighbourhood radius on Jaccard distances in [0, 1]) or lower "
                f"PSEUDO.MIN_SAMPLES (now {p.MIN_SAMPLES})")
        return labels

    def _cluster_all(self, features: torch.Tensor):
        labels = torch.full((len(self.items),), -1, dtype=torch.long)
        tokens = num_tokens(features) if self.cfg.PSEUDO.PER_TOKEN else 0
        token_labels = torch.full((tokens, len(self.items)), -1, dtype=torch.long) if tokens else None
        for m, mask in self.masks.items():
            labels[mask] = self._cluster(image_features(features[mask]), m, torch.nonzero(mask, as_tuple=True)[0])
            for t in range(tokens):
                token_labels[t, mask] = self._cluster(normalize_features(features[mask][:, t]), m)
        return labels, token_labels

    def update(self, epoch: int) -> torch.Tensor:
        """Cluster; returns the ``(N, D)`` / ``(N, T, D)`` normalised features the labels were computed from."""
        features = extract_item_features(self.cfg, self.trainer.model, self.items)
        result = self._cluster_all(features) if comm.is_main_process() else None
        self.labels, self.token_labels = broadcast_from_main(result)
        self.labelled_epoch = epoch
        if comm.is_main_process():
            self._report(epoch)
            self._save(epoch)
        return features

    # ---------------------------------------------------------------- reporting
    def _report(self, epoch: int):
        rows = []
        for m, name in MODALITY_NAMES.items():
            labels = self.labels[self.masks[m]].numpy()
            stats = {"num_clusters": int(labels.max()) + 1, "outlier_ratio": float((labels < 0).mean())}
            if self.cfg.PSEUDO.DIAGNOSTICS:
                stats = pseudo_label_metrics(labels, self.true_pids[self.modalities == m])
            self.trainer.label_history.log(epoch, name, stats, self.trainer.storage)
            rows.append([name] + [f"{v:.4f}" if isinstance(v, float) else v for v in stats.values()])
        logger.info(f"Pseudo-labels at epoch {epoch}:\n" + tabulate(rows, headers=["modality"] + list(stats),
                                                                  tablefmt="pipe"))

    def _save(self, epoch: int):
        if not self.cfg.OUTPUT_DIR:
            return
        folder = os.path.join(self.cfg.OUTPUT_DIR, "pseudo_labels")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"epoch_{epoch:04d}.pt")
        torch.save({"epoch": epoch, "labels": self.labels, "token_labels": self.token_labels,
                    "modalities": torch.from_numpy(self.modalities)}, path + ".tmp")
        os.replace(path + ".tmp", path)

    # ---------------------------------------------------------------- checkpointing
    def state_dict(self):
        return {"labels": self.labels, "token_labels": self.token_labels, "labelled_epoch": self.labelled_epoch}

    def load_state_dict(self, state):
        self.labels, self.labelled_epoch = state["labels"], state["labelled_epoch"]
        self.token_labels = state.get("token_labels")
