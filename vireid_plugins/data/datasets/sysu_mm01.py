"""SYSU-MM01 (Wu et al., ICCV'17) read from its official raw layout.

Layout (``root/SYSU-MM01`` or ``root`` itself)::

    cam1 .. cam6/<pid:04d>/<img:04d>.jpg     visible: cam1, cam2 (indoor), cam4, cam5 (outdoor)
                                             infrared: cam3 (indoor), cam6 (outdoor)
    exp/train_id.txt, exp/val_id.txt, exp/test_id.txt   one comma-separated line of integer ids

Parsing is strict: an id file that is not one comma-separated line of distinct non-negative integers, ids shared
by the train/val and test files, listed ids without any image (unless ``DATASETS.MISSING_IDS warn``) and empty
splits are errors naming the file. Images are the files with an extension of :data:`IMAGE_EXTENSIONS`; other files
(``Thumbs.db``, ``.DS_Store``, ...) are ignored and counted in an INFO line.

Protocol (Wu et al.; mangye16/Cross-Modal-Re-ID-baseline ``data_manager.py``):

* train = train + val ids (395 on the real data), both modalities;
* query = every test infrared image (cams 3 and 6) in both search modes;
* gallery = per trial ``t``, with Python's ``random.seed(t)``, for each test id in sorted order and each
  visible camera of the mode in order (all: 1, 2, 4, 5; indoor: 1, 2), ``random.choice`` of one image
  of the sorted folder listing (single-shot) or ``random.sample`` of 10 (multi-shot).

Not part of the official protocol, :meth:`SYSUMM01.within_modality_runs` gives visible->visible and
infrared->infrared retrieval on the test ids, to measure how much harder the cross-modality task is.
"""
import logging
import os
import random
from collections import Counter
from typing import Dict, List, Sequence

from fastreid.data.datasets import DATASET_REGISTRY

from .bases import IMAGE_EXTENSIONS, INFRARED, VISIBLE, Item, VIReIDImageDataset, examples, is_image_file

__all__ = ["SYSUMM01", "SYSU_VISIBLE_CAMS", "SYSU_INFRARED_CAMS", "SYSU_GALLERY_CAMS"]

SYSU_VISIBLE_CAMS = (1, 2, 4, 5)
SYSU_INFRARED_CAMS = (3, 6)
SYSU_GALLERY_CAMS = {"all": (1, 2, 4, 5), "indoor": (1, 2)}
MULTI_SHOT = 10
ID_FILES = ("train_id.txt", "val_id.txt", "test_id.txt")
_ID_FORMAT = "one comma-separated line of integer ids, e.g. '1,2,4,5'"

logger = logging.getLogger("fastreid.vireid.datasets")


