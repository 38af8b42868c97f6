"""Tests of PA-CBAM (modeling/attention/pa_cbam.py), its regulariser, registry and the AGW option."""
import vireid_plugins  # noqa: F401  (compat shims before fastreid; registration)

# isort: split
import itertools
import math

import numpy as np
import pytest
import torch
from fastreid.config import get_cfg
from fastreid.modeling.backbones import build_backbone

from vireid_plugins import add_vireid_config
from vireid_plugins.modeling.attention import PACBAM, build_attention, identity_guided_regulariser


def _sigmoid(v):
    return 1.0 / (1.0 + math.exp(-v))


def _hand_module() -> PACBAM:
    """C = 2, K = 2 stripes, hidden 1; W0 picks the channel-1 entries of both stripes; spatial = sigmoid(mean_c)."""
    module = PACBAM(channels=2, stripes=2, reduction=2, kernels=(1, 3, 7))
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()
        module.mlp[0].weight.copy_(torch.tensor([[0.0, 1.0, 0.0, 1.0]]))  # P = [s1c0, s1c1, s2c0, s2c1]
        module.mlp[2].weight.copy_(torch.tensor([[0.5], [-0.25]]))
        module.spatial[0].weight.copy_(torch.tensor([1.0, 0.0]).view(1, 2, 1, 1))  # 1x1 conv: mean_c
        module.fuse.weight.copy_(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1))
    return module


def test_hand_computation():
    # one image, 2 channels, 4 rows x 1 column; stripes = rows {0, 1} and {2, 3}
    x = torch.tensor([[1.0, 3.0, 5.0, 7.0], [2.0, 0.0, -2.0, 4.0]]).view(1, 2, 4, 1)
    module = _hand_module()
    p_avg, p_max = module.stripe_descriptors(x)
    assert p_avg.tolist() == [[2.0, 1.0, 6.0, 1.0]] and p_max.tolist() == [[3.0, 2.0, 7.0, 4.0]]
    # MLP(avg) = [0.5, -0.25] * relu(1 + 1) = [1, -0.5]; MLP(max) = [0.5, -0.25] * (2 + 4) = [3, -1.5]
    a = [_sigmoid(4.0), _sigmoid(-2.0)]
    out = module(x)
    torch.testing.assert_close(module.last_channel_attention, torch.tensor([a]))
    expected = []
    for c in range(2):
        for row in range(4):
            f_row = [a[k] * x[0, k, row, 0].item() for k in range(2)]  # F' at this position
            m = _sigmoid(sum(f_row) / 2)  # spatial attention of the row: sigmoid(mean_c F')
            expected.append(x[0, c, row, 0].item() + m * f_row[c])
    torch.testing.assert_close(out.flatten(), torch.tensor(expected))


def _numpy_reference(module: PACBAM, x: np.ndarray) -> np.ndarray:
    """Loop implementation from the definitions (independent of the module's tensor code)."""
    b, c, h, w = x.shape
    k = module.stripes
    w0, w1 = module.mlp[0].weight.detach().numpy(), module.mlp[2].weight.detach().numpy()
    out = np.empty_like(x)
    for i in range(b):
        p_avg, p_max = [], []
        for s in range(k):  # adaptive pooling bins: [floor(s*h/k), ceil((s+1)*h/k))
            lo, hi = (s * h) // k, -((-(s + 1) * h) // k)
            stripe = x[i, :, lo:hi, :]
            p_avg.append(stripe.mean(axis=(1, 2)))
            p_max.append(stripe.max(axis=(1, 2)))
        mlp = [w1 @ np.maximum(w0 @ np.concatenate(p), 0) for p in (p_avg, p_max)]
        a = 1 / (1 + np.exp(-(mlp[0] + mlp[1])))
        f1 = a[:, None, None] * x[i]
        s = np.stack([f1.mean(axis=0), f1.max(axis=0)])  # 2 x h x w
        branches = []
        for conv in module.spatial:
            kw = conv.weight.detach().numpy()[0]  # 2 x k x k
            r = kw.shape[-1] // 2
            padded = np.pad(s, ((0, 0), (r, r), (r, r)))
            branch = np.zeros((h, w))
            for y, z in itertools.product(range(h), range(w)):
                branch[y, z] = (padded[:, y:y + 2 * r + 1, z:z + 2 * r + 1] * kw).sum()
            branches.append(branch)
        fw, fb = module.fuse.weight.detach().numpy().reshape(-1), module.fuse.bias.detach().numpy()[0]
        m = 1 / (1 + np.exp(-(sum(wt * br for wt, br in zip(fw, branches)) + fb)))
        out[i] = x[i] + m[None] * f1
    return out


