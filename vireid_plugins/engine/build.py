"""Registry of association hooks: the per-epoch steps that turn pseudo-labels into a method's training targets.

Call contract: ``ASSOCIATION_HOOK_REGISTRY.get(name)(cfg)`` returns an
:class:`~vireid_plugins.engine.association.AssociationHook`, a fast-reid ``HookBase``;
``build_association_hooks(cfg)`` builds every name of ``PSEUDO.ASSOCIATION``, in order.

Before every epoch the trainer runs, in this order (``VIReIDTrainer.build_hooks``):

1. the pseudo-label hook (``PSEUDO.ENABLED``): feature extraction on every rank, clustering on the main process,
   labels broadcast; ``trainer.set_targets(targets, features)`` (per-modality label spaces, memories rebuilt);
2. the association hooks of ``PSEUDO.ASSOCIATION``, each ``associate(targets) -> targets`` on the current
   ``trainer.targets``: work that needs the whole training set (transport, refinement) runs on the main process
   and its result is broadcast (:func:`~vireid_plugins.engine.comm_utils.broadcast_from_main`), so every rank
   installs identical targets through ``trainer.set_targets``;
3. the loader hook: the epoch's train loader from ``trainer.targets``.
"""
from fastreid.utils.registry import Registry

__all__ = ["ASSOCIATION_HOOK_REGISTRY", "build_association_hooks"]

ASSOCIATION_HOOK_REGISTRY = Registry("VIREID_ASSOCIATION_HOOK")
ASSOCIATION_HOOK_REGISTRY.__doc__ = __doc__


def build_association_hooks(cfg) -> list:
    hooks = []
    for name in cfg.PSEUDO.ASSOCIATION:
        if name not in ASSOCIATION_HOOK_REGISTRY._obj_map:
            raise KeyError(f"PSEUDO.ASSOCIATION: unknown association hook {name!r}; registered: "
                           f"{sorted(ASSOCIATION_HOOK_REGISTRY._obj_map)}")
        hooks.append(ASSOCIATION_HOOK_REGISTRY.get(name)(cfg))
    if hooks and not cfg.PSEUDO.ENABLED:
        raise ValueError(f"PSEUDO.ASSOCIATION {list(cfg.PSEUDO.ASSOCIATION)} needs PSEUDO.ENABLED True "
                         "(association hooks transform pseudo-labels)")
    return hooks
