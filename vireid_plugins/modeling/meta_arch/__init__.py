"""Meta-architectures (registered in fast-reid's ``META_ARCH_REGISTRY``)."""
from .vireid_baseline import VIReIDBaseline

__all__ = ["VIReIDBaseline"]
