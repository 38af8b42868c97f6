"""CAViTCriterion against hand computations on tiny tensors: the baseline with the CA view (M^v or M^c), the PA-CBAM
regulariser's and MAAL's wiring, VRA with the shared memories, VRNL through vrnl_loss, UM partners by epoch parity,
and the loss weights from the config."""
import math

import pytest
import torch
import torch.nn.functional as F

from vireid_plugins.association import NeighbourSets, greedy_match, merge_partners
from vireid_plugins.data import TrainTargets
from vireid_plugins.methods.ca_vit.association import CAViTLinks, with_ca_vit_targets
from vireid_plugins.methods.ca_vit.criterion import CAViTCriterion

TAU = 0.05
# items: visible 0-3 (clusters 0, 0, 1, 1), infrared 4-7 (clusters 0, 0, 1, outlier)
ITEMS = [(f"v{i}", i, 0, 0) for i in range(4)] + [(f"r{i}", i, 2, 1) for i in range(4)]
OWN = {0: torch.tensor([0, 0, 1, 1]), 1: torch.tensor([0, 0, 1, -1])}


def unit(deg):
    a = math.radians(deg)
    return [math.cos(a), math.sin(a)]


def tokens(*pairs):
    """``(n, 2, 2)`` per-token unit vectors from (token-0 angle, token-1 angle) pairs in degrees."""
    return torch.tensor([[unit(a), unit(b)] for a, b in pairs], dtype=torch.float64)


FEATS = tokens((0, 10), (10, 0), (90, 80), (80, 100), (170, 20), (160, 30), (260, 280), (45, 45))


def image(t):
    """Reference image-level feature: each token normalised, concatenated, normalised."""
    return F.normalize(F.normalize(t, dim=-1).flatten(1), dim=1)


def centroid(rows):
    return F.normalize(image(FEATS[rows]).mean(0), dim=0)


def ce(q, memory, labels):
    """Reference cluster-contrast cross-entropy: mean over labels >= 0 of -log softmax(norm(q) M^T / tau)[y]."""
    log_p = F.log_softmax(F.normalize(q, dim=1) @ memory.T / TAU, dim=1)
    keep = labels >= 0
    return -log_p[keep, labels[keep]].mean() if keep.any() else torch.zeros((), dtype=q.dtype)


def momentum_updates(memory, rows, labels, m):
    """Reference sequential update: for each row in order, M[y] <- normalize(m M[y] + (1 - m) x)."""
    memory = memory.clone()
    for x, y in zip(F.normalize(rows, dim=1), labels.tolist()):
        if y >= 0:
            memory[y] = F.normalize(m * memory[y] + (1 - m) * x, dim=0)
    return memory


@pytest.fixture
def ca_cfg(cfg):
    cfg.MODEL.BACKBONE.NUM_TOKENS, cfg.MODEL.BACKBONE.FEAT_DIM = 2, 2
    cfg.MODEL.CRITERION.NAME = "CAViTCriterion"
    cfg.CA_VIT.MAAL.ENABLED = False
    cfg.CA_VIT.MAAL.DROPOUT = 0.0
    return cfg


def build(cfg, targets=None):
    criterion = CAViTCriterion(cfg).double().train()
    criterion.set_targets(targets or TrainTargets.from_modality_clusters(ITEMS, OWN), FEATS)
    return criterion


def batch(items, ca):
    """A batch of ``items`` (tokens with grad) with the CA views ``ca`` (one per visible item, in order)."""
    t = FEATS[items].clone().requires_grad_(True)
    ca_t = tokens(*ca).requires_grad_(True)
    modality = torch.tensor([ITEMS[i][3] for i in items])
    labels = torch.cat([OWN[0], OWN[1]])[items]
    return {"tokens": t, "features": t.flatten(1), "ca_tokens": ca_t, "ca_features": ca_t.flatten(1),
            "modality": modality, "targets": labels, "branch": modality, "item": torch.tensor(items)}


ITEMS_OF_BATCH = [0, 2, 4, 6, 3]  # visible 0, 2, 3 and infrared 4, 6, mixed order
CA_VIEWS = [(5, 15), (95, 85), (75, 95)]  # of visible items 0, 2, 3


