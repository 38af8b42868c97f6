"""Multi-token two-stream Vision Transformer for visible-infrared ReID.

The backbone of the multimodule framework of Sun, Du, Gao ("A Multimodule Collaborative Framework for Unsupervised
Visible-Infrared Person Re-Identification with Channel Enhancement Modality", §3.1-3.4: ``N`` "regional spaces"),
following TokenMatcher (Liu et al., AAAI'25; github.com/liulekai123/TokenMatcher): a ViT (Dosovitskiy et al.,
ICLR'21; timm blocks) with

* one patch embedding per modality (0 visible, 1 infrared; the channel-augmented view of a visible image is
  routed as visible), each a strided convolution, optionally after the convolutional stem of TransReID-SSL
  (Luo et al., "Self-supervised Pre-training for Transformer-based Person Re-identification", 2021: three
  convolutions with IBN, then a ``PATCH_SIZE / 2`` projection), selected by ``forward(x, modality)``;
* ``T`` class tokens sharing the blocks ``blocks[:-1]``;
* optionally PA-CBAM (:mod:`vireid_plugins.modeling.attention.pa_cbam`) on the ``(B, D, h, w)`` grid of patch
  tokens before the last block;
* the last block run *once per class token* (``last_block="per_token"``): token ``n`` attends to itself and all
  patch tokens, not to the other class tokens. It is computed as one masked pass of the block over the whole
  sequence, which equals ``T`` separate runs on ``[cls_n, patches]`` (stochastic depth, when training, then
  drops a sample's whole block rather than each token's run independently); with a timm whose ``Block`` takes
  no attention mask, the ``T`` runs are batched instead (same result, ``T`` times the block's cost).
  ``last_block="joint"`` runs it once on all tokens, as TokenMatcher's released code does;
* the final LayerNorm on the class tokens.

Output: ``(B, T, D)`` class tokens *before* the BN necks (``TokenBNNeckHead``); the image feature is their
concatenation ``(B, T*D)``.

Shapes (ViT-B/16, 384 x 128, stride 16): patch grid ``h x w = 24 x 8``, ``P = 192`` patches, ``D = 768``.
Module names follow timm / TransReID (``cls_token``, ``pos_embed``, ``blocks.i.*``, ``norm.*``); the patch
embeddings are ``patch_embeds.<m>.{conv,proj}.*``, PA-CBAM is ``attention.*``.
"""
import inspect
import logging
import math
import os
from collections.abc import Sequence
from functools import partial
from typing import NamedTuple

import torch
import torch.nn.functional as F
from fastreid.layers import IBN
from fastreid.modeling.backbones import BACKBONE_REGISTRY
from fastreid.utils.checkpoint import get_missing_parameters_message, get_unexpected_parameters_message
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block, init_weights_vit_timm
from torch import nn

from ..attention import build_attention
from .modality import check_modality, route_by_modality
from .weights import read_state_dict

__all__ = ["PatchEmbedding", "TokenViT", "ViTLoadResult", "build_token_vit_backbone", "load_vit_pretrained"]

logger = logging.getLogger("fastreid.vireid.backbone")

LAST_BLOCK_MODES = ("per_token", "joint")
BLOCK_TAKES_MASK = "attn_mask" in inspect.signature(Block.forward).parameters  # recent timm releases


