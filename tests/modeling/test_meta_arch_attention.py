"""UnsupervisedVIReID hands the backbone's channel attention (PA-CBAM) of the training forward to the criterion,
split like the features into the batch's rows and the CA views' rows."""
import torch
from fastreid.modeling import build_model

from vireid_plugins.modeling.losses import CRITERION_REGISTRY, VIReIDCriterion


@CRITERION_REGISTRY.register()
class RecordingCriterion(VIReIDCriterion):
    needs_ca_view = True

    def __init__(self, cfg):
        super().__init__({"loss_zero": 1.0})
        self.seen = None

    def losses(self, outputs):
        self.seen = outputs
        return {"loss_zero": outputs["features"].sum() * 0.0}


def _model(cfg, pa_cbam: bool):
    cfg.MODEL.META_ARCHITECTURE, cfg.MODEL.DEVICE = "UnsupervisedVIReID", "cpu"
    cfg.MODEL.CRITERION.NAME = "RecordingCriterion"
    cfg.MODEL.BACKBONE.NAME, cfg.MODEL.HEADS.NAME = "build_token_vit_backbone", "TokenBNNeckHead"
    cfg.MODEL.BACKBONE.FEAT_DIM, cfg.MODEL.BACKBONE.NUM_TOKENS = 16, 2
    cfg.MODEL.BACKBONE.VIT.merge_from_list(["EMBED_DIM", 16, "DEPTH", 2, "NUM_HEADS", 2, "PATCH_SIZE", 8, "STRIDE", 8])
    cfg.INPUT.SIZE_TRAIN = cfg.INPUT.SIZE_TEST = [32, 16]
    cfg.MODEL.BACKBONE.PA_CBAM.merge_from_list(["ENABLED", pa_cbam, "STRIPES", 2, "REDUCTION", 4])
    torch.manual_seed(0)
    return build_model(cfg).train()


def test_channel_attention_reaches_the_criterion(cfg):
    model = _model(cfg, pa_cbam=True)
    batch = {"images": torch.rand(3, 3, 32, 16) * 255, "modality": torch.tensor([0, 1, 0]),
             "targets": torch.tensor([0, 1, 2]), "branch": torch.tensor([0, 1, 0]), "item": torch.tensor([0, 1, 2])}
    model(batch)
    seen, attention = model.criterion.seen, model.backbone.attention.last_channel_attention
    assert attention.shape == (5, 16)  # 3 images + 2 CA views, C = 16
    assert seen["channel_attention"] is not None and seen["channel_attention"].shape == (3, 16)
    torch.testing.assert_close(seen["channel_attention"], attention[:3])
    torch.testing.assert_close(seen["ca_channel_attention"], attention[3:])
    assert seen["channel_attention"].requires_grad  # with its graph: a regulariser on it trains PA-CBAM


def test_no_channel_attention_without_pa_cbam(cfg):
    model = _model(cfg, pa_cbam=False)
    model({"images": torch.rand(2, 3, 32, 16) * 255, "modality": torch.tensor([0, 1]), "targets": torch.tensor([0, 1]),
           "branch": torch.tensor([0, 1]), "item": torch.tensor([0, 1])})
    assert "channel_attention" not in model.criterion.seen and "ca_features" in model.criterion.seen
