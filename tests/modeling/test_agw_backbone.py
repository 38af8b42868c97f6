"""Tests of the two-stream AGW backbone (vireid_plugins/modeling/backbones/agw.py)."""

import vireid_plugins  # noqa: F401  (compat shims before fastreid; registration)

# isort: split
import pytest
import torch
import torchvision
from fastreid.config import get_cfg
from fastreid.modeling.backbones import build_backbone

from vireid_plugins import add_vireid_config
from vireid_plugins.modeling.backbones import (
    AGWBackbone,
    NonLocalBlock,
    build_agw_backbone,
    load_torchvision_resnet_weights,
)

H, W = 64, 32


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _images(b=4):
    return torch.randn(b, 3, H, W)


def _cfg(depth="18x", feat_dim=512, **backbone):
    cfg = get_cfg()
    add_vireid_config(cfg)
    cfg.MODEL.BACKBONE.NAME = "build_agw_backbone"
    cfg.MODEL.BACKBONE.DEPTH = depth
    cfg.MODEL.BACKBONE.FEAT_DIM = feat_dim
    for key, value in backbone.items():
        cfg.MODEL.BACKBONE[key] = value
    return cfg


def _two_stem_model(**kwargs):
    """Depth-18 model in eval mode whose infrared stem clearly differs from the visible one."""
    model = AGWBackbone(depth=18, **kwargs).eval()
    with torch.no_grad():
        stem = model.stems[1]
        stem.conv1.weight.normal_(0.0, 0.05)
        stem.bn1.weight.uniform_(0.5, 1.5)
        stem.bn1.bias.normal_(0.0, 0.1)
        stem.bn1.running_mean.normal_(0.0, 0.1)
        stem.bn1.running_var.uniform_(0.5, 1.5)
    return model


def _save_torchvision_resnet18(tmp_path):
    tv = torchvision.models.resnet18()  # random init, no download
    with torch.no_grad():  # non-trivial BN statistics, so copying them is observable
        for m in tv.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
    path = tmp_path / "resnet18.pth"
    torch.save(tv.state_dict(), path)
    return tv.eval(), path


# ---------------------------------------------------------------- shapes


@pytest.mark.parametrize("depth", [18, 34])
@pytest.mark.parametrize("last_stride", [1, 2])
def test_output_shape_basic_block(depth, last_stride):
    model = AGWBackbone(depth=depth, last_stride=last_stride).eval()
    with torch.no_grad():
        out = model(_images(2), torch.tensor([0, 1]))
    assert model.feat_dim == 512
    assert out.shape == (2, 512, H // (16 * last_stride), W // (16 * last_stride))


def test_output_shape_depth50_with_nonlocal():
    model = AGWBackbone(depth=50, last_stride=1, nl_layers=[0, 2, 3, 0]).eval()
    with torch.no_grad():
        out = model(_images(2), torch.tensor([1, 0]))
    assert model.feat_dim == 2048
    assert out.shape == (2, 2048, H // 16, W // 16)
    assert [len(model.NL_2), len(model.NL_3)] == [2, 3]
    assert model.NL_3[0].in_channels == 1024


def test_layer_keys_match_torchvision():
    model = AGWBackbone(depth=18, nl_layers=[1, 1, 1, 1])
    tv_keys = {k for k in torchvision.models.resnet18().state_dict() if k.startswith("layer")}
    ours = set(model.state_dict())
    assert {k for k in ours if k.startswith("layer")} == tv_keys
    assert {"stems.0.conv1.weight", "stems.1.bn1.running_var"} <= ours
    assert all(k.startswith(("layer", "stems.", "NL_")) for k in ours)
    assert model.NL_1[0].in_channels == 64 and model.NL_4[0].in_channels == 512


# ---------------------------------------------------------------- modality routing


def test_mixed_batch_equals_per_modality_groups():
    model = _two_stem_model()
    x = _images(6)
    modality = torch.tensor([1, 0, 0, 1, 1, 0])
    with torch.no_grad():
        mixed = model(x, modality)
        expected = torch.empty_like(mixed)
        for m in (0, 1):
            idx = (modality == m).nonzero(as_tuple=True)[0]
            expected[idx] = model(x[idx], torch.full((len(idx),), m))
    torch.testing.assert_close(mixed, expected, rtol=1e-5, atol=1e-5)


def test_modalities_use_different_stems():
    model = _two_stem_model()
    x = _images(2)
    with torch.no_grad():
        vis = model(x, torch.zeros(2, dtype=torch.long))
        ir = model(x, torch.ones(2, dtype=torch.long))
    assert not torch.allclose(vis, ir)


def test_two_stems_refuse_to_run_without_modality():
    """No silent one-stream network: without ``modality`` every image would take the visible stem."""
    model = _two_stem_model()
    with pytest.raises(ValueError, match="AGWBackbone: called without `modality`.*2 modality-specific stems.*"
                                         "VIReIDBaseline.*NUM_MODALITIES 1"):
        model(_images(3))


def test_one_stem_runs_without_modality():
    model = AGWBackbone(depth=18, num_modalities=1).eval()
    x = _images(3)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x, torch.zeros(3, dtype=torch.long)))


