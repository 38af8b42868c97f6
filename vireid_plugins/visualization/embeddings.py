"""t-SNE plots of both modalities' features: colour = identity, marker shape = modality.

Pure functions: features in, 2-D points out (:func:`tsne_2d`, scikit-learn's t-SNE, seeded); points, pids
and modalities in, a matplotlib figure out (:func:`plot_embeddings`), one panel per model (e.g. before and
after training), saved as a PNG of exactly ``panel_size * dpi`` pixels per panel. Figures are built without
pyplot, so nothing here changes the user's matplotlib backend.
"""
import os
from typing import Optional, Sequence, Tuple

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from ..data.datasets.bases import INFRARED, MODALITY_NAMES, VISIBLE

__all__ = ["MARKERS", "tsne_2d", "identity_colours", "plot_embeddings", "save_figure"]

MARKERS = {VISIBLE: "o", INFRARED: "^"}  # marker shape of each modality

Panel = Tuple[str, np.ndarray, np.ndarray, np.ndarray]  # (title, (N, 2) points, (N,) pids, (N,) modalities)


def tsne_2d(features, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """``(N, 2)`` t-SNE embedding of ``(N, D)`` features (PCA initialisation, ``random_state=seed``).

    The perplexity is lowered to ``(N - 1) / 3`` for small sets (scikit-learn needs it below N).
    """
    from sklearn.manifold import TSNE

    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 4:
        raise ValueError(f"tsne_2d: need (N, D) features with N >= 4, got shape {features.shape}")
    if not np.isfinite(features).all():
        raise ValueError("tsne_2d: the features contain NaN or infinite values")
    perplexity = min(float(perplexity), (features.shape[0] - 1) / 3.0)
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(features)


def identity_colours(pids) -> np.ndarray:
    """``(N, 4)`` RGBA colour per item: distinct identities (sorted) get evenly spaced colours of ``tab20``
    (up to 20 ids) or ``hsv``."""
    pids = np.asarray(pids)
    ids, index = np.unique(pids, return_inverse=True)
    cmap = matplotlib.colormaps["tab20" if len(ids) <= 20 else "hsv"]
    palette = cmap(np.arange(len(ids)) / (20 if len(ids) <= 20 else len(ids)))
    return palette[index.reshape(-1)]


def plot_embeddings(panels: Sequence[Panel], panel_size: float = 6.0, dpi: int = 100) -> Figure:
    """One scatter panel per ``(title, points, pids, modalities)``: colour by identity, marker by modality.

    Returns the figure (``len(panels) * panel_size`` x ``panel_size`` inches); each panel holds one scatter
    collection per modality present, in the order visible, infrared.
    """
    if not panels:
        raise ValueError("plot_embeddings: no panel given")
    fig = Figure(figsize=(panel_size * len(panels), panel_size), dpi=dpi)
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (title, points, pids, modalities) in zip(axes[0], panels):
        points, modalities = np.asarray(points), np.asarray(modalities)
        if points.shape != (len(modalities), 2) or len(pids) != len(modalities):
            raise ValueError(f"plot_embeddings: panel {title!r} has {points.shape} points, {len(pids)} pids and "
                             f"{len(modalities)} modalities")
        colours = identity_colours(pids)
        for modality in (VISIBLE, INFRARED):
            mask = modalities == modality
            if mask.any():
                ax.scatter(points[mask, 0], points[mask, 1], c=colours[mask], marker=MARKERS[modality], s=28,
                           edgecolors="black", linewidths=0.3, label=MODALITY_NAMES[modality])
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path: str, dpi: Optional[int] = None) -> str:
    """Save ``fig`` as a PNG at ``path`` (temporary name, then renamed)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}.png"
    try:
        fig.savefig(tmp, dpi=dpi or fig.dpi, format="png")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
