"""vireid_plugins: unsupervised visible-infrared person re-identification for fast-reid.

Importing the package applies the fast-reid compatibility shims once, then imports the
subpackages whose modules register components (datasets, samplers, backbones, meta-architectures,
criteria, evaluators, association hooks and the method packages) in fast-reid's and our own registries.
"""
from .compat import apply_fastreid_compat

apply_fastreid_compat()

from . import data, engine, evaluation, methods, modeling  # noqa: E402  (registration of every component)
from .config import add_vireid_config  # noqa: E402

__version__ = "0.1.0"
__all__ = ["add_vireid_config", "apply_fastreid_compat", "__version__"]
