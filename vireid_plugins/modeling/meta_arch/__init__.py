"""Meta-architectures (registered in fast-reid's ``META_ARCH_REGISTRY``)."""
from .unsupervised import UnsupervisedVIReID
from .vireid_baseline import VIReIDBaseline, raw_test_features

__all__ = ["VIReIDBaseline", "UnsupervisedVIReID", "raw_test_features"]
