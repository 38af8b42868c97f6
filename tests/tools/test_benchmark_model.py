"""tools/benchmark_model.py: the FLOP count of a ViT, attention matmuls included, against a hand count."""
import importlib.util
import os

import torch
from conftest import ROOT

from vireid_plugins.modeling.backbones import TokenViT
from vireid_plugins.modeling.heads import TokenBNNeckHead

spec = importlib.util.spec_from_file_location("benchmark_model", os.path.join(ROOT, "tools", "benchmark_model.py"))
benchmark_model = importlib.util.module_from_spec(spec)
spec.loader.exec_module(benchmark_model)


def test_flops_match_hand_count():
    d, depth, t, p = 32, 2, 2, 8  # 64 x 32 input, 16-pixel patches: 4 x 2 grid
    backbone = TokenViT(img_size=(64, 32), patch_size=16, stride=16, embed_dim=d, depth=depth, num_heads=4,
                        num_tokens=t)
    net = benchmark_model.Network(backbone, TokenBNNeckHead(feat_dim=d, num_tokens=t), two_stream=True)
    n = t + p
    patch_embed = 2 * p * d * 3 * 16 * 16
    per_block = 2 * n * 12 * d * d + 2 * 2 * n * n * d  # qkv, proj, MLP; q k^T and attn v (masked: still n x n)
    expected = patch_embed + depth * per_block
    for block in backbone.blocks:
        block.attn.fused_attn = True  # what timm picks on torch 2; FlopCounterMode would not count that kernel
    assert benchmark_model.gflops_per_image(net, (64, 32), torch.device("cpu")) * 1e9 == expected
    assert all(block.attn.fused_attn for block in backbone.blocks)  # restored after counting
