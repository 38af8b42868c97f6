"""Size, FLOPs and throughput of the multi-token ViT against fast-reid's own ViT-B and ResNet-50, in one run.

Models (each a backbone plus its BN-neck head, built from configs through fast-reid's registries):

* ``ours``: ``build_token_vit_backbone`` (ViT-B/16, ``--tokens`` class tokens, per-token last block, two patch
  embeddings, PA-CBAM on the patch grid) + ``TokenBNNeckHead``; the MAAL modality classifier (training only) is
  counted on a separate line;
* ``ours-no-pacbam``: the same without PA-CBAM;
* ``fastreid-vit``: fast-reid's ``build_vit_backbone`` (ViT-B/16, ``DEPTH base``) + ``BNNeckHead``;
* ``fastreid-r50``: fast-reid's ``build_resnet_backbone`` (ResNet-50, last stride 1) + ``BNNeckHead`` (average pool).

Measured, at ``--size`` (default 384 x 128), all on ``--device``:

* parameters (millions);
* GFLOPs per image (``torch.utils.flop_counter.FlopCounterMode``, batch 1, eval; it counts 2 FLOPs per
  multiply-add, so GMACs are half). Fused attention kernels are not counted by FlopCounterMode, so timm blocks run
  their explicit attention while counting;
* inference throughput (eval, ``no_grad``) and training throughput (train mode, forward + backward of a scalar
  loss on the features), images/s, after ``--warmup`` untimed iterations, over ``--iters`` timed ones of
  ``--batch-size`` images (half visible, half infrared for the two-stream model); CUDA is synchronised around
  the timed loop. ``--amp`` runs both under float16 autocast (CUDA only).

Usage (from the repository root)::

    python tools/benchmark_model.py --device cpu --batch-size 2 --iters 2 --warmup 1
    python tools/benchmark_model.py --device cuda --batch-size 64 --iters 20 --amp
"""
import argparse
import contextlib
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import vireid_plugins  # noqa: E402,F401  (compat shims before fastreid; registration)

# isort: split
from fastreid.config import get_cfg  # noqa: E402
from fastreid.modeling.backbones import build_backbone  # noqa: E402
from fastreid.modeling.heads import build_heads  # noqa: E402
from timm.layers import Attention  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from vireid_plugins import add_vireid_config  # noqa: E402
from vireid_plugins.modeling.losses.maal import ModalityDiscriminator  # noqa: E402

MODELS = ("ours", "ours-no-pacbam", "fastreid-vit", "fastreid-r50")


class Network(nn.Module):
    """Backbone + head; ``forward(images, modality)`` returns the image-level feature ``(B, d)``."""

    def __init__(self, backbone: nn.Module, head: nn.Module, two_stream: bool):
        super().__init__()
        self.backbone, self.head, self.two_stream = backbone, head, two_stream

    def forward(self, images, modality):
        out = self.head(self.backbone(images, modality) if self.two_stream else self.backbone(images))
        return out["features"] if isinstance(out, dict) else out


