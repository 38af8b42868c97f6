"""Tests of the multi-token two-stream ViT (modeling/backbones/token_vit.py) and its per-token BN-neck head."""
import vireid_plugins  # noqa: F401  (compat shims before fastreid; registration)

# isort: split
import pytest
import torch
import torch.nn.functional as F
from fastreid.config import get_cfg
from fastreid.modeling.backbones import build_backbone
from fastreid.modeling.heads import build_heads
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer

from vireid_plugins import add_vireid_config
from vireid_plugins.modeling.attention import PACBAM
from vireid_plugins.modeling.backbones import TokenViT, load_vit_pretrained, token_vit
from vireid_plugins.modeling.heads import TokenBNNeckHead

H, W, DIM, DEPTH, HEADS = 64, 32, 32, 3, 4


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _vit(**kwargs) -> TokenViT:
    args = dict(img_size=(H, W), patch_size=16, stride=16, embed_dim=DIM, depth=DEPTH, num_heads=HEADS, num_tokens=4)
    args.update(kwargs)
    return TokenViT(**args)


def _make_modalities_differ(model: TokenViT):
    with torch.no_grad():
        model.patch_embeds[1].proj.weight.normal_(0.0, 0.2)


def _cfg(**vit):
    cfg = get_cfg()
    add_vireid_config(cfg)
    cfg.MODEL.BACKBONE.NAME = "build_token_vit_backbone"
    cfg.MODEL.BACKBONE.FEAT_DIM = DIM
    cfg.INPUT.SIZE_TRAIN = [H, W]
    cfg.INPUT.SIZE_TEST = [H, W]
    cfg.MODEL.BACKBONE.VIT.merge_from_list(["EMBED_DIM", DIM, "DEPTH", DEPTH, "NUM_HEADS", HEADS, "DROP_PATH", 0.0])
    cfg.MODEL.BACKBONE.NUM_TOKENS = vit.pop("NUM_TOKENS", 4)
    for key, value in vit.items():
        cfg.MODEL.BACKBONE.VIT[key] = value
    return cfg


# ---------------------------------------------------------------- shapes, routing, gradients


@pytest.mark.parametrize("num_tokens", [1, 4, 6])
@pytest.mark.parametrize("last_block", ["per_token", "joint"])
def test_output_shape(num_tokens, last_block):
    model = _vit(num_tokens=num_tokens, last_block=last_block).eval()
    with torch.no_grad():
        out = model(torch.randn(3, 3, H, W), torch.tensor([0, 1, 0]))
    assert model.grid_size == (4, 2)
    assert out.shape == (3, num_tokens, DIM)


def test_overlapping_patches_grid():
    model = _vit(patch_size=16, stride=12)
    assert model.grid_size == ((H - 16) // 12 + 1, (W - 16) // 12 + 1)
    assert model.pos_embed.shape == (1, 4 + model.grid_size[0] * model.grid_size[1], DIM)
    assert model.eval()(torch.randn(2, 3, H, W), torch.tensor([0, 1])).shape == (2, 4, DIM)


def test_mixed_batch_keeps_order_and_routes_by_modality():
    model = _vit().eval()
    _make_modalities_differ(model)
    x = torch.randn(5, 3, H, W)
    modality = torch.tensor([1, 0, 1, 1, 0])
    with torch.no_grad():
        mixed = model(x, modality)
        visible = model(x, torch.zeros(5, dtype=torch.long))
        infrared = model(x, torch.ones(5, dtype=torch.long))
    expected = torch.where(modality[:, None, None] == 1, infrared, visible)
    torch.testing.assert_close(mixed, expected)
    assert not torch.allclose(visible, infrared)  # the two embeddings really differ
    with pytest.raises(ValueError, match="TokenViT: called without `modality`.*NUM_MODALITIES 1"):
        model(x)  # no silent one-stream network


def test_both_patch_embeddings_and_all_tokens_get_gradient():
    model = _vit().train()
    out = model(torch.randn(4, 3, H, W), torch.tensor([0, 1, 1, 0]))
    out.pow(2).sum().backward()
    for embed in model.patch_embeds:
        assert embed.proj.weight.grad.abs().sum() > 0
    assert (model.cls_token.grad.abs().sum(dim=-1) > 0).all()  # every class token
    assert all(p.grad is not None for p in model.blocks.parameters())


def test_single_modality_batch_leaves_other_embedding_without_gradient():
    model = _vit().train()
    model(torch.randn(2, 3, H, W), torch.tensor([1, 1])).sum().backward()
    assert model.patch_embeds[0].proj.weight.grad is None
    assert model.patch_embeds[1].proj.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("masked", [True, False])
def test_per_token_last_block_equals_separate_runs(masked, monkeypatch):
    """The masked pass (or, for timm without masks, the batched runs) equals T separate runs of the last block on
    [cls_n, patches] (independent computation)."""
    monkeypatch.setattr(token_vit, "BLOCK_TAKES_MASK", masked and token_vit.BLOCK_TAKES_MASK)
    model = _vit(num_tokens=4).eval()
    x, modality = torch.randn(3, 3, H, W), torch.tensor([0, 1, 0])
    with torch.no_grad():
        patches = model.forward_patch_tokens(x, modality)
        seq = torch.cat([model.cls_token.expand(3, -1, -1), patches], dim=1) + model.pos_embed
        for block in model.blocks[:-1]:
            seq = block(seq)
        expected = torch.stack([
            model.norm(model.blocks[-1](torch.cat([seq[:, n:n + 1], seq[:, 4:]], dim=1))[:, 0]) for n in range(4)
        ], dim=1)
        joint = model.norm(model.blocks[-1](seq)[:, :4])
        out = model(x, modality)
        model.last_block = "joint"
        out_joint = model(x, modality)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out_joint, joint)
    assert not torch.allclose(out, joint, atol=1e-4)  # the per-token tokens do not see each other


