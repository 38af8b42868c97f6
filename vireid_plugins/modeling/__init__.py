"""Backbones, heads, attention modules, losses and meta-architectures (imports register them in the registries)."""
from . import attention, backbones, heads, losses, meta_arch  # noqa: F401  (registration)
