"""Reading pretrained backbone weights from a local file (nothing is ever downloaded)."""
import os
from collections import OrderedDict

import torch

__all__ = ["read_state_dict"]

_WRAPPERS = ("state_dict", "model", "teacher")  # "teacher": a DINO-style self-supervised checkpoint


def read_state_dict(path: str | os.PathLike, owner: str, expected: str,
                    hint: str = "") -> "OrderedDict[str, torch.Tensor]":
    """Load ``path`` with ``torch.load(weights_only=True)`` and return its dict of tensors.

    A dict wrapped under ``"state_dict"``, ``"model"`` or ``"teacher"`` is unwrapped, and a ``module.`` prefix on
    every key (a (Distributed)DataParallel save) is removed.

    Args:
        path: local file.
        owner: name used at the start of every error message (e.g. ``"AGW backbone"``).
        expected: what the file should hold, for the messages (e.g. ``"a torchvision ResNet-50 state dict"``).
        hint: appended to the not-found message (e.g. where such weights come from).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is unreadable, empty, or not a dict of tensors.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{owner}: pretrained weights {path!r} not found; MODEL.BACKBONE.PRETRAIN_PATH must point to "
            f"{expected}{hint}"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(
            f"{owner}: cannot read {path!r} as {expected} with torch.load(weights_only=True): {type(e).__name__}: {e}"
        ) from e
    if isinstance(ckpt, dict):
        for wrapper in _WRAPPERS:
            if isinstance(ckpt.get(wrapper), dict):
                ckpt = ckpt[wrapper]
                break
    if not isinstance(ckpt, dict) or not ckpt:
        found = "an empty dict" if isinstance(ckpt, dict) else f"a {type(ckpt).__name__}"
        raise ValueError(f"{owner}: {path!r} holds {found}, not {expected} (a dict of tensors)")
    not_tensors = [k for k, v in ckpt.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        key = not_tensors[0]
        raise ValueError(
            f"{owner}: {path!r} is not {expected}: {len(not_tensors)} entries are not tensors, "
            f"e.g. {key!r} is a {type(ckpt[key]).__name__}"
        )
    if all(k.startswith("module.") for k in ckpt):  # saved from (Distributed)DataParallel
        ckpt = {k[len("module."):]: v for k, v in ckpt.items()}
    return OrderedDict(ckpt)