class PatchEmbedding(nn.Module):
    """``(B, 3, H, W)`` images -> ``(B, h*w, D)`` patch tokens (row-major grid).

    Without a stem: one ``patch x patch`` convolution with ``stride`` (overlapping patches when
    ``stride < patch``), ``h = (H - patch) // stride + 1``. With ``conv_stem``: TransReID-SSL's stem
    (``conv.0`` 7x7/2, ``conv.1`` IBN, ``conv.3`` 3x3, ``conv.4`` IBN, ``conv.6`` 3x3, ``conv.7`` BN, ReLUs
    between) halves the image, then ``proj`` has kernel ``patch / 2`` and stride ``stride / 2``.
    """

    def __init__(self, img_size: Sequence[int], patch_size: int, stride: int, embed_dim: int,
                 conv_stem: bool = False, stem_channels: int = 64):
        super().__init__()
        height, width = (int(s) for s in img_size)
        if conv_stem:
            if patch_size % 2 or stride % 2:
                raise ValueError(f"PatchEmbedding: the conv stem needs an even patch size and stride, got "
                                 f"{patch_size} and {stride}")
            c = stem_channels
            self.conv = nn.Sequential(
                nn.Conv2d(3, c, kernel_size=7, stride=2, padding=3, bias=False), IBN(c, "BN"), nn.ReLU(inplace=True),
                nn.Conv2d(c, c, kernel_size=3, padding=1, bias=False), IBN(c, "BN"), nn.ReLU(inplace=True),
                nn.Conv2d(c, c, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
            )
            in_chans, kernel, step = c, patch_size // 2, stride // 2
            height, width = (height + 1) // 2, (width + 1) // 2
        else:
            self.conv = None
            in_chans, kernel, step = 3, patch_size, stride
        if height < kernel or width < kernel:
            raise ValueError(f"PatchEmbedding: image {list(img_size)} is smaller than one {patch_size}-pixel patch")
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=kernel, stride=step)
        self.grid_size = ((height - kernel) // step + 1, (width - kernel) // step + 1)

    @property
    def num_patches(self) -> int:
        return self.grid_size[0] * self.grid_size[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv is not None:
            x = self.conv(x)
        return self.proj(x).flatten(2).transpose(1, 2)


class TokenViT(nn.Module):
    """Two-stream ViT with ``num_tokens`` class tokens (see the module docstring).

    Args:
        img_size: ``(H, W)`` of every input (position embeddings are built for it).
        patch_size, stride: patch size and stride in pixels.
        embed_dim, depth, num_heads, mlp_ratio, qkv_bias: transformer size (ViT-B: 768, 12, 12, 4.0, True).
        num_tokens: ``T`` class tokens (4 for SYSU-MM01, 6 for RegDB in the paper).
        num_modalities: patch embeddings (0 visible, 1 infrared).
        conv_stem, stem_channels: TransReID-SSL convolutional stem in front of each patch projection.
        drop_rate, attn_drop_rate, drop_path_rate: dropout after embeddings/projections, on attention weights,
            and the maximum stochastic-depth rate (linearly increasing over the blocks).
        last_block: ``"per_token"`` or ``"joint"``.
        attention: optional shape-preserving module on the ``(B, D, h, w)`` patch grid before the last block.
        ln_eps: LayerNorm epsilon (1e-6 in timm / TransReID ViTs).

    Attributes:
        grid_size: ``(h, w)`` patch grid; feat_dim: ``D``; num_tokens: ``T``.
    """

    def __init__(self, img_size: Sequence[int] = (384, 128), patch_size: int = 16, stride: int = 16,
                 embed_dim: int = 768, depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, num_tokens: int = 4, num_modalities: int = 2, conv_stem: bool = False,
                 stem_channels: int = 64, drop_rate: float = 0.0, attn_drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, last_block: str = "per_token", attention: nn.Module | None = None,
                 ln_eps: float = 1e-6):
        super().__init__()
        if len(img_size) != 2:
            raise ValueError(f"TokenViT: img_size must be (H, W), got {img_size}")
        if depth < 1 or num_tokens < 1 or num_modalities < 1:
            raise ValueError(f"TokenViT: depth, num_tokens and num_modalities must be >= 1, got {depth}, "
                             f"{num_tokens}, {num_modalities}")
        if embed_dim % num_heads:
            raise ValueError(f"TokenViT: embed_dim {embed_dim} is not a multiple of num_heads {num_heads}")
        if last_block not in LAST_BLOCK_MODES:
            raise ValueError(f"TokenViT: last_block must be one of {LAST_BLOCK_MODES}, got {last_block!r}")
        self.img_size = tuple(int(s) for s in img_size)
        self.num_tokens, self.feat_dim, self.num_modalities = num_tokens, embed_dim, num_modalities
        self.last_block = last_block

        self.patch_embeds = nn.ModuleList([
            PatchEmbedding(self.img_size, patch_size, stride, embed_dim, conv_stem, stem_channels)
            for _ in range(num_modalities)
        ])
        self.grid_size = self.patch_embeds[0].grid_size
        num_patches = self.patch_embeds[0].num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, num_tokens, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens + num_patches, embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)
        rates = torch.linspace(0, drop_path_rate, depth).tolist()  # stochastic depth decay rule
        norm_layer = partial(nn.LayerNorm, eps=ln_eps)
        self.blocks = nn.ModuleList([
            Block(embed_dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, proj_drop=drop_rate,
                  attn_drop=attn_drop_rate, drop_path=rates[i], norm_layer=norm_layer)
            for i in range(depth)
        ])
        self.norm = norm_layer(embed_dim)
        self.attention = attention

        trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.cls_token, std=0.02)
        for module in (self.blocks, self.norm):
            module.apply(init_weights_vit_timm)
        # token n attends to itself and the patches: T separate runs of the last block in one masked pass
        seq = num_tokens + num_patches
        mask = torch.ones(seq, seq, dtype=torch.bool)
        mask[:num_tokens, :num_tokens] = torch.eye(num_tokens, dtype=torch.bool)
        self.register_buffer("last_block_mask", mask, persistent=False)

    def forward_patch_tokens(self, x: torch.Tensor, modality: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, 3, H, W)`` -> ``(B, P, D)`` patch tokens, each image through its modality's embedding."""
        if x.dim() != 4 or tuple(x.shape[-2:]) != self.img_size or x.shape[1] != 3:
            raise ValueError(f"TokenViT: expected images of shape B x 3 x {self.img_size[0]} x {self.img_size[1]} "
                             f"(INPUT.SIZE_TRAIN), got {list(x.shape)}")
        modality = check_modality(modality, x.shape[0], self.num_modalities, x.device, "TokenViT")
        return route_by_modality(x, modality, self.patch_embeds)

    def forward(self, x: torch.Tensor, modality: torch.Tensor | None = None) -> torch.Tensor:
        """
        Args:
            x: ``(B, 3, H, W)`` images.
            modality: ``(B,)`` long tensor, 0 visible (also the channel-augmented view), 1 infrared; None only with
                one patch embedding (``NUM_MODALITIES 1``).

        Returns:
            ``(B, T, D)`` class tokens after the final LayerNorm (before any BN neck), in the input order.
        """
        patches = self.forward_patch_tokens(x, modality)
        b, t = patches.shape[0], self.num_tokens
        tokens = torch.cat([self.cls_token.expand(b, -1, -1), patches], dim=1) + self.pos_embed
        tokens = self.pos_drop(tokens)
        for block in self.blocks[:-1]:
            tokens = block(tokens)
        if self.attention is not None:
            h, w = self.grid_size
            grid = tokens[:, t:].transpose(1, 2).reshape(b, self.feat_dim, h, w)
            grid = self.attention(grid).flatten(2).transpose(1, 2)
            tokens = torch.cat([tokens[:, :t], grid], dim=1)
        return self.norm(self.forward_last_block(tokens))

    def forward_last_block(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, T + P, D)`` sequence -> ``(B, T, D)`` class tokens after the last block (``last_block`` mode)."""
        t, block = self.num_tokens, self.blocks[-1]
        if self.last_block == "joint" or t == 1:
            return block(tokens)[:, :t]
        if BLOCK_TAKES_MASK:
            return block(tokens, attn_mask=self.last_block_mask)[:, :t]
        b, n, d = tokens.shape  # T runs on [cls_n, patches], batched
        patches = tokens[:, None, t:].expand(b, t, n - t, d).reshape(b * t, n - t, d)
        return block(torch.cat([tokens[:, :t].reshape(b * t, 1, d), patches], dim=1))[:, 0].view(b, t, d)


# ------------------------------------------------------------------------------------------- pretrained weights
class ViTLoadResult(NamedTuple):
    """Keys reported by :func:`load_vit_pretrained`."""

    missing_keys: list[str]  # model keys (PA-CBAM excluded) that the file did not provide
    unexpected_keys: list[str]  # file keys that match nothing in the model (classifier heads are ignored)


# classifier heads and distillation parts of timm / DeiT / TransReID files: never part of the backbone
_IGNORED_PREFIXES = ("head.", "head_dist.", "fc.", "fc_norm.", "pre_logits.", "classifier.", "bottleneck.")
_NEW_MODULES = ("attention.",)  # modules of ours that no pretrained ViT holds


def _strip_prefix(state: dict, prefix: str) -> dict:
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return state


def _resize_position_grid(posemb: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int]) -> torch.Tensor:
    """``(1, h0*w0, D)`` -> ``(1, h*w, D)`` by bilinear interpolation of the 2-D grid (TransReID's resize)."""
    if tuple(old_grid) == tuple(new_grid):
        return posemb
    dim = posemb.shape[-1]
    grid = posemb.reshape(1, old_grid[0], old_grid[1], dim).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=new_grid, mode="bilinear", align_corners=False)
    return grid.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], dim).to(posemb.dtype)


