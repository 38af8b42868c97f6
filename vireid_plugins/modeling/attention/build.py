"""Registry of feature-map attention modules that a backbone can insert on a ``(B, C, H, W)`` map.

Call contract of every registered class ``A``:

* ``A.from_config(node, channels)`` returns an instance for a map of ``channels`` channels, reading its
  hyper-parameters from the config node ``node`` (e.g. ``cfg.MODEL.BACKBONE.PA_CBAM``);
* ``forward(x)`` maps ``(B, C, H, W)`` to ``(B, C, H, W)`` (same shape, dtype and device);
* tensors that a loss needs from the last forward (e.g. PA-CBAM's channel attention) are exposed as
  documented attributes of the module; they keep their graph, so a loss on them trains the module.

Build one with :func:`build_attention` (registration happens when ``vireid_plugins.modeling`` is imported).
"""
from fastreid.utils.registry import Registry
from torch import nn

__all__ = ["ATTENTION_REGISTRY", "build_attention"]

ATTENTION_REGISTRY = Registry("ATTENTION")
ATTENTION_REGISTRY.__doc__ = __doc__


def build_attention(name: str, node, channels: int) -> nn.Module:
    """Instantiate the attention module registered as ``name`` for a ``channels``-channel map."""
    cls = ATTENTION_REGISTRY.get(name)
    return cls(**cls.from_config(node, channels))
