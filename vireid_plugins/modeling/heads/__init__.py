"""Heads (registered in fast-reid's ``REID_HEADS_REGISTRY``)."""
from .bnneck_head import BNNeckHead
from .token_bnneck_head import TokenBNNeckHead

__all__ = ["BNNeckHead", "TokenBNNeckHead"]
