"""Registry of the methods' config functions.

A method is a package ``vireid_plugins/methods/<name>/`` (detectron2's ``projects/PointRend`` pattern). Importing it
registers

* its config function ``add_<name>_config(cfg)`` in :data:`METHOD_CONFIG_REGISTRY` (it declares the method's keys,
  with defaults and one-line comments, under one config node named after the method), and optionally a check
  ``check_<name>_config(cfg) -> [problem, ...]`` in :data:`METHOD_CONFIG_CHECK_REGISTRY` (run at set-up; each
  problem names a key, its value and what is expected);
* its association hooks in :data:`~vireid_plugins.engine.build.ASSOCIATION_HOOK_REGISTRY`;
* its criteria in :data:`~vireid_plugins.modeling.losses.build.CRITERION_REGISTRY`.

Call contract: ``METHOD_CONFIG_REGISTRY.get(name)(cfg)`` adds the keys in place; :func:`add_method_configs` (called
by :func:`vireid_plugins.add_vireid_config`) calls every registered function. ``vireid_plugins.methods`` imports
every method package it contains, so adding a method adds files under ``methods/<name>/`` only.
"""
from fastreid.utils.registry import Registry

__all__ = ["METHOD_CONFIG_REGISTRY", "METHOD_CONFIG_CHECK_REGISTRY", "add_method_configs", "hook_criterion_problems"]

METHOD_CONFIG_REGISTRY = Registry("VIREID_METHOD_CONFIG")
METHOD_CONFIG_REGISTRY.__doc__ = __doc__
METHOD_CONFIG_CHECK_REGISTRY = Registry("VIREID_METHOD_CONFIG_CHECK")
METHOD_CONFIG_CHECK_REGISTRY.__doc__ = __doc__


def add_method_configs(cfg) -> None:
    for name in sorted(METHOD_CONFIG_REGISTRY._obj_map):
        METHOD_CONFIG_REGISTRY.get(name)(cfg)


def hook_criterion_problems(cfg, hook: str, criterion: str, trains_on: str):
    """For a method's config check: ``None`` when ``cfg`` uses neither the method's association ``hook`` nor its
    ``criterion`` (nothing to check); else the problems of their pairing (``[]`` when fine): the hook's targets
    need the criterion that ``trains_on`` them."""
    uses_hook = hook in cfg.PSEUDO.ASSOCIATION
    if not uses_hook and cfg.MODEL.CRITERION.NAME != criterion:
        return None
    if uses_hook and cfg.MODEL.CRITERION.NAME != criterion:
        return [f"MODEL.CRITERION.NAME={cfg.MODEL.CRITERION.NAME!r}: {hook} needs the criterion that trains on "
                f"{trains_on}, {criterion}"]
    return []
