"""LLCM (Zhang and Wang, "Diverse Embedding Expansion Network and Low-Light Cross-Modality Benchmark for
Visible-Infrared Person Re-identification", CVPR'23) read from its released layout.

46,767 images of 1,064 identities (713 train, 351 test) from 9 cameras that record visible (VIS) images by
day and near-infrared (NIR) ones in low light. Layout (``root/LLCM`` or ``root`` itself), as read by the
authors' code (ZYK100/LLCM ``data_loader.py`` / ``data_manager.py``)::

    idx/train_vis.txt, idx/train_nir.txt      lines "<relative path> <label>", e.g.
                                              "vis/0001/0001_c01_s185535_f7010_vis.jpg 0"
    idx/test_id.txt                           one comma-separated line of test ids
    test_vis/cam1..cam9/<pid:04d>/<img>.jpg   test visible images
    test_nir/cam{1,2,4..9}/<pid:04d>/<img>.jpg  test near-infrared images (no camera 3)

Protocol (``process_query_llcm`` / ``process_gallery_llcm`` / ``eval_llcm``):

* train = the two index files; the label is the identity (shared by both modalities); the camera is the
  ``_c<cam>`` field of the file name;
* infrared->visible (``i2v``): queries = every test NIR image; gallery = per trial ``t``, with Python's
  ``random.seed(t)``, for each test id in sorted order and each VIS camera 1..9 in order, ``random.choice`` of
  one image of the sorted folder listing;
* visible->infrared (``v2i``): queries = every test VIS image; the gallery is drawn the same way from the
  NIR cameras 1, 2, 4..9;
* cameras keep their number in both modalities; a query drops the gallery images of its own identity and
  camera (:func:`vireid_plugins.evaluation.rank.llcm_removed`); 10 trials.
"""
import os
import random
import re
from typing import Dict, List, Sequence

from fastreid.data.datasets import DATASET_REGISTRY

from .bases import INFRARED, VISIBLE, Item, VIReIDImageDataset

__all__ = ["LLCM", "LLCM_MODES", "LLCM_TEST_CAMS"]

LLCM_MODES = ("i2v", "v2i")
LLCM_TEST_CAMS = {VISIBLE: tuple(range(1, 10)), INFRARED: (1, 2, 4, 5, 6, 7, 8, 9)}
_TEST_FOLDER = {VISIBLE: "test_vis", INFRARED: "test_nir"}
_TRAIN_INDEX = {VISIBLE: "train_vis.txt", INFRARED: "train_nir.txt"}
_CAMERA_IN_NAME = re.compile(r"_c(\d+)")


