"""Heads (registered in fast-reid's ``REID_HEADS_REGISTRY``)."""
from .bnneck_head import BNNeckHead

__all__ = ["BNNeckHead"]