def test_mixed_batch_backward_reaches_both_stems():
    model = AGWBackbone(depth=18).train()
    model(_images(4), torch.tensor([0, 1, 1, 0])).mean().backward()
    assert all(stem.conv1.weight.grad.abs().sum() > 0 for stem in model.stems)


@pytest.mark.parametrize(
    "modality, match",
    [
        (torch.tensor([0, 2]), r"\[0, 2\).*got 2"),
        (torch.tensor([-1, 0]), r"\[0, 2\).*got -1"),
        (torch.tensor([0, 1, 0]), r"shape \[B\] = \[2\]"),
        (torch.tensor([[0], [1]]), r"shape \[B\]"),
        (torch.tensor([0.0, 1.0]), "integer"),
    ],
)
def test_invalid_modality_raises(modality, match):
    model = AGWBackbone(depth=18)
    with pytest.raises(ValueError, match=match):
        model(_images(2), modality)


# ---------------------------------------------------------------- non-local


def test_nonlocal_block_identity_at_init_then_not():
    block = NonLocalBlock(16).eval()
    x = torch.randn(2, 16, 8, 4)
    with torch.no_grad():
        torch.testing.assert_close(block(x), x)
        block.W[1].weight.fill_(1.0)
        out = block(x)
    assert out.shape == x.shape
    assert not torch.allclose(out, x)


def test_nonlocal_backbone_equals_plain_at_init():
    with_nl = AGWBackbone(depth=18, nl_layers=[0, 1, 2, 0]).eval()
    plain = AGWBackbone(depth=18).eval()
    incompatible = plain.load_state_dict(with_nl.state_dict(), strict=False)
    assert not incompatible.missing_keys
    assert all(k.startswith("NL_") for k in incompatible.unexpected_keys)
    x, modality = _images(2), torch.tensor([0, 1])
    with torch.no_grad():
        torch.testing.assert_close(with_nl(x, modality), plain(x, modality))
        with_nl.NL_3[1].W[1].weight.fill_(1.0)
        assert not torch.allclose(with_nl(x, modality), plain(x, modality))


# ---------------------------------------------------------------- build from cfg


