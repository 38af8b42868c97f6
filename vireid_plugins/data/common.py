"""Torch datasets over visible-infrared items ``(img_path, pid, camid, modality)``."""
from typing import Sequence

from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from .datasets.bases import Item

__all__ = ["VIReIDDataset", "VIReIDTrainSet", "read_image"]


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
    """Map-style dataset of ``items`` in order, returning ``images, targets (pid), camids, modality, img_paths,
    index`` (evaluation and feature extraction).

    Args:
        items: ``(img_path, pid, camid, modality)`` tuples of Python ints.
        transforms: one transform for every image, or ``{modality: transform}``.
    """

    def __init__(self, items: Sequence[Item], transforms=None):
        self.img_items = list(items)
        self.transforms = transforms
        self.modalities = [int(it[3]) for it in self.img_items]

    def __len__(self):
        return len(self.img_items)

    def load(self, item_index: int):
        """``(image, camid, modality, path)`` of item ``item_index``, transformed for its modality."""
        img_path, _, camid, modality = self.img_items[item_index]
        img = read_image(img_path)
        transform = self.transforms.get(modality) if isinstance(self.transforms, dict) else self.transforms
        return (transform(img) if transform is not None else img), int(camid), int(modality), img_path

    def __getitem__(self, index):
        img, camid, modality, path = self.load(index)
        return {"images": img, "targets": int(self.img_items[index][1]), "camids": camid, "modality": modality,
                "img_paths": path, "index": int(index)}


class VIReIDTrainSet(VIReIDDataset):
    """The train set of one epoch, built from :class:`~vireid_plugins.data.targets.TrainTargets`.

    Sample ``i`` is item ``sample_items[i]`` in branch ``sample_branches[i]`` with label ``targets[i]`` in that
    branch's label space; ``__getitem__`` returns ``images, targets, camids, modality, img_paths, item, branch``.
    ``sampling_labels`` are opaque integers, one per (branch, label), that samplers group by (labels of different
    branches never collide); ``modalities`` and ``camids`` give each sample's modality and camera.
    """

    def __init__(self, train_targets, transforms=None):
        super().__init__(train_targets.items, transforms)
        self.sample_items, self.sample_branches, self.targets = train_targets.samples()
        stride = max(train_targets.spaces[b].num_classes for b in train_targets.branches)
        self.sampling_labels = [b * stride + y for b, y in zip(self.sample_branches, self.targets)]
        self.modalities = [int(train_targets.items[i][3]) for i in self.sample_items]
        self.camids = [int(train_targets.items[i][2]) for i in self.sample_items]

    def __len__(self):
        return len(self.sample_items)

    def __getitem__(self, index):
        item = self.sample_items[index]
        img, camid, modality, path = self.load(item)
        return {"images": img, "targets": self.targets[index], "camids": camid, "modality": modality,
                "img_paths": path, "item": item, "branch": self.sample_branches[index]}

    @property
    def num_classes(self) -> int:
        """Distinct (branch, label) pairs in the train set."""
        return len(set(self.sampling_labels))