@DATASET_REGISTRY.register()
class SYSUMM01(VIReIDImageDataset):
    """SYSU-MM01 with modality labels, official train split and per-trial galleries.

    Args:
        root: folder holding ``SYSU-MM01/`` (or the dataset folder itself).
        mode: search mode of :attr:`gallery`, ``"all"`` or ``"indoor"``.
        trial: gallery trial of :attr:`gallery` (seed of the official draw).
        shot: ``"single"`` or ``"multi"``.
        missing_ids: ``"error"`` (default) or ``"warn"``: listed ids without any image (``DATASETS.MISSING_IDS``).
    """

    dataset_name = "sysumm01"
    EVALUATOR = "SYSUEvaluator"
    LAYOUT = (
        "  SYSU-MM01/cam1..cam6/<pid:04d>/<img>.jpg  (cams 1,2,4,5 visible; 3,6 infrared)\n"
        "  SYSU-MM01/exp/{train_id,val_id,test_id}.txt  (one comma-separated line of ids)"
    )

    def __init__(self, root="datasets", mode="all", trial=0, shot="single", missing_ids="error", **kwargs):
        self._check_protocol(mode, shot)
        self._set_missing_policy(missing_ids)
        self.dataset_dir = self._resolve_root(root, "SYSU-MM01", "exp")
        self._check_layout()
        self._listing: Dict[tuple, List[str]] = {}
        self._ignored: Counter = Counter()  # extension -> files ignored as non-images
        ids = {name: self._read_ids(name) for name in ID_FILES}
        self._check_disjoint(ids)
        self.train_ids = self._keep_ids_with_images(ids["train_id.txt"] + ids["val_id.txt"], "train_id.txt",
                                                    "val_id.txt")
        self.test_ids = self._keep_ids_with_images(ids["test_id.txt"], "test_id.txt")
        self.mode, self.trial, self.shot = mode, int(trial), shot
        train = self._require_items(self._collect(self.train_ids, SYSU_VISIBLE_CAMS + SYSU_INFRARED_CAMS), "train",
                                    self._id_path("train_id.txt"), "no id of train_id.txt/val_id.txt has an image")
        query = self._require_items(self._collect(self.test_ids, SYSU_INFRARED_CAMS), "query",
                                    self._id_path("test_id.txt"),
                                    f"no id of test_id.txt has an infrared image (cams {SYSU_INFRARED_CAMS})")
        gallery = self.sample_gallery(mode, trial, shot)
        self._log_ignored()
        super().__init__(train, query, gallery, **kwargs)

    @classmethod
    def from_config(cls, cfg):
        return {"shot": cfg.DATASETS.SYSU.GALLERY_SHOT, "missing_ids": cfg.DATASETS.MISSING_IDS}

    # ---------------------------------------------------------------- parsing
    def _check_layout(self):
        for cam in SYSU_VISIBLE_CAMS + SYSU_INFRARED_CAMS:
            self._require_dir(os.path.join(self.dataset_dir, f"cam{cam}"), "missing camera folder")

    def _check_protocol(self, mode, shot):
        if mode not in SYSU_GALLERY_CAMS:
            raise ValueError(f"SYSUMM01: unknown search mode {mode!r}; expected one of {tuple(SYSU_GALLERY_CAMS)}")
        if shot not in ("single", "multi"):
            raise ValueError(f"SYSUMM01: unknown gallery shot {shot!r}; expected 'single' or 'multi'")

    def _id_path(self, name: str) -> str:
        return os.path.join(self.dataset_dir, "exp", name)

    def _read_ids(self, name: str) -> List[int]:
        """The ids of ``exp/<name>``: :data:`_ID_FORMAT`, nothing else (see the module docstring)."""
        path = self._require_file(self._id_path(name), "missing id file")
        with open(path) as f:
            lines = f.read().splitlines()
        first = lines[0].strip() if lines else ""
        if not first:
            raise self._error(path, f"line 1 is empty; expected {_ID_FORMAT}")
        extra = [n for n, line in enumerate(lines[1:], 2) if line.strip()]
        if extra:
            raise self._error(path, f"line {extra[0]} is {lines[extra[0] - 1].strip()[:40]!r}: ids on {len(extra) + 1} "
                                    f"lines (one id per line?); expected {_ID_FORMAT}")
        ids = []
        for position, token in enumerate(first.split(","), 1):
            token = token.strip()
            if not token.isdigit():
                raise self._error(path, f"line 1, id #{position} is {token[:20]!r}, not a non-negative integer; "
                                        f"expected {_ID_FORMAT}")
            ids.append(int(token))
        duplicates = sorted(pid for pid, n in Counter(ids).items() if n > 1)
        if duplicates:
            raise self._error(path, f"line 1 lists id(s) {examples(duplicates)} more than once; expected {_ID_FORMAT} "
                                    "with distinct ids")
        return ids

    def _check_disjoint(self, ids: Dict[str, List[int]]):
        shared = sorted(set(ids["train_id.txt"] + ids["val_id.txt"]) & set(ids["test_id.txt"]))
        if shared:
            raise self._error(self._id_path("test_id.txt"), f"id(s) {examples(shared)} are also listed in train_id.txt "
                                                             "or val_id.txt; test ids must be unseen in training")
        both = sorted(set(ids["train_id.txt"]) & set(ids["val_id.txt"]))
        if both:
            raise self._error(self._id_path("val_id.txt"), f"id(s) {examples(both)} are also listed in train_id.txt")

    def _keep_ids_with_images(self, pids: Sequence[int], *files: str) -> List[int]:
        cams = SYSU_VISIBLE_CAMS + SYSU_INFRARED_CAMS
        empty = [pid for pid in pids if not any(self._files(cam, pid) for cam in cams)]
        if empty:
            self._missing(self._id_path(files[0]),
                          f"{len(empty)} of the {len(pids)} ids listed in {'/'.join(files)} have no image in "
                          f"cam1..cam6/<id:04d>/ (ids {examples(empty)})")
        drop = set(empty)
        return [pid for pid in pids if pid not in drop]

    def _files(self, cam: int, pid: int) -> List[str]:
        """Sorted image files of ``cam<cam>/<pid:04d>/`` (cached; non-image files are counted, not returned)."""
        key = (cam, pid)
        if key not in self._listing:
            folder = os.path.join(self.dataset_dir, f"cam{cam}", f"{pid:04d}")
            names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
            paths = [os.path.join(folder, n) for n in names]
            images = [p for n, p in zip(names, paths) if is_image_file(n) and os.path.isfile(p)]
            kept = set(images)
            self._ignored.update(os.path.splitext(n)[1].lower() or n for n, p in zip(names, paths) if p not in kept)
            self._listing[key] = images
        return self._listing[key]

    def _log_ignored(self):
        if self._ignored:
            logger.info(f"SYSUMM01: ignored {sum(self._ignored.values())} non-image file(s) in the id folders "
                        f"(images are {'/'.join(IMAGE_EXTENSIONS)}): {dict(self._ignored)}")

    def _collect(self, pids: Sequence[int], cams: Sequence[int]) -> List[Item]:
        return [
            (path, pid, cam, INFRARED if cam in SYSU_INFRARED_CAMS else VISIBLE)
            for pid in sorted(pids) for cam in cams for path in self._files(cam, pid)
        ]

    # ---------------------------------------------------------------- galleries
    def sample_gallery(self, mode: str = "all", trial: int = 0, shot: str = "single") -> List[Item]:
        """The official random gallery of one trial (see the module docstring)."""
        self._check_protocol(mode, shot)
        return self._draw(SYSU_GALLERY_CAMS[mode], trial, shot, f"{mode}-search gallery")

    def _draw(self, cams: Sequence[int], trial: int, shot: str, split: str) -> List[Item]:
        rng = random.Random(trial)  # same stream as the reference's random.seed(trial)
        gallery = []
        for pid in sorted(self.test_ids):
            for cam in cams:
                files = self._files(cam, pid)
                if not files:
                    continue
                picked = [rng.choice(files)] if shot == "single" else rng.sample(files, min(MULTI_SHOT, len(files)))
                modality = INFRARED if cam in SYSU_INFRARED_CAMS else VISIBLE
                gallery.extend((path, pid, cam, modality) for path in picked)
        kind = "an infrared" if set(cams) <= set(SYSU_INFRARED_CAMS) else "a visible"
        return self._require_items(gallery, split, self._id_path("test_id.txt"),
                                   f"no id of test_id.txt has {kind} image in cams {tuple(cams)}")

    def gallery_pool(self, modes: Sequence[str] = ("all", "indoor")) -> List[Item]:
        """Every visible test image a gallery of ``modes`` can draw (features are extracted once)."""
        cams = sorted({cam for mode in modes for cam in SYSU_GALLERY_CAMS[mode]})
        return self._collect(self.test_ids, cams)

    def all_items(self) -> List[Item]:
        return self.train + self.query + self.gallery_pool(tuple(SYSU_GALLERY_CAMS))

    def trial_galleries(self, modes: Sequence[str], num_trials: int, shot: str = "single") -> Dict[str, List]:
        """``{mode: [gallery of trial 0, ..., trial num_trials-1]}``."""
        return {mode: [self.sample_gallery(mode, t, shot) for t in range(num_trials)] for mode in modes}

    # ---------------------------------------------------------------- within-modality retrieval (not official)
    def within_modality_runs(self, num_trials: int, shot: str = "single") -> Dict[str, tuple]:
        """``{"v2v": (queries, galleries), "i2i": (queries, galleries)}``: every visible (infrared) test image
        against, per trial, the same draw as the official galleries from the visible (infrared) cameras (the
        v2v galleries are the all-search ones); scored with the Market-1501 same-camera rule."""
        self._check_protocol("all", shot)
        visible = self._collect(self.test_ids, SYSU_VISIBLE_CAMS)
        return {"v2v": (visible, [self.sample_gallery("all", t, shot) for t in range(num_trials)]),
                "i2i": (self.query, [self._draw(SYSU_INFRARED_CAMS, t, shot, "i2i gallery")
                        for t in range(num_trials)])}
