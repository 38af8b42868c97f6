"""ClusterMemory: hand-worked updates, loop references, gradients, soft targets, (de)serialisation."""
import math

import pytest
import torch
import torch.nn.functional as F

from vireid_plugins.modeling.losses import ClusterMemory, soft_cross_entropy

S = 1 / math.sqrt(2)


def hand_memory(update):
    """D=2, K=2, m=0.5, M = [e1, e2]."""
    return ClusterMemory(2, temperature=0.05, momentum=0.5, update=update).initialize(torch.eye(2))


# Batch (before normalisation): a = (0, 3) -> (0, 1), label 0; b = (3, 4) -> (0.6, 0.8), label 1;
# c = (2, 0) -> (1, 0), label 0. With m = 0.5 and unit vectors, one step moves M[y] to the bisector of M[y], x.
HAND_INPUTS = torch.tensor([[0.0, 3.0], [3.0, 4.0], [2.0, 0.0]])
HAND_LABELS = torch.tensor([0, 1, 0])
# Class 1 (all modes): 0.5 * (0, 1) + 0.5 * (0.6, 0.8) = (0.3, 0.9) -> (1, 3) / sqrt(10).
CLASS1 = [1 / math.sqrt(10), 3 / math.sqrt(10)]
HAND_EXPECTED = {
    # class 0, in batch order: a: bisector of 0 deg and 90 deg -> (s, s) at 45 deg;
    #                          c: bisector of 45 deg and 0 deg -> (cos pi/8, sin pi/8) at 22.5 deg.
    "sequential": [[math.cos(math.pi / 8), math.sin(math.pi / 8)], CLASS1],
    # class 0: mean(a, c) = (0.5, 0.5); 0.5 * (1, 0) + 0.5 * (0.5, 0.5) = (0.75, 0.25) -> (3, 1) / sqrt(10).
    "mean": [[3 / math.sqrt(10), 1 / math.sqrt(10)], CLASS1],
    # class 0: a . M[0] = 0 < c . M[0] = 1, so a is the hardest: bisector of (1, 0) and (0, 1) -> (s, s).
    "hard": [[S, S], CLASS1],
}


@pytest.mark.parametrize("update", ["sequential", "mean", "hard"])
def test_hand_worked_update(update):
    memory = hand_memory(update)
    inputs = HAND_INPUTS.clone().requires_grad_()
    loss = memory(inputs, HAND_LABELS)
    # logits before the update: normalised a, b, c against e1, e2, divided by 0.05
    expected_logits = torch.tensor([[0.0, 20.0], [12.0, 16.0], [20.0, 0.0]])
    torch.testing.assert_close(memory.logits(HAND_INPUTS), expected_logits)
    expected_loss = F.cross_entropy(expected_logits, HAND_LABELS)
    assert abs(loss.item() - expected_loss.item()) < 1e-6
    torch.testing.assert_close(memory.features, torch.eye(2))  # nothing changes before backward
    loss.backward()
    torch.testing.assert_close(memory.features, torch.tensor(HAND_EXPECTED[update]), atol=1e-6, rtol=0)