def test_pa_cbam_runs_on_patch_grid_before_last_block():
    model = _vit(attention=PACBAM(DIM, stripes=2, reduction=4)).train()
    calls = []
    model.attention.register_forward_hook(lambda mod, inp, out: calls.append(inp[0].shape))
    out = model(torch.randn(2, 3, H, W), torch.tensor([0, 1]))
    assert calls == [torch.Size([2, DIM, 4, 2])]
    assert model.attention.last_channel_attention.shape == (2, DIM)
    out.sum().backward()
    assert model.attention.mlp[0].weight.grad.abs().sum() > 0
    assert model.attention.fuse.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "x, modality, match",
    [
        (torch.randn(2, 3, 32, 32), None, r"B x 3 x 64 x 32"),
        (torch.randn(2, 3, H, W), torch.tensor([0, 2]), r"\[0, 2\).*got 2"),
        (torch.randn(2, 3, H, W), torch.tensor([0.0, 1.0]), "integer"),
        (torch.randn(2, 3, H, W), torch.tensor([0, 1, 0]), r"shape \[B\] = \[2\]"),
    ],
)
def test_invalid_inputs_raise(x, modality, match):
    with pytest.raises(ValueError, match=match):
        _vit()(x, modality)


def test_conv_stem_shapes():
    model = _vit(conv_stem=True, stem_channels=8).eval()
    assert model.patch_embeds[0].proj.kernel_size == (8, 8)
    assert model.grid_size == (4, 2)
    assert model(torch.randn(2, 3, H, W), torch.tensor([0, 1])).shape == (2, 4, DIM)


# ---------------------------------------------------------------- config and head


def test_build_from_cfg_and_head():
    cfg = _cfg(NUM_TOKENS=6, PATCH_SIZE=16, STRIDE=16)
    cfg.MODEL.BACKBONE.PA_CBAM.ENABLED = True
    cfg.MODEL.BACKBONE.PA_CBAM.STRIPES = 2
    cfg.MODEL.BACKBONE.PA_CBAM.REDUCTION = 4
    cfg.MODEL.HEADS.NAME = "TokenBNNeckHead"
    backbone, head = build_backbone(cfg), build_heads(cfg)
    assert isinstance(backbone, TokenViT) and isinstance(backbone.attention, PACBAM)
    assert isinstance(head, TokenBNNeckHead) and head.num_tokens == 6
    tokens = backbone(torch.randn(4, 3, H, W), torch.tensor([0, 1, 0, 1]))
    for mode in ("train", "eval"):
        getattr(head, mode)()
        out = head(tokens)
        assert set(out) == {"features", "tokens"}
        assert out["tokens"].shape == (4, 6, DIM) and out["features"].shape == (4, 6 * DIM)
        torch.testing.assert_close(out["features"], out["tokens"].flatten(1))


