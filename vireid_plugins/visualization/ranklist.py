"""Rank-list images: a query and its top-k gallery images in a row, correct matches framed green, wrong red.

Pure drawing: items ``(img_path, pid, camid, modality)`` and a distance row in, a PIL image out (the images
are read from their paths). The geometry is fixed by :class:`RankListLayout`, so every row of a contact
sheet has the same size and tests can read the frame colours at known pixels::

    +--------------------------------------------------------------------+
    | title                                                              |
    | [query]   [#1] [#2] ... [#k]       each image framed, 3 text lines |
    |  text      text text     text      below: rank/distance, id,       |
    |                                    modality and camera             |
    +--------------------------------------------------------------------+
"""
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..data.common import read_image
from ..data.datasets.bases import INFRARED, VISIBLE, Item

__all__ = ["CORRECT", "WRONG", "QUERY", "RankListLayout", "top_k", "draw_ranklist", "contact_sheet"]

CORRECT = (0, 170, 0)  # frame of a gallery image of the query's identity
WRONG = (210, 0, 0)  # frame of a gallery image of another identity
QUERY = (40, 90, 220)  # frame of the query
BACKGROUND = (255, 255, 255)
TEXT = (0, 0, 0)
MODALITY_LABELS = {VISIBLE: "VIS", INFRARED: "IR"}


@dataclass(frozen=True)
class RankListLayout:
    """Pixel geometry of a rank-list row.

    Args:
        height, width: size every image is resized to.
        topk: gallery slots per row (a row keeps its width when fewer gallery images are kept).
        border: frame thickness around each image.
        pad: space between slots and around the row; the query is followed by ``3 * pad``.
        line: height of one text line (3 lines under each image, 1 title line).
    """

    height: int = 128
    width: int = 64
    topk: int = 10
    border: int = 4
    pad: int = 6
    line: int = 12

    def __post_init__(self):
        if self.height < 8 or self.width < 8 or self.topk < 1 or self.border < 1:
            raise ValueError(f"RankListLayout: images must be >= 8 x 8 pixels, topk >= 1 and border >= 1, got {self}")

    @property
    def slot(self) -> Tuple[int, int]:
        """``(height, width)`` of a framed image."""
        return self.height + 2 * self.border, self.width + 2 * self.border

    @property
    def size(self) -> Tuple[int, int]:
        """``(width, height)`` of a row image, as PIL reports it."""
        slot_h, slot_w = self.slot
        width = self.pad + slot_w + 3 * self.pad + self.topk * (slot_w + self.pad)
        return width, self.line + self.pad + slot_h + 3 * self.line + self.pad

    def frame_box(self, slot: int) -> Tuple[int, int, int, int]:
        """``(left, top, right, bottom)`` (right/bottom exclusive) of the frame of slot 0 (query) .. topk."""
        slot_h, slot_w = self.slot
        left = self.pad if slot == 0 else self.pad + slot_w + 3 * self.pad + (slot - 1) * (slot_w + self.pad)
        top = self.line + self.pad
        return left, top, left + slot_w, top + slot_h


def top_k(distances, k: int, removed=None) -> np.ndarray:
    """Indices of the ``k`` nearest gallery items, nearest first, skipping ``removed`` ones.

    Args:
        distances: ``(num_g,)`` distances of one query (smaller = more similar).
        k: at most this many indices are returned.
        removed: optional ``(num_g,)`` bool, items the protocol drops for this query.

    Ties are broken by gallery index (a stable sort), as the metrics of
    :mod:`vireid_plugins.evaluation.rank` do.
    """
    distances = np.asarray(distances, dtype=np.float64).reshape(-1)
    if np.isnan(distances).any():
        raise ValueError("top_k: the distance row contains NaN")
    kept = np.arange(distances.size) if removed is None else np.flatnonzero(~np.asarray(removed, dtype=bool))
    return kept[np.argsort(distances[kept], kind="stable")[:k]]


def _framed(path: str, layout: RankListLayout, colour) -> Image.Image:
    image = read_image(path).resize((layout.width, layout.height), Image.BILINEAR)
    slot_h, slot_w = layout.slot
    framed = Image.new("RGB", (slot_w, slot_h), colour)
    framed.paste(image, (layout.border, layout.border))
    return framed


def _spaced(text: str) -> str:
    """Double spaces: the space of PIL's default font is 2 pixels wide."""
    return text.replace(" ", "  ")


def _caption(item: Item) -> str:
    _, pid, camid, modality = item
    return f"id {pid}\n{MODALITY_LABELS.get(modality, modality)} cam{camid}"


def draw_ranklist(query: Item, gallery: Sequence[Item], distances, layout: Optional[RankListLayout] = None,
                  removed=None, title: str = "") -> Image.Image:
    """One rank-list row.

    Args:
        query: the query item ``(img_path, pid, camid, modality)``.
        gallery: the ``num_g`` gallery items of the query's protocol run.
        distances: ``(num_g,)`` query-gallery distances.
        layout: geometry (default :class:`RankListLayout`), ``layout.topk`` gallery images are shown.
        removed: optional ``(num_g,)`` bool, gallery items the protocol drops for this query (e.g. SYSU-MM01
            camera-2 images for a camera-3 query); they are never shown.
        title: text of the first line.

    Returns:
        An RGB image of ``layout.size``: the query framed in :data:`QUERY` blue, then the nearest kept gallery
        images, framed :data:`CORRECT` (same pid as the query) or :data:`WRONG`, each with its rank and
        distance, identity, modality and camera written below.
    """
    layout = layout or RankListLayout()
    distances = np.asarray(distances, dtype=np.float64).reshape(-1)
    if distances.size != len(gallery):
        raise ValueError(f"draw_ranklist: {distances.size} distances for {len(gallery)} gallery items")
    canvas = Image.new("RGB", layout.size, BACKGROUND)
    draw, font = ImageDraw.Draw(canvas), ImageFont.load_default()
    draw.text((layout.pad, layout.pad // 2), _spaced(title), fill=TEXT, font=font)
    slots = [(query, QUERY, "query")]
    for rank, g in enumerate(top_k(distances, layout.topk, removed), start=1):
        colour = CORRECT if int(gallery[g][1]) == int(query[1]) else WRONG
        slots.append((gallery[g], colour, f"#{rank} d={distances[g]:.2f}"))
    for slot, (item, colour, head) in enumerate(slots):
        left, top, _, bottom = layout.frame_box(slot)
        canvas.paste(_framed(item[0], layout, colour), (left, top))
        draw.multiline_text((left, bottom + 1), _spaced(f"{head}\n{_caption(item)}"), fill=TEXT, font=font,
                            spacing=0)
    return canvas


def contact_sheet(images: Sequence[Image.Image], columns: int = 1, pad: int = 6) -> Image.Image:
    """Images in a grid of ``columns``, row by row, on a white sheet; cells are as large as the largest image."""
    if not images:
        raise ValueError("contact_sheet: no image given")
    cell_w, cell_h = max(im.width for im in images), max(im.height for im in images)
    rows = -(-len(images) // columns)
    sheet = Image.new("RGB", (columns * cell_w + (columns + 1) * pad, rows * cell_h + (rows + 1) * pad), BACKGROUND)
    for i, image in enumerate(images):
        row, col = divmod(i, columns)
        sheet.paste(image, (pad + col * (cell_w + pad), pad + row * (cell_h + pad)))
    return sheet
