"""Two-stream AGW backbone for visible-infrared person re-identification.

AGW ("Attention Generalized mean pooling with Weighted triplet loss") is the cross-modality
baseline of Ye et al., "Deep Learning for Person Re-identification: A Survey and Outlook",
TPAMI 2021 (code: github.com/mangye16/Cross-Modal-Re-ID-baseline, ``model.py: embed_net``). Its
visible-infrared variant is a *two-stream* ResNet: every modality has its own stem
(``conv1/bn1/relu/maxpool``), the residual stages ``layer1..layer4`` are shared, the last stride
is 1, and non-local attention blocks (Wang et al., "Non-local Neural Networks", CVPR 2018) follow
the last blocks of ``layer2`` and ``layer3``. The USL-VI-ReID code bases (ADCA, PGM, GUR, MULT)
reuse it as ``embed_net_ori``; pooling (GeM) and the BN neck belong to the head, not here.

Shapes, for an input of ``B x 3 x H x W`` (ResNet-50, last stride 1)::

    stem (per modality)  B x   64 x H/4  x W/4
    layer1               B x  256 x H/4  x W/4
    layer2               B x  512 x H/8  x W/8
    layer3               B x 1024 x H/16 x W/16
    layer4               B x 2048 x H/16 x W/16   (H/32 x W/32 with last stride 2)

ResNet-18/34 have 64/128/256/512 channels instead. ``layer1..layer4`` are built from torchvision's
own ``BasicBlock``/``Bottleneck`` so their parameter names equal those of a torchvision ResNet
state dict; the stems are ``stems.<m>.conv1`` / ``stems.<m>.bn1`` and the non-local blocks
``NL_<stage>.<i>`` (fast-reid's and AGW's names).
"""

import logging
import os
from collections import OrderedDict
from collections.abc import Sequence
from functools import partial
from typing import NamedTuple

import torch
from fastreid.layers import get_norm
from fastreid.modeling.backbones import BACKBONE_REGISTRY
from fastreid.utils.checkpoint import get_missing_parameters_message, get_unexpected_parameters_message
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, conv1x1

from ..attention import build_attention
from .modality import check_modality, route_by_modality
from .weights import read_state_dict

__all__ = [
    "AGWBackbone",
    "LoadResult",
    "NonLocalBlock",
    "build_agw_backbone",
    "load_torchvision_resnet_weights",
]

logger = logging.getLogger("fastreid.vireid.backbone")

# depth -> (residual block, blocks per stage)
_ARCH = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
}
_CFG_DEPTHS = {"18x": 18, "34x": 34, "50x": 50}


