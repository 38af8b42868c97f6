"""Per-epoch record of pseudo-label quality and association accuracy, written as ``pseudo_labels/history.json``."""
import json
import os
from typing import Dict, List

__all__ = ["LabelHistory", "atomic_write_json"]


def atomic_write_json(path: str, obj) -> None:
    """Write ``obj`` as JSON to ``path`` through a temporary file and ``os.replace`` (never half-written)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class LabelHistory:
    """A list of records ``{"epoch": e, "<section>": {key: value}, ...}``, one per epoch in which labels were made.

    Sections used by this package: ``"visible"`` / ``"infrared"`` (cluster statistics of each modality's
    clustering), ``"association"`` (``{"visible->infrared": accuracy, ...}``, the accuracy of the labels that images
    of one modality receive in the other modality's label space) and one per method for its own statistics.
    Checkpointed with the trainer, so a resumed run continues the same file.
    """

    def __init__(self):
        self.records: List[Dict] = []

    def log(self, epoch: int, section: str, stats: Dict, storage=None) -> None:
        """Merge ``stats`` into ``section`` of ``epoch``'s record; also put them as scalars ``section/key``."""
        record = next((r for r in self.records if r["epoch"] == epoch), None)
        if record is None:
            record = {"epoch": epoch}
            self.records.append(record)
        record.setdefault(section, {}).update(stats)
        if storage is not None:
            for key, value in stats.items():
                storage.put_scalar(f"{section}/{key}", float(value), smoothing_hint=False)

    def write(self, path: str) -> None:
        atomic_write_json(path, self.records)

    def state_dict(self):
        return {"records": self.records}

    def load_state_dict(self, state):
        self.records = list(state.get("records", []))
