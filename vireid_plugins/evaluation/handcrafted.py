"""Training-free image descriptors, the floor a learned model must beat: HOG and raw pixels of grey images.

Both take a batch of grey images ``(N, H, W)`` (float, any range) and return ``(N, D)`` float32 descriptors;
they are vectorised over the whole batch (no per-image loop).

* :func:`hog_descriptors`: Histograms of Oriented Gradients (Dalal & Triggs, CVPR'05), with the choices of
  scikit-image's ``skimage.feature.hog(..., block_norm="L2-Hys")``: central-difference gradients (0 on the
  image border), unsigned orientations in ``[0, 180)`` degrees voted with their magnitude into the *one* bin
  they fall in, per-cell mean over ``cell x cell`` pixels (the image is cropped to a whole number of cells),
  overlapping blocks of ``block x block`` cells with stride one cell, each L2-normalised, clipped at 0.2 and
  normalised again (L2-Hys).
* :func:`pixel_descriptors`: the grey levels themselves, minus each image's mean (so a global brightness
  change between modalities does not count); the evaluators L2-normalise every descriptor.
"""
import math

import torch
import torch.nn.functional as F

__all__ = ["hog_descriptors", "pixel_descriptors"]


def _as_batch(images) -> torch.Tensor:
    images = torch.as_tensor(images, dtype=torch.float32)
    if images.dim() != 3 or 0 in images.shape:
        raise ValueError(f"expected a non-empty (N, H, W) batch of grey images, got shape {tuple(images.shape)}")
    return images


def hog_descriptors(images, orientations: int = 9, cell: int = 8, block: int = 2, eps: float = 1e-5) -> torch.Tensor:
    """HOG of grey images (see the module docstring).

    Args:
        images: ``(N, H, W)`` grey images; ``H, W >= block * cell``.
        orientations: orientation bins over ``[0, 180)`` degrees.
        cell: cell size in pixels; block: block size in cells.
        eps: the regulariser of both block normalisations, ``v / sqrt(|v|^2 + eps^2)``.

    Returns:
        ``(N, Bh * Bw * block * block * orientations)`` float32, ``Bh = H // cell - block + 1`` (likewise
        ``Bw``), ordered (block row, block column, cell row, cell column, orientation) like scikit-image.
    """
    images = _as_batch(images)
    n, height, width = images.shape
    ch, cw = height // cell, width // cell
    if min(ch, cw) < block or orientations < 1:
        raise ValueError(f"HOG needs images of at least {block * cell} x {block * cell} pixels and >= 1 "
                         f"orientation, got {height} x {width} and {orientations}")
    gy, gx = torch.zeros_like(images), torch.zeros_like(images)
    gy[:, 1:-1, :] = images[:, 2:, :] - images[:, :-2, :]
    gx[:, :, 1:-1] = images[:, :, 2:] - images[:, :, :-2]
    magnitude = torch.hypot(gx, gy)
    angle = torch.rad2deg(torch.atan2(gy, gx)) % 180.0  # unsigned orientation in [0, 180)
    bins = (angle * (orientations / 180.0)).long().clamp_(max=orientations - 1)
    votes = torch.zeros(n, orientations, height, width).scatter_(1, bins[:, None], magnitude[:, None])
    cells = F.avg_pool2d(votes[:, :, :ch * cell, :cw * cell], cell)  # (N, O, ch, cw) mean per cell
    # (N, O, Bh, Bw, block, block) -> (N, Bh, Bw, block, block, O)
    blocks = cells.unfold(2, block, 1).unfold(3, block, 1).permute(0, 2, 3, 4, 5, 1)
    blocks = blocks.reshape(n, blocks.shape[1], blocks.shape[2], -1)
    blocks = blocks / torch.sqrt((blocks ** 2).sum(-1, keepdim=True) + eps ** 2)
    blocks = blocks.clamp(max=0.2)
    blocks = blocks / torch.sqrt((blocks ** 2).sum(-1, keepdim=True) + eps ** 2)
    return blocks.reshape(n, -1)


def pixel_descriptors(images) -> torch.Tensor:
    """``(N, H * W)`` grey levels minus each image's mean."""
    flat = _as_batch(images).flatten(1)
    return flat - flat.mean(dim=1, keepdim=True)


def hog_length(height: int, width: int, orientations: int = 9, cell: int = 8, block: int = 2) -> int:
    """Length of :func:`hog_descriptors` for ``height x width`` images."""
    return math.prod([height // cell - block + 1, width // cell - block + 1, block, block, orientations])
