"""Tests of VRA matching, cross labels, shared memories and UM partners (association/vra.py)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vireid_plugins.association.vra import (
    cluster_similarity,
    cross_labels,
    greedy_match,
    merge_partners,
    shared_centroids,
    token_centroids,
)


def _lists(t: torch.Tensor) -> list[list[int]]:
    return [[v for v in row if v >= 0] for row in t.tolist()]


# ---------------------------------------------------------------- centroids and similarity


def test_token_centroids_and_similarity_by_hand():
    # N = 4 samples, T = 2 tokens, D = 2
    feats = torch.tensor([
        [[1.0, 0.0], [0.0, 2.0]],
        [[3.0, 0.0], [0.0, 4.0]],
        [[0.0, 5.0], [6.0, 0.0]],
        [[9.0, 9.0], [9.0, 9.0]],  # outlier
    ])
    cent = token_centroids(feats, torch.tensor([0, 0, 1, -1]))
    assert cent.shape == (2, 2, 2)
    assert cent[0].tolist() == [[2.0, 0.0], [0.0, 5.0]] and cent[1].tolist() == [[0.0, 3.0], [6.0, 0.0]]
    other = torch.tensor([[[1.0, 1.0]], [[0.0, 1.0]]])  # T = 2, K_r = 1
    s = cluster_similarity(cent, other)
    # cluster 0: cos([2,0],[1,1]) + cos([0,3],[0,1]) = 1/sqrt2 + 1 ; cluster 1: 1/sqrt2 + 0
    torch.testing.assert_close(s, torch.tensor([[2 ** -0.5 + 1.0], [2 ** -0.5]]))
    torch.testing.assert_close(cluster_similarity(cent, other, normalize=False), torch.tensor([[2.0 + 3.0], [5.0]]))
    with pytest.raises(ValueError, match="every cluster needs a member"):
        token_centroids(feats, torch.tensor([0, 0, 2, -1]))


def test_similarity_matches_loop():
    torch.manual_seed(0)
    cv, cr = torch.randn(3, 5, 8), torch.randn(3, 4, 8)
    ref = torch.zeros(5, 4)
    for i in range(5):
        for j in range(4):
            ref[i, j] = sum(F.cosine_similarity(cv[n, i], cr[n, j], dim=0) for n in range(3))
    torch.testing.assert_close(cluster_similarity(cv, cr), ref)


# ---------------------------------------------------------------- greedy matching


def _reference_match(similarity: np.ndarray, mu: int):
    """TokenMatcher's loops (repeated global argmax with masking), K_v >= K_r; returns r2i and i2r dicts."""
    kv, kr = similarity.shape
    cost, cost1 = similarity.copy(), similarity.copy()
    r2i, i2r, col = {}, {}, np.zeros(kr)
    for _ in range(kv * kr):
        if len(r2i) == kv:
            break
        i, j = np.unravel_index(np.argmax(cost), cost.shape)
        if col[j] < mu:
            r2i[i] = j
            i2r.setdefault(j, []).append(i)
            col[j] += 1
            cost[i, :] = -1000
        else:
            cost[i, j] = -1000
    cost1[:, col != 0] = -1000
    for _ in range(kv * kr):
        if len(i2r) == kr:
            break
        i, j = np.unravel_index(np.argmax(cost1), cost1.shape)
        if col[j] < mu:
            i2r.setdefault(j, []).append(i)
            col[j] += 1
            cost1[i, :] = -1000
        else:
            cost1[i, j] = -1000
    return r2i, i2r


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("mu", [1, 2, 3])
def test_matches_reference_loops(seed, mu):
    rng = np.random.default_rng(seed)
    kr = int(rng.integers(2, 7))
    kv = int(rng.integers(kr, mu * kr + 1))  # enough room: every row can be matched
    s = np.exp(rng.uniform(-1, 1, size=(kv, kr))).astype(np.float32)
    if seed % 2:
        s = np.round(s, 1)  # ties
    r2i, i2r = _reference_match(s, mu)
    m = greedy_match(torch.from_numpy(s), max_matches=mu)
    assert not m.swapped
    assert m.r2i.tolist() == [r2i[i] for i in range(kv)]
    assert _lists(m.ir_to_vis) == [i2r.get(j, []) for j in range(kr)]
    # pass-2 links also appear on the visible side (after the primary)
    for v, r in m.links[m.link_pass == 2].tolist():
        assert r in m.vis_to_ir[v, 1:].tolist()


