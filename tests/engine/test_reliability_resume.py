"""End-to-end (tools/train_net.py in a subprocess): a kill during a checkpoint write, a 0-byte checkpoint, bad
MODEL.WEIGHTS, and checkpoints of every trainer path read with torch.load(weights_only=True)."""
import hashlib
import os
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, TINY_OPTS

pytestmark = pytest.mark.slow

SUPERVISED = "configs/Synthetic/agw_supervised.yml"

# Runs tools/train_net.py with torch.save replaced by one that writes half of the checkpoint named by
# argv[1] and then SIGKILLs the process: a crash in the middle of the write, with no cleanup.
KILL_DURING_SAVE = r"""
import io, os, runpy, signal, sys, torch
target, real_save = sys.argv[1], torch.save
def save(obj, f, *args, **kwargs):
    if target in str(getattr(f, "name", f)):
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return real_save(obj, f, *args, **kwargs)
torch.save = save
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def command(config, root, out, *extra, opts=()):
    return [os.path.join(ROOT, "tools", "train_net.py"), "--config-file", os.path.join(ROOT, config), *extra,
            "DATASETS.ROOT", str(root), "OUTPUT_DIR", str(out), *TINY_OPTS, "TEST.EVAL_PERIOD", "0", *opts]


def run(args, expect_ok=True, prefix=()):
    proc = subprocess.run([sys.executable, *prefix, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    if expect_ok:
        assert proc.returncode == 0, log[-4000:]
    return proc, log


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_kill_during_a_checkpoint_write_keeps_the_old_checkpoint_and_resume_works(tiny_sysu, tmp_path):
    out = tmp_path / "run"
    opts = ["SOLVER.CHECKPOINT_PERIOD", "1", "SOLVER.WARMUP_ITERS", "1"]  # warmup: a second scheduler to save
    run(command(SUPERVISED, tiny_sysu, out, opts=["SOLVER.MAX_EPOCH", "1", *opts]))
    final = out / "model_final.pth"
    before = digest(final)
    assert torch.load(final, weights_only=True)["epoch"] == 0

    # resume for a second epoch and die while writing the new model_final.pth
    proc, log = run(command(SUPERVISED, tiny_sysu, out, "--resume", opts=["SOLVER.MAX_EPOCH", "2", *opts]),
                    expect_ok=False, prefix=("-c", KILL_DURING_SAVE, "model_final"))
    assert proc.returncode == -9, log[-3000:]
    assert "Starting training from epoch 1" in log and "Saving checkpoint to" in log
    assert digest(final) == before  # the old checkpoint is intact ...
    assert (out / "last_checkpoint").read_text() == "model_final.pth"
    leftovers = [f for f in os.listdir(out) if f.startswith(".model_final.pth.") and f.endswith(".tmp")]
    assert len(leftovers) == 1  # ... and the half-written file is a temporary one

    _, log = run(command(SUPERVISED, tiny_sysu, out, "--resume", opts=["SOLVER.MAX_EPOCH", "2", *opts]))
    assert "Starting training from epoch 1" in log and leftovers[0] in log  # reported as safe to delete
    checkpoint = torch.load(final, weights_only=True)
    assert checkpoint["epoch"] == 1 and {"optimizer", "lr_sched", "warmup_sched"} <= set(checkpoint)


def test_resume_skips_a_zero_byte_checkpoint(tiny_sysu, tmp_path):
    out = tmp_path / "run"
    opts = ["SOLVER.MAX_EPOCH", "2", "SOLVER.CHECKPOINT_PERIOD", "1"]
    run(command(SUPERVISED, tiny_sysu, out, opts=opts))
    (out / "model_final.pth").write_bytes(b"")  # e.g. a full disk under the old, non-atomic writer
    _, log = run(command(SUPERVISED, tiny_sysu, out, "--resume", opts=opts))
    assert (f"--resume: '{out / 'last_checkpoint'}' names '{out / 'model_final.pth'}', which cannot be loaded: "
            "the file is empty (0 bytes") in log
    assert f"resuming from '{out / 'model_0000.pth'}' instead" in log and "WARNING" in log
    assert "Starting training from epoch 1" in log
    assert torch.load(out / "model_final.pth", weights_only=True)["epoch"] == 1


@pytest.mark.parametrize("config", ["configs/Synthetic/usl_baseline.yml", "configs/Synthetic/dotla.yml"])
def test_unsupervised_checkpoints_load_with_weights_only(tiny_sysu, tmp_path, config):
    """Pseudo-label hook state, resized memories/classifiers: all readable with weights_only=True, and resumable."""
    out = tmp_path / "run"
    opts = ["SOLVER.MAX_EPOCH", "2", "SOLVER.CHECKPOINT_PERIOD", "1", "PSEUDO.K1", "10", "DOTLA.START_EPOCH", "1"]
    run(command(config, tiny_sysu, out, opts=opts))
    for name in ("model_0000.pth", "model_final.pth"):
        checkpoint = torch.load(out / name, weights_only=True)
        assert {"model", "optimizer", "lr_sched", "pseudo_labels", "label_history", "epoch"} <= set(checkpoint), name
        assert checkpoint["label_history"]["records"] and checkpoint["pseudo_labels"]["labels"] is not None, name
    (out / "last_checkpoint").write_text("model_0000.pth")
    _, log = run(command(config, tiny_sysu, out, "--resume", opts=opts))
    assert "Starting training from epoch 1" in log


def test_bad_model_weights_are_named_in_training_and_eval_only(tiny_sysu, tmp_path):
    truncated = tmp_path / "truncated.pth"
    run(command(SUPERVISED, tiny_sysu, tmp_path / "src", opts=["SOLVER.MAX_EPOCH", "1"]))
    data = (tmp_path / "src" / "model_final.pth").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    for extra in ((), ("--eval-only",)):
        args = command(SUPERVISED, tiny_sysu, tmp_path / "out", *extra, opts=["MODEL.WEIGHTS", str(truncated)])
        proc, log = run(args, expect_ok=False)
        assert proc.returncode != 0
        assert f"CheckpointFileError: MODEL.WEIGHTS: cannot load checkpoint '{truncated}': the file is truncated" in log
        assert "UnpicklingError" not in log and "EOFError" not in log

    # weights of another architecture (ResNet-18 checkpoint, ResNet-34 model): refused, naming the first keys
    proc, log = run(command(SUPERVISED, tiny_sysu, tmp_path / "out", "--eval-only",
                            opts=["MODEL.WEIGHTS", str(tmp_path / "src" / "model_final.pth"),
                                  "MODEL.BACKBONE.DEPTH", "34x"]), expect_ok=False)
    assert proc.returncode != 0
    assert "CheckpointMismatchError: MODEL.WEIGHTS: checkpoint" in log and "missing from the checkpoint" in log
    assert "backbone.layer1.2." in log and "MODEL.WEIGHTS_PARTIAL" in log
