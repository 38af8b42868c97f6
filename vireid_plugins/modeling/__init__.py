"""Backbones, heads, losses and meta-architectures (imports register them in the registries)."""
from . import backbones, heads, losses, meta_arch  # noqa: F401  (registration)