def test_mu_cap_by_hand():
    s = torch.tensor([[5.0, 4, 1], [4.5, 3, 2], [4.2, 1, 0], [4.1, 0.5, 3.9], [0, 0, 0]])
    m = greedy_match(s, max_matches=2)
    # (0,0), (1,0) fill column 0; rows 2 and 3 cannot join it; row 3 -> 2 (3.9), row 2 -> 1 (1), row 4 -> 1 (0)
    assert _lists(m.vis_to_ir) == [[0], [0], [1], [2], [1]]
    assert _lists(m.ir_to_vis) == [[0, 1], [2, 4], [3]]
    assert m.link_pass.tolist() == [1] * 5
    m3 = greedy_match(s, max_matches=3)
    assert _lists(m3.ir_to_vis)[0] == [0, 1, 2]


def test_second_pass_by_hand():
    s = torch.tensor([
        [10.0, 1.0, 6.0, 0.0],
        [9.0, 2.0, 5.5, 0.1],
        [8.0, 3.0, 0.2, 0.3],
        [7.0, 4.0, 0.4, 5.0],
    ])
    m = greedy_match(s, max_matches=3)
    # pass 1: rows 0, 1, 2 -> column 0 (full at 3), row 3 -> column 3 (5.0); columns 1 and 2 stay empty.
    # pass 2 (original scores, columns 1 and 2): row 0 -> 2 (6.0), row 1 -> 2 again (5.5, room left), row 3 -> 1 (4.0)
    assert m.links.tolist() == [[0, 0], [1, 0], [2, 0], [3, 3], [0, 2], [1, 2], [3, 1]]
    assert m.link_pass.tolist() == [1, 1, 1, 1, 2, 2, 2]
    assert _lists(m.vis_to_ir) == [[0, 2], [0, 2], [0], [3, 1]]
    assert _lists(m.ir_to_vis) == [[0, 1, 2], [3], [0, 1], [3]]
    assert m.r2i.tolist() == [0, 0, 0, 3] and m.i2r.tolist() == [0, 3, 0, 3]


def test_swap_when_fewer_visible_clusters():
    s = torch.tensor([[5.0, 1.0, 4.0], [0.0, 3.0, 2.0]])  # K_v = 2 < K_r = 3: infrared clusters are the rows
    m = greedy_match(s, max_matches=2)
    assert m.swapped
    # rows (IR): r0 -> v0 (5), r2 -> v0 (4, v0 now full), r1 -> v1 (3)
    assert _lists(m.ir_to_vis) == [[0], [1], [0]]
    assert _lists(m.vis_to_ir) == [[0, 2], [1]]
    labels_v, labels_r = cross_labels(m, torch.tensor([1, 0, -1]), torch.tensor([2, 1, 0, -1]))
    assert labels_v.tolist() == [1, 0, -1] and labels_r.tolist() == [0, 1, 0, -1]


def test_rows_beyond_capacity_stay_unlinked():
    s = torch.tensor([[5.0, 1.0, 4.0], [0.0, 3.0, 2.0]])
    m = greedy_match(s, max_matches=1)  # 3 IR rows, 2 visible columns of capacity 1
    assert _lists(m.ir_to_vis) == [[0], [1], []]
    assert cross_labels(m, torch.tensor([0, 1]), torch.tensor([0, 1, 2]))[1].tolist() == [0, 1, -1]


def test_ties_follow_row_major_order():
    m = greedy_match(torch.ones(2, 2), max_matches=1)
    assert m.links.tolist() == [[0, 0], [1, 1]]


