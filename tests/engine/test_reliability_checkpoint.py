"""Checkpoints: atomic writes, weights_only reads, strict loading and the --resume fallback (VIReIDCheckpointer)."""
import logging
import os
import pickle
import re

import numpy as np
import pytest
import torch
from fastreid.utils.checkpoint import Checkpointer
from torch import nn

from vireid_plugins.engine.checkpoint import (
    CheckpointFileError,
    CheckpointMismatchError,
    VIReIDCheckpointer,
    read_checkpoint,
    to_weights_only,
)
from vireid_plugins.modeling.layers import ResizableLinear
from vireid_plugins.utils import atomic_write


class Net(nn.Module):
    """backbone + BN-neck head (+ a supervised classifier ``heads.weight``, or an unsupervised criterion)."""

    def __init__(self, supervised=True, classes=5, dim=3):
        super().__init__()
        self.backbone = nn.Linear(4, dim)
        self.heads = nn.Module()
        self.heads.bottleneck = nn.Sequential(nn.BatchNorm1d(dim))
        if supervised:
            self.heads.weight = nn.Parameter(torch.randn(classes, dim))
        else:
            self.criterion = nn.ModuleDict({"visible": ResizableLinear(dim, 0), "infrared": ResizableLinear(dim, 0)})


class Counter:
    """A checkpointable with numpy state (as pseudo-label statistics can be)."""

    def __init__(self):
        self.state = {"count": np.int64(3), "ratio": np.float32(0.5), "hist": np.arange(4), "names": ("a", "b")}

    def state_dict(self):
        return self.state

    def load_state_dict(self, state):
        self.state = state


def trained_net(seed, **kwargs):
    torch.manual_seed(seed)
    net = Net(**kwargs)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(seed)
    return net


def save_epochs(out, epochs, **kwargs):
    """Save model_{epoch:04d}.pth for each epoch (weights offset by the epoch), with increasing mtimes."""
    for i, epoch in enumerate(epochs):
        VIReIDCheckpointer(trained_net(epoch, **kwargs), str(out)).save(f"model_{epoch:04d}", epoch=epoch)
        os.utime(out / f"model_{epoch:04d}.pth", (1_000_000 + i, 1_000_000 + i))


def same_weights(a, b):
    return all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


