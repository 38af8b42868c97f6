"""Inference-time helpers: model loading for the tools, feature files, TorchScript/ONNX export."""