def test_sequential_depends_on_batch_order():
    memory = hand_memory("sequential")
    memory(HAND_INPUTS[[2, 1, 0]].requires_grad_(), HAND_LABELS[[2, 1, 0]]).backward()
    # c first: bisector of e1 and e1 = e1; then a: bisector of e1 and e2 = (s, s)
    torch.testing.assert_close(memory.features, torch.tensor([[S, S], CLASS1]), atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------------- loop references
def loop_reference(memory, inputs, labels, momentum, update):
    """The reference CM / CM_Hard backward loops, one sample / class at a time."""
    memory = memory.clone()
    x = F.normalize(inputs, dim=1)
    if update == "sequential":
        for xb, yb in zip(x, labels.tolist()):
            if yb < 0:
                continue
            memory[yb] = momentum * memory[yb] + (1 - momentum) * xb
            memory[yb] /= memory[yb].norm()
        return memory
    old = memory.clone()
    for y in sorted(set(labels.tolist()) - {-1}):
        members = x[labels == y]
        if update == "mean":
            target = members.mean(dim=0)
        else:
            target = members[int(torch.argmin(members @ old[y]))]
        memory[y] = momentum * memory[y] + (1 - momentum) * target
        memory[y] /= memory[y].norm()
    return memory


@pytest.mark.parametrize("update", ["sequential", "mean", "hard"])
def test_update_matches_loop_reference(update):
    gen = torch.Generator().manual_seed(0)
    for trial in range(5):
        k, d, b = 7, 16, 48
        memory = ClusterMemory(d, momentum=0.3, update=update).initialize(torch.randn(k, d, generator=gen))
        inputs = torch.randn(b, d, generator=gen, requires_grad=True)
        labels = torch.randint(-1, k - 2 if trial % 2 else k, (b,), generator=gen)  # repeats, -1s, absent classes
        expected = loop_reference(memory.features, inputs.detach(), labels, 0.3, update)
        memory(inputs, labels).backward()
        torch.testing.assert_close(memory.features, expected, atol=1e-6, rtol=0)


def test_hard_ties_take_first_instance():
    memory = hand_memory("hard")
    inputs = torch.tensor([[0.0, 1.0], [0.0, -1.0], [0.0, 2.0]], requires_grad=True)  # all orthogonal to e1
    memory(inputs, torch.tensor([0, 0, 0])).backward()
    torch.testing.assert_close(memory.features[0], torch.tensor([S, S]))


# ------------------------------------------------------------------------------------------ gradients
@pytest.mark.parametrize("soft", [False, True])
def test_gradient_matches_constant_memory_autograd(soft):
    gen = torch.Generator().manual_seed(1)
    k, d, b = 5, 8, 12
    memory = ClusterMemory(d, update="sequential").double().initialize(torch.randn(k, d, generator=gen))
    constant = memory.features.clone()
    inputs = torch.randn(b, d, generator=gen, dtype=torch.float64, requires_grad=True)
    if soft:
        targets = torch.softmax(torch.randn(b, k, generator=gen, dtype=torch.float64), dim=1)
    else:
        targets = torch.randint(0, k, (b,), generator=gen)
    (grad,) = torch.autograd.grad(memory(inputs, targets), inputs)
    assert not torch.equal(memory.features, constant)  # the backward updated the memory...

    ref_inputs = inputs.detach().clone().requires_grad_()
    ref_logits = F.normalize(ref_inputs, dim=1) @ constant.t() / 0.05
    if soft:
        ref_loss = -(targets * ref_logits.log_softmax(dim=1)).sum(dim=1).mean()
    else:
        ref_loss = F.cross_entropy(ref_logits, targets)
    (ref_grad,) = torch.autograd.grad(ref_loss, ref_inputs)
    torch.testing.assert_close(grad, ref_grad, atol=1e-12, rtol=1e-10)  # ...but the gradient used the old one

    memory.eval()  # no update, so gradcheck's repeated evaluations see a constant memory
    assert torch.autograd.gradcheck(lambda x: memory(x, targets), (inputs.detach().requires_grad_(),))
    assert torch.autograd.gradcheck(memory.logits, (inputs.detach().requires_grad_(),))


def test_gradient_uses_forward_memory_when_updated_twice():
    gen = torch.Generator().manual_seed(2)
    memory = ClusterMemory(4).double().initialize(torch.randn(3, 4, generator=gen))
    constant = memory.features.clone()
    inputs = torch.randn(6, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    (grad,) = torch.autograd.grad(memory(inputs, labels) + memory(inputs, labels), inputs)
    ref_inputs = inputs.detach().clone().requires_grad_()
    ref_loss = 2 * F.cross_entropy(F.normalize(ref_inputs, dim=1) @ constant.t() / 0.05, labels)
    torch.testing.assert_close(grad, torch.autograd.grad(ref_loss, ref_inputs)[0])


# ------------------------------------------------------------------------------- when the memory updates
def test_no_update_in_eval_mode_or_without_targets():
    gen = torch.Generator().manual_seed(3)
    memory = ClusterMemory(8).initialize(torch.randn(4, 8, generator=gen))
    before = memory.features.clone()
    inputs = torch.randn(10, 8, generator=gen, requires_grad=True)
    labels = torch.randint(0, 4, (10,), generator=gen)
    F.cross_entropy(memory.logits(inputs), labels).backward()  # training, no targets
    torch.testing.assert_close(memory.features, before, atol=0, rtol=0)
    memory.eval()
    memory(inputs, labels).backward()  # eval, targets
    memory.logits(inputs, labels).sum().backward()
    torch.testing.assert_close(memory.features, before, atol=0, rtol=0)
    memory.train()
    memory.logits(inputs, labels).sum().backward()  # training + targets: updates
    assert not torch.equal(memory.features, before)


def test_one_update_per_forward_call():
    gen = torch.Generator().manual_seed(4)
    init = torch.randn(3, 5, generator=gen)
    inputs = torch.randn(4, 5, generator=gen, requires_grad=True)
    labels = torch.tensor([0, 1, 1, 2])

    once = ClusterMemory(5, momentum=0.5).initialize(init)
    loss = once(inputs, labels)
    loss.backward(retain_graph=True)
    after_one = once.features.clone()
    loss.backward()  # backward again through the same graph: no second update
    torch.testing.assert_close(once.features, after_one, atol=0, rtol=0)

    twice = ClusterMemory(5, momentum=0.5).initialize(init)
    (twice(inputs, labels) + twice(inputs, labels)).backward()  # two calls with targets: two updates
    expected = loop_reference(loop_reference(init / init.norm(dim=1, keepdim=True), inputs.detach(), labels, 0.5,
                                             "sequential"), inputs.detach(), labels, 0.5, "sequential")
    torch.testing.assert_close(twice.features, expected)


def test_ignored_targets():
    gen = torch.Generator().manual_seed(5)
    memory = ClusterMemory(6, momentum=0.5).initialize(torch.randn(3, 6, generator=gen))
    before = memory.features.clone()
    inputs = torch.randn(5, 6, generator=gen, requires_grad=True)
    labels = torch.tensor([-1, 1, -1, 1, 2])
    loss = memory(inputs, labels)
    valid = labels >= 0
    expected = F.cross_entropy(memory.logits(inputs.detach()[valid]), labels[valid])
    assert abs(loss.item() - expected.item()) < 1e-6
    loss.backward()
    assert torch.all(inputs.grad[~valid] == 0)
    torch.testing.assert_close(memory.features[0], before[0], atol=0, rtol=0)  # class 0 only had -1 samples
    torch.testing.assert_close(memory.features, loop_reference(before, inputs.detach(), labels, 0.5, "sequential"))

    all_ignored = memory(inputs, torch.full((5,), -1))
    assert all_ignored.item() == 0.0
    all_ignored.backward()


def test_update_labels_override():
    memory = hand_memory("sequential")
    # loss against class 1 for every sample, but the memory is updated with the own labels (and b skipped)
    loss = memory(HAND_INPUTS.clone().requires_grad_(), torch.tensor([1, 1, 1]), update_labels=torch.tensor([0, -1, 0]))
    loss.backward()
    torch.testing.assert_close(memory.features, torch.tensor([HAND_EXPECTED["sequential"][0], [0.0, 1.0]]),
                               atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------------------ soft targets
def test_soft_targets_loss_and_update():
    memory = hand_memory("sequential")
    targets = torch.tensor([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]])  # argmax = 0, 1, 0 = HAND_LABELS
    inputs = HAND_INPUTS.clone().requires_grad_()
    loss = memory(inputs, targets)
    logits = torch.tensor([[0.0, 20.0], [12.0, 16.0], [20.0, 0.0]])
    expected = -(targets * logits.log_softmax(dim=1)).sum(dim=1).mean()
    assert abs(loss.item() - expected.item()) < 1e-5
    loss.backward()
    torch.testing.assert_close(memory.features, torch.tensor(HAND_EXPECTED["sequential"]), atol=1e-6, rtol=0)


def test_soft_cross_entropy_helper():
    gen = torch.Generator().manual_seed(6)
    logits = torch.randn(4, 3, generator=gen)
    labels = torch.tensor([2, 0, -1, 1])
    one_hot = F.one_hot(labels.clamp(min=0), 3).float()
    one_hot[2] = 0  # a zero row contributes 0 to the soft sum, but still counts in the mean
    torch.testing.assert_close(soft_cross_entropy(logits, labels), F.cross_entropy(logits, labels, ignore_index=-1))
    torch.testing.assert_close(soft_cross_entropy(logits, one_hot),
                               F.cross_entropy(logits[[0, 1, 3]], labels[[0, 1, 3]]) * 3 / 4)
    with pytest.raises(ValueError):
        soft_cross_entropy(logits, torch.zeros(4, 2))


# -------------------------------------------------------------------------------- building / resizing
def test_from_features_matches_manual_mean():
    gen = torch.Generator().manual_seed(7)
    feats = torch.randn(30, 6, generator=gen)
    labels = torch.randint(-1, 4, (30,), generator=gen)
    labels[:4] = torch.tensor([0, 1, 2, 3])
    memory = ClusterMemory.from_features(feats, labels, momentum=0.1, update="hard", temperature=0.1)
    manual = torch.stack([feats[labels == k].mean(dim=0) for k in range(4)])
    manual = manual / manual.norm(dim=1, keepdim=True)
    assert memory.num_clusters == 4 and memory.momentum == 0.1 and memory.update == "hard"
    assert memory.temperature == 0.1
    torch.testing.assert_close(memory.features, manual)
    torch.testing.assert_close(memory.features.norm(dim=1), torch.ones(4))
    with pytest.raises(ValueError, match="empty clusters"):
        ClusterMemory.from_features(feats[:3], torch.tensor([0, 2, -1]))


def test_initialize_resizes_and_state_dict_round_trip():
    memory = ClusterMemory(4)
    assert memory.num_clusters == 0
    with pytest.raises(RuntimeError, match="initialize"):
        memory.logits(torch.randn(2, 4))
    memory.initialize(torch.randn(5, 4))
    assert memory.features.shape == (5, 4) and memory.logits(torch.randn(2, 4)).shape == (2, 5)
    memory.initialize(torch.randn(3, 4, dtype=torch.float64))
    assert memory.features.shape == (3, 4) and memory.features.dtype == torch.float32
    assert "features" in dict(memory.named_buffers())

    other = ClusterMemory(4, num_clusters=7)  # different K: loading resizes the buffer
    other.load_state_dict(memory.state_dict())
    torch.testing.assert_close(other.features, memory.features, atol=0, rtol=0)
    with pytest.raises(ValueError):
        memory.initialize(torch.randn(3, 5))


def test_autocast_bfloat16_cpu():
    gen = torch.Generator().manual_seed(8)
    memory = ClusterMemory(8).initialize(torch.randn(4, 8, generator=gen))
    inputs = torch.randn(6, 8, generator=gen).bfloat16().requires_grad_()
    labels = torch.randint(0, 4, (6,), generator=gen)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert memory.logits(inputs).dtype == torch.float32
        loss = memory(inputs, labels)
    loss.backward()
    assert loss.dtype == torch.float32 and inputs.grad.dtype == torch.bfloat16
    assert memory.features.dtype == torch.float32
    torch.testing.assert_close(memory.features.norm(dim=1), torch.ones(4))


def test_per_token_memory_equals_separate_memories_per_token():
    """A T-token memory behaves as T memories, each fed its token (logits, loss and every update mode)."""
    g = torch.Generator().manual_seed(3)
    feats = F.normalize(torch.randn(12, 3, 5, generator=g), dim=-1)
    labels = torch.tensor([0, 1, 2, 3] * 3)
    for update in ("sequential", "mean", "hard"):
        joint = ClusterMemory.from_features(feats, labels, momentum=0.3, update=update).train()
        separate = [ClusterMemory.from_features(feats[:, t], labels, momentum=0.3, update=update).train()
                    for t in range(3)]
        x = torch.randn(7, 3, 5, generator=g, requires_grad=True)
        y = torch.tensor([0, 0, 2, -1, 3, 1, 2])
        loss = joint(x, y)
        expected = torch.stack([separate[t](x[:, t], y) for t in range(3)]).mean()
        assert torch.allclose(loss, expected, atol=1e-6)
        loss.backward()
        expected.backward()  # updates the separate memories too
        for t in range(3):
            assert torch.allclose(joint.features[t], separate[t].features, atol=1e-6), (update, t)
        assert joint.logits(x.detach()).shape == (7, 3, 4)
