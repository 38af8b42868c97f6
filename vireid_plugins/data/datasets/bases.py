"""Common base of the visible-infrared datasets.

Every item is a tuple ``(img_path, pid, camid, modality)`` of a ``str`` and three Python ``int``s;
``modality`` is :data:`VISIBLE` (0) or :data:`INFRARED` (1). fast-reid's own ``CommDataset`` reads ``item[0:3]``
(``vireid_plugins.compat`` adds the modality of such items to its batches);
:class:`vireid_plugins.data.common.VIReIDDataset` returns it too.
"""
import logging
import os
from typing import List, Tuple

from fastreid.data.datasets.bases import ImageDataset
from tabulate import tabulate
from termcolor import colored

__all__ = ["VISIBLE", "INFRARED", "MODALITY_NAMES", "IMAGE_EXTENSIONS", "MISSING_IDS_POLICIES", "DatasetLayoutError",
           "VIReIDImageDataset", "Item", "is_image_file"]

VISIBLE = 0
INFRARED = 1
MODALITY_NAMES = {VISIBLE: "visible", INFRARED: "infrared"}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")  # files read as images (case-insensitive); others are ignored
MISSING_IDS_POLICIES = ("error", "warn")  # DATASETS.MISSING_IDS
_EXAMPLES = 5  # examples quoted in messages

Item = Tuple[str, int, int, int]

logger = logging.getLogger("fastreid.vireid.datasets")


def is_image_file(name: str) -> bool:
    """An image by its extension; hidden files (``._x.jpg`` of macOS, ``.DS_Store``) never are."""
    base = os.path.basename(name)
    return not base.startswith(".") and base.lower().endswith(IMAGE_EXTENSIONS)


def examples(values, n: int = _EXAMPLES) -> str:
    values = list(values)
    return ", ".join(map(str, values[:n])) + (f", ... ({len(values) - n} more)" if len(values) > n else "")


class DatasetLayoutError(FileNotFoundError):
    """A dataset folder does not follow the official layout; the message names the path and the layout."""

    def __init__(self, dataset: str, path: str, problem: str, layout: str):
        super().__init__(f"{dataset}: {problem}: '{path}'. Expected the official layout:\n{layout}")
        self.path = path


class VIReIDImageDataset(ImageDataset):
    """fast-reid ``ImageDataset`` whose items carry a modality (see module docstring)."""

    dataset_name = "vireid"
    LAYOUT = ""  # human-readable description of the expected folder layout, used in errors

    def _set_missing_policy(self, missing_ids: str):
        if missing_ids not in MISSING_IDS_POLICIES:
            raise ValueError(f"DATASETS.MISSING_IDS: expected one of {MISSING_IDS_POLICIES}, got {missing_ids!r}")
        self.missing_ids = missing_ids

    def _missing(self, path: str, problem: str):
        """Ids/images a split file lists but the disk lacks: an error, or with ``DATASETS.MISSING_IDS "warn"`` a
        WARNING (they are dropped)."""
        if self.missing_ids == "error":
            raise self._error(path, f"{problem} (set DATASETS.MISSING_IDS warn to drop them with a warning)")
        logger.warning(f"{type(self).__name__}: {problem}: '{path}'. Dropped (DATASETS.MISSING_IDS warn)")

    def _require_items(self, items: List[Item], split: str, path: str, why: str) -> List[Item]:
        """Refuse an empty split, naming the file that made it empty."""
        if not items:
            raise self._error(path, f"the {split} split is empty: {why}")
        return items

    def all_items(self) -> List[Item]:
        """Every image the dataset can use (train, query, gallery), e.g. to check that each one is readable."""
        return list(self.train) + list(self.query) + list(self.gallery)

    # ---------------------------------------------------------------- layout checks
    def _error(self, path: str, problem: str) -> DatasetLayoutError:
        return DatasetLayoutError(type(self).__name__, path, problem, self.LAYOUT)

    def _require_dir(self, path: str, what: str = "missing folder") -> str:
        if not os.path.isdir(path):
            raise self._error(path, what)
        return path

    def _require_file(self, path: str, what: str = "missing file") -> str:
        if not os.path.isfile(path):
            raise self._error(path, what)
        return path

    def _resolve_root(self, root: str, folder_name: str, marker: str) -> str:
        """``root/folder_name`` if it exists, else ``root`` itself when it holds ``marker``."""
        for candidate in (os.path.join(root, folder_name), root):
            if os.path.exists(os.path.join(candidate, marker)):
                return candidate
        raise self._error(
            os.path.abspath(os.path.join(root, folder_name)),
            f"dataset not found (looked for '{marker}' in '{root}/{folder_name}' and in '{root}')",
        )

    # ---------------------------------------------------------------- summaries
    @staticmethod
    def _summary_rows(name: str, items: List[Item]):
        rows = []
        for modality, modality_name in MODALITY_NAMES.items():
            subset = [it for it in items if it[3] == modality]
            if subset:
                rows.append([f"{name} ({modality_name})", len({it[1] for it in subset}), len(subset),
                             len({it[2] for it in subset})])
        return rows

    def _log_table(self, rows):
        table = tabulate(rows, headers=["subset", "# ids", "# images", "# cameras"], tablefmt="pipe",
                         numalign="left")
        logger.info(f"=> Loaded {type(self).__name__} in csv format: \n" + colored(table, "cyan"))

    def show_train(self):
        self._log_table(self._summary_rows("train", self.train))

    def show_test(self):
        self._log_table(self._summary_rows("query", self.query) + self._summary_rows("gallery", self.gallery))

    def combine_all(self):
        raise ValueError(f"{type(self).__name__}: DATASETS.COMBINEALL is not supported for visible-infrared "
                         "benchmarks (test identities must stay unseen during training)")