# ---------------------------------------------------------------- atomic writes
def test_failed_checkpoint_write_keeps_the_old_file_and_last_checkpoint(tmp_path, monkeypatch):
    old = trained_net(0)
    ckpt = VIReIDCheckpointer(old, str(tmp_path))
    ckpt.save("model_final", epoch=0)
    before = (tmp_path / "model_final.pth").read_bytes()
    real_save = torch.save

    def full_disk(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")  # part of the file, then the disk is full
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        VIReIDCheckpointer(trained_net(1), str(tmp_path)).save("model_final", epoch=1)
    monkeypatch.setattr(torch, "save", real_save)
    assert (tmp_path / "model_final.pth").read_bytes() == before
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_final.pth"]  # no temporary file left
    fresh = Net()
    assert VIReIDCheckpointer(fresh, str(tmp_path)).resume_or_load("", resume=True)["epoch"] == 0
    assert same_weights(fresh, old)


def test_atomic_write_of_a_text_file(tmp_path):
    path = tmp_path / "last_checkpoint"
    path.write_text("model_0001.pth")
    with pytest.raises(RuntimeError):
        with atomic_write(str(path), "w") as f:
            f.write("model_0002.pth")
            raise RuntimeError("killed")
    assert path.read_text() == "model_0001.pth" and os.listdir(tmp_path) == ["last_checkpoint"]
    with atomic_write(str(path), "w") as f:
        f.write("model_0002.pth")
    assert path.read_text() == "model_0002.pth" and os.listdir(tmp_path) == ["last_checkpoint"]


# ---------------------------------------------------------------- weights_only
def test_saved_checkpoints_load_with_weights_only(tmp_path):
    net, counter = trained_net(2), Counter()
    optimizer = torch.optim.Adam(net.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [3, 5])
    loss = net.backbone(torch.randn(2, 4)).sum()
    loss.backward()
    optimizer.step()
    scheduler.step()
    VIReIDCheckpointer(net, str(tmp_path), optimizer=optimizer, lr_sched=scheduler, stats=counter).save(
        "model_0000", epoch=0, metric=np.float64(0.25))
    raw = torch.load(tmp_path / "model_0000.pth", map_location="cpu", weights_only=True)
    assert raw["metric"] == 0.25 and type(raw["metric"]) is float
    assert raw["stats"]["count"] == 3 and type(raw["stats"]["count"]) is int
    assert torch.equal(raw["stats"]["hist"], torch.arange(4)) and raw["stats"]["names"] == ("a", "b")
    assert isinstance(counter.state["hist"], np.ndarray)  # the live state is not modified
    assert set(raw["optimizer"]["state"]) and raw["lr_sched"]["milestones"] == {3: 1, 5: 1}
    # the model's state_dict keeps its version metadata (BatchNorm relies on it)
    assert raw["model"]._metadata == net.state_dict()._metadata


def test_unsaveable_state_is_refused_at_save_time(tmp_path):
    class Opaque:
        pass

    counter = Counter()
    counter.state = {"history": [{"epoch": 0, "sampler": Opaque()}]}
    with pytest.raises(TypeError, match=r"\['stats'\]\['history'\]\[0\]\['sampler'\].*Opaque.*weights_only"):
        VIReIDCheckpointer(Net(), str(tmp_path), stats=counter).save("model_final")
    assert os.listdir(tmp_path) == []
    assert to_weights_only({"a": [1, np.float32(2.0)]}) == {"a": [1, 2.0]}


# ---------------------------------------------------------------- unreadable files
def _files(tmp_path):
    good = tmp_path / "good.pth"
    VIReIDCheckpointer(Net(), str(tmp_path)).save("good")
    data = good.read_bytes()
    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.pth").write_text("model_0001.pth\n")
    torch.save([torch.zeros(2)], tmp_path / "list.pth")
    torch.save({"optimizer": {}, "epoch": 3}, tmp_path / "nomodel.pth")
    with open(tmp_path / "pickle.pth", "wb") as f:
        pickle.dump({"model": {}, "obj": logging.Formatter()}, f)
    return {"empty.pth": "empty", "truncated.pth": "truncated, corrupt", "text.pth": "truncated, corrupt",
            "list.pth": "holds a list", "nomodel.pth": "no 'model' entry",
            "pickle.pth": "(corrupt|objects other than tensors)"}


def test_bad_checkpoint_files_are_named(tmp_path):
    for name, problem in _files(tmp_path).items():
        path = str(tmp_path / name)
        with pytest.raises(CheckpointFileError, match=rf"MODEL.WEIGHTS: cannot load checkpoint '{path}': .*{problem}"):
            VIReIDCheckpointer(Net()).load(path)
        with pytest.raises(CheckpointFileError, match=rf"'{path}'.*{problem}"):  # fast-reid's own Checkpointer
            Checkpointer(Net()).load(path)
    with pytest.raises(FileNotFoundError, match="MODEL.WEIGHTS: checkpoint file .*nothing.pth' does not exist"):
        VIReIDCheckpointer(Net()).load(str(tmp_path / "nothing.pth"))


def test_objects_refused_by_weights_only_are_named(tmp_path):
    torch.save({"model": Net().state_dict(), "extra": logging.Formatter()}, tmp_path / "obj.pth")
    with pytest.raises(CheckpointFileError, match=r"obj.pth'.*objects other than tensors.*logging.Formatter"):
        read_checkpoint(str(tmp_path / "obj.pth"), "MODEL.WEIGHTS")


def test_a_bare_state_dict_loads(tmp_path):
    net = trained_net(3)
    torch.save(net.state_dict(), tmp_path / "bare.pth")
    fresh = Net()
    VIReIDCheckpointer(fresh).load(str(tmp_path / "bare.pth"))
    assert same_weights(fresh, net)


# ---------------------------------------------------------------- strict loading
def test_missing_backbone_key_is_an_error(tmp_path):
    state = trained_net(1).state_dict()
    del state["backbone.bias"]
    torch.save({"model": state}, tmp_path / "w.pth")
    with pytest.raises(CheckpointMismatchError, match=r"MODEL.WEIGHTS: checkpoint '.*w.pth' does not match the model: "
                                                      r"1 model key\(s\) missing.*backbone.bias.*WEIGHTS_PARTIAL"):
        VIReIDCheckpointer(Net()).load(str(tmp_path / "w.pth"))


def test_shape_mismatch_is_an_error_and_partial_loading_warns(tmp_path, caplog):
    source = trained_net(1, classes=7)
    VIReIDCheckpointer(source, str(tmp_path)).save("w")
    target = Net(classes=5)
    init = target.heads.weight.detach().clone()
    with pytest.raises(CheckpointMismatchError, match=r"heads.weight: checkpoint \(7, 3\) vs model \(5, 3\)"):
        VIReIDCheckpointer(target).load(str(tmp_path / "w.pth"))
    with caplog.at_level(logging.WARNING, logger="fastreid.vireid.checkpoint"):
        VIReIDCheckpointer(target, partial=True).load(str(tmp_path / "w.pth"))
    warning = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warning) == 1 and "MODEL.WEIGHTS_PARTIAL: 1 model tensor(s) NOT loaded" in warning[0].message
    assert "heads.weight: checkpoint (7, 3) vs model (5, 3)" in warning[0].message
    assert torch.equal(target.heads.weight, init)  # skipped
    assert torch.equal(target.backbone.weight, source.backbone.weight)  # the rest loaded