def parts(out):
    vis = out["modality"] == 0
    q = out["tokens"].detach()
    return q[vis], q[~vis], out["ca_tokens"].detach(), out["targets"][vis], out["targets"][~vis]


# ------------------------------------------------------------------------------------------------ baseline
def test_phase1_baseline_terms_use_the_per_modality_memories(ca_cfg):
    criterion = build(ca_cfg)
    m_v, m_r = torch.stack([centroid([0, 1]), centroid([2, 3])]), torch.stack([centroid([4, 5]), centroid([6])])
    torch.testing.assert_close(criterion.memories["visible"].features, m_v)
    torch.testing.assert_close(criterion.memories["infrared"].features, m_r)
    assert criterion.shared["visible"].num_clusters == 0 and not criterion.phase2()

    out = batch(ITEMS_OF_BATCH, CA_VIEWS)
    losses = criterion.losses(out)
    assert set(losses) == {"loss_base_visible", "loss_base_ca", "loss_base_infrared"}
    q_v, q_r, q_c, y_v, y_r = parts(out)
    torch.testing.assert_close(losses["loss_base_visible"], ce(image(q_v), m_v, y_v))
    torch.testing.assert_close(losses["loss_base_ca"], ce(image(q_c), m_v, y_v))  # the CA view keeps y^v
    torch.testing.assert_close(losses["loss_base_infrared"], ce(image(q_r), m_r, y_r))

    sum(losses.values()).backward()
    # one update of M^v: the visible images, then their CA views, momentum 0.2
    expected = momentum_updates(m_v, torch.cat([image(q_v), image(q_c)]), torch.cat([y_v, y_v]), 0.2)
    torch.testing.assert_close(criterion.memories["visible"].features, expected)
    torch.testing.assert_close(criterion.memories["infrared"].features, momentum_updates(m_r, image(q_r), y_r, 0.2))


def test_ca_view_with_its_own_memory(ca_cfg):
    ca_cfg.CA_VIT.BASE.CA_MEMORY = True
    criterion = build(ca_cfg)
    m_v = criterion.memories["visible"].features.clone()
    torch.testing.assert_close(criterion.memories["ca"].features, m_v)  # M^c starts at the visible centroids
    out = batch(ITEMS_OF_BATCH, CA_VIEWS)
    losses = criterion.losses(out)
    q_v, _, q_c, y_v, _ = parts(out)
    torch.testing.assert_close(losses["loss_base_ca"], ce(image(q_c), m_v, y_v))
    sum(losses.values()).backward()
    torch.testing.assert_close(criterion.memories["visible"].features, momentum_updates(m_v, image(q_v), y_v, 0.2))
    torch.testing.assert_close(criterion.memories["ca"].features, momentum_updates(m_v, image(q_c), y_v, 0.2))


# ------------------------------------------------------------------------------------------------ PA-CBAM
def test_pacbam_regulariser_within_each_modality(ca_cfg):
    ca_cfg.MODEL.BACKBONE.PA_CBAM.ENABLED = True
    criterion = build(ca_cfg)
    out = batch(ITEMS_OF_BATCH, CA_VIEWS)
    # channel attention (C = 2) of the batch (visible 0, 2, infrared 4, 6, visible 3) and of the 3 CA views
    a = torch.tensor([[0.1, 0.2], [0.5, 0.5], [0.3, 0.3], [0.3, 0.5], [0.7, 0.4]], dtype=torch.float64)
    a_c = torch.tensor([[0.1, 0.4], [0.6, 0.5], [0.9, 0.9]], dtype=torch.float64)
    out.update(channel_attention=a, ca_channel_attention=a_c)
    losses = criterion.losses(out)

    def d(x, y):
        return ((x - y) ** 2).sum().item() / 2

    # visible side: images 0 (y 0), 2 (y 1), 3 (y 1), then CA views with the same labels
    vis = [a[0], a[1], a[4], a_c[0], a_c[1], a_c[2]]
    y = [0, 1, 1, 0, 1, 1]
    same = [d(vis[i], vis[j]) for i in range(6) for j in range(6) if i != j and y[i] == y[j]]
    diff = [max(0.1 - d(vis[i], vis[j]), 0) for i in range(6) for j in range(6) if y[i] != y[j]]
    assert losses["loss_pacbam_visible"].item() == pytest.approx(sum(same) / len(same) + sum(diff) / len(diff))
    # infrared: 4 (y 0) and 6 (y 1): one different-label pair (both orders)
    assert losses["loss_pacbam_infrared"].item() == pytest.approx(max(0.1 - d(a[2], a[3]), 0))

    del out["channel_attention"]
    with pytest.raises(KeyError, match="PA_CBAM.ENABLED"):
        criterion.losses(out)


