"""SYSU-MM01 (Wu et al., ICCV'17) read from its official raw layout.

Layout (``root/SYSU-MM01`` or ``root`` itself)::

    cam1 .. cam6/<pid:04d>/<img:04d>.jpg     visible: cam1, cam2 (indoor), cam4, cam5 (outdoor)
                                             infrared: cam3 (indoor), cam6 (outdoor)
    exp/train_id.txt, exp/val_id.txt, exp/test_id.txt   one comma-separated line of integer ids

Protocol (Wu et al.; mangye16/Cross-Modal-Re-ID-baseline ``data_manager.py``):

* train = train + val ids (395 on the real data), both modalities;
* query = every test infrared image (cams 3 and 6) in both search modes;
* gallery = per trial ``t``, with Python's ``random.seed(t)``, for each test id in sorted order and each
  visible camera of the mode in order (all: 1, 2, 4, 5; indoor: 1, 2), ``random.choice`` of one image
  of the sorted folder listing (single-shot) or ``random.sample`` of 10 (multi-shot).

Not part of the official protocol, :meth:`SYSUMM01.within_modality_runs` gives visible->visible and
infrared->infrared retrieval on the test ids, to measure how much harder the cross-modality task is.
"""
import os
import random
from typing import Dict, List, Sequence

from fastreid.data.datasets import DATASET_REGISTRY

from .bases import INFRARED, VISIBLE, Item, VIReIDImageDataset

__all__ = ["SYSUMM01", "SYSU_VISIBLE_CAMS", "SYSU_INFRARED_CAMS", "SYSU_GALLERY_CAMS"]

SYSU_VISIBLE_CAMS = (1, 2, 4, 5)
SYSU_INFRARED_CAMS = (3, 6)
SYSU_GALLERY_CAMS = {"all": (1, 2, 4, 5), "indoor": (1, 2)}
MULTI_SHOT = 10


@DATASET_REGISTRY.register()
class SYSUMM01(VIReIDImageDataset):
    """SYSU-MM01 with modality labels, official train split and per-trial galleries.

    Args:
        root: folder holding ``SYSU-MM01/`` (or the dataset folder itself).
        mode: search mode of :attr:`gallery`, ``"all"`` or ``"indoor"``.
        trial: gallery trial of :attr:`gallery` (seed of the official draw).
        shot: ``"single"`` or ``"multi"``.
    """

    dataset_name = "sysumm01"
    EVALUATOR = "SYSUEvaluator"
    LAYOUT = (
        "  SYSU-MM01/cam1..cam6/<pid:04d>/<img>.jpg  (cams 1,2,4,5 visible; 3,6 infrared)\n"
        "  SYSU-MM01/exp/{train_id,val_id,test_id}.txt  (one comma-separated line of ids)"
    )

    def __init__(self, root="datasets", mode="all", trial=0, shot="single", **kwargs):
        self._check_protocol(mode, shot)
        self.dataset_dir = self._resolve_root(root, "SYSU-MM01", "exp")
        self._check_layout()
        self.train_ids = self._read_ids("train_id.txt") + self._read_ids("val_id.txt")
        self.test_ids = self._read_ids("test_id.txt")
        self.mode, self.trial, self.shot = mode, int(trial), shot
        train = self._collect(self.train_ids, SYSU_VISIBLE_CAMS + SYSU_INFRARED_CAMS)
        query = self._collect(self.test_ids, SYSU_INFRARED_CAMS)
        gallery = self.sample_gallery(mode, trial, shot)
        super().__init__(train, query, gallery, **kwargs)

    @classmethod
    def from_config(cls, cfg):
        return {"shot": cfg.DATASETS.SYSU.GALLERY_SHOT}

    # ---------------------------------------------------------------- parsing
    def _check_layout(self):
        for cam in SYSU_VISIBLE_CAMS + SYSU_INFRARED_CAMS:
            self._require_dir(os.path.join(self.dataset_dir, f"cam{cam}"), "missing camera folder")

    def _check_protocol(self, mode, shot):
        if mode not in SYSU_GALLERY_CAMS:
            raise ValueError(f"SYSUMM01: unknown search mode {mode!r}; expected one of {tuple(SYSU_GALLERY_CAMS)}")
        if shot not in ("single", "multi"):
            raise ValueError(f"SYSUMM01: unknown gallery shot {shot!r}; expected 'single' or 'multi'")

    def _read_ids(self, name: str) -> List[int]:
        path = self._require_file(os.path.join(self.dataset_dir, "exp", name), "missing id file")
        with open(path) as f:
            line = f.readline().strip()
        try:
            return [int(tok) for tok in line.split(",") if tok.strip()]
        except ValueError as e:
            raise self._error(path, f"id file is not one comma-separated line of integers ({e})") from None

    def _files(self, cam: int, pid: int) -> List[str]:
        folder = os.path.join(self.dataset_dir, f"cam{cam}", f"{pid:04d}")
        if not os.path.isdir(folder):
            return []
        return sorted(os.path.join(folder, name) for name in os.listdir(folder))

    def _collect(self, pids: Sequence[int], cams: Sequence[int]) -> List[Item]:
        return [
            (path, pid, cam, INFRARED if cam in SYSU_INFRARED_CAMS else VISIBLE)
            for pid in sorted(pids) for cam in cams for path in self._files(cam, pid)
        ]

    # ---------------------------------------------------------------- galleries
    def sample_gallery(self, mode: str = "all", trial: int = 0, shot: str = "single") -> List[Item]:
        """The official random gallery of one trial (see the module docstring)."""
        self._check_protocol(mode, shot)
        return self._draw(SYSU_GALLERY_CAMS[mode], trial, shot)

    def _draw(self, cams: Sequence[int], trial: int, shot: str) -> List[Item]:
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
        return gallery

    def gallery_pool(self, modes: Sequence[str] = ("all", "indoor")) -> List[Item]:
        """Every visible test image a gallery of ``modes`` can draw (features are extracted once)."""
        cams = sorted({cam for mode in modes for cam in SYSU_GALLERY_CAMS[mode]})
        return self._collect(self.test_ids, cams)

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
                "i2i": (self.query, [self._draw(SYSU_INFRARED_CAMS, t, shot) for t in range(num_trials)])}
