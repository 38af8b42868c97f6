"""Write rank-list PNGs of one protocol run: one per chosen query and a contact sheet of all of them.

:class:`RankListWriter` serves both ``TEST.RANKLIST`` (the cross-modality evaluators call it for every
``(mode, trial)`` run they score) and ``tools/visualize_ranklist.py``. A run is what the evaluator ranks:
query and gallery positions into its ``items`` and their distance matrix; the gallery items the protocol
drops for a query (``evaluator.removed``) are never shown.

Files: ``<out_dir>/[iter_<n>/]<mode>/query_<position>.png`` (``position`` in the run's query list) and
``contact_sheet.png``; a folder is written completely under a temporary name, then renamed.
"""
import logging
import os
import secrets
import shutil
from typing import List, Optional, Sequence

import numpy as np

from .ranklist import RankListLayout, contact_sheet, draw_ranklist

__all__ = ["RankListWriter", "choose_queries"]

logger = logging.getLogger("fastreid.vireid.ranklist")


def choose_queries(num_queries: int, positions: Sequence[int] = (), num_random: int = 0, seed: int = 0,
                   source: str = "queries") -> np.ndarray:
    """Sorted query positions: the given ``positions`` (checked against ``num_queries``), else ``num_random``
    distinct positions drawn with ``seed``; ``source`` names the option in errors."""
    if len(positions):
        picks = np.asarray([int(p) for p in positions])
        bad = picks[(picks < 0) | (picks >= num_queries)]
        if bad.size:
            raise ValueError(f"{source}: query position {int(bad[0])} is out of range; this run has {num_queries} "
                             f"queries (positions 0..{num_queries - 1})")
        return np.unique(picks)
    if num_random < 1:
        raise ValueError(f"{source}: give query positions or a positive number of random queries")
    return np.sort(np.random.default_rng(seed).choice(num_queries, size=min(num_random, num_queries), replace=False))


def _iteration_folder() -> str:
    """``iter_<n>`` inside a training run (fast-reid's event storage), ``""`` outside one."""
    from fastreid.utils.events import get_event_storage

    try:
        return f"iter_{get_event_storage().iter:07d}"
    except AssertionError:
        return ""


class RankListWriter:
    """Draw and save the rank lists of chosen queries.

    Args:
        out_dir: root folder of the PNGs.
        layout: row geometry (images size, top-k).
        queries: query positions to draw; if empty, ``num_random`` positions drawn with ``seed``.
        num_random: number of random queries per run.
        trial: the only trial drawn when called as an evaluator hook.
        seed: seed of the random queries.
        source: option name used in errors about ``queries``.
    """

    def __init__(self, out_dir: str, layout: RankListLayout, queries: Sequence[int] = (), num_random: int = 16,
                 trial: int = 0, seed: int = 0, source: str = "queries"):
        self.out_dir, self.layout, self.queries = out_dir, layout, list(queries)
        self.num_random, self.trial, self.seed, self.source = num_random, int(trial), int(seed), source

    @classmethod
    def from_config(cls, cfg, dataset_name: str, evaluator) -> Optional["RankListWriter"]:
        """The writer of ``TEST.RANKLIST`` for ``evaluator`` (``None`` when disabled), writing under
        ``OUTPUT_DIR/ranklists/<dataset_name>``."""
        opts = cfg.TEST.RANKLIST
        if not opts.ENABLED:
            return None
        if not cfg.OUTPUT_DIR:
            raise ValueError("TEST.RANKLIST.ENABLED needs an OUTPUT_DIR to write the rank lists into")
        num_runs = min(len(runs) for runs in evaluator.runs.values())
        if not 0 <= opts.TRIAL < num_runs:
            raise ValueError(f"TEST.RANKLIST.TRIAL={opts.TRIAL}, but {dataset_name} is evaluated on {num_runs} "
                             f"trial(s) per mode (0..{num_runs - 1})")
        if len(opts.SIZE) != 2:
            raise ValueError(f"TEST.RANKLIST.SIZE must be [height, width], got {list(opts.SIZE)}")
        layout = RankListLayout(height=int(opts.SIZE[0]), width=int(opts.SIZE[1]), topk=int(opts.TOPK))
        return cls(os.path.join(cfg.OUTPUT_DIR, "ranklists", dataset_name), layout, opts.QUERIES, opts.NUM_QUERIES,
                   opts.TRIAL, cfg.SEED, source="TEST.RANKLIST.QUERIES")

    def __call__(self, evaluator, mode: str, trial: int, query, gallery, distmat) -> List[str]:
        """Evaluator hook: draw the run ``(mode, trial)`` if it is :attr:`trial`; returns the files written."""
        if trial != self.trial:
            return []
        folder = os.path.join(self.out_dir, _iteration_folder(), mode)
        return self.write(folder, evaluator, query, gallery, distmat, title=f"{mode} trial {trial}")

    def write(self, folder: str, evaluator, query, gallery, distmat, title: str = "") -> List[str]:
        """Write the chosen queries of a run into ``folder`` (replaced as a whole).

        Args:
            folder: output folder.
            evaluator: gives ``items`` (indexed by ``query``/``gallery``) and ``removed(query, gallery)``.
            query, gallery: ``(num_q,)`` / ``(num_g,)`` positions in ``evaluator.items``.
            distmat: ``(num_q, num_g)`` distances.
            title: prefix of each row's title.
        """
        query, gallery, distmat = np.asarray(query), np.asarray(gallery), np.asarray(distmat)
        picks = choose_queries(len(query), self.queries, self.num_random, self.seed, self.source)
        removed = evaluator.removed(query[picks], gallery)
        gallery_items = [evaluator.items[g] for g in gallery]
        names, rows = [], []
        for i, p in enumerate(picks):
            item = evaluator.items[query[p]]
            rows.append(draw_ranklist(item, gallery_items, distmat[p], self.layout,
                                      None if removed is None else removed[i],
                                      title=f"{title} query {p} (id {item[1]})".strip()))
            names.append(f"query_{p:05d}.png")
        rows_and_sheet = list(zip(names, rows)) + [("contact_sheet.png", contact_sheet(rows))]
        _write_folder(folder, rows_and_sheet)
        logger.info(f"Rank lists of {len(picks)} queries written to {folder}")
        return [os.path.join(folder, name) for name, _ in rows_and_sheet]


def _write_folder(folder: str, images) -> None:
    """Save ``(name, PIL image)`` pairs as PNGs into a temporary sibling of ``folder``, then rename it."""
    parent = os.path.dirname(os.path.abspath(folder))
    os.makedirs(parent, exist_ok=True)
    tmp = f"{folder}.tmp-{secrets.token_hex(4)}"
    os.makedirs(tmp)
    try:
        for name, image in images:
            image.save(os.path.join(tmp, name), format="PNG")
        if os.path.isdir(folder):
            old = f"{folder}.old-{secrets.token_hex(4)}"
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old)
        else:
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