def _checkpoint_grid(num_positions: int, pretrain_grid, model_grid: tuple[int, int], path: str) -> tuple[int, int]:
    """The checkpoint's patch grid: ``pretrain_grid`` if given, else square, else the model's own if it has as
    many positions (a checkpoint of this input size)."""
    if pretrain_grid:
        h, w = (int(s) for s in pretrain_grid)
        if h * w != num_positions:
            raise ValueError(f"TokenViT: {path!r} has {num_positions} patch positions, but "
                             f"MODEL.BACKBONE.VIT.PRETRAIN_GRID={list(pretrain_grid)} describes {h * w}")
        return h, w
    side = math.isqrt(num_positions)
    if side * side != num_positions and num_positions == model_grid[0] * model_grid[1]:
        return tuple(model_grid)
    if side * side != num_positions:
        raise ValueError(f"TokenViT: {path!r} has {num_positions} patch positions, not a square grid; set "
                         f"MODEL.BACKBONE.VIT.PRETRAIN_GRID to its (h, w), e.g. [16, 8] for a 256 x 128 checkpoint")
    return side, side


def load_vit_pretrained(model: TokenViT, path: str | os.PathLike, pretrain_grid: Sequence[int] = (),
                        allow_missing: bool = False) -> ViTLoadResult:
    """Load a ViT checkpoint (timm / ImageNet, TransReID, TransReID-SSL or DINO-style keys) into ``model``.

    * ``patch_embed.*`` is copied into *every* modality's patch embedding;
    * a single ``cls_token`` is copied into all ``T`` class tokens; since identical tokens would stay identical
      through every block, their *positions* are the checkpoint's class position plus this model's own random
      initialisation (std 0.02), so the tokens differ (with ``T = 1`` both are copied as they are);
    * the patch positions are resized (bilinear) from the checkpoint's grid (``pretrain_grid``, else square,
      else the model's own when the counts agree) to the model's; a ``dist_token`` and its position are dropped;
    * classifier heads (``head``, ``fc``, ...) are ignored; a ``backbone.`` / ``base.`` prefix is removed.

    Args:
        model: the backbone to fill in place.
        path: local file (``torch.load(weights_only=True)``; ``state_dict`` / ``model`` / ``teacher`` wrappers).
        pretrain_grid: ``(h, w)`` patch grid of the checkpoint's position embedding; empty = square.
        allow_missing: load even if model keys are missing from the file (they keep their initialisation and
            are listed in a warning); otherwise that is an error.

    Returns:
        ViTLoadResult(missing_keys, unexpected_keys), also logged on ``fastreid.vireid.backbone``.

    Raises:
        FileNotFoundError / ValueError: no file, an unreadable file, a tensor whose shape does not fit (named),
            a non-square position grid without ``pretrain_grid``, or missing keys without ``allow_missing``.
    """
    expected = "a ViT state dict (timm / TransReID-SSL keys: patch_embed.*, cls_token, pos_embed, blocks.*, norm.*)"
    state = read_state_dict(path, "TokenViT", expected)
    path = os.fspath(path)
    for prefix in ("backbone.", "base."):
        state = _strip_prefix(state, prefix)
    own = model.state_dict()
    t = model.num_tokens

    def check_shape(key: str, target: str, value: torch.Tensor):
        if own[target].shape != value.shape:
            raise ValueError(
                f"TokenViT: {path!r} does not fit the model: {key!r} has shape {list(state[key].shape)} in the file "
                f"but {list(own[target].shape)} in the model ({target!r}); check MODEL.BACKBONE.VIT (EMBED_DIM, DEPTH, "
                f"PATCH_SIZE, CONV_STEM, MLP_RATIO, QKV_BIAS)"
            )

    mapped, unexpected = {}, []
    num_prefix = state["cls_token"].shape[1] if "cls_token" in state else 1
    if "dist_token" in state:
        num_prefix += 1
    for key, value in state.items():
        if key.startswith(_IGNORED_PREFIXES) or key == "dist_token":
            continue
        if key.startswith("patch_embed."):
            suffix = key[len("patch_embed."):]
            targets = [f"patch_embeds.{m}.{suffix}" for m in range(model.num_modalities)]
            if not all(target in own for target in targets):
                unexpected.append(key)
                continue
            for target in targets:
                check_shape(key, target, value)
                mapped[target] = value
            continue
        if key == "cls_token":
            if value.dim() == 3 and value.shape[1] == 1 and t > 1:
                value = value.expand(-1, t, -1)
        elif key == "pos_embed":
            if value.dim() != 3 or value.shape[1] <= num_prefix:
                check_shape(key, key, value)
            prefix, grid = value[:, :1], value[:, num_prefix:]
            old_grid = _checkpoint_grid(grid.shape[1], pretrain_grid, model.grid_size, path)
            grid = _resize_position_grid(grid, old_grid, model.grid_size)
            if num_prefix == t:  # a checkpoint with as many class tokens: copy their positions
                prefix = value[:, :t]
            elif t > 1:
                prefix = own["pos_embed"][:, :t] + prefix
            value = torch.cat([prefix, grid], dim=1)
        if key not in own:
            unexpected.append(key)
            continue
        check_shape(key, key, value)
        mapped[key] = value

    missing = [k for k in own if k not in mapped and not k.startswith(_NEW_MODULES)
               and not k.endswith("num_batches_tracked")]
    if missing and not allow_missing:
        raise ValueError(
            f"TokenViT: {path!r} lacks {len(missing)} keys of the model: {missing[:8]}"
            f"{' ...' if len(missing) > 8 else ''}; set MODEL.BACKBONE.VIT.ALLOW_MISSING True to load it anyway "
            f"(those keys keep their random initialisation)"
        )
    model.load_state_dict(mapped, strict=False)
    logger.info(f"Loaded ViT weights from {path} ({len(mapped)} tensors; patch embedding copied into "
                f"{model.num_modalities} modalities, class token into {t} tokens)")
    if missing:
        logger.warning(get_missing_parameters_message(missing))
    if unexpected:
        logger.warning(get_unexpected_parameters_message(unexpected))
    return ViTLoadResult(missing, unexpected)


