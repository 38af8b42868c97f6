"""Per-epoch pseudo-labels: the fast-reid hook that orchestrates clustering (methods-spec §0).

Every ``PSEUDO.PERIOD`` epochs, before the epoch starts, :class:`PseudoLabelHook`

1. extracts flip-averaged, L2-normalised features of every training image, per modality (test transforms,
   progress bar; every rank extracts its shard and all ranks receive all features);
2. on the main process, clusters each modality (k-reciprocal Jaccard + DBSCAN,
   :func:`vireid_plugins.association.cluster_features`) and logs diagnostics against the true pids;
3. broadcasts the labels, so every rank trains on identical pseudo-labels;
4. rebuilds the criterion's memories / classifiers (``model.criterion.reset``) and drops optimizer state of
   resized parameters;
5. hands the labels to the trainer, whose loader hook rebuilds the train loader on them.

The labels are part of the checkpoint (the hook is a checkpointable), so ``--resume`` continues with the
labels and memories the interrupted run had.
"""
import logging
import os
from contextlib import nullcontext
from typing import Dict, List, Optional

import numpy as np
import torch
from fastreid.engine.train_loop import HookBase
from fastreid.utils import comm
from tabulate import tabulate

from ..association import cluster_features, pseudo_label_metrics
from ..data import build_vireid_test_loader
from ..data.datasets.bases import MODALITY_NAMES, Item
from ..evaluation import extract_features
from ..modeling.meta_arch import raw_test_features
from .optim import forget_stale_optimizer_state

__all__ = ["PseudoLabelHook", "broadcast_from_main", "extract_modality_features", "unwrap"]

logger = logging.getLogger("fastreid.vireid.pseudo_labels")


def broadcast_from_main(obj):
    """``obj`` of the main process, on every rank (picklable objects)."""
    if comm.get_world_size() == 1:
        return obj
    return comm.all_gather(obj if comm.is_main_process() else None)[0]


def unwrap(model):
    return model.module if hasattr(model, "module") else model


def extract_modality_features(cfg, model, items: List[Item], modalities: np.ndarray,
                              normalize: bool = True) -> Dict[int, torch.Tensor]:
    """``{modality: (N_m, D)}`` flip-averaged (``PSEUDO.FLIP``) features of the training items of each modality,
    in item order, on every rank; raw BN-neck features when ``normalize`` is False."""
    features = {}
    with raw_test_features(model) if not normalize else nullcontext():
        for m, name in MODALITY_NAMES.items():
            subset = [items[i] for i in np.flatnonzero(modalities == m)]
            loader = build_vireid_test_loader(cfg, subset)
            features[m] = extract_features(model, loader, flip=cfg.PSEUDO.FLIP, desc=f"features ({name})",
                                           normalize=normalize)
    return features


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
        self.labels: Optional[torch.Tensor] = None  # (N,) per-modality cluster ids, -1 = unused
        self.labelled_epoch = -1
        self.history: List[Dict] = []

    # ---------------------------------------------------------------- schedule
    def _due(self, epoch: int) -> bool:
        return self.labels is None or (epoch % self.cfg.PSEUDO.PERIOD == 0 and epoch != self.labelled_epoch)

    def before_epoch(self):
        epoch = self.trainer.epoch
        if self._due(epoch):
            self.update(epoch)
        self.trainer.train_items = self.items
        self.trainer.train_labels = self.labels.tolist()
        self.trainer.train_pairing = "independent"  # one label space per modality

    # ---------------------------------------------------------------- work
    def _cluster(self, features: Dict[int, torch.Tensor]) -> torch.Tensor:
        p = self.cfg.PSEUDO
        labels = torch.full((len(self.items),), -1, dtype=torch.long)
        for m in MODALITY_NAMES:
            labels[torch.from_numpy(self.modalities == m)] = cluster_features(
                features[m], eps=p.EPS[m], min_samples=p.MIN_SAMPLES, k1=p.K1, k2=p.K2, outliers=p.OUTLIERS,
                chunk_size=p.CHUNK_SIZE)
        return labels

    def update(self, epoch: int):
        features = extract_modality_features(self.cfg, self.trainer.model, self.items, self.modalities)
        labels = self._cluster(features) if comm.is_main_process() else None
        self.labels = broadcast_from_main(labels)
        self.labelled_epoch = epoch
        by_modality = {m: self.labels[torch.from_numpy(self.modalities == m)] for m in MODALITY_NAMES}
        if any(int(v.max()) < 0 for v in by_modality.values()):
            raise RuntimeError(f"pseudo-labels at epoch {epoch}: a modality has no cluster; lower PSEUDO.EPS "
                               f"({list(self.cfg.PSEUDO.EPS)}) or PSEUDO.MIN_SAMPLES ({self.cfg.PSEUDO.MIN_SAMPLES})")
        model = unwrap(self.trainer.model)
        device = next(model.parameters()).device
        model.criterion.reset(by_modality, {m: f.to(device) for m, f in features.items()})
        forget_stale_optimizer_state(self.trainer.optimizer)
        if comm.is_main_process():
            self._report(epoch, by_modality)
            self._save(epoch)

    # ---------------------------------------------------------------- reporting
    def _report(self, epoch: int, by_modality: Dict[int, torch.Tensor]):
        rows, record = [], {"epoch": epoch}
        for m, name in MODALITY_NAMES.items():
            labels = by_modality[m].numpy()
            stats = {"num_clusters": int(labels.max()) + 1, "outlier_ratio": float((labels < 0).mean())}
            if self.cfg.PSEUDO.DIAGNOSTICS:
                stats = pseudo_label_metrics(labels, self.true_pids[self.modalities == m])
            record[name] = stats
            rows.append([name] + [f"{v:.4f}" if isinstance(v, float) else v for v in stats.values()])
            for key, value in stats.items():
                self.trainer.storage.put_scalar(f"pseudo/{name}/{key}", float(value), smoothing_hint=False)
        self.history.append(record)
        headers = ["modality"] + list(record[MODALITY_NAMES[0]].keys())
        logger.info(f"Pseudo-labels at epoch {epoch}:\n" + tabulate(rows, headers=headers, tablefmt="pipe"))

    def _save(self, epoch: int):
        if not self.cfg.OUTPUT_DIR:
            return
        folder = os.path.join(self.cfg.OUTPUT_DIR, "pseudo_labels")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"epoch_{epoch:04d}.pt")
        torch.save({"epoch": epoch, "labels": self.labels, "modalities": torch.from_numpy(self.modalities)},
                   path + ".tmp")
        os.replace(path + ".tmp", path)

    # ---------------------------------------------------------------- checkpointing
    def state_dict(self):
        return {"labels": self.labels, "labelled_epoch": self.labelled_epoch, "history": self.history}

    def load_state_dict(self, state):
        self.labels, self.labelled_epoch = state["labels"], state["labelled_epoch"]
        self.history = list(state.get("history", []))
