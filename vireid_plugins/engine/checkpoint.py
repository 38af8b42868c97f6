"""fast-reid's ``Checkpointer`` made safe: atomic writes, safe and strict loads, a resume that survives a crash.

:class:`VIReIDCheckpointer` differs from fast-reid's ``Checkpointer`` in four ways:

* **Atomic writes.** ``model_XXXX.pth``, ``model_final.pth``, ``model_best.pth`` and ``last_checkpoint`` are
  written to a temporary file of the same folder, flushed, fsync'ed and renamed (``os.replace``): a kill or a
  full disk leaves the previous file intact. Entries are converted at save time (numpy -> torch/python) so
  every checkpoint loads with ``torch.load(weights_only=True)``; an entry that cannot be is refused at save time.
* **Safe reads.** Files are read with ``weights_only=True`` (:func:`read_checkpoint`); an empty, truncated,
  corrupt or non-checkpoint file raises :class:`CheckpointFileError` naming the path.
* **Strict loads.** A model key missing from the checkpoint or a shape mismatch raises
  :class:`CheckpointMismatchError` naming ``MODEL.WEIGHTS`` (or ``--resume``), the path and the first
  mismatches; ``partial=True`` (``MODEL.WEIGHTS_PARTIAL``) loads what matches and logs a WARNING listing what was
  skipped. Two differences are legitimate and never an error:

  - tensors of modules declaring ``resizable_state = True`` (cluster memories, re-clustered classifiers, whose
    rows follow the cluster count) are first resized to the checkpoint's shape (:func:`resize_to_checkpoint`);
  - ``MODEL.WEIGHTS`` initialises the network, never the criterion: an unsupervised model's ``criterion.*`` state
    (memories, classifiers) follows this run's clustering and is rebuilt from the pseudo-labels before the first
    step, so the checkpoint's ``criterion.*`` tensors (another method's, or none for a supervised run) are not
    loaded. On ``--resume`` every key must match. Checkpoint keys the model does not have (a supervised
    classifier) are listed at INFO level.
* **Resume fallback.** With ``--resume``, when ``last_checkpoint`` is missing, empty or unreadable, or names a
  missing, empty or truncated file, training resumes from the newest ``*.pth`` of ``OUTPUT_DIR`` (modification
  time) that loads, with a WARNING naming both files; when none loads the error lists every file tried.
"""
import logging
import os
import re
from collections import Counter, OrderedDict
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from fastreid.utils.checkpoint import (
    Checkpointer,
    _filter_reused_missing_keys,
    _IncompatibleKeys,
    _strip_prefix_if_present,
)

from ..utils import atomic_write
from ..utils.file_io import TEMP_SUFFIX

__all__ = ["VIReIDCheckpointer", "CheckpointFileError", "CheckpointMismatchError", "read_checkpoint",
           "resize_to_checkpoint", "to_weights_only"]

LAST_CHECKPOINT = "last_checkpoint"
UNSUPERVISED_STATE_PREFIX = "criterion."  # rebuilt from the pseudo-labels; see the module docstring
_SHOWN = 5  # mismatches quoted in an error message
_EXPECTED = ("a checkpoint written by torch.save: a dict {'model': state_dict, ...} as "
             "OUTPUT_DIR/model_final.pth, or a bare state_dict of tensors")