def build_network(name: str, size, tokens: int) -> tuple[Network, int]:
    """The network ``name`` and its image-feature width."""
    cfg = get_cfg()
    add_vireid_config(cfg)
    cfg.INPUT.SIZE_TRAIN = cfg.INPUT.SIZE_TEST = list(size)
    cfg.MODEL.BACKBONE.PRETRAIN = False
    if name.startswith("ours"):
        cfg.MODEL.BACKBONE.NAME = "build_token_vit_backbone"
        cfg.MODEL.BACKBONE.FEAT_DIM = 768
        cfg.MODEL.BACKBONE.NUM_TOKENS = tokens
        cfg.MODEL.BACKBONE.PA_CBAM.ENABLED = name == "ours"
        cfg.MODEL.HEADS.NAME = "TokenBNNeckHead"
        two_stream, dim = True, 768 * tokens
    elif name == "fastreid-vit":
        cfg.MODEL.BACKBONE.NAME = "build_vit_backbone"
        cfg.MODEL.BACKBONE.DEPTH = "base"
        cfg.MODEL.BACKBONE.FEAT_DIM = 768
        cfg.MODEL.HEADS.NAME = "BNNeckHead"
        cfg.MODEL.HEADS.POOL_LAYER = "Identity"  # fast-reid's ViT already returns B x 768 x 1 x 1
        two_stream, dim = False, 768
    elif name == "fastreid-r50":
        cfg.MODEL.BACKBONE.NAME = "build_resnet_backbone"
        cfg.MODEL.BACKBONE.DEPTH = "50x"
        cfg.MODEL.BACKBONE.FEAT_DIM = 2048
        cfg.MODEL.BACKBONE.LAST_STRIDE = 1
        cfg.MODEL.HEADS.NAME = "BNNeckHead"
        cfg.MODEL.HEADS.POOL_LAYER = "GlobalAvgPool"
        two_stream, dim = False, 2048
    else:
        raise ValueError(f"unknown model {name!r}; choose from {MODELS}")
    return Network(build_backbone(cfg), build_heads(cfg), two_stream), dim


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@contextlib.contextmanager
def explicit_attention(module: nn.Module):
    """Make timm attention use its explicit matmuls (counted by FlopCounterMode) inside the block."""
    attns = [m for m in module.modules() if isinstance(m, Attention)]
    saved = [m.fused_attn for m in attns]
    for m in attns:
        m.fused_attn = False
    try:
        yield
    finally:
        for m, fused in zip(attns, saved):
            m.fused_attn = fused


def gflops_per_image(net: Network, size, device) -> float:
    net.eval()
    x = torch.randn(1, 3, *size, device=device)
    modality = torch.zeros(1, dtype=torch.long, device=device)
    with explicit_attention(net), torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(x, modality)
    return counter.get_total_flops() / 1e9


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def throughput(net: Network, size, batch: int, iters: int, warmup: int, device, train: bool, amp: bool) -> float:
    x = torch.randn(batch, 3, *size, device=device)
    modality = (torch.arange(batch, device=device) % 2).long()  # half visible, half infrared
    net.train(train)
    autocast = torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp)

    def step():
        if train:
            with autocast:
                loss = net(x, modality).float().pow(2).mean()
            loss.backward()
            net.zero_grad(set_to_none=True)
        else:
            with torch.no_grad(), autocast:
                net(x, modality)

    for _ in range(warmup):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        step()
    _sync(device)
    return batch * iters / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--iters", type=int, default=10, help="timed iterations per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations before each measurement")
    parser.add_argument("--size", type=int, nargs=2, default=[384, 128], metavar=("H", "W"))
    parser.add_argument("--tokens", type=int, default=4, help="class tokens of our model (4 SYSU-MM01, 6 RegDB)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--amp", action="store_true", help="float16 autocast (CUDA)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.amp and device.type != "cuda":
        parser.error("--amp needs a CUDA device")
    size = tuple(args.size)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"device {device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"input {size[0]}x{size[1]}, batch {args.batch_size}, {args.warmup} warm-up + {args.iters} timed "
          f"iterations, amp {args.amp}, seed {args.seed}")
    header = f"{'model':<16} {'params (M)':>10} {'GFLOPs/img':>10} {'GMACs/img':>9} {'infer img/s':>11} " \
             f"{'train img/s':>11} {'feature':>8}"
    print(header)
    print("-" * len(header))
    for model_name in args.models:
        torch.manual_seed(args.seed)
        net, dim = build_network(model_name, size, args.tokens)
        net.to(device)
        flops = gflops_per_image(net, size, device)
        infer = throughput(net, size, args.batch_size, args.iters, args.warmup, device, False, args.amp)
        train = throughput(net, size, args.batch_size, args.iters, args.warmup, device, True, args.amp)
        print(f"{model_name:<16} {count_parameters(net) / 1e6:>10.2f} {flops:>10.2f} {flops / 2:>9.2f} "
              f"{infer:>11.2f} {train:>11.2f} {dim:>8d}", flush=True)
        if model_name == "ours":
            maal = count_parameters(ModalityDiscriminator(dim))
            print(f"{'  + MAAL E':<16} {maal / 1e6:>10.2f}   (training only; ours + E = "
                  f"{(count_parameters(net) + maal) / 1e6:.2f} M)")
        del net
        if device.type == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