def test_head_is_one_bn_per_token():
    head = TokenBNNeckHead(feat_dim=DIM, num_tokens=3).train()
    with torch.no_grad():
        head.bottleneck.weight.uniform_(0.5, 2.0)
    tokens = torch.randn(8, 3, DIM) * torch.tensor([1.0, 5.0, 0.1])[None, :, None] + 3.0
    out = head(tokens)["tokens"]
    for n in range(3):  # independent reference: batch norm of token n with its own slice of the affine weights
        ref = F.batch_norm(tokens[:, n], None, None, head.bottleneck.weight[n * DIM:(n + 1) * DIM],
                           head.bottleneck.bias[n * DIM:(n + 1) * DIM], training=True, eps=head.bottleneck.eps)
        torch.testing.assert_close(out[:, n], ref)
    with pytest.raises(ValueError, match=r"\(B, 3, 32\)"):
        head(torch.randn(2, 4, DIM))


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"feat_dim": 64}, "set FEAT_DIM to 32"),
        ({"size_test": [128, 64]}, "SIZE_TEST"),
        ({"PRETRAIN": True}, "PRETRAIN_PATH is empty"),
        ({"LAST_BLOCK": "sideways"}, "last_block must be one of"),
    ],
)
def test_build_config_errors(changes, match):
    cfg = _cfg()
    if "feat_dim" in changes:
        cfg.MODEL.BACKBONE.FEAT_DIM = changes["feat_dim"]
    if "size_test" in changes:
        cfg.INPUT.SIZE_TEST = changes["size_test"]
    if "PRETRAIN" in changes:
        cfg.MODEL.BACKBONE.PRETRAIN = True
        cfg.MODEL.BACKBONE.PRETRAIN_PATH = ""
    if "LAST_BLOCK" in changes:
        cfg.MODEL.BACKBONE.VIT.LAST_BLOCK = changes["LAST_BLOCK"]
    with pytest.raises(ValueError, match=match):
        build_backbone(cfg)


# ---------------------------------------------------------------- pretrained weights


def _timm_vit(img_size, **kwargs) -> VisionTransformer:
    vit = VisionTransformer(img_size=img_size, patch_size=16, embed_dim=DIM, depth=DEPTH, num_heads=HEADS,
                            num_classes=10, **kwargs)
    with torch.no_grad():  # non-trivial values everywhere, so every copy is observable
        for p in vit.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return vit.eval()


def test_timm_checkpoint_same_size_single_token_reproduces_timm(tmp_path):
    """T = 1, joint last block, same input size: our forward is timm's normalised class token."""
    vit = _timm_vit((H, W))
    path = tmp_path / "vit.pth"
    torch.save(vit.state_dict(), path)
    model = _vit(num_tokens=1).eval()
    result = load_vit_pretrained(model, path, pretrain_grid=(4, 2))
    assert result.missing_keys == [] and result.unexpected_keys == []
    x = torch.randn(2, 3, H, W)
    with torch.no_grad():
        expected = vit.forward_features(x)[:, 0]
        for modality in (torch.tensor([0, 0]), torch.tensor([1, 1]), torch.tensor([1, 0])):
            torch.testing.assert_close(model(x, modality)[:, 0], expected, rtol=1e-5, atol=1e-5)


def test_timm_checkpoint_of_another_size_is_resized(tmp_path):
    vit = _timm_vit((48, 48))  # 3 x 3 grid -> our 4 x 2
    path = tmp_path / "vit48.pth"
    torch.save({"model": vit.state_dict()}, path)
    model = _vit(num_tokens=4)
    own_cls_pos = model.pos_embed.detach()[:, :4].clone()
    result = load_vit_pretrained(model, path)
    assert result.missing_keys == [] and result.unexpected_keys == []

    state = vit.state_dict()
    for m in range(2):
        torch.testing.assert_close(model.patch_embeds[m].proj.weight, state["patch_embed.proj.weight"], rtol=0, atol=0)
    torch.testing.assert_close(model.blocks[1].attn.qkv.weight, state["blocks.1.attn.qkv.weight"], rtol=0, atol=0)
    torch.testing.assert_close(model.norm.bias, state["norm.bias"], rtol=0, atol=0)
    torch.testing.assert_close(model.cls_token, state["cls_token"].expand(1, 4, DIM), rtol=0, atol=0)
    # patch positions: bilinear resize of the 3 x 3 grid (timm's resampler as the independent reference)
    expected_grid = resample_abs_pos_embed(state["pos_embed"], new_size=[4, 2], old_size=[3, 3],
                                           num_prefix_tokens=1, interpolation="bilinear", antialias=False)[:, 1:]
    torch.testing.assert_close(model.pos_embed[:, 4:], expected_grid, rtol=1e-6, atol=1e-6)
    # class positions: the checkpoint's class position plus the model's own (distinct) initialisation
    torch.testing.assert_close(model.pos_embed[:, :4], own_cls_pos + state["pos_embed"][:, :1], rtol=0, atol=1e-7)
    with torch.no_grad():
        out = model.eval()(torch.randn(2, 3, H, W), torch.tensor([0, 1]))
    assert not torch.allclose(out[:, 0], out[:, 1], atol=1e-3)  # the tokens are not copies of each other


