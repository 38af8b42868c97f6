"""Training methods, one package each (see :mod:`.build`); every package here is imported, which registers it."""
import importlib
import pkgutil

from .build import METHOD_CONFIG_REGISTRY, add_method_configs

for _module in pkgutil.iter_modules(__path__):
    if _module.ispkg:
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["METHOD_CONFIG_REGISTRY", "add_method_configs"]
