"""Routing a batch through modality-specific modules (stems, patch embeddings).

Every two-stream backbone takes ``forward(x, modality)`` with ``modality`` a ``(B,)`` integer tensor: 0 visible,
1 infrared (the channel-augmented view of a visible image is routed as visible). These helpers validate that
tensor and run each image through the module of its modality, keeping the batch order.

A backbone with more than one modality module refuses to run without ``modality``: it would silently become a
one-stream network (every image through module 0, the others never trained), which is what fast-reid's stock
``Baseline`` (``backbone(images)``) would make of it. With one module (``MODEL.BACKBONE.NUM_MODALITIES 1``)
``modality`` may be omitted.
"""
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["check_modality", "route_by_modality"]


def check_modality(modality, batch_size: int, num_modalities: int, device: torch.device,
                   owner: str) -> torch.Tensor | None:
    """Validate ``modality`` and return it as a long tensor on ``device`` (``None`` for a one-module backbone
    called without it).

    Args:
        modality: ``(B,)`` integer tensor (or a sequence) with values in ``[0, num_modalities)``; ``None`` only when
            ``num_modalities == 1``.
        batch_size: ``B``, the number of images it must describe.
        num_modalities: number of modality-specific modules.
        device: device of the images.
        owner: name of the calling module, first word of every error message.

    Raises:
        ValueError: no ``modality`` for several modules, a non-integer dtype, a shape other than ``[B]``, or a value
            out of range (naming its index).
    """
    if modality is None:
        if num_modalities > 1:
            raise ValueError(
                f"{owner}: called without `modality`, but it has {num_modalities} modality-specific stems: every image "
                "would go through the visible one and the others would never be trained. Pass backbone(images, "
                "modality) with a (B,) tensor (0 visible, 1 infrared): use MODEL.META_ARCHITECTURE VIReIDBaseline or "
                "UnsupervisedVIReID (they pass the batch's 'modality', which the visible-infrared datasets' loaders "
                "give) instead of fast-reid's Baseline, or set MODEL.BACKBONE.NUM_MODALITIES 1 for a one-stream "
                "network")
        return None
    if not isinstance(modality, torch.Tensor):
        modality = torch.as_tensor(modality)
    if modality.dtype == torch.bool or modality.is_floating_point() or modality.is_complex():
        raise ValueError(f"{owner}: modality must be an integer (long) tensor, got dtype {modality.dtype}")
    if modality.dim() != 1 or modality.shape[0] != batch_size:
        raise ValueError(
            f"{owner}: modality must have shape [B] = [{batch_size}] (one id per image), got {list(modality.shape)}"
        )
    modality = modality.to(device=device, dtype=torch.long)
    bad = (modality < 0) | (modality >= num_modalities)
    if bad.any():
        index = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"{owner}: modality values must be in [0, {num_modalities}) (0 visible, 1 infrared), "
            f"got {int(modality[index])} at batch index {index}"
        )
    return modality


def route_by_modality(x: torch.Tensor, modality: torch.Tensor | None, modules: Sequence[nn.Module]) -> torch.Tensor:
    """Run image ``b`` through ``modules[modality[b]]``; outputs come back in the input order.

    Args:
        x: ``(B, ...)`` batch.
        modality: validated ``(B,)`` long tensor (:func:`check_modality`), or None with a single module.
        modules: one module per modality; their outputs must agree in shape beyond the batch dimension.

    Returns:
        ``(B, ...)`` outputs, row ``b`` computed by the module of image ``b``.
    """
    if modality is None:
        if len(modules) != 1:
            raise ValueError(f"route_by_modality: no modality for {len(modules)} modules (see check_modality)")
        return modules[0](x)
    # one group per modality present in the batch (a loop over the few modules, not the samples)
    groups = [(m, (modality == m).nonzero(as_tuple=True)[0]) for m in range(len(modules))]
    groups = [(m, idx) for m, idx in groups if idx.numel() > 0]
    if len(groups) <= 1:  # single-modality (or empty) batch: no gather/scatter needed
        return modules[groups[0][0] if groups else 0](x)
    outs = [modules[m](x.index_select(0, idx)) for m, idx in groups]
    order = torch.cat([idx for _, idx in groups])  # position in the input of each output row
    return torch.cat(outs).index_select(0, torch.argsort(order))
