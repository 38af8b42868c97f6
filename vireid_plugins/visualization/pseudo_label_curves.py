"""Per-epoch pseudo-label quality curves from ``RUN_DIR/pseudo_labels/history.json``.

The file is a JSON list of per-epoch records (written by the pseudo-label hook)::

    {"epoch": 3,
     "visible":  {"num_clusters": 41, "outlier_ratio": 0.47, "nmi": 0.82, "ari": 0.37, ...},
     "infrared": {"num_clusters": 31, "outlier_ratio": 0.43, ...},
     "association": {"visible->infrared": 0.11, "infrared->visible": 0.05}}

``nmi`` / ``ari`` (present when the training data has identities) and ``association`` (cross-modality
association accuracy, e.g. DOTLA's) may be absent. :func:`plot_history` draws one panel each for the cluster
count, the outlier ratio, NMI/ARI (if any record has them) and the association accuracy (if any record has
it), one line per modality / metric / direction over the epochs that report it.
"""
import json
import os
from typing import Dict, List

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

__all__ = ["MODALITIES", "load_history", "plot_history"]

MODALITIES = ("visible", "infrared")
_REQUIRED = ("num_clusters", "outlier_ratio")
_QUALITY = ("nmi", "ari")


def _number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise ValueError(f"{where} must be a finite number, got {value!r}")
    return float(value)


def load_history(path: str) -> List[Dict]:
    """The validated records of a ``history.json``, sorted by epoch (errors name the file, record and key)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"pseudo-label history {path!r} does not exist (expected RUN_DIR/pseudo_labels/"
                                "history.json, written by a run with PSEUDO.ENABLED)")
    with open(path) as f:
        try:
            history = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(history, list) or not history:
        raise ValueError(f"{path}: expected a non-empty JSON list of per-epoch records")
    for i, record in enumerate(history):
        where = f"{path}: record {i}"
        if not isinstance(record, dict) or isinstance(record.get("epoch"), bool) or not isinstance(
                record.get("epoch"), int):
            raise ValueError(f"{where} must be an object with an integer 'epoch'")
        for modality in MODALITIES:
            stats = record.get(modality)
            if not isinstance(stats, dict):
                raise ValueError(f"{where} (epoch {record['epoch']}) has no '{modality}' object")
            for key in _REQUIRED + tuple(k for k in _QUALITY if k in stats):
                if key not in stats:
                    raise ValueError(f"{where} (epoch {record['epoch']}): '{modality}' has no '{key}'")
                _number(stats[key], f"{where} (epoch {record['epoch']}): {modality}.{key}")
        association = record.get("association", {})
        if not isinstance(association, dict):
            raise ValueError(f"{where} (epoch {record['epoch']}): 'association' must be an object")
        for direction, value in association.items():
            _number(value, f"{where} (epoch {record['epoch']}): association.{direction}")
    epochs = [record["epoch"] for record in history]
    if len(set(epochs)) != len(epochs):
        raise ValueError(f"{path}: epochs {sorted(e for e in set(epochs) if epochs.count(e) > 1)} appear twice")
    return sorted(history, key=lambda record: record["epoch"])


def _series(history: List[Dict], get) -> tuple:
    """``(epochs, values)`` of the records for which ``get(record)`` is not None."""
    pairs = [(record["epoch"], get(record)) for record in history]
    pairs = [(epoch, value) for epoch, value in pairs if value is not None]
    return [p[0] for p in pairs], [float(p[1]) for p in pairs]


def plot_history(history: List[Dict], panel_size=(5.0, 3.5), dpi: int = 100) -> Figure:
    """One figure, one panel per quantity (module docstring), lines labelled ``visible``, ``infrared nmi``,
    ``visible->infrared`` etc. (colour = modality or direction, dashed = ARI); x = epoch, the same range in
    every panel."""
    colour = {m: f"C{i}" for i, m in enumerate(MODALITIES)}
    panels = [("clusters", [(m, {"color": colour[m]}, lambda r, m=m: r[m]["num_clusters"]) for m in MODALITIES]),
              ("outlier ratio", [(m, {"color": colour[m]}, lambda r, m=m: r[m]["outlier_ratio"]) for m in MODALITIES])]
    quality = [(f"{m} {k}", {"color": colour[m], "linestyle": "-" if k == "nmi" else "--"},
                lambda r, m=m, k=k: r[m].get(k)) for m in MODALITIES for k in _QUALITY
               if any(k in r[m] for r in history)]
    if quality:
        panels.append(("NMI / ARI", quality))
    directions = list(dict.fromkeys(d for r in history for d in r.get("association", {})))
    if directions:
        panels.append(("association accuracy", [(d, {"color": f"C{i + 2}"}, lambda r, d=d: r.get("association", {})
                                                  .get(d)) for i, d in enumerate(directions)]))
    fig = Figure(figsize=(panel_size[0] * len(panels), panel_size[1]), dpi=dpi)
    axes = fig.subplots(1, len(panels), squeeze=False)
    first, last = history[0]["epoch"], history[-1]["epoch"]
    for ax, (title, lines) in zip(axes[0], panels):
        for label, style, get in lines:
            epochs, values = _series(history, get)
            if epochs:
                ax.plot(epochs, values, marker="o", markersize=3, label=label, **style)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_xlim(first - 0.5, last + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    return fig
