"""Small helpers shared by the engine and the tools."""
from .file_io import atomic_write

__all__ = ["atomic_write"]
