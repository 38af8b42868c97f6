"""RegDB (Nguyen et al., Sensors'17) read from its official index files.

Layout (``root/RegDB`` or ``root`` itself)::

    Visible/<pid>/<name>.bmp, Thermal/<pid>/<name>.bmp
    idx/{train,test}_{visible,thermal}_{trial}.txt    lines "<relative path> <label>", trial 1..10

Protocol: each trial splits the 412 ids into 206 train / 206 test ids; a model is trained on
``train_*_{t}`` and tested on ``test_*_{t}`` of the same trial ``t``. Visible->thermal uses the test
visible images as queries and the test thermal images as gallery; thermal->visible swaps them.
Camera ids are 1 (visible) and 2 (thermal), as in the reference ``eval_regdb``.

Parsing is strict: every non-blank index line is ``<relative image path> <non-negative integer label>`` with an
image extension (:data:`IMAGE_EXTENSIONS`), listed once; listed images that do not exist are an error (or, with
``DATASETS.MISSING_IDS warn``, dropped with a warning giving the count); an empty split is an error naming its
index file.
"""
import os
from typing import List

from fastreid.data.datasets import DATASET_REGISTRY

from .bases import IMAGE_EXTENSIONS, INFRARED, VISIBLE, Item, VIReIDImageDataset, examples, is_image_file

__all__ = ["RegDB", "REGDB_MODES"]

REGDB_MODES = ("v2t", "t2v")
_CAMID = {VISIBLE: 1, INFRARED: 2}
_INDEX_NAME = {VISIBLE: "visible", INFRARED: "thermal"}


@DATASET_REGISTRY.register()
class RegDB(VIReIDImageDataset):
    """RegDB with modality labels for one of the ten official trials.

    Args:
        root: folder holding ``RegDB/`` (or the dataset folder itself).
        trial: split 1..10.
        mode: ``"v2t"`` (visible queries, thermal gallery) or ``"t2v"``; sets :attr:`query`/:attr:`gallery`.
        missing_ids: ``"error"`` (default) or ``"warn"``: listed images that do not exist (``DATASETS.MISSING_IDS``).
    """

    dataset_name = "regdb"
    EVALUATOR = "RegDBEvaluator"
    LAYOUT = (
        "  RegDB/Visible/<pid>/<img>.bmp, RegDB/Thermal/<pid>/<img>.bmp\n"
        "  RegDB/idx/{train,test}_{visible,thermal}_{1..10}.txt  (lines '<relative path> <label>')"
    )

    def __init__(self, root="datasets", trial=1, mode="v2t", missing_ids="error", **kwargs):
        self._set_missing_policy(missing_ids)
        self.dataset_dir = self._resolve_root(root, "RegDB", "idx")
        trial = int(trial)
        if not 1 <= trial <= 10:
            raise ValueError(f"RegDB: trial must be in 1..10, got {trial}")
        if mode not in REGDB_MODES:
            raise ValueError(f"RegDB: unknown mode {mode!r}; expected one of {REGDB_MODES}")
        self.trial, self.mode = trial, mode
        train = self._read_index("train", VISIBLE) + self._read_index("train", INFRARED)
        self.test_visible = self._read_index("test", VISIBLE)
        self.test_thermal = self._read_index("test", INFRARED)
        query, gallery = self.split(mode)
        super().__init__(train, query, gallery, **kwargs)

    @classmethod
    def from_config(cls, cfg):
        return {"trial": cfg.DATASETS.REGDB.TRIAL, "missing_ids": cfg.DATASETS.MISSING_IDS}

    def split(self, mode: str):
        """``(query, gallery)`` of a search mode."""
        if mode == "v2t":
            return self.test_visible, self.test_thermal
        return self.test_thermal, self.test_visible

    def _read_index(self, split: str, modality: int) -> List[Item]:
        path = self._require_file(
            os.path.join(self.dataset_dir, "idx", f"{split}_{_INDEX_NAME[modality]}_{self.trial}.txt"),
            "missing index file",
        )
        items, seen = [], {}
        with open(path) as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                parts = line.split()
                if len(parts) != 2 or not parts[1].isdigit():
                    raise self._error(path, f"line {line_no} is {line.strip()[:80]!r}, not '<relative path> <label>' "
                                            "(a non-negative integer label)")
                if not is_image_file(parts[0]):
                    raise self._error(path, f"line {line_no} lists {parts[0]!r}, not an image path (expected an "
                                            f"extension of {'/'.join(IMAGE_EXTENSIONS)})")
                if parts[0] in seen:
                    raise self._error(path, f"line {line_no} lists {parts[0]!r} again (first on line {seen[parts[0]]})")
                seen[parts[0]] = line_no
                items.append((os.path.join(self.dataset_dir, parts[0]), int(parts[1]), _CAMID[modality], modality))
        missing = [it for it in items if not os.path.isfile(it[0])]
        if missing:
            lost = set(missing)
            kept = [it for it in items if it not in lost]
            gone = {it[1] for it in missing} - {it[1] for it in kept}
            self._missing(path, f"{len(missing)} of the {len(items)} images listed do not exist ({len(gone)} label(s) "
                                f"lose all their images), e.g. {examples([it[0] for it in missing], 3)}")
            items = kept
        return self._require_items(items, f"{split} {_INDEX_NAME[modality]}", path,
                                   "the index file lists no image" if not seen else "none of its images exists")
