"""Build a model for inference from a config and a checkpoint, gather items to extract, and save features.

Shared by ``tools/visualize_ranklist.py``, ``tools/plot_embeddings.py``, ``tools/extract_features.py`` and
``tools/export_model.py``.

* :func:`setup_cfg`: fast-reid defaults + vireid keys + config file + ``KEY VALUE`` options, frozen.
* :func:`build_inference_model`: the model of the config in eval mode, with the checkpoint's weights loaded
  strictly: the checkpoint and the model must hold the same tensors with the same shapes, except for
  training-only state (the unsupervised criterion's memories, a classifier), so a supervised checkpoint can
  be read by an unsupervised config of the same backbone. Without weights (``""``) it is the seeded, untrained
  model.
* :func:`folder_items`: the images of a folder as items of one modality.
* :func:`save_features`: one ``.pt`` file, written under a temporary name and renamed.
"""
import logging
import os
from typing import Dict, List, Optional, Sequence

import torch
from fastreid.config import get_cfg
from fastreid.modeling import build_model

from ..config import add_vireid_config
from ..data.datasets.bases import INFRARED, VISIBLE, Item
from ..engine.checkpoint import resize_to_checkpoint
from ..engine.defaults import seed_everything

__all__ = ["setup_cfg", "read_checkpoint", "build_inference_model", "folder_items", "save_features",
           "MODALITY_BY_NAME", "IMAGE_EXTENSIONS"]

logger = logging.getLogger("fastreid.vireid.inference")

MODALITY_BY_NAME = {"visible": VISIBLE, "infrared": INFRARED}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
# training-only state (cluster memories, a classifier) that either side may lack
_UNUSED_AT_TEST = ("criterion.", "heads.weight")


def setup_cfg(config_file: str, opts: Sequence[str] = ()):
    """The frozen config of ``config_file`` with ``opts`` (``KEY VALUE`` pairs) applied."""
    if not os.path.isfile(config_file):
        raise FileNotFoundError(f"config file {config_file!r} does not exist")
    cfg = get_cfg()
    add_vireid_config(cfg)
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    cfg.freeze()
    return cfg


def read_checkpoint(path: str) -> Dict[str, torch.Tensor]:
    """The model state of a fast-reid checkpoint (``{"model": state, ...}``) or of a bare state dict."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights {path!r} do not exist (expected a fast-reid checkpoint .pth, e.g. "
                                "OUTPUT_DIR/model_final.pth)")
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"weights {path!r}: expected a fast-reid checkpoint (a dict whose 'model' is a state dict "
                         "of tensors) or a state dict")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


def _load_strictly(model: torch.nn.Module, state: Dict[str, torch.Tensor], path: str) -> None:
    resize_to_checkpoint(model, state)
    own = model.state_dict()
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
             if k in state and state[k].shape != v.shape]
    missing = [k for k in own if k not in state and not k.startswith(_UNUSED_AT_TEST)]
    unexpected = sorted(k for k in state if k not in own and not k.startswith(_UNUSED_AT_TEST))
    if wrong or missing or unexpected:
        problems = ([f"{len(missing)} missing tensor(s), e.g. {missing[:5]}"] if missing else []) + (
            [f"{len(wrong)} shape mismatch(es) (checkpoint vs model), e.g. {wrong[:5]}"] if wrong else []) + (
            [f"{len(unexpected)} tensor(s) the model does not have, e.g. {unexpected[:5]}"] if unexpected else [])
        raise ValueError(f"weights {path!r} do not fit the model of the config: {'; '.join(problems)}")
    ignored = sorted(k for k in state if k not in own)
    if ignored:
        logger.info(f"weights {path!r}: {len(ignored)} training-only tensor(s) not used at test time, "
                    f"e.g. {ignored[:3]}")
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)


CLASSIFIER_KEYS = ("heads.weight", "heads.classifier.weight")  # fast-reid's heads; TokenClassifierHead


def build_inference_model(cfg, weights: Optional[str] = None) -> torch.nn.Module:
    """The model of ``cfg`` in eval mode with ``weights`` (default ``MODEL.WEIGHTS``) loaded strictly.

    ``weights=""`` gives the model as built from the config, seeded with ``SEED`` (e.g. "before training").
    The classifier size (``MODEL.HEADS.NUM_CLASSES``) is taken from the checkpoint, and the backbone's own
    pre-training file (``MODEL.BACKBONE.PRETRAIN``) is not read when weights are given.
    """
    weights = cfg.MODEL.WEIGHTS if weights is None else weights
    cfg = cfg.clone()
    cfg.defrost()
    state = None
    if weights:
        state = read_checkpoint(weights)
        cfg.MODEL.BACKBONE.PRETRAIN = False
        for classifier in CLASSIFIER_KEYS:
            if classifier in state:
                cfg.MODEL.HEADS.NUM_CLASSES = int(state[classifier].shape[0])
    cfg.freeze()
    seed_everything(cfg.SEED)
    model = build_model(cfg)
    if state is not None:
        _load_strictly(model, state, weights)
    return model.eval()


def folder_items(folder: str, modality: str) -> List[Item]:
    """Every image under ``folder`` (recursively, sorted by path) as ``(path, -1, -1, modality)`` items."""
    if modality not in MODALITY_BY_NAME:
        raise ValueError(f"--modality must be one of {tuple(MODALITY_BY_NAME)} for a plain folder, got {modality!r}")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"image folder {folder!r} does not exist")
    paths = sorted(os.path.join(root, name) for root, _, names in os.walk(folder) for name in names
                   if name.lower().endswith(IMAGE_EXTENSIONS))
    if not paths:
        raise FileNotFoundError(f"image folder {folder!r} holds no image ({', '.join(IMAGE_EXTENSIONS)})")
    return [(path, -1, -1, MODALITY_BY_NAME[modality]) for path in paths]


def save_features(path: str, items: Sequence[Item], features: torch.Tensor, **meta) -> None:
    """Save ``{"paths", "pids", "camids", "modalities", "features", **meta}`` to ``path`` atomically.

    Args:
        path: output ``.pt`` file.
        items: ``N`` items ``(path, pid, camid, modality)`` (pid/camid -1 when unknown).
        features: ``(N, D)`` float tensor in item order.
    """
    if features.dim() != 2 or features.shape[0] != len(items):
        raise ValueError(f"save_features: expected ({len(items)}, D) features, got {tuple(features.shape)}")
    payload = {"paths": [it[0] for it in items],
               "pids": torch.tensor([it[1] for it in items], dtype=torch.long),
               "camids": torch.tensor([it[2] for it in items], dtype=torch.long),
               "modalities": torch.tensor([it[3] for it in items], dtype=torch.long),
               "features": features.float().cpu(), **meta}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