@BACKBONE_REGISTRY.register()
def build_token_vit_backbone(cfg) -> TokenViT:
    """Create a :class:`TokenViT` from ``cfg.MODEL.BACKBONE.VIT`` (``NAME: build_token_vit_backbone``).

    The input size is ``INPUT.SIZE_TRAIN`` (``SIZE_TEST`` must equal it); ``FEAT_DIM`` must equal
    ``VIT.EMBED_DIM`` (the per-token width); PA-CBAM is inserted if ``PA_CBAM.ENABLED``; with ``PRETRAIN`` the
    weights come from the local file ``PRETRAIN_PATH`` (:func:`load_vit_pretrained`).
    """
    vit = cfg.MODEL.BACKBONE.VIT
    size = [int(s) for s in cfg.INPUT.SIZE_TRAIN]
    if [int(s) for s in cfg.INPUT.SIZE_TEST] != size:
        raise ValueError(f"build_token_vit_backbone: INPUT.SIZE_TEST {list(cfg.INPUT.SIZE_TEST)} must equal "
                         f"INPUT.SIZE_TRAIN {size} (the position embeddings are built for one input size)")
    if cfg.MODEL.BACKBONE.FEAT_DIM != vit.EMBED_DIM:
        raise ValueError(f"build_token_vit_backbone: MODEL.BACKBONE.FEAT_DIM is {cfg.MODEL.BACKBONE.FEAT_DIM} but "
                         f"each token has VIT.EMBED_DIM={vit.EMBED_DIM} channels; set FEAT_DIM to {vit.EMBED_DIM}")
    if cfg.MODEL.BACKBONE.PRETRAIN and not cfg.MODEL.BACKBONE.PRETRAIN_PATH:
        raise ValueError("build_token_vit_backbone: MODEL.BACKBONE.PRETRAIN is True but PRETRAIN_PATH is empty; "
                         "weights are never downloaded, so it must point to a local ViT state dict, or set "
                         "PRETRAIN False")
    pa_cbam = cfg.MODEL.BACKBONE.PA_CBAM
    model = TokenViT(
        img_size=size, patch_size=vit.PATCH_SIZE, stride=vit.STRIDE, embed_dim=vit.EMBED_DIM, depth=vit.DEPTH,
        num_heads=vit.NUM_HEADS, mlp_ratio=vit.MLP_RATIO, qkv_bias=vit.QKV_BIAS,
        num_tokens=cfg.MODEL.BACKBONE.NUM_TOKENS,
        num_modalities=cfg.MODEL.BACKBONE.NUM_MODALITIES, conv_stem=vit.CONV_STEM, stem_channels=vit.STEM_CHANNELS,
        drop_rate=vit.DROP, attn_drop_rate=vit.ATTN_DROP, drop_path_rate=vit.DROP_PATH, last_block=vit.LAST_BLOCK,
        attention=build_attention("PACBAM", pa_cbam, vit.EMBED_DIM) if pa_cbam.ENABLED else None,
        ln_eps=vit.LN_EPS,
    )
    if cfg.MODEL.BACKBONE.PRETRAIN:
        load_vit_pretrained(model, cfg.MODEL.BACKBONE.PRETRAIN_PATH, vit.PRETRAIN_GRID, vit.ALLOW_MISSING)
    return model