def test_transreid_ssl_style_conv_stem_checkpoint(tmp_path):
    """TransReID-SSL keys (patch_embed.conv.*, one class token, 256 x 128-like non-square grid) into 2 stems."""
    source = _vit(num_tokens=1, num_modalities=1, conv_stem=True, stem_channels=8)
    state = {}
    for key, value in source.state_dict().items():
        state[key.replace("patch_embeds.0.", "patch_embed.")] = value
    state["head.weight"] = torch.randn(5, DIM)  # ignored
    state["some_extra.weight"] = torch.randn(3)  # unexpected: reported, not fatal
    path = tmp_path / "ics.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)

    model = _vit(num_tokens=4, conv_stem=True, stem_channels=8)
    result = load_vit_pretrained(model, path)  # 8 positions = the model's 4 x 2 grid: no PRETRAIN_GRID needed
    assert result.unexpected_keys == ["some_extra.weight"] and result.missing_keys == []
    for m in range(2):
        torch.testing.assert_close(model.patch_embeds[m].conv[1].IN.weight, state["patch_embed.conv.1.IN.weight"])
        torch.testing.assert_close(model.patch_embeds[m].conv[7].running_var, state["patch_embed.conv.7.running_var"])
    torch.testing.assert_close(model.pos_embed[:, 4:], state["pos_embed"][:, 1:], rtol=0, atol=0)


def test_non_square_grid_needs_pretrain_grid(tmp_path):
    vit = _timm_vit((48, 32))  # 3 x 2 = 6 positions, neither square nor the model's 8
    path = tmp_path / "vit48x32.pth"
    torch.save(vit.state_dict(), path)
    with pytest.raises(ValueError, match="not a square grid.*PRETRAIN_GRID") as err:
        load_vit_pretrained(_vit(), path)
    assert str(path) in str(err.value)
    with pytest.raises(ValueError, match=r"PRETRAIN_GRID=\[2, 2\] describes 4"):
        load_vit_pretrained(_vit(), path, pretrain_grid=(2, 2))
    load_vit_pretrained(_vit(), path, pretrain_grid=(3, 2))


def test_missing_keys_raise_unless_allowed(tmp_path):
    state = {k: v for k, v in _timm_vit((H, W)).state_dict().items() if not k.startswith("blocks.2.")}
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"lacks \d+ keys.*blocks\.2\..*ALLOW_MISSING") as err:
        load_vit_pretrained(_vit(), path, pretrain_grid=(4, 2))
    assert str(path) in str(err.value)
    result = load_vit_pretrained(_vit(), path, pretrain_grid=(4, 2), allow_missing=True)
    assert result.missing_keys and all(k.startswith("blocks.2.") for k in result.missing_keys)


def test_pa_cbam_keys_are_not_missing(tmp_path):
    path = tmp_path / "vit.pth"
    torch.save(_timm_vit((H, W)).state_dict(), path)
    result = load_vit_pretrained(_vit(attention=PACBAM(DIM, stripes=2, reduction=4)), path, pretrain_grid=(4, 2))
    assert result.missing_keys == []


def test_shape_mismatch_names_key_and_shapes(tmp_path):
    vit = VisionTransformer(img_size=(H, W), patch_size=16, embed_dim=48, depth=DEPTH, num_heads=HEADS)
    path = tmp_path / "wide.pth"
    torch.save(vit.state_dict(), path)
    with pytest.raises(ValueError, match=r"'cls_token' has shape \[1, 1, 48\].*\[1, 4, 32\]") as err:
        load_vit_pretrained(_vit(), path)
    assert str(path) in str(err.value)


def test_conv_stem_mismatch_is_named(tmp_path):
    path = tmp_path / "vit.pth"
    torch.save(_timm_vit((H, W)).state_dict(), path)
    with pytest.raises(ValueError, match=r"'patch_embed.proj.weight' has shape \[32, 3, 16, 16\].*CONV_STEM"):
        load_vit_pretrained(_vit(conv_stem=True, stem_channels=8), path, pretrain_grid=(4, 2), allow_missing=True)


def test_build_with_pretrain_path(tmp_path):
    vit = _timm_vit((32, 32))
    path = tmp_path / "vit32.pth"
    torch.save(vit.state_dict(), path)
    cfg = _cfg(NUM_TOKENS=2)
    cfg.MODEL.BACKBONE.PRETRAIN = True
    cfg.MODEL.BACKBONE.PRETRAIN_PATH = str(path)
    model = build_backbone(cfg)
    torch.testing.assert_close(model.blocks[0].mlp.fc1.weight, vit.blocks[0].mlp.fc1.weight, rtol=0, atol=0)
    cfg.MODEL.BACKBONE.PRETRAIN_PATH = str(tmp_path / "missing.pth")
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        build_backbone(cfg)