class NonLocalBlock(nn.Module):
    """Non-local block, dot-product form without softmax, as used by AGW.

    With ``theta, phi, g`` 1x1 convolutions to ``C' = C // reduction`` channels and ``N = H * W``::

        f = theta(x)^T phi(x) / N       B x N x N   (pairwise affinities, no softmax)
        y = f g(x)                      B x N x C'
        z = x + W(y)                    B x C x H x W

    ``W`` is a 1x1 convolution back to ``C`` channels followed by a norm layer whose weight and bias
    start at zero, so a freshly built block is the identity and can be dropped into a pretrained
    network without changing its output.

    Args:
        in_channels (int): C, channels of the input (and output) map.
        reduction (int): C / C'; 2 in AGW.
        bn_norm (str): fast-reid norm name for the ``W`` branch (``get_norm``), "BN" by default.
    """

    def __init__(self, in_channels: int, reduction: int = 2, bn_norm: str = "BN"):
        super().__init__()
        if reduction < 1:
            raise ValueError(f"NonLocalBlock: reduction must be >= 1, got {reduction}")
        self.in_channels = in_channels
        self.inter_channels = max(in_channels // reduction, 1)

        self.theta = nn.Conv2d(in_channels, self.inter_channels, kernel_size=1)
        self.phi = nn.Conv2d(in_channels, self.inter_channels, kernel_size=1)
        self.g = nn.Conv2d(in_channels, self.inter_channels, kernel_size=1)
        self.W = nn.Sequential(
            nn.Conv2d(self.inter_channels, in_channels, kernel_size=1),
            get_norm(bn_norm, in_channels),
        )
        nn.init.constant_(self.W[1].weight, 0.0)
        nn.init.constant_(self.W[1].bias, 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: B x C x H x W feature map.

        Returns:
            B x C x H x W: ``x + W(y)``.
        """
        b, _, h, w = x.shape
        theta = self.theta(x).flatten(2).transpose(1, 2)  # B x N x C'
        phi = self.phi(x).flatten(2)  # B x C' x N
        g = self.g(x).flatten(2).transpose(1, 2)  # B x N x C'

        f = torch.bmm(theta, phi) / phi.shape[-1]  # B x N x N
        y = torch.bmm(f, g)  # B x N x C'
        y = y.transpose(1, 2).reshape(b, self.inter_channels, h, w)  # B x C' x H x W
        return x + self.W(y)


class AGWBackbone(nn.Module):
    """Two-stream ResNet of AGW: one stem per modality, shared ``layer1..layer4``.

    Args:
        depth (int): 18, 34 or 50.
        last_stride (int): stride of ``layer4`` (1 for ReID, 2 as in ImageNet ResNets).
        num_modalities (int): number of modality-specific stems (0 visible, 1 infrared).
        nl_layers (sequence of 4 ints): number of non-local blocks after the *last* blocks of each
            stage; AGW uses ``[0, 2, 3, 0]``. ``[0, 0, 0, 0]`` disables them.
        bn_norm (str): fast-reid norm name (``MODEL.BACKBONE.NORM``) for every norm layer.
        attention (nn.Module, optional): a shape-preserving attention module applied to the ``layer4`` output
            (e.g. PA-CBAM, ``MODEL.BACKBONE.PA_CBAM``); None for none.

    Attributes:
        depth (int), num_modalities (int), feat_dim (int): channels of the output map
        (512 for depth 18/34, 2048 for depth 50).
    """

    def __init__(
        self,
        depth: int = 50,
        last_stride: int = 1,
        num_modalities: int = 2,
        nl_layers: Sequence[int] = (0, 0, 0, 0),
        bn_norm: str = "BN",
        attention: nn.Module | None = None,
    ):
        super().__init__()
        if depth not in _ARCH:
            raise ValueError(f"AGWBackbone: depth must be one of {sorted(_ARCH)}, got {depth!r}")
        if num_modalities < 1:
            raise ValueError(f"AGWBackbone: num_modalities must be >= 1, got {num_modalities}")
        if last_stride not in (1, 2):
            raise ValueError(f"AGWBackbone: last_stride must be 1 or 2, got {last_stride}")
        block, blocks_per_stage = _ARCH[depth]
        nl_layers = [int(n) for n in nl_layers]
        if len(nl_layers) != 4 or any(
            not 0 <= n <= m for n, m in zip(nl_layers, blocks_per_stage, strict=True)
        ):
            raise ValueError(
                f"AGWBackbone: nl_layers must hold 4 counts, each between 0 and the number of blocks "
                f"of its stage {list(blocks_per_stage)} (ResNet-{depth}), got {nl_layers}"
            )

        self.depth = depth
        self.num_modalities = num_modalities
        self._norm_layer = partial(get_norm, bn_norm)

        self.stems = nn.ModuleList([self._make_stem() for _ in range(num_modalities)])

        self.inplanes = 64
        self.layer1 = self._make_layer(block, 64, blocks_per_stage[0], stride=1)
        self.layer2 = self._make_layer(block, 128, blocks_per_stage[1], stride=2)
        self.layer3 = self._make_layer(block, 256, blocks_per_stage[2], stride=2)
        self.layer4 = self._make_layer(block, 512, blocks_per_stage[3], stride=last_stride)
        self.feat_dim = 512 * block.expansion

        self._random_init()

        # non-local blocks live outside layer1..4 so that torchvision's key names stay unchanged;
        # NL_s[i] follows block (len(layer_s) - len(NL_s) + i) of stage s.
        for stage, n in enumerate(nl_layers, start=1):
            channels = (64 << (stage - 1)) * block.expansion
            nl = nn.ModuleList([NonLocalBlock(channels, bn_norm=bn_norm) for _ in range(n)])
            self.add_module(f"NL_{stage}", nl)
        self.attention = attention

    def _make_stem(self) -> nn.Sequential:
        return nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False),
                bn1=self._norm_layer(64),
                relu=nn.ReLU(inplace=True),
                maxpool=nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            )
        )

    def _make_layer(self, block, planes: int, blocks: int, stride: int) -> nn.Sequential:
        # torchvision.models.resnet.ResNet._make_layer without dilation/groups: same module names
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                self._norm_layer(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample, norm_layer=self._norm_layer)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, norm_layer=self._norm_layer) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _random_init(self):
        # torchvision's ResNet initialisation (norm layers already start at weight 1, bias 0)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_stems(self, x: torch.Tensor, modality: torch.Tensor | None = None) -> torch.Tensor:
        """Route every image through the stem of its modality.

        Args:
            x: B x 3 x H x W images.
            modality: LongTensor [B] in ``[0, num_modalities)``; None only with one stem.

        Returns:
            B x 64 x H/4 x W/4, in the input order.
        """
        if x.dim() != 4:
            raise ValueError(f"AGWBackbone: expected images of shape B x 3 x H x W, got {list(x.shape)}")
        modality = check_modality(modality, x.shape[0], self.num_modalities, x.device, "AGWBackbone")
        return route_by_modality(x, modality, self.stems)

    @staticmethod
    def _forward_stage(x: torch.Tensor, layer: nn.Sequential, nl: nn.ModuleList) -> torch.Tensor:
        first_nl = len(layer) - len(nl)
        for i, block in enumerate(layer):
            x = block(x)
            if i >= first_nl:
                x = nl[i - first_nl](x)
        return x

    def forward(self, x: torch.Tensor, modality: torch.Tensor | None = None) -> torch.Tensor:
        """
        Args:
            x: B x 3 x H x W images.
            modality: LongTensor of shape [B], values in ``[0, num_modalities)`` (0 visible,
                1 infrared) choosing each image's stem. None only with one stem (``NUM_MODALITIES 1``).

        Returns:
            B x feat_dim x h x w feature map (h = H/16 with last stride 1, H/32 with 2).

        Raises:
            ValueError: if ``x`` is not 4-D, or ``modality`` is missing (several stems) or has the wrong shape, dtype
                or values.
        """
        x = self.forward_stems(x, modality)
        x = self._forward_stage(x, self.layer1, self.NL_1)
        x = self._forward_stage(x, self.layer2, self.NL_2)
        x = self._forward_stage(x, self.layer3, self.NL_3)
        x = self._forward_stage(x, self.layer4, self.NL_4)
        if self.attention is not None:
            x = self.attention(x)
        return x


class LoadResult(NamedTuple):
    """Keys reported by :func:`load_torchvision_resnet_weights`."""

    missing_keys: list[str]  # backbone (stem/stage) keys of the model that the file did not provide
    unexpected_keys: list[str]  # keys of the file that match nothing in the model (``fc.*`` ignored)


def _is_backbone_key(key: str) -> bool:
    return key.startswith(("stems.", "layer")) and not key.endswith("num_batches_tracked")


def load_torchvision_resnet_weights(
    model: AGWBackbone, path: str | os.PathLike, strict: bool = False
) -> LoadResult:
    """Load a torchvision ResNet state dict (e.g. ImageNet ``resnet50-0676ba61.pth``) into ``model``.

    ``conv1.*``/``bn1.*`` are copied into *every* modality stem, ``layerX.*`` into the shared stages,
    ``fc.*`` is ignored; the non-local blocks keep their (identity) initialisation. A dict wrapped
    under ``"state_dict"`` or ``"model"`` and a ``module.`` prefix are accepted.

    Args:
        model: the backbone to fill in place.
        path: local file, read with ``torch.load(path, map_location="cpu", weights_only=True)``.
        strict: raise if any stem/stage parameter or buffer of ``model`` is not in the file.

    Returns:
        LoadResult(missing_keys, unexpected_keys), also logged on ``fastreid.vireid.backbone``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is unreadable or not a dict of tensors; a tensor's shape does not fit
            (e.g. a ResNet-18 file for a depth-50 model); or ``strict`` and keys are missing.
    """
    expected = f"a torchvision ResNet-{model.depth} state dict (.pth)"
    weights = {18: "ResNet18_Weights", 34: "ResNet34_Weights", 50: "ResNet50_Weights"}[model.depth]
    hint = (f", e.g. torchvision's ImageNet resnet{model.depth} weights. Nothing is downloaded during training; save "
            f"them once on a machine with internet access: python -c \"import torch, torchvision; torch.save("
            f"torchvision.models.resnet{model.depth}(weights=torchvision.models.{weights}.IMAGENET1K_V1).state_dict(), "
            f"'{os.fspath(path)}')\" (or set MODEL.BACKBONE.PRETRAIN False to start from random weights)")
    state_dict = read_state_dict(path, "AGW backbone", expected, hint)
    path = os.fspath(path)

    own = model.state_dict()
    mapped, unexpected = {}, []
    for key, value in state_dict.items():
        if key.startswith("fc."):
            continue
        if key.startswith(("conv1.", "bn1.")):
            targets = [f"stems.{m}.{key}" for m in range(model.num_modalities)]
        else:
            targets = [key]
        if not all(t in own for t in targets):
            unexpected.append(key)
            continue
        for target in targets:
            if own[target].shape != value.shape:
                raise ValueError(
                    f"AGW backbone: {path!r} does not match MODEL.BACKBONE.DEPTH={model.depth}x: "
                    f"{key!r} has shape {list(value.shape)} in the file but {list(own[target].shape)} "
                    f"in the model; is it a state dict of another ResNet depth?"
                )
            mapped[target] = value

    missing = [k for k in own if _is_backbone_key(k) and k not in mapped]
    if strict and missing:
        raise ValueError(
            f"AGW backbone: {path!r} lacks {len(missing)} backbone keys of ResNet-{model.depth} "
            f"(MODEL.BACKBONE.PRETRAIN_STRICT=True), first: {missing[:5]}"
        )
    model.load_state_dict(mapped, strict=False)

    logger.info(
        f"Loaded torchvision ResNet-{model.depth} weights from {path} "
        f"(conv1/bn1 copied into {model.num_modalities} modality stems)"
    )
    if missing:
        logger.warning(get_missing_parameters_message(missing))
    if unexpected:
        logger.warning(get_unexpected_parameters_message(unexpected))
    return LoadResult(missing, unexpected)


@BACKBONE_REGISTRY.register()
def build_agw_backbone(cfg) -> AGWBackbone:
    """Create an :class:`AGWBackbone` from ``cfg.MODEL.BACKBONE`` (``NAME: build_agw_backbone``).

    Non-local blocks are built only if ``WITH_NL``, with ``NL_LAYERS`` per stage; PA-CBAM follows ``layer4`` if
    ``PA_CBAM.ENABLED``. With ``PRETRAIN``
    the weights come from the local file ``PRETRAIN_PATH`` (nothing is downloaded).
    """
    # fmt: off
    depth           = cfg.MODEL.BACKBONE.DEPTH
    last_stride     = cfg.MODEL.BACKBONE.LAST_STRIDE
    bn_norm         = cfg.MODEL.BACKBONE.NORM
    feat_dim        = cfg.MODEL.BACKBONE.FEAT_DIM
    with_nl         = cfg.MODEL.BACKBONE.WITH_NL
    nl_layers       = cfg.MODEL.BACKBONE.NL_LAYERS
    num_modalities  = cfg.MODEL.BACKBONE.NUM_MODALITIES
    pretrain        = cfg.MODEL.BACKBONE.PRETRAIN
    pretrain_path   = cfg.MODEL.BACKBONE.PRETRAIN_PATH
    pretrain_strict = cfg.MODEL.BACKBONE.PRETRAIN_STRICT
    # fmt: on

    if depth not in _CFG_DEPTHS:
        raise ValueError(
            f"build_agw_backbone: MODEL.BACKBONE.DEPTH must be one of {list(_CFG_DEPTHS)}, got {depth!r}"
        )
    if pretrain and not pretrain_path:
        raise ValueError(
            "build_agw_backbone: MODEL.BACKBONE.PRETRAIN is True but PRETRAIN_PATH is empty; weights are "
            "never downloaded, so PRETRAIN_PATH must point to a local torchvision "
            f"ResNet-{_CFG_DEPTHS[depth]} state dict (.pth), or set PRETRAIN False"
        )

    pa_cbam = cfg.MODEL.BACKBONE.PA_CBAM
    channels = 512 * _ARCH[_CFG_DEPTHS[depth]][0].expansion
    model = AGWBackbone(
        depth=_CFG_DEPTHS[depth],
        last_stride=last_stride,
        num_modalities=num_modalities,
        nl_layers=nl_layers if with_nl else (0, 0, 0, 0),
        bn_norm=bn_norm,
        attention=build_attention("PACBAM", pa_cbam, channels) if pa_cbam.ENABLED else None,
    )
    if model.feat_dim != feat_dim:
        raise ValueError(
            f"build_agw_backbone: ResNet-{model.depth} outputs {model.feat_dim} channels but "
            f"MODEL.BACKBONE.FEAT_DIM is {feat_dim}; set FEAT_DIM to {model.feat_dim}"
        )
    if pretrain:
        load_torchvision_resnet_weights(model, pretrain_path, strict=pretrain_strict)
    return model