# ------------------------------------------------------------------------------------------------ MAAL
def test_maal_trains_the_classifier_by_l_d_and_the_network_by_l_a(ca_cfg):
    ca_cfg.CA_VIT.MAAL.ENABLED = True
    criterion = build(ca_cfg)
    out = batch(ITEMS_OF_BATCH, CA_VIEWS)
    # MAAL reads the raw image features: separate leaves, so their gradient comes from MAAL only
    f = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    f_c = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    out.update(features=f, ca_features=f_c)
    losses = criterion(out)  # weighted: alpha L_D + beta L_A
    e = criterion.discriminator
    w1, b1, w2, b2 = e.fc1.weight, e.fc1.bias, e.fc2.weight, e.fc2.bias

    def logits(x, weights):
        return F.linear(F.relu(F.linear(x, weights[0], weights[1])), weights[2], weights[3])

    vis = out["modality"] == 0
    groups = [(f[vis], 0), (f[~vis], 1), (f_c, 2)]  # visible 0, infrared 1, CA 2
    params = [w1, b1, w2, b2]
    l_d = sum(F.cross_entropy(logits(x.detach(), params), torch.full((len(x),), m)) for x, m in groups)
    frozen = [p.detach() for p in params]
    l_a = sum(F.cross_entropy(logits(x, frozen), torch.full((len(x),), 2)) for x, _ in groups)
    torch.testing.assert_close(losses["loss_maal_d"], 1.0 * l_d, check_dtype=False, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(losses["loss_maal_a"], 0.1 * l_a, check_dtype=False, rtol=1e-5, atol=1e-6)

    sum(losses.values()).backward()
    expected_e = torch.autograd.grad(1.0 * l_d, params)
    for p, g in zip(params, expected_e):  # E only through L_D
        torch.testing.assert_close(p.grad, g, rtol=1e-5, atol=1e-6)
    expected_f = torch.autograd.grad(0.1 * l_a, [f, f_c])
    torch.testing.assert_close(f.grad, expected_f[0], rtol=1e-5, atol=1e-6)  # the features only through L_A
    torch.testing.assert_close(f_c.grad, expected_f[1], rtol=1e-5, atol=1e-6)
    assert "discriminator.fc1.weight" in dict(criterion.named_parameters())  # the optimizer trains E


# ------------------------------------------------------------------------------------------------ phase 2
def vra_targets(epoch=2, partners=None, neighbours=None):
    # visible cluster 0 <-> infrared 1, visible 1 <-> infrared 0
    matching = greedy_match(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), max_matches=3)
    links = CAViTLinks(matching=matching, cross={0: torch.tensor([1, 1, 0, 0]), 1: torch.tensor([1, 1, 0, -1])},
                       partners=partners, neighbours=neighbours)
    return with_ca_vit_targets(TrainTargets.from_modality_clusters(ITEMS, OWN), links, epoch)


