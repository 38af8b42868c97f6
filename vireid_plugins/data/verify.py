"""Up-front image check: open every image of a dataset and report all unreadable files at once.

``DATASETS.VERIFY_IMAGES True`` runs it when a dataset is built (train and test), ``tools/check_dataset.py`` on
demand. Without it, a bad image stops training only when a batch first draws it, hours later, and one at a time.
"""
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, List, Optional, Set, Tuple

from PIL import Image

__all__ = ["UnreadableImagesError", "find_unreadable_images", "dataset_image_paths", "verify_dataset_images"]

logger = logging.getLogger("fastreid.vireid.data")

_VERIFIED: Set[str] = set()  # paths already checked in this process (train and test builds share images)


class UnreadableImagesError(OSError):
    """Some images cannot be decoded; ``bad`` lists ``(path, reason)`` for every one of them."""

    def __init__(self, message: str, bad: List[Tuple[str, str]]):
        super().__init__(message)
        self.bad = bad


def _problem(path: str) -> Optional[str]:
    try:
        with Image.open(path) as img:
            img.load()  # decodes every pixel: truncated files fail here, not at Image.open
        return None
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError... for bad files
        return f"{type(e).__name__}: {e}"


def find_unreadable_images(paths: Iterable[str], num_workers: int = 4) -> List[Tuple[str, str]]:
    """``[(path, reason)]`` of every file in ``paths`` that PIL cannot fully decode, in the order given."""
    paths = list(paths)
    with ThreadPoolExecutor(max(1, int(num_workers))) as pool:  # decoding releases the GIL
        problems = list(pool.map(_problem, paths, chunksize=64))
    return [(p, why) for p, why in zip(paths, problems) if why is not None]


def dataset_image_paths(dataset) -> List[str]:
    """Distinct image paths of a built dataset: ``all_items()`` of ours, train + query + gallery of fast-reid's."""
    items = dataset.all_items() if hasattr(dataset, "all_items") else (
        list(dataset.train) + list(dataset.query) + list(dataset.gallery))
    return list(dict.fromkeys(it[0] for it in items))


def verify_dataset_images(dataset, name: str, num_workers: int = 4) -> int:
    """Decode every image of ``dataset`` not checked before in this process; returns the number checked.

    Raises:
        UnreadableImagesError: listing every unreadable file (path and reason), not only the first.
    """
    paths = [p for p in dataset_image_paths(dataset) if p not in _VERIFIED]
    bad = find_unreadable_images(paths, num_workers)
    if bad:
        listing = "\n".join(f"  {p}: {why}" for p, why in bad)
        raise UnreadableImagesError(f"{name}: {len(bad)} of {len(paths)} images cannot be read (expected JPEG/PNG/BMP "
                                    f"files PIL can decode; replace or remove them):\n{listing}", bad)
    _VERIFIED.update(paths)
    logger.info(f"{name}: all {len(paths)} images checked readable (DATASETS.VERIFY_IMAGES)")
    return len(paths)