class CheckpointFileError(ValueError):
    """A checkpoint file cannot be read (empty, truncated, corrupt, not a checkpoint); the message names it."""

    def __init__(self, message: str, path: str = "", problem: str = ""):
        super().__init__(message)
        self.path, self.problem = path, problem or message


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit the model (missing keys, other shapes); the message names the first ones."""


# ---------------------------------------------------------------- reading
def _weights_only_reason(error: Exception) -> str:
    match = re.search(r"WeightsUnpickler error: ([^\n]*?)(?: Please|\n|$)", str(error))
    return (match.group(1) if match else str(error).splitlines()[0]).strip()


def read_checkpoint(path: str, what: str = "checkpoint") -> Dict:
    """Read a checkpoint with ``torch.load(weights_only=True)`` onto the CPU.

    Args:
        path: local file.
        what: the config key or option the path came from (``"MODEL.WEIGHTS"``, ``"--resume"``), for messages.

    Returns:
        ``{"model": state_dict, ...}``; a bare state_dict (every value a tensor) comes back as ``{"model": it}``.

    Raises:
        FileNotFoundError: no such file. CheckpointFileError: anything else that is not a readable checkpoint.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what}: checkpoint file {path!r} does not exist (expected {_EXPECTED})")

    def bad(problem: str) -> CheckpointFileError:
        return CheckpointFileError(f"{what}: cannot load checkpoint {path!r}: {problem}. Expected {_EXPECTED}",
                                   path, problem)

    if os.path.getsize(path) == 0:
        raise bad("the file is empty (0 bytes; an interrupted write?)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (PermissionError, IsADirectoryError):
        raise
    except Exception as e:  # torch raises EOFError, RuntimeError, KeyError, UnpicklingError... for bad files
        if "Unsupported global" in str(e):
            raise bad("it holds objects other than tensors, numbers, strings and plain containers, which "
                      f"torch.load(weights_only=True) refuses ({_weights_only_reason(e)})") from None
        reason = _weights_only_reason(e) if "Weights only load failed" in str(e) else str(e).split("\n")[0]
        raise bad(f"the file is truncated, corrupt or not a torch checkpoint ({type(e).__name__}: {reason})") from None
    if not isinstance(obj, dict):
        raise bad(f"it holds a {type(obj).__name__}, not a dict")
    if "model" not in obj:
        if obj and all(torch.is_tensor(v) for v in obj.values()):
            return {"model": obj}
        raise bad(f"it has no 'model' entry (top-level keys: {sorted(map(str, obj))[:8]})")
    if not isinstance(obj["model"], dict):
        raise bad(f"its 'model' entry is a {type(obj['model']).__name__}, not a state_dict")
    return obj


# ---------------------------------------------------------------- writing
_PLAIN = (torch.Tensor, torch.Size, torch.dtype, torch.device, bool, int, float, complex, str, bytes, type(None))


def to_weights_only(obj, where: str = "checkpoint"):
    """``obj`` with numpy values turned into tensors/python numbers, so ``torch.load(weights_only=True)`` reads it.

    Containers are copied only where something changed (a state_dict keeps its ``_metadata``); namedtuples become
    tuples and defaultdicts dicts. Raises ``TypeError`` naming the entry (``where``) for any other object.
    """
    if isinstance(obj, np.generic):  # before _PLAIN: np.float64 is a float subclass that pickles as numpy
        return obj.item()
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, _PLAIN):
        return obj
    if isinstance(obj, dict):
        for key in obj:
            if not isinstance(key, (str, int, float, bool, type(None))):
                raise TypeError(f"{where}: key {key!r} of type {type(key).__name__} cannot be saved for "
                                "torch.load(weights_only=True); expected str or int keys")
        items = [(k, to_weights_only(v, f"{where}[{k!r}]")) for k, v in obj.items()]
        kind = type(obj) if type(obj) in (dict, OrderedDict, Counter) else dict
        if kind is type(obj) and all(new is obj[k] for k, new in items):
            return obj
        out = kind(items)
        if kind is OrderedDict and hasattr(obj, "_metadata"):
            out._metadata = obj._metadata
        return out
    if isinstance(obj, (list, tuple, set)):
        items = [to_weights_only(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        kind = type(obj) if type(obj) in (list, tuple, set) else (tuple if isinstance(obj, tuple) else list)
        if kind is type(obj) and all(new is old for new, old in zip(items, obj)):
            return obj
        return kind(items)
    raise TypeError(f"{where} is a {type(obj).__module__}.{type(obj).__name__}, which torch.load(weights_only=True) "
                    "cannot read back; state_dict() must return tensors, numbers, strings and plain containers")


# ---------------------------------------------------------------- loading helpers
def resize_to_checkpoint(model: torch.nn.Module, state_dict) -> list:
    """Give resizable modules' parameters/buffers the checkpoint's shapes; returns the resized names."""
    resized = []
    for prefix, module in model.named_modules():
        if not getattr(module, "resizable_state", False):
            continue
        for name, tensor in list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False)):
            key = f"{prefix}.{name}" if prefix else name
            saved = state_dict.get(key, state_dict.get(f"module.{key}"))
            if saved is not None and tuple(saved.shape) != tuple(tensor.shape):
                tensor.data = torch.zeros(saved.shape, dtype=tensor.dtype, device=tensor.device)
                resized.append(key)
    return resized


def _listing(keys: List[str]) -> str:
    more = f", ... ({len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else ""
    return ", ".join(keys[:_SHOWN]) + more


def _shape_listing(mismatches: List[Tuple[str, tuple, tuple]]) -> str:
    return _listing([f"{k}: checkpoint {tuple(a)} vs model {tuple(b)}" for k, a, b in mismatches])


