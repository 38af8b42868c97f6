#!/usr/bin/env python
"""Installable fast-reid plugin for unsupervised visible-infrared person re-identification."""
from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    # fast-reid 1.4.0 pins torch 1.13.1 / torchvision 0.14.1 (no wheels for Python >= 3.11; vireid_plugins needs
    # torch 2), so it is installed after this package with ``pip install --no-deps fastreid==1.4.0``. These are the
    # packages it (and we) really need, within fast-reid's own bounds where it sets them, so that ``pip check``
    # reports nothing but those two torch pins.
    "torch>=2.0",
    "torchvision>=0.15",
    "timm>=0.9",
    "pot>=0.9",
    "yacs>=0.1.8,<0.2",
    "scikit-learn>=1.2.1,<2",
    "tabulate>=0.9,<0.10",
    "termcolor>=2.2,<3",
    "tensorboard>=2.12,<3",
    "opencv-python-headless>=4.7.0.68,<5",
    "tqdm",
    "numpy",
    "scipy",
    "Pillow",
    "gdown",
    "matplotlib",
]

setup(
    name="vireid_plugins",
    version="0.1.0",
    description="fast-reid plugin for unsupervised visible-infrared person re-identification",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["vireid_plugins", "vireid_plugins.*"]),
    # faiss-cpu and faiss-gpu both install the module ``faiss`` and must not sit side by side, so the
    # faiss flavour is an extra: ``[cpu]`` (what ``make`` installs) or ``[gpu]`` (CUDA 12 builds).
    # Without either, the k-NN searches fall back to chunked torch.
    install_requires=INSTALL_REQUIRES,
    extras_require={
        "cpu": ["faiss-cpu>=1.7.3,<2"],
        "gpu": ["faiss-gpu-cu12>=1.8"],
        "dev": ["pytest>=7", "ruff>=0.4"],
        # tools/export_model.py: ONNX export (onnx) and its check against the eager model (onnxruntime)
        "export": ["onnx>=1.14", "onnxruntime>=1.16"],
    },
)