def test_supervised_weights_initialise_an_unsupervised_model(tmp_path, caplog):
    """The documented exception: no criterion.* key at all in MODEL.WEIGHTS; the classifier is unused."""
    source = trained_net(4)
    VIReIDCheckpointer(source, str(tmp_path)).save("sup")
    target = Net(supervised=False)
    with caplog.at_level(logging.INFO, logger="fastreid.vireid.checkpoint"):
        VIReIDCheckpointer(target).load(str(tmp_path / "sup.pth"))
    assert torch.equal(target.backbone.weight, source.backbone.weight)
    text = caplog.text
    assert "the criterion's 2 'criterion.*' tensors" in text and "heads.weight" in text
    # ... but not when resuming: a resumed run must find its own criterion state
    (tmp_path / "last_checkpoint").write_text("sup.pth")
    with pytest.raises(CheckpointMismatchError, match=r"--resume: checkpoint '.*sup.pth'.*criterion.infrared.weight"):
        VIReIDCheckpointer(Net(supervised=False), str(tmp_path)).resume_or_load("", resume=True)


def test_model_weights_never_initialise_the_criterion(tmp_path):
    """Another method's (or a partial) criterion state in MODEL.WEIGHTS is not loaded: this run's clustering
    rebuilds it; on --resume a partial criterion state is an error."""
    source = Net(supervised=False)
    source.criterion["visible"].reset(torch.randn(6, 3))
    state = source.state_dict()
    del state["criterion.infrared.weight"]
    torch.save({"model": state}, tmp_path / "w.pth")
    target = Net(supervised=False)
    VIReIDCheckpointer(target).load(str(tmp_path / "w.pth"))
    assert torch.equal(target.backbone.weight, source.backbone.weight)
    assert target.criterion["visible"].weight.shape == (0, 3)  # not taken from the checkpoint
    (tmp_path / "last_checkpoint").write_text("w.pth")
    with pytest.raises(CheckpointMismatchError, match=r"missing.*criterion.infrared.weight"):
        VIReIDCheckpointer(Net(supervised=False), str(tmp_path)).resume_or_load("", resume=True)


def test_resizable_state_follows_the_checkpoint_on_resume(tmp_path):
    source = Net(supervised=False)
    source.criterion["visible"].reset(torch.randn(6, 3))
    source.criterion["infrared"].reset(torch.randn(2, 3))
    VIReIDCheckpointer(source, str(tmp_path)).save("usl")
    (tmp_path / "last_checkpoint").write_text("usl.pth")
    target = Net(supervised=False)
    VIReIDCheckpointer(target, str(tmp_path)).resume_or_load("", resume=True)
    assert same_weights(target, source)