def test_vra_shared_memories_and_cross_labels(ca_cfg):
    ca_cfg.CA_VIT.UM.ENABLED = False
    criterion = build(ca_cfg, vra_targets())
    # phi^vs_k: visible cluster k and the infrared images with y~^r = k; phi^rs mirror
    phi_vs = torch.stack([centroid([0, 1, 6]), centroid([2, 3, 4, 5])])
    phi_rs = torch.stack([centroid([4, 5, 2, 3]), centroid([6, 0, 1])])
    torch.testing.assert_close(criterion.shared["visible"].features, phi_vs)
    torch.testing.assert_close(criterion.shared["infrared"].features, phi_rs)
    assert criterion.shared["visible"].momentum == 0.8

    out = batch(ITEMS_OF_BATCH, CA_VIEWS)
    losses = criterion.losses(out)
    assert set(losses) == {"loss_base_visible", "loss_base_ca", "loss_base_infrared", "loss_vra_visible",
                           "loss_vra_infrared"}
    q_v, q_r, q_c, y_v, y_r = parts(out)
    cross_v, cross_r = torch.tensor([1, 0, 0]), torch.tensor([1, 0])  # items 0, 2, 3 and 4, 6
    q_vc = image(torch.cat([q_v, q_c]))
    torch.testing.assert_close(losses["loss_vra_visible"], ce(q_vc, phi_rs, torch.cat([cross_v, cross_v])))
    torch.testing.assert_close(losses["loss_vra_infrared"], ce(image(q_r), phi_vs, cross_r))
    # in phase 2 the baseline terms score the shared memories (TokenMatcher)
    torch.testing.assert_close(losses["loss_base_visible"], ce(image(q_v), phi_vs, y_v))
    torch.testing.assert_close(losses["loss_base_infrared"], ce(image(q_r), phi_rs, y_r))

    m_v = criterion.memories["visible"].features.clone()
    sum(losses.values()).backward()
    rows = torch.cat([image(q_v), image(q_c), image(q_r)])
    torch.testing.assert_close(criterion.shared["visible"].features,
                               momentum_updates(phi_vs, rows, torch.cat([y_v, y_v, cross_r]), 0.8))
    rows = torch.cat([image(q_r), q_vc])
    torch.testing.assert_close(criterion.shared["infrared"].features,
                               momentum_updates(phi_rs, rows, torch.cat([y_r, cross_v, cross_v]), 0.8))
    torch.testing.assert_close(criterion.memories["visible"].features, m_v)  # M^v idle without UM


def test_vrnl_loss_over_the_epochs_neighbour_sets(ca_cfg):
    ca_cfg.CA_VIT.VRA.ENABLED = ca_cfg.CA_VIT.UM.ENABLED = False
    # vv: rows = visible items 0-3, columns = visible items; rv: rows = infrared items 4-7 (local 0-3), columns visible
    vv = NeighbourSets.from_pairs(torch.tensor([0, 0, 1, 2, 2, 3]), torch.tensor([0, 1, 1, 2, 3, 3]), 4, 4)
    rv = NeighbourSets.from_pairs(torch.tensor([0, 2]), torch.tensor([2, 0]), 4, 4)
    targets = TrainTargets.from_modality_clusters(ITEMS, OWN).replace(extras={"vrnl_neighbours": {"vv": vv, "rv": rv}})
    criterion = build(ca_cfg, targets)
    out = batch(ITEMS_OF_BATCH, CA_VIEWS)
    losses = criterion.losses(out)
    assert {k for k in losses if k.startswith("loss_vrnl")} == {"loss_vrnl_vv", "loss_vrnl_rv"}
    q_v, q_r, q_c, _, _ = parts(out)
    bank_v = image(FEATS[:4])  # I^v: every visible feature

    def reference(q, lists):
        log_p = F.log_softmax(F.normalize(q, dim=1) @ bank_v.T / TAU, dim=1)
        terms = [-log_p[i, j] for i, js in enumerate(lists) for j in js]
        return torch.stack(terms).mean()

    # visible queries 0, 2, 3 then their CA views with the same sets: {0, 1}, {2, 3}, {3}
    sets_v = [[0, 1], [2, 3], [3]] * 2
    close = {"check_dtype": False, "rtol": 1e-5, "atol": 1e-5}  # vrnl_loss computes in float32
    torch.testing.assert_close(losses["loss_vrnl_vv"], reference(image(torch.cat([q_v, q_c])), sets_v), **close)
    # infrared queries 4 (local 0) -> {2}, 6 (local 2) -> {0}
    torch.testing.assert_close(losses["loss_vrnl_rv"], reference(image(q_r), [[2], [0]]), **close)


