"""Backbones and meta-architectures (imports register them in fast-reid's registries)."""
from . import backbones, meta_arch  # noqa: F401  (registration)
