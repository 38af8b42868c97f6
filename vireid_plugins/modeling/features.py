"""Features of any shape: ``(N, D)`` per image or ``(N, T, D)`` per token (a ViT with ``T`` class tokens).

Normalisation is always over the last dimension. The image-level feature of ``(N, T, D)`` is the concatenation
of its tokens, ``(N, T * D)``.
"""
import torch
import torch.nn.functional as F

__all__ = ["image_features", "normalize_features", "num_tokens"]


def num_tokens(features: torch.Tensor) -> int:
    """``T`` of ``(N, T, D)`` features, 0 for ``(N, D)``."""
    if features.dim() not in (2, 3):
        raise ValueError(f"features must be (N, D) or (N, T, D), got shape {tuple(features.shape)}")
    return features.shape[1] if features.dim() == 3 else 0


def normalize_features(features: torch.Tensor) -> torch.Tensor:
    """L2-normalise over the last dimension (each token separately)."""
    num_tokens(features)
    return F.normalize(features, dim=-1)


def image_features(features: torch.Tensor) -> torch.Tensor:
    """``(N, D')`` L2-normalised image-level features: ``(N, D)`` per image, ``(N, T, D)`` concatenated. Rows that
    are already of unit norm (within 1e-6) are returned unchanged, bit for bit."""
    flat = features.flatten(1)
    if num_tokens(features) == 0 and bool(((flat.norm(dim=1) - 1).abs() <= 1e-6).all()):
        return flat
    return F.normalize(flat, dim=1)