class VIReIDCheckpointer(Checkpointer):
    """See the module docstring.

    Args:
        model, save_dir, save_to_disk, checkpointables: as fast-reid's ``Checkpointer``.
        partial: let ``MODEL.WEIGHTS`` load with missing keys or other shapes (``MODEL.WEIGHTS_PARTIAL``); the
            skipped tensors are listed in a WARNING. Never applies to ``--resume``.
    """

    def __init__(self, model, save_dir: str = "", *, partial: bool = False, save_to_disk: bool = True,
                 **checkpointables):
        super().__init__(model, save_dir, save_to_disk=save_to_disk, **checkpointables)
        self.logger = logging.getLogger("fastreid.vireid.checkpoint")
        self.partial = bool(partial)
        self.resumed_from: Optional[str] = None  # the file --resume loaded, once resume_or_load found one
        self._what = "MODEL.WEIGHTS"  # what the file being loaded is, for messages: "MODEL.WEIGHTS" / "--resume"

    # ---------------------------------------------------------------- saving
    def save(self, name: str, **kwargs):
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        data = to_weights_only(data)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        with atomic_write(save_file, "wb") as f:
            torch.save(data, f)
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str):
        with atomic_write(os.path.join(self.save_dir, LAST_CHECKPOINT), "w") as f:
            f.write(last_filename_basename)

    # ---------------------------------------------------------------- loading
    def _load_file(self, f: str):
        return read_checkpoint(f, self._what)

    def load(self, path: str, checkpointables: Optional[List[str]] = None):
        if not path:
            self.logger.info("No checkpoint found. Training model from scratch")
            return {}
        self.logger.info(f"Loading checkpoint from {path}")
        if "://" in path:  # a URL: fast-reid's PathManager downloads it to a local cache
            path = self.path_manager.get_local_path(path)
        return self._apply(path, self._load_file(path), checkpointables)

    def _apply(self, path: str, checkpoint: Dict, checkpointables: Optional[List[str]]):
        self._path = path
        self._log_incompatible_keys(self._load_model(checkpoint))
        for key in self.checkpointables if checkpointables is None else checkpointables:
            if key in checkpoint:
                self.logger.info(f"Loading {key} from {path}")
                self.checkpointables[key].load_state_dict(checkpoint.pop(key))
        return checkpoint

    def resume_or_load(self, path: str, *, resume: bool = True):
        """Resume from ``OUTPUT_DIR`` (all state) when ``resume`` and a checkpoint is there, else load ``path``'s
        model weights only (``MODEL.WEIGHTS``, strict unless ``partial``)."""
        if resume:
            found = self.find_resume_checkpoint()
            if found is not None:
                self._what, self.resumed_from = "--resume", found[0]
                try:
                    self.logger.info(f"Resuming from {found[0]}")
                    return self._apply(found[0], found[1], None)
                finally:
                    self._what = "MODEL.WEIGHTS"
        return self.load(path, checkpointables=[])

    def has_checkpoint(self):
        return self.resumed_from is not None or super().has_checkpoint()

    def find_resume_checkpoint(self) -> Optional[Tuple[str, Dict]]:
        """``(path, checkpoint)`` to resume from, or ``None`` when ``save_dir`` holds no checkpoint at all.

        The file ``last_checkpoint`` names, if it loads; else the newest ``*.pth`` of ``save_dir`` that loads,
        with a WARNING naming both; :class:`CheckpointFileError` listing every file tried when none loads.
        """
        if not self.save_dir or not os.path.isdir(self.save_dir):
            return None
        last = os.path.join(self.save_dir, LAST_CHECKPOINT)
        self._report_temporary_files()
        named, problem = None, "is missing"
        if os.path.exists(last):
            try:
                with open(last) as f:
                    text = f.read().strip()
            except (OSError, UnicodeDecodeError) as e:
                text, problem = None, f"cannot be read ({type(e).__name__}: {e})"
            if text == "":
                problem = "is empty"
            elif text is not None and (os.path.basename(text) != text or not text.endswith(".pth")):
                problem = f"holds {text[:80]!r}, not the name of a .pth file of this folder"
            elif text is not None:
                named = os.path.join(self.save_dir, text)
                try:
                    return named, read_checkpoint(named, "--resume")
                except FileNotFoundError:
                    problem = f"names {named!r}, which does not exist"
                except CheckpointFileError as e:
                    problem = f"names {named!r}, which cannot be loaded: {e.problem}"
        candidates = [p for p in self.get_all_checkpoint_files() if os.path.abspath(p) != os.path.abspath(named or "")]
        candidates.sort(key=lambda p: (os.stat(p).st_mtime_ns, p), reverse=True)
        if not os.path.exists(last) and not candidates:
            return None  # nothing was ever saved here: a fresh start, as fast-reid does
        failures = []
        for candidate in candidates:
            try:
                checkpoint = read_checkpoint(candidate, "--resume")
            except CheckpointFileError as e:
                failures.append(f"{candidate!r} ({e.problem})")
                continue
            skipped = f"; newer files that do not load: {', '.join(failures)}" if failures else ""
            self.logger.warning(f"--resume: {last!r} {problem}; resuming from {candidate!r} instead, the newest "
                                f"checkpoint in {self.save_dir!r} that loads{skipped}")
            return candidate, checkpoint
        tried = "; ".join(failures) if failures else "there is no other *.pth file"
        raise CheckpointFileError(f"--resume: {last!r} {problem}, and no other checkpoint in {self.save_dir!r} "
                                  f"loads: {tried}. Run without --resume (or delete {last!r}) to start from "
                                  "MODEL.WEIGHTS")

    def _report_temporary_files(self):
        leftovers = sorted(f for f in os.listdir(self.save_dir) if f.startswith(".") and f.endswith(TEMP_SUFFIX))
        if leftovers:
            self.logger.info(f"Temporary files of interrupted saves in {self.save_dir!r} (safe to delete): "
                             f"{leftovers}")

    # ---------------------------------------------------------------- matching
    def _load_model(self, checkpoint):
        state = checkpoint.pop("model")
        self._convert_ndarray_to_tensor(state)
        _strip_prefix_if_present(state, "module.")
        if self._what == "MODEL.WEIGHTS":
            for key in [k for k in state if k.startswith(UNSUPERVISED_STATE_PREFIX)]:
                del state[key]
        resized = resize_to_checkpoint(self.model, state)
        if resized:
            self.logger.info(f"Resized to the checkpoint's shapes (resizable: rows follow the cluster/class count): "
                             f"{resized}")
        own = self.model.state_dict()
        shapes = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in state.items()
                  if k in own and tuple(v.shape) != tuple(own[k].shape)]
        missing = sorted(_filter_reused_missing_keys(self.model, [k for k in own if k not in state]))
        unexpected = sorted(k for k in state if k not in own)
        self._rebuilt = []
        if self._what == "MODEL.WEIGHTS":  # the criterion follows this run's clustering: never initialised from here
            self._rebuilt = [k for k in missing if k.startswith(UNSUPERVISED_STATE_PREFIX)]
            missing = [k for k in missing if not k.startswith(UNSUPERVISED_STATE_PREFIX)]
        if (missing or shapes) and not (self.partial and self._what == "MODEL.WEIGHTS"):
            raise self._mismatch_error(missing, shapes)
        for key, _, _ in shapes:
            state.pop(key)
        self.model.load_state_dict(state, strict=False)
        return _IncompatibleKeys(missing_keys=missing, unexpected_keys=unexpected, incorrect_shapes=shapes)

    def _mismatch_error(self, missing, shapes) -> CheckpointMismatchError:
        parts = []
        if missing:
            parts.append(f"{len(missing)} model key(s) missing from the checkpoint: {_listing(missing)}")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatch(es): {_shape_listing(shapes)}")
        hint = ("Set MODEL.WEIGHTS_PARTIAL True to load only the matching tensors (a WARNING lists the others)"
                if self._what == "MODEL.WEIGHTS" else
                "--resume continues the run that saved it: use that run's config (OUTPUT_DIR/config.yaml) or "
                "another OUTPUT_DIR")
        return CheckpointMismatchError(f"{self._what}: checkpoint {self._path!r} does not match the model: "
                                       + "; ".join(parts) + f". {hint}")

    def _log_incompatible_keys(self, incompatible) -> None:
        skipped = list(incompatible.missing_keys) + [k for k, _, _ in incompatible.incorrect_shapes]
        if skipped:  # only reachable with partial=True
            self.logger.warning(
                f"MODEL.WEIGHTS_PARTIAL: {len(skipped)} model tensor(s) NOT loaded from {self._path!r}, they keep "
                f"their initialisation: missing from the checkpoint: {incompatible.missing_keys}; shape mismatches: "
                + str([f"{k}: checkpoint {a} vs model {b}" for k, a, b in incompatible.incorrect_shapes]))
        if self._rebuilt:
            self.logger.info(f"MODEL.WEIGHTS initialises the network only: the criterion's {len(self._rebuilt)} "
                             f"'{UNSUPERVISED_STATE_PREFIX}*' tensors (e.g. {self._rebuilt[0]}) are rebuilt from the "
                             "pseudo-labels before the first step; evaluation does not use them")
        if incompatible.unexpected_keys:
            self.logger.info(f"Checkpoint tensors the model does not use (e.g. a supervised classifier): "
                             f"{_listing(incompatible.unexpected_keys)}")
