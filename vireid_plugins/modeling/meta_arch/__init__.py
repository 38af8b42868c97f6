"""Meta-architectures (registered in fast-reid's ``META_ARCH_REGISTRY``)."""
from .unsupervised import UnsupervisedVIReID
from .vireid_baseline import VIReIDBaseline

__all__ = ["VIReIDBaseline", "UnsupervisedVIReID"]