# ---------------------------------------------------------------- --resume fallback
def _resume(out, caplog, **kwargs):
    net = Net(**kwargs)
    ckpt = VIReIDCheckpointer(net, str(out))
    with caplog.at_level(logging.WARNING, logger="fastreid.vireid.checkpoint"):
        extra = ckpt.resume_or_load("", resume=True)
    warnings = [r.message for r in caplog.records if r.levelno == logging.WARNING]
    return net, ckpt, extra, warnings


@pytest.mark.parametrize("fault, problem", [
    ("empty last_checkpoint", "is empty"),
    ("garbage last_checkpoint", "not the name of a .pth file"),
    ("missing last_checkpoint", "is missing"),
    ("names a missing file", r"names '.*model_0002.pth', which does not exist"),
    ("names a 0-byte file", r"names '.*model_0002.pth', which cannot be loaded: the file is empty \(0 bytes"),
    ("names a truncated file", r"names '.*model_0002.pth', which cannot be loaded: the file is truncated"),
])
def test_resume_falls_back_to_the_newest_checkpoint_that_loads(tmp_path, caplog, fault, problem):
    save_epochs(tmp_path, [0, 1, 2])
    data = (tmp_path / "model_0002.pth").read_bytes()
    last = tmp_path / "last_checkpoint"
    if fault == "empty last_checkpoint":
        last.write_text("")
    elif fault == "garbage last_checkpoint":
        last.write_bytes(b"\x00\x13../../etc")
    elif fault == "missing last_checkpoint":
        last.unlink()
    elif fault == "names a missing file":
        (tmp_path / "model_0002.pth").unlink()
    elif fault == "names a 0-byte file":
        (tmp_path / "model_0002.pth").write_bytes(b"")
    else:
        (tmp_path / "model_0002.pth").write_bytes(data[: len(data) // 3])
    if fault in ("empty last_checkpoint", "garbage last_checkpoint", "missing last_checkpoint"):
        (tmp_path / "model_0002.pth").write_bytes(b"")  # the newest file is also broken: skip it
    net, ckpt, extra, warnings = _resume(tmp_path, caplog)
    assert extra["epoch"] == 1 and ckpt.has_checkpoint() and ckpt.resumed_from == str(tmp_path / "model_0001.pth")
    assert same_weights(net, trained_net(1))
    assert len(warnings) == 1
    assert f"--resume: '{last}'" in warnings[0] and f"resuming from '{tmp_path / 'model_0001.pth'}'" in warnings[0]
    assert re.search(problem, warnings[0]), warnings[0]


def test_resume_uses_last_checkpoint_when_it_loads(tmp_path, caplog):
    save_epochs(tmp_path, [0, 1, 2])
    (tmp_path / "last_checkpoint").write_text("model_0000.pth")  # an older one, chosen by the user
    net, ckpt, extra, warnings = _resume(tmp_path, caplog)
    assert extra["epoch"] == 0 and warnings == [] and same_weights(net, trained_net(0))


def test_resume_with_no_loadable_checkpoint_lists_every_file(tmp_path, caplog):
    save_epochs(tmp_path, [0, 1])
    for name in ("model_0000.pth", "model_0001.pth"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "last_checkpoint").write_text("model_0001.pth")
    with pytest.raises(CheckpointFileError, match=r"--resume: .*last_checkpoint' names .*model_0001.pth', which cannot "
                                                  r"be loaded.*no other checkpoint .* loads: .*model_0000.pth' \(the "
                                                  r"file is empty.*Run without --resume"):
        _resume(tmp_path, caplog)


def test_resume_in_an_empty_folder_starts_from_model_weights(tmp_path, caplog):
    source = trained_net(5)
    (tmp_path / "src").mkdir()
    (tmp_path / "out").mkdir()
    VIReIDCheckpointer(source, str(tmp_path / "src")).save("w")
    net = Net()
    ckpt = VIReIDCheckpointer(net, str(tmp_path / "out"))
    assert ckpt.resume_or_load(str(tmp_path / "src" / "w.pth"), resume=True) == {}
    assert not ckpt.has_checkpoint() and same_weights(net, source)
