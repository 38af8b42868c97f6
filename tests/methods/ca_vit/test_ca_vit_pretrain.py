"""TokenClassifierHead: fast-reid's head outputs in training, BN-neck features at test time, and a state dict that
initialises the CA-ViT model's TokenBNNeckHead strictly."""
import pytest
import torch

from vireid_plugins.methods.ca_vit.pretrain import TokenClassifierHead
from vireid_plugins.modeling.heads import TokenBNNeckHead


@pytest.mark.parametrize("neck_feat", ["before", "after"])
def test_training_outputs_and_test_features(neck_feat):
    torch.manual_seed(0)
    head = TokenClassifierHead(feat_dim=4, num_tokens=3, num_classes=5, neck_feat=neck_feat).train()
    tokens = torch.randn(6, 3, 4)
    out = head(tokens)
    neck = TokenBNNeckHead(feat_dim=4, num_tokens=3).train()
    neck.load_state_dict({k: v for k, v in head.state_dict().items() if not k.startswith("classifier.")})
    features = neck(tokens)["features"]  # the same BN necks (fresh running statistics)
    torch.testing.assert_close(out["cls_outputs"], features @ head.classifier.weight.T)
    torch.testing.assert_close(out["pred_class_logits"], out["cls_outputs"])
    torch.testing.assert_close(out["features"], tokens.flatten(1) if neck_feat == "before" else features)
    head.eval()
    test = head(tokens)
    assert test.shape == (6, 12)
    neck.load_state_dict({k: v for k, v in head.state_dict().items() if not k.startswith("classifier.")})
    torch.testing.assert_close(test, neck.eval()(tokens)["features"])


def test_checkpoint_keys_are_the_bn_neck_heads_plus_the_classifier():
    head = TokenClassifierHead(feat_dim=4, num_tokens=3, num_classes=5)
    neck_keys = set(TokenBNNeckHead(feat_dim=4, num_tokens=3).state_dict())
    assert set(head.state_dict()) == neck_keys | {"classifier.weight"}
    with pytest.raises(ValueError, match="NECK_FEAT"):
        TokenClassifierHead(feat_dim=4, num_tokens=3, num_classes=5, neck_feat="middle")
