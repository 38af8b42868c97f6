"""Torch datasets over visible-infrared items ``(img_path, pid, camid, modality)``."""
from typing import Callable, Dict, Optional, Sequence

from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from .datasets.bases import Item

__all__ = ["VIReIDDataset", "read_image"]


def read_image(path: str) -> Image.Image:
    """Read an image as 3-channel RGB (infrared images are replicated grey); clear error if unreadable."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except FileNotFoundError:
        raise FileNotFoundError(f"image file not found: '{path}' (expected a JPEG/BMP listed by the "
                                "dataset's official layout)") from None
    except (UnidentifiedImageError, OSError) as e:
        raise OSError(f"cannot read image '{path}': {e}. Expected a readable JPEG/BMP image as in the "
                      "official SYSU-MM01/RegDB layouts") from None


class VIReIDDataset(Dataset):
    """Map-style dataset returning ``images, targets, camids, modality, img_paths, index``.

    Args:
        items: ``(img_path, pid, camid, modality)`` tuples of Python ints.
        transforms: one transform for every image, or ``{modality: transform}``.
        labels: optional per-item training labels (e.g. pseudo-labels) that replace ``pid`` as target.
        relabel: map pids (or ``labels``) to contiguous ``0..C-1`` (training); keep them as they are
            otherwise (evaluation).
    """

    def __init__(self, items: Sequence[Item], transforms=None, labels: Optional[Sequence[int]] = None,
                 relabel: bool = False):
        if labels is not None and len(labels) != len(items):
            raise ValueError(f"VIReIDDataset: got {len(labels)} labels for {len(items)} items")
        self.img_items = list(items)
        self.transforms = transforms
        raw = [int(x) for x in labels] if labels is not None else [it[1] for it in self.img_items]
        self.pids = sorted(set(raw) - {-1})
        self.pid_dict: Dict[int, int] = {p: i for i, p in enumerate(self.pids)} if relabel else {}
        self.targets = [self.pid_dict.get(p, p) if p != -1 else -1 for p in raw]
        self.modalities = [int(it[3]) for it in self.img_items]

    def __len__(self):
        return len(self.img_items)

    def _transform(self, modality: int) -> Optional[Callable]:
        if isinstance(self.transforms, dict):
            return self.transforms[modality]
        return self.transforms

    def __getitem__(self, index):
        img_path, _, camid, modality = self.img_items[index]
        img = read_image(img_path)
        transform = self._transform(modality)
        if transform is not None:
            img = transform(img)
        return {
            "images": img,
            "targets": self.targets[index],
            "camids": int(camid),
            "modality": int(modality),
            "img_paths": img_path,
            "index": int(index),
        }

    @property
    def num_classes(self) -> int:
        return len(self.pids)