def test_bad_inputs():
    with pytest.raises(ValueError, match="NaN"):
        greedy_match(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(ValueError, match="max_matches"):
        greedy_match(torch.ones(2, 2), max_matches=0)


# ---------------------------------------------------------------- cross labels, shared memories


def test_cross_labels_and_shared_centroids_by_hand():
    m = greedy_match(torch.tensor([[3.0, 0.0], [0.0, 3.0], [2.0, 1.0]]), max_matches=2)
    assert _lists(m.vis_to_ir) == [[0], [1], [0]] and _lists(m.ir_to_vis) == [[0, 2], [1]]
    labels_v, labels_r = torch.tensor([0, 1, 2, -1]), torch.tensor([1, 0, -1])
    cross_v, cross_r = cross_labels(m, labels_v, labels_r)
    assert cross_v.tolist() == [0, 1, 0, -1] and cross_r.tolist() == [1, 0, -1]

    fv = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [5.0, 5.0]])
    fr = torch.tensor([[0.0, 3.0], [3.0, 0.0], [7.0, 7.0]])
    phi_vs, phi_rs = shared_centroids(fv, labels_v, fr, labels_r, cross_v, cross_r, 3, 2)
    # phi_vs_0 = mean(fv0, fr1) = [2, 0]; phi_vs_1 = mean(fv1, fr0) = [0, 2]; phi_vs_2 = fv2
    torch.testing.assert_close(phi_vs, F.normalize(torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0]]), dim=1))
    # phi_rs_0 = mean(fr1, fv0, fv2) = [5/3, 1/3]; phi_rs_1 = mean(fr0, fv1) = [0, 2]
    torch.testing.assert_close(phi_rs, F.normalize(torch.tensor([[5.0, 1.0], [0.0, 2.0]]), dim=1))


# ---------------------------------------------------------------- UM partners


def test_partners_pair_equals_tokenmatcher_rule():
    m = greedy_match(torch.tensor([[3.0, 0.0], [2.0, 1.0], [0.0, 3.0]]), max_matches=2)
    assert _lists(m.ir_to_vis) == [[0, 1], [2]]  # group {0, 1} of visible clusters
    assert merge_partners(m, epoch=0)[0].tolist() == [1, -1, -1]  # G[0] -> G[1] in even epochs
    assert merge_partners(m, epoch=1)[0].tolist() == [-1, 0, -1]  # G[1] -> G[0] in odd epochs
    assert merge_partners(m, epoch=0, wrap=True)[0].tolist() == [1, 0, -1]
    assert merge_partners(m, epoch=4)[1].tolist() == [-1, -1]  # every IR group is a single cluster


def test_partners_group_of_three_and_mirror():
    s = torch.tensor([
        [10.0, 1.0, 6.0, 0.0],
        [9.0, 2.0, 5.5, 0.1],
        [8.0, 3.0, 0.2, 0.3],
        [7.0, 4.0, 0.4, 5.0],
    ])
    m = greedy_match(s, max_matches=3)  # ir_to_vis = [[0,1,2],[3],[0,1],[3]], vis_to_ir = [[0,2],[0,2],[0],[3,1]]
    even_v, even_r = merge_partners(m, epoch=2)
    odd_v, odd_r = merge_partners(m, epoch=3)
    assert even_v.tolist() == [1, 2, -1, -1] and odd_v.tolist() == [-1, 0, 1, -1]
    # IR groups: r0, r2 share primary v0 (vis_to_ir[0] = [0, 2]); r1, r3 share primary v3 (vis_to_ir[3] = [3, 1])
    assert even_r.tolist() == [2, -1, -1, 1] and odd_r.tolist() == [-1, 3, 0, -1]
    wrap_v, _ = merge_partners(m, epoch=0, wrap=True)
    assert wrap_v.tolist() == [1, 2, 0, -1]
    wrap_odd_v, _ = merge_partners(m, epoch=1, wrap=True)
    assert wrap_odd_v.tolist() == [2, 0, 1, -1]


def test_partners_swapped_orientation():
    m = greedy_match(torch.tensor([[5.0, 1.0, 4.0], [0.0, 3.0, 2.0]]), max_matches=2)  # vis_to_ir = [[0,2],[1]]
    assert merge_partners(m, 0)[1].tolist() == [2, -1, -1]  # TokenMatcher's r2i[i2r[j]] groups: r0 -> r2
    assert merge_partners(m, 1)[1].tolist() == [-1, -1, 0]
    assert merge_partners(m, 0)[0].tolist() == [-1, -1]