@pytest.mark.parametrize("epoch", [2, 3])
def test_um_pulls_onto_the_partner_of_this_epochs_parity(ca_cfg, epoch):
    # both visible clusters matched to infrared cluster 0: group [0, 1] (link order: visible 0 first)
    own = {0: torch.tensor([0, 0, 1, 1]), 1: torch.tensor([0, 0, 0, -1])}
    base = TrainTargets.from_modality_clusters(ITEMS, own)
    matching = greedy_match(torch.tensor([[0.9], [0.7]]), max_matches=3)
    partner_v, partner_r = merge_partners(matching, epoch)
    assert partner_v.tolist() == ([1, -1] if epoch % 2 == 0 else [-1, 0]) and partner_r.tolist() == [-1]
    links = CAViTLinks(matching=matching, cross={0: torch.tensor([0, 0, 0, 0]), 1: torch.tensor([0, 0, 0, -1])},
                       partners={"visible": partner_v, "infrared": partner_r})
    criterion = build(ca_cfg, with_ca_vit_targets(base, links, epoch))
    m_v = criterion.memories["visible"].features.clone()
    out = batch(ITEMS_OF_BATCH, CA_VIEWS)
    out["targets"] = torch.tensor([0, 1, 0, 0, 1])  # items 0, 2 (visible), 4, 6 (infrared), 3 (visible)
    losses = criterion.losses(out)
    q_v, q_r, q_c, y_v, _ = parts(out)
    q_vc, y_vc = image(torch.cat([q_v, q_c])), torch.cat([y_v, y_v])
    target = partner_v[y_vc]  # even: cluster 0 -> 1 (cluster 1 idle); odd: cluster 1 -> 0
    torch.testing.assert_close(losses["loss_um_visible"], ce(q_vc, m_v, target))
    assert losses["loss_um_infrared"].item() == 0.0  # no infrared group of 2
    sum(losses.values()).backward()
    # with VRA on, M^v moves only by UM, into the partner's slot
    torch.testing.assert_close(criterion.memories["visible"].features, momentum_updates(m_v, q_vc, target, 0.2))
    moved = 1 if epoch % 2 == 0 else 0
    assert not torch.allclose(criterion.memories["visible"].features[moved], m_v[moved])
    torch.testing.assert_close(criterion.memories["visible"].features[1 - moved], m_v[1 - moved])


# ------------------------------------------------------------------------------------------------ weights
def test_loss_weights_come_from_the_config(ca_cfg):
    c = ca_cfg.CA_VIT
    c.MAAL.ENABLED, c.MAAL.ALPHA, c.MAAL.BETA = True, 2.0, 0.3
    c.BASE.WEIGHT, c.VRA.WEIGHT, c.VRNL.WEIGHT = 1.5, 0.7, 0.25
    c.UM.WEIGHT, c.UM.DELTA_V, c.UM.DELTA_R = 0.5, 0.6, 0.4
    ca_cfg.MODEL.BACKBONE.PA_CBAM.ENABLED, ca_cfg.MODEL.BACKBONE.PA_CBAM.REG_WEIGHT = True, 0.2
    vv = NeighbourSets.from_pairs(torch.tensor([0, 2]), torch.tensor([1, 3]), 4, 4)
    partners = {"visible": torch.tensor([1, -1]), "infrared": torch.tensor([-1, -1])}
    criterion = build(ca_cfg, vra_targets(partners=partners, neighbours={"vv": vv})).eval()  # eval: no updates
    criterion.discriminator.train(False)
    out = batch(ITEMS_OF_BATCH, CA_VIEWS)
    out.update(channel_attention=torch.rand(5, 2, dtype=torch.float64),
               ca_channel_attention=torch.rand(3, 2, dtype=torch.float64))
    raw, weighted = criterion.losses(out), criterion(out)
    expected = {"loss_base": 1.5, "loss_pacbam": 0.2, "loss_maal_d": 2.0, "loss_maal_a": 0.3, "loss_vra": 0.7,
                "loss_vrnl": 0.25, "loss_um_visible": 0.5 * 0.6, "loss_um_infrared": 0.5 * 0.4}
    assert set(raw) == set(weighted) and len(raw) == 12
    for name, value in raw.items():
        weight = next(w for prefix, w in expected.items() if name.startswith(prefix))
        torch.testing.assert_close(weighted[name], weight * value)