def test_build_from_cfg():
    cfg = _cfg(WITH_NL=True, NL_LAYERS=[0, 1, 2, 0], LAST_STRIDE=1, NUM_MODALITIES=3)
    model = build_backbone(cfg)
    assert isinstance(model, AGWBackbone)
    assert model.depth == 18 and len(model.stems) == 3
    assert [len(model.NL_1), len(model.NL_2), len(model.NL_3), len(model.NL_4)] == [0, 1, 2, 0]
    with torch.no_grad():
        out = model.eval()(_images(3), torch.tensor([2, 0, 1]))
    assert out.shape == (3, 512, H // 16, W // 16)


def test_build_without_nl_ignores_nl_layers():
    model = build_agw_backbone(_cfg(WITH_NL=False, NL_LAYERS=[0, 2, 3, 0]))
    assert sum(len(getattr(model, f"NL_{s}")) for s in range(1, 5)) == 0


@pytest.mark.parametrize(
    "cfg_kwargs, match",
    [
        ({"depth": "101x"}, r"DEPTH must be one of .*'101x'"),
        ({"PRETRAIN": True, "PRETRAIN_PATH": ""}, "PRETRAIN_PATH must point to a local torchvision"),
        ({"feat_dim": 2048}, "set FEAT_DIM to 512"),
        ({"WITH_NL": True, "NL_LAYERS": [0, 2, 3, 0]}, "nl_layers"),
    ],
)
def test_build_config_errors(cfg_kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_agw_backbone(_cfg(**cfg_kwargs))


# ---------------------------------------------------------------- pretrained weights


def test_pretrain_path_loads_torchvision_weights(tmp_path):
    tv, path = _save_torchvision_resnet18(tmp_path)
    cfg = _cfg(PRETRAIN=True, PRETRAIN_PATH=str(path), PRETRAIN_STRICT=True, LAST_STRIDE=2)
    model = build_backbone(cfg).eval()

    tv_state, ours = tv.state_dict(), model.state_dict()
    for m in range(len(model.stems)):
        for key in [k for k in tv_state if k.startswith(("conv1.", "bn1."))]:
            torch.testing.assert_close(ours[f"stems.{m}.{key}"], tv_state[key], rtol=0, atol=0)
    for key in [k for k in tv_state if k.startswith("layer")]:
        torch.testing.assert_close(ours[key], tv_state[key], rtol=0, atol=0)

    # same weights and last stride 2: every stem reproduces torchvision's ResNet up to layer4
    features = torch.nn.Sequential(*list(tv.children())[:-2])
    x = _images(2)
    with torch.no_grad():
        torch.testing.assert_close(model(x, torch.tensor([0, 1])), features(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("wrapper", ["state_dict", "model"])
def test_wrapped_state_dict_and_missing_keys(tmp_path, wrapper):
    tv = torchvision.models.resnet18()
    state = {k: v for k, v in tv.state_dict().items() if not k.startswith("layer4.")}
    path = tmp_path / "wrapped.pth"
    torch.save({wrapper: state, "epoch": torch.tensor(3)}, path)

    model = AGWBackbone(depth=18)
    result = load_torchvision_resnet_weights(model, path)
    assert result.missing_keys and all(k.startswith("layer4.") for k in result.missing_keys)
    assert result.unexpected_keys == []
    torch.testing.assert_close(model.stems[1].conv1.weight, tv.conv1.weight, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"lacks .*layer4"):
        load_torchvision_resnet_weights(AGWBackbone(depth=18), path, strict=True)


def test_missing_file_raises(tmp_path):
    path = tmp_path / "nowhere" / "resnet50.pth"
    with pytest.raises(FileNotFoundError, match="torchvision ResNet-50 state dict") as err:
        load_torchvision_resnet_weights(AGWBackbone(depth=50), path)
    assert str(path) in str(err.value)


def test_garbage_file_raises(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"this is not a checkpoint\x00\x01\x02")
    with pytest.raises(ValueError, match="cannot read") as err:
        load_torchvision_resnet_weights(AGWBackbone(depth=18), path)
    assert str(path) in str(err.value)


def test_non_tensor_dict_raises(tmp_path):
    path = tmp_path / "not_tensors.pth"
    torch.save({"conv1.weight": [1.0, 2.0]}, path)
    with pytest.raises(ValueError, match="not tensors") as err:
        load_torchvision_resnet_weights(AGWBackbone(depth=18), path)
    assert str(path) in str(err.value)


def test_depth_mismatch_raises(tmp_path):
    _, path = _save_torchvision_resnet18(tmp_path)
    cfg = _cfg(depth="50x", feat_dim=2048, PRETRAIN=True, PRETRAIN_PATH=str(path))
    match = r"DEPTH=50x.*'layer1\.0\.conv1\.weight'.*\[64, 64, 3, 3\].*\[64, 64, 1, 1\]"
    with pytest.raises(ValueError, match=match) as err:
        build_backbone(cfg)
    assert str(path) in str(err.value)
