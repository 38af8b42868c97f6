"""Tests of MAAL (modeling/losses/maal.py): which parameters each loss trains, and the loss values."""
import vireid_plugins  # noqa: F401  (compat shims before fastreid; registration)

# isort: split
import pytest
import torch
import torch.nn.functional as F

from vireid_plugins.modeling.backbones import TokenViT
from vireid_plugins.modeling.losses.maal import (
    CA_CLASS,
    ModalityDiscriminator,
    maal_adversarial_loss,
    maal_discriminator_loss,
)


def _setup():
    torch.manual_seed(0)
    backbone = TokenViT(img_size=(64, 32), patch_size=16, stride=16, embed_dim=32, depth=2, num_heads=4,
                        num_tokens=2).train()
    discriminator = ModalityDiscriminator(2 * 32).train()
    images = torch.randn(6, 3, 64, 32)
    modality = torch.tensor([0, 0, 1, 1, 0, 0])  # visible, infrared, CA (routed as visible)
    return backbone, discriminator, images, modality


def _features(backbone, images, modality):
    f = backbone(images, modality).flatten(1)
    return f[:2], f[2:4], f[4:]


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def _changed(module, before):
    return {k for k, v in module.named_parameters() if not torch.equal(v, before[k])}


def test_discriminator_step_changes_only_the_classifier():
    backbone, discriminator, images, modality = _setup()
    params = list(backbone.parameters()) + list(discriminator.parameters())
    optimizer = torch.optim.SGD(params, lr=0.5)
    before_b, before_e = _snapshot(backbone), _snapshot(discriminator)
    loss = maal_discriminator_loss(discriminator, _features(backbone, images, modality), alpha=1.0)
    optimizer.zero_grad()
    loss.backward()
    assert all(p.grad is None for p in backbone.parameters())
    optimizer.step()
    assert _changed(backbone, before_b) == set()
    assert _changed(discriminator, before_e) == {name for name, _ in discriminator.named_parameters()}


def test_adversarial_step_changes_only_the_backbone():
    backbone, discriminator, images, modality = _setup()
    params = list(backbone.parameters()) + list(discriminator.parameters())
    optimizer = torch.optim.SGD(params, lr=0.5)
    before_b, before_e = _snapshot(backbone), _snapshot(discriminator)
    loss = maal_adversarial_loss(discriminator, _features(backbone, images, modality), beta=0.1)
    optimizer.zero_grad()
    loss.backward()
    assert all(p.grad is None for p in discriminator.parameters())
    optimizer.step()
    assert _changed(discriminator, before_e) == set()
    assert {"patch_embeds.0.proj.weight", "patch_embeds.1.proj.weight", "cls_token"} <= _changed(backbone, before_b)


def test_both_losses_in_one_backward_keep_their_roles():
    backbone, discriminator, images, modality = _setup()
    feats = _features(backbone, images, modality)
    discriminator.eval()  # no dropout: the gradients below are deterministic
    loss_d = maal_discriminator_loss(discriminator, feats)
    loss_a = maal_adversarial_loss(discriminator, feats)
    (loss_d + loss_a).backward()
    grad_e = [p.grad.clone() for p in discriminator.parameters()]
    grad_b = backbone.cls_token.grad.clone()
    for p in list(backbone.parameters()) + list(discriminator.parameters()):
        p.grad = None
    feats = _features(backbone, images, modality)
    maal_discriminator_loss(discriminator, feats).backward()
    for g, p in zip(grad_e, discriminator.parameters()):
        torch.testing.assert_close(g, p.grad)  # E's gradient is L_D's alone
    for p in list(backbone.parameters()) + list(discriminator.parameters()):
        p.grad = None
    maal_adversarial_loss(discriminator, _features(backbone, images, modality)).backward()
    torch.testing.assert_close(grad_b, backbone.cls_token.grad)  # the backbone's is L_A's alone


def test_loss_values():
    torch.manual_seed(0)
    discriminator = ModalityDiscriminator(8).eval()
    feats = [torch.randn(3, 8), torch.randn(2, 8), torch.randn(4, 8)]

    def logits(x):
        h = F.relu(x @ discriminator.fc1.weight.T + discriminator.fc1.bias)
        return h @ discriminator.fc2.weight.T + discriminator.fc2.bias

    expected_d = sum(F.cross_entropy(logits(f), torch.full((len(f),), m)) for m, f in enumerate(feats))
    expected_a = sum(F.cross_entropy(logits(f), torch.full((len(f),), CA_CLASS)) for f in feats)
    torch.testing.assert_close(maal_discriminator_loss(discriminator, feats, alpha=1.0), expected_d)
    torch.testing.assert_close(maal_adversarial_loss(discriminator, feats, beta=0.1), 0.1 * expected_a)
    # a missing modality is skipped
    torch.testing.assert_close(maal_adversarial_loss(discriminator, [feats[0], None, feats[2]], beta=1.0),
                               expected_a - F.cross_entropy(logits(feats[1]), torch.full((2,), CA_CLASS)))
    with pytest.raises(ValueError, match="no features"):
        maal_discriminator_loss(discriminator, [None, torch.zeros(0, 8)])


def test_discriminator_architecture():
    e = ModalityDiscriminator(12)
    assert e.fc1.weight.shape == (6, 12) and e.fc2.weight.shape == (3, 6) and e.dropout == 0.5
    e.train()
    x = torch.randn(64, 12)
    assert not torch.equal(e(x), e(x))  # dropout active in training
    e.eval()
    torch.testing.assert_close(e(x), e(x, frozen=True))