@pytest.mark.parametrize("h, stripes", [(6, 3), (7, 3)])  # divisible and non-divisible heights
def test_against_loop_reference(h, stripes):
    torch.manual_seed(0)
    module = PACBAM(channels=8, stripes=stripes, reduction=4).eval()
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, 0.5)
    x = torch.randn(2, 8, h, 5, dtype=torch.float64)
    out = module.double()(x)
    np.testing.assert_allclose(out.detach().numpy(), _numpy_reference(module, x.numpy()), rtol=1e-10, atol=1e-10)


def test_shape_errors():
    module = PACBAM(channels=4, stripes=6, reduction=2)
    with pytest.raises(ValueError, match="B x 4 x H x W"):
        module(torch.randn(1, 3, 8, 4))
    with pytest.raises(ValueError, match="height 4 is smaller than the 6 stripes"):
        module(torch.randn(1, 4, 4, 4))
    with pytest.raises(ValueError, match="odd"):
        PACBAM(channels=4, kernels=(1, 2))


def test_regulariser_hand_value():
    # C = 2; a0 = [0, 0], a1 = [0.2, 0], a2 = [0, 0.4], a3 = [1, 1] (outlier)
    a = torch.tensor([[0.0, 0.0], [0.2, 0.0], [0.0, 0.4], [1.0, 1.0]], requires_grad=True)
    labels = torch.tensor([5, 5, 7, -1])
    # same identity: d01 = 0.04 / 2 = 0.02 (pairs (0,1) and (1,0)) -> mean 0.02
    # different: d02 = 0.16 / 2 = 0.08 -> [0.1 - 0.08]_+ = 0.02; d12 = (0.04 + 0.16) / 2 = 0.1 -> 0 ; mean 0.01
    value = identity_guided_regulariser(a, labels, margin=0.1)
    assert value.item() == pytest.approx(0.02 + 0.01, abs=1e-7)
    value.backward()
    assert a.grad[3].abs().sum() == 0  # the outlier takes no part
    assert identity_guided_regulariser(a, torch.tensor([1, 2, 3, 4]), margin=0.0).item() == 0.0
    single = identity_guided_regulariser(a[:1], torch.tensor([0]))
    assert single.item() == 0.0  # no pair at all


def test_regulariser_brute_force():
    torch.manual_seed(1)
    a = torch.rand(9, 16, dtype=torch.float64)
    labels = torch.tensor([0, 1, 0, 2, 1, -1, 2, 0, 3])
    same, diff = [], []
    for i, j in itertools.product(range(9), repeat=2):
        if labels[i] < 0 or labels[j] < 0:
            continue
        d = ((a[i] - a[j]) ** 2).sum().item() / 16
        if labels[i] == labels[j] and i != j:
            same.append(d)
        elif labels[i] != labels[j]:
            diff.append(max(0.3 - d, 0.0))
    expected = sum(same) / len(same) + sum(diff) / len(diff)
    assert identity_guided_regulariser(a, labels, margin=0.3).item() == pytest.approx(expected, rel=1e-9)


def _agw_cfg(enabled: bool):
    cfg = get_cfg()
    add_vireid_config(cfg)
    cfg.MODEL.BACKBONE.NAME = "build_agw_backbone"
    cfg.MODEL.BACKBONE.DEPTH = "18x"
    cfg.MODEL.BACKBONE.FEAT_DIM = 512
    cfg.MODEL.BACKBONE.PA_CBAM.ENABLED = enabled
    cfg.MODEL.BACKBONE.PA_CBAM.STRIPES = 4
    return cfg


def test_registry_builds_from_config():
    node = _agw_cfg(True).MODEL.BACKBONE.PA_CBAM
    module = build_attention("PACBAM", node, 64)
    assert isinstance(module, PACBAM) and module.stripes == 4
    assert module.mlp[0].weight.shape == (64 // 16, 4 * 64)
    assert [conv.kernel_size for conv in module.spatial] == [(1, 1), (3, 3), (7, 7)]
    with pytest.raises(KeyError, match="NoSuchAttention"):
        build_attention("NoSuchAttention", node, 64)


def test_agw_option_applies_to_layer4_output():
    torch.manual_seed(0)
    plain = build_backbone(_agw_cfg(False)).eval()
    with_attention = build_backbone(_agw_cfg(True)).eval()
    assert plain.attention is None and isinstance(with_attention.attention, PACBAM)
    missing = with_attention.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("attention.") for k in missing)
    x, modality = torch.randn(2, 3, 64, 32), torch.tensor([0, 1])
    with torch.no_grad():
        base = plain(x, modality)
        torch.testing.assert_close(with_attention(x, modality), with_attention.attention(base))
    with_attention.train()
    with_attention(x, modality).sum().backward()
    assert with_attention.attention.mlp[0].weight.grad.abs().sum() > 0
    assert with_attention.attention.last_channel_attention.shape == (2, 512)
