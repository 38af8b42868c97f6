"""MAAL: multimodal assisted adversarial learning (Sun, Du, Gao, §3.3, Eq. 17).

A three-way modality classifier ``E`` (0 visible, 1 infrared, 2 channel-augmented "CA") and two losses, updated
alternately every iteration:

* ``L_D = sum_m CE(E(f_m), m)`` trains ``E`` alone: the features are *detached*, so no gradient reaches the
  backbone (weight ``alpha``, 1.0 in the paper);
* ``L_A = sum_m CE(E(f_m), 2)`` pushes every modality's features towards the CA class and trains the backbone
  alone: ``E`` is evaluated with *detached* weights (``F.linear(f, W.detach())``), so ``E`` receives no gradient
  (weight ``beta``, 0.1 in the paper).

Each CE is a mean over that modality's samples; the sums run over the modalities given (``None`` or an empty
tensor skips one). Both losses can be added to the same total and backpropagated once.
"""
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CA_CLASS", "ModalityDiscriminator", "maal_adversarial_loss", "maal_discriminator_loss"]

CA_CLASS = 2  # class of the channel-augmented modality (after 0 visible, 1 infrared)


class ModalityDiscriminator(nn.Module):
    """``E``: Linear(d -> d/2) -> ReLU -> Dropout(p) -> Linear(d/2 -> 3).

    Args:
        in_dim: ``d``, the image-feature width (``T*D`` for a multi-token backbone).
        dropout: dropout probability.
        num_classes: modality classes (3: visible, infrared, CA).
    """

    def __init__(self, in_dim: int, dropout: float = 0.5, num_classes: int = 3):
        super().__init__()
        if in_dim < 2:
            raise ValueError(f"ModalityDiscriminator: in_dim must be >= 2, got {in_dim}")
        self.fc1 = nn.Linear(in_dim, in_dim // 2)
        self.fc2 = nn.Linear(in_dim // 2, num_classes)
        self.dropout = float(dropout)

    def forward(self, x: torch.Tensor, frozen: bool = False) -> torch.Tensor:
        """``(B, d) -> (B, 3)`` logits; ``frozen`` uses detached weights (gradient to ``x`` only)."""
        def weights(layer: nn.Linear):
            return (layer.weight.detach(), layer.bias.detach()) if frozen else (layer.weight, layer.bias)

        x = F.relu(F.linear(x, *weights(self.fc1)))
        x = F.dropout(x, self.dropout, self.training)
        return F.linear(x, *weights(self.fc2))


def _sum_ce(discriminator: ModalityDiscriminator, feats_by_modality: Sequence[torch.Tensor | None],
            target_of, detach_features: bool, frozen: bool) -> torch.Tensor:
    losses = []
    for modality, feats in enumerate(feats_by_modality):
        if feats is None or feats.shape[0] == 0:
            continue
        if feats.dim() != 2:
            raise ValueError(f"MAAL: features of modality {modality} must be (B, d), got {tuple(feats.shape)}")
        feats = feats.detach() if detach_features else feats
        logits = discriminator(feats, frozen=frozen)
        target = torch.full((feats.shape[0],), target_of(modality), dtype=torch.long, device=feats.device)
        losses.append(F.cross_entropy(logits.float(), target))
    if not losses:
        raise ValueError("MAAL: no features given (every modality is None or empty)")
    return torch.stack(losses).sum()


def maal_discriminator_loss(discriminator: ModalityDiscriminator, feats_by_modality: Sequence[torch.Tensor | None],
                            alpha: float = 1.0) -> torch.Tensor:
    """``alpha * L_D``: modality classification of DETACHED features (trains ``E`` only).

    Args:
        discriminator: ``E``.
        feats_by_modality: ``(f_v, f_r, f_c)``, each ``(B_m, d)`` or None; index = modality class.
        alpha: weight of ``L_D``.
    """
    return alpha * _sum_ce(discriminator, feats_by_modality, lambda m: m, detach_features=True, frozen=False)


def maal_adversarial_loss(discriminator: ModalityDiscriminator, feats_by_modality: Sequence[torch.Tensor | None],
                          beta: float = 0.1) -> torch.Tensor:
    """``beta * L_A``: every modality classified as CA through FROZEN ``E`` weights (trains the backbone only).

    Args:
        discriminator: ``E``.
        feats_by_modality: ``(f_v, f_r, f_c)``, each ``(B_m, d)`` or None.
        beta: weight of ``L_A``.
    """
    return beta * _sum_ce(discriminator, feats_by_modality, lambda m: CA_CLASS, detach_features=False, frozen=True)