@DATASET_REGISTRY.register()
class LLCM(VIReIDImageDataset):
    """LLCM with modality labels, the official train lists and per-trial galleries.

    Args:
        root: folder holding ``LLCM/`` (or the dataset folder itself).
        mode: search mode of :attr:`query` / :attr:`gallery`, ``"i2v"`` or ``"v2i"``.
        trial: gallery trial of :attr:`gallery` (seed of the official draw).
    """

    dataset_name = "llcm"
    EVALUATOR = "LLCMEvaluator"
    LAYOUT = (
        "  LLCM/idx/train_vis.txt, LLCM/idx/train_nir.txt  (lines '<relative path> <label>'; the file name holds\n"
        "      the camera as '_c<cam>', e.g. vis/0001/0001_c01_s185535_f7010_vis.jpg)\n"
        "  LLCM/idx/test_id.txt  (one comma-separated line of ids)\n"
        "  LLCM/test_vis/cam1..cam9/<pid:04d>/<img>.jpg, LLCM/test_nir/cam{1,2,4..9}/<pid:04d>/<img>.jpg"
    )

    def __init__(self, root="datasets", mode="i2v", trial=0, **kwargs):
        if mode not in LLCM_MODES:
            raise ValueError(f"LLCM: unknown search mode {mode!r}; expected one of {LLCM_MODES}")
        self.dataset_dir = self._resolve_root(root, "LLCM", "idx")
        for modality, folder in _TEST_FOLDER.items():
            for cam in LLCM_TEST_CAMS[modality]:
                self._require_dir(os.path.join(self.dataset_dir, folder, f"cam{cam}"), "missing camera folder")
        train = self._read_index(VISIBLE) + self._read_index(INFRARED)
        self.test_ids = self._read_ids()
        self.test_visible = self._collect(VISIBLE)
        self.test_infrared = self._collect(INFRARED)
        self.mode, self.trial = mode, int(trial)
        query = self.test_infrared if mode == "i2v" else self.test_visible
        super().__init__(train, query, self.sample_gallery(self.gallery_modality(mode), self.trial), **kwargs)

    @staticmethod
    def gallery_modality(mode: str) -> int:
        """The modality the gallery of ``mode`` is drawn from."""
        return VISIBLE if mode == "i2v" else INFRARED

    # ---------------------------------------------------------------- parsing
    def _read_index(self, modality: int) -> List[Item]:
        path = self._require_file(os.path.join(self.dataset_dir, "idx", _TRAIN_INDEX[modality]), "missing index file")
        items = []
        with open(path) as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                parts = line.split()
                if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                    raise self._error(path, f"line {line_no} is {line.strip()!r}, not '<relative path> <label>'")
                camera = _CAMERA_IN_NAME.search(os.path.basename(parts[0]))
                if camera is None:
                    raise self._error(path, f"line {line_no}: no camera '_c<cam>' in the file name {parts[0]!r}")
                items.append((os.path.join(self.dataset_dir, parts[0]), int(parts[1]), int(camera.group(1)), modality))
        if not items:
            raise self._error(path, "index file lists no image")
        missing = [it[0] for it in items if not os.path.isfile(it[0])]
        if missing:
            raise self._error(missing[0], f"{len(missing)} image(s) listed in {path} do not exist, e.g.")
        return items

    def _read_ids(self) -> List[int]:
        path = self._require_file(os.path.join(self.dataset_dir, "idx", "test_id.txt"), "missing id file")
        with open(path) as f:
            line = f.readline().strip()
        try:
            ids = [int(tok) for tok in line.split(",") if tok.strip()]
        except ValueError as e:
            raise self._error(path, f"id file is not one comma-separated line of integers ({e})") from None
        if not ids:
            raise self._error(path, "id file lists no identity")
        return ids

    def _files(self, modality: int, cam: int, pid: int) -> List[str]:
        folder = os.path.join(self.dataset_dir, _TEST_FOLDER[modality], f"cam{cam}", f"{pid:04d}")
        if not os.path.isdir(folder):
            return []
        return sorted(os.path.join(folder, name) for name in os.listdir(folder))

    def _collect(self, modality: int) -> List[Item]:
        """Every test image of ``modality``: ids in sorted order, cameras in order (the official query order)."""
        return [(path, pid, cam, modality) for pid in sorted(self.test_ids) for cam in LLCM_TEST_CAMS[modality]
                for path in self._files(modality, cam, pid)]

    # ---------------------------------------------------------------- galleries
    def sample_gallery(self, modality: int, trial: int = 0) -> List[Item]:
        """The official random gallery of one trial from the test images of ``modality`` (module docstring)."""
        rng = random.Random(trial)  # same stream as the reference's random.seed(trial)
        gallery = []
        for pid in sorted(self.test_ids):
            for cam in LLCM_TEST_CAMS[modality]:
                files = self._files(modality, cam, pid)
                if files:
                    gallery.append((rng.choice(files), pid, cam, modality))
        return gallery

    def trial_galleries(self, modes: Sequence[str], num_trials: int) -> Dict[str, List[List[Item]]]:
        """``{mode: [gallery of trial 0, ..., trial num_trials-1]}``."""
        for mode in modes:
            if mode not in LLCM_MODES:
                raise ValueError(f"DATASETS.LLCM.MODES: unknown mode {mode!r}; expected some of {LLCM_MODES}")
        return {mode: [self.sample_gallery(self.gallery_modality(mode), t) for t in range(num_trials)]
                for mode in modes}
