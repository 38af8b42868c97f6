"""A fast-reid ``Checkpointer`` that loads tensors whose size changes during training.

Cluster memories and re-clustered classifiers have as many rows as there are clusters, which changes
every epoch. fast-reid's ``Checkpointer`` drops every checkpoint tensor whose shape differs from the model's;
this one first resizes those tensors of modules that declare ``resizable_state = True``, so they load.
"""
import torch
from fastreid.utils.checkpoint import Checkpointer

__all__ = ["VIReIDCheckpointer", "resize_to_checkpoint"]


def resize_to_checkpoint(model: torch.nn.Module, state_dict) -> list:
    """Give resizable modules' parameters/buffers the checkpoint's shapes; returns the resized names."""
    resized = []
    for prefix, module in model.named_modules():
        if not getattr(module, "resizable_state", False):
            continue
        for name, tensor in list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False)):
            key = f"{prefix}.{name}" if prefix else name
            saved = state_dict.get(key, state_dict.get(f"module.{key}"))
            if saved is not None and tuple(saved.shape) != tuple(tensor.shape):
                tensor.data = torch.zeros(saved.shape, dtype=tensor.dtype, device=tensor.device)
                resized.append(key)
    return resized


class VIReIDCheckpointer(Checkpointer):
    def _load_model(self, checkpoint):
        model = self.model.module if hasattr(self.model, "module") else self.model
        resized = resize_to_checkpoint(model, checkpoint["model"])
        if resized:
            self.logger.info(f"Resized to the checkpoint's shapes: {resized}")
        return super()._load_model(checkpoint)
