"""TorchScript and ONNX export of a trained model.

:class:`ExportableReID` wraps a model of this package so that it takes two tensors,

* ``images``: ``(B, 3, H, W)`` float RGB on the 0-255 scale (infrared images replicated to 3 channels, as the
  data loaders give them); the model normalises them inside with its ``pixel_mean`` / ``pixel_std``;
* ``modality``: ``(B,)`` int64, 0 visible, 1 infrared;

and returns the ``(B, D)`` test features (L2-normalised, exactly what the evaluators rank; a ``(B, T, D)``
multi-token output is flattened to ``(B, T * D)``).

The two-stream backbone routes each image through its modality's stem by gathering the images of each
modality, a data-dependent control flow that tracing would freeze to the example batch. The wrapper's copy of
the model instead runs every stem on the whole batch and picks each image's stem output with ``torch.where``:
the same numbers for any mix of modalities, at the cost of one extra stem (a few % of a ResNet's compute).
Everything else is the model's own eval forward. The unsupervised criterion (cluster memories) is dropped.
"""
import copy
import os
import types
from typing import Optional, Tuple

import numpy as np
import torch
from torch import nn

from ..modeling.backbones.modality import check_modality

__all__ = ["ExportableReID", "export_torchscript", "export_onnx", "run_onnx", "max_abs_difference"]


def _stems_by_where(backbone: nn.Module, x: torch.Tensor, modality: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Trace-safe replacement of ``forward_stems``: every stem on every image, each image keeps its own."""
    if modality is None:
        check_modality(None, x.shape[0], len(backbone.stems), x.device, type(backbone).__name__)
        return backbone.stems[0](x)
    outputs = [stem(x) for stem in backbone.stems]
    modality = modality.reshape(-1, 1, 1, 1)
    out = outputs[0]
    for m in range(1, len(outputs)):
        out = torch.where(modality == m, outputs[m], out)
    return out


class ExportableReID(nn.Module):
    """``(images, modality) -> (B, D)`` features of ``model`` (see the module docstring); ``model`` is copied."""

    def __init__(self, model: nn.Module):
        super().__init__()
        model = copy.deepcopy(model.module if hasattr(model, "module") else model).cpu().eval()
        backbone = getattr(model, "backbone", None)
        if not (isinstance(getattr(backbone, "stems", None), nn.ModuleList) and hasattr(backbone, "forward_stems")):
            raise TypeError(f"ExportableReID: the backbone {type(backbone).__name__} has no modality stems "
                            "(`stems` + `forward_stems`, as AGWBackbone); it cannot be exported with this wrapper")
        backbone.forward_stems = types.MethodType(_stems_by_where, backbone)
        if "criterion" in model._modules:
            model.criterion = None  # cluster memories: training state, not needed at test time
        self.model = model

    def forward(self, images: torch.Tensor, modality: torch.Tensor) -> torch.Tensor:
        features = self.model({"images": images, "modality": modality})
        return features.flatten(1)


def _example(height: int, width: int, batch: int = 4, seed: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """A seeded example batch with both modalities (tracing never sees a single-modality batch)."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, height, width, generator=generator) * 255
    return images, torch.arange(batch) % 2


def _temporary(path: str) -> str:
    """A temporary name next to ``path`` (its folder created), renamed to ``path`` once complete."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return f"{path}.tmp-{os.getpid()}"


def export_torchscript(wrapper: ExportableReID, path: str, size: Tuple[int, int]) -> str:
    """Trace ``wrapper`` on an example ``size = (H, W)`` batch and save it to ``path`` (atomically)."""
    images, modality = _example(*size)
    with torch.no_grad():
        traced = torch.jit.trace(wrapper.eval(), (images, modality))
    tmp = _temporary(path)
    try:
        torch.jit.save(traced, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def export_onnx(wrapper: ExportableReID, path: str, size: Tuple[int, int], opset: int = 17) -> str:
    """Export ``wrapper`` to ONNX (inputs ``images``, ``modality``; output ``features``; dynamic batch)."""
    try:
        import onnx
    except ImportError as e:
        raise ImportError("ONNX export needs the `onnx` package: pip install 'vireid_plugins[export]'") from e
    images, modality = _example(*size)
    tmp = _temporary(path)
    try:
        with torch.no_grad():
            torch.onnx.export(wrapper.eval(), (images, modality), tmp, dynamo=False, opset_version=opset,
                              input_names=["images", "modality"], output_names=["features"],
                              dynamic_axes={"images": {0: "batch"}, "modality": {0: "batch"},
                                            "features": {0: "batch"}})
        onnx.checker.check_model(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def run_onnx(path: str, images: torch.Tensor, modality: torch.Tensor) -> torch.Tensor:
    """Features of an exported ONNX model, computed by onnxruntime on the CPU."""
    try:
        import onnxruntime
    except ImportError as e:
        raise ImportError("checking an ONNX export needs `onnxruntime`: pip install 'vireid_plugins[export]'") from e
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    (features,) = session.run(["features"], {"images": images.numpy().astype(np.float32),
                                             "modality": modality.numpy().astype(np.int64)})
    return torch.from_numpy(features)


def max_abs_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """``max |a - b|`` of two feature tensors of the same shape."""
    if a.shape != b.shape:
        raise ValueError(f"feature shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    return float((a.float().cpu() - b.float().cpu()).abs().max())
