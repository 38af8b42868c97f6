"""RegDB (Nguyen et al., Sensors'17) read from its official index files.

Layout (``root/RegDB`` or ``root`` itself)::

    Visible/<pid>/<name>.bmp, Thermal/<pid>/<name>.bmp
    idx/{train,test}_{visible,thermal}_{trial}.txt    lines "<relative path> <label>", trial 1..10

Protocol: each trial splits the 412 ids into 206 train / 206 test ids; a model is trained on
``train_*_{t}`` and tested on ``test_*_{t}`` of the same trial ``t``. Visible->thermal uses the test
visible images as queries and the test thermal images as gallery; thermal->visible swaps them.
Camera ids are 1 (visible) and 2 (thermal), as in the reference ``eval_regdb``.
"""
import os
from typing import List

from fastreid.data.datasets import DATASET_REGISTRY

from .bases import INFRARED, VISIBLE, Item, VIReIDImageDataset

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
    """

    dataset_name = "regdb"
    EVALUATOR = "RegDBEvaluator"
    LAYOUT = (
        "  RegDB/Visible/<pid>/<img>.bmp, RegDB/Thermal/<pid>/<img>.bmp\n"
        "  RegDB/idx/{train,test}_{visible,thermal}_{1..10}.txt  (lines '<relative path> <label>')"
    )

    def __init__(self, root="datasets", trial=1, mode="v2t", **kwargs):
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
        return {"trial": cfg.DATASETS.REGDB.TRIAL}

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
        items = []
        with open(path) as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                parts = line.split()
                if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                    raise self._error(path, f"line {line_no} is {line.strip()!r}, not '<relative path> <label>'")
                img_path = os.path.join(self.dataset_dir, parts[0])
                items.append((img_path, int(parts[1]), _CAMID[modality], modality))
        if not items:
            raise self._error(path, "index file lists no image")
        missing = [it[0] for it in items if not os.path.isfile(it[0])]
        if missing:
            raise self._error(missing[0], f"{len(missing)} image(s) listed in {path} do not exist, e.g.")
        return items
