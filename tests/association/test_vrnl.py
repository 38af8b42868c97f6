"""Tests of VRNL neighbour sets, the camera filter and the loss (association/vrnl.py)."""
import logging
import math

import pytest
import torch
import torch.nn.functional as F

from vireid_plugins.association.vrnl import NeighbourSets, camera_filter, token_neighbours, vrnl_loss


def _angles(*degrees):
    rad = torch.tensor(degrees, dtype=torch.float64) * math.pi / 180
    return torch.stack([rad.cos(), rad.sin()], dim=1)


def _brute_force(queries, database, rho, min_spaces):
    """Dense loops straight from the definition."""
    n, t, _ = queries.shape
    out = []
    for i in range(n):
        count = {}
        for s in range(t):
            sims = [F.cosine_similarity(queries[i, s], database[j, s], dim=0).item() for j in range(len(database))]
            best = max(sims)
            for j, v in enumerate(sims):
                if v > rho * best:
                    count[j] = count.get(j, 0) + 1
        out.append(sorted(j for j, c in count.items() if c >= min_spaces))
    return out


def test_hand_made_sets_and_combine_rule():
    # 4 samples, T = 2 token spaces, unit vectors at the given angles
    token0 = _angles(0, 10, 30, 90)  # cos(10) = .985, cos(20) = .940, cos(30) = .866
    token1 = _angles(0, 60, 5, 20)
    feats = torch.stack([token0, token1], dim=1)
    both = token_neighbours(feats, feats, rho=0.9)
    either = token_neighbours(feats, feats, rho=0.9, min_spaces=1)
    # sample 0: token 0 -> {0, 1}; token 1 -> {0, 2, 3}
    # sample 1: token 0 -> {0, 1, 2}; token 1 -> {1} (nearest others at 55 and 40 degrees)
    # sample 2: token 0 -> {1, 2}; token 1 -> {0, 2, 3}
    # sample 3: token 0 -> {3}; token 1 -> {0, 2, 3}
    assert both.to_lists() == [[0], [1], [2], [3]]
    assert either.to_lists() == [[0, 1, 2, 3], [0, 1, 2], [0, 1, 2, 3], [0, 2, 3]]
    assert both.num_columns == 4 and both.truncated_rows == 0


def test_cross_modality_threshold_is_relative_to_row_best():
    queries = _angles(0, 45)[:, None]  # T = 1
    database = _angles(50, 55, 80, 170)[:, None]
    sets = token_neighbours(queries, database, rho=0.9)
    # query 0: cos 50 = .643 best, threshold .579: cos 55 = .574 is out. query 1: cos 5 = .996, cos 10 = .985 in,
    # cos 35 = .819 out (threshold .897)
    assert sets.to_lists() == [[0], [0, 1]]


@pytest.mark.parametrize("min_spaces", [1, 2, 3])
@pytest.mark.parametrize("same_set", [True, False])
def test_against_brute_force(min_spaces, same_set):
    torch.manual_seed(min_spaces)
    centres = torch.randn(4, 3, 6)
    queries = (centres[torch.arange(13) % 4] + 0.4 * torch.randn(13, 3, 6)).double()
    database = queries if same_set else (centres[torch.arange(11) % 4] + 0.4 * torch.randn(11, 3, 6)).double()
    sets = token_neighbours(queries, database, rho=0.8, min_spaces=min_spaces, k=100, chunk_size=4)
    assert sets.to_lists() == _brute_force(queries, database, 0.8, min_spaces)
    assert sets.num_rows == 13 and sets.num_columns == len(database)
    if same_set:
        assert all(i in row for i, row in enumerate(sets.to_lists()))  # a sample is its own neighbour


def test_top_k_cap_is_reported(caplog):
    feats = _angles(0, 1, 2, 3, 4, 5)[:, None]  # every pair within 5 degrees: all sets are complete at k = 6
    with caplog.at_level(logging.WARNING, logger="fastreid.vireid.vrnl"):
        capped = token_neighbours(feats, feats, rho=0.9, k=3)
    assert capped.truncated_rows == 6 and "top-k cap k=3" in caplog.text
    assert all(len(row) == 3 for row in capped.to_lists())
    full = token_neighbours(feats, feats, rho=0.9, k=6)
    assert full.truncated_rows == 0 and all(len(row) == 6 for row in full.to_lists())


def test_camera_filter_by_hand():
    # 5 samples; cameras [1, 1, 1, 2, 1]; per-camera cluster labels [0, 0, 1, 0, -1]
    sets = NeighbourSets.from_pairs(
        torch.tensor([0, 0, 0, 0, 0, 4, 4, 4]), torch.tensor([0, 1, 2, 3, 4, 0, 3, 4]), num_rows=5, num_columns=5)
    cams, labels = torch.tensor([1, 1, 1, 2, 1]), torch.tensor([0, 0, 1, 0, -1])
    out = camera_filter(sets, cams, cams, labels, labels, same_set=True)
    # row 0 (cam 1, cluster 0): keeps itself, 1 (same cluster), 3 (other camera); drops 2 (cluster 1) and 4 (outlier)
    # row 4 (cam 1, per-camera outlier): keeps itself and 3 (other camera), drops 0
    assert out.to_lists() == [[0, 1, 3], [], [], [], [3, 4]]
    cross = camera_filter(sets, cams, torch.tensor([5, 5, 5, 5, 5]), labels, labels)
    assert cross.to_lists() == sets.to_lists()  # different cameras everywhere: nothing dropped
    with pytest.raises(ValueError, match=r"database_cams must have shape \(5,\)"):
        camera_filter(sets, cams, cams[:4], labels, labels)


def test_select_rows():
    sets = NeighbourSets.from_pairs(torch.tensor([0, 0, 2]), torch.tensor([3, 1, 0]), num_rows=3, num_columns=4)
    position, cols = sets.select(torch.tensor([2, 1, 0, 2]))
    assert position.tolist() == [0, 2, 2, 3] and cols.tolist() == [0, 1, 3, 0]


def test_loss_matches_brute_force_loop():
    torch.manual_seed(0)
    memory = F.normalize(torch.randn(7, 5), dim=1)
    sets = NeighbourSets.from_pairs(torch.tensor([0, 0, 1, 3, 3, 3]), torch.tensor([2, 5, 1, 0, 4, 6]),
                                    num_rows=4, num_columns=7)
    queries = torch.randn(3, 5, requires_grad=True)
    index = torch.tensor([3, 2, 0])  # row 2 has no neighbour
    loss = vrnl_loss(queries, memory, sets, index, temperature=0.05)
    total, count = 0.0, 0
    for b, i in enumerate(index.tolist()):
        logits = F.normalize(queries[b], dim=0) @ memory.T / 0.05
        for j in sets.to_lists()[i]:
            total = total + F.cross_entropy(logits[None], torch.tensor([j]))
            count += 1
    torch.testing.assert_close(loss, total / count)
    loss.backward()
    assert queries.grad[1].abs().sum() == 0 and queries.grad[0].abs().sum() > 0


def test_loss_without_neighbours_is_zero_and_connected():
    sets = NeighbourSets.from_pairs(torch.tensor([1]), torch.tensor([0]), num_rows=2, num_columns=3)
    queries = torch.randn(1, 4, requires_grad=True)
    loss = vrnl_loss(queries, torch.randn(3, 4), sets, torch.tensor([0]))
    assert loss.item() == 0.0
    loss.backward()
    assert queries.grad is not None
    with pytest.raises(ValueError, match="memory has 2 rows"):
        vrnl_loss(queries, torch.randn(2, 4), sets, torch.tensor([0]))


def test_end_to_end_pairs_on_clustered_features():
    """vv / vr sets of well-separated identities stay within the identity; the CSR is consistent."""
    torch.manual_seed(3)
    centres = F.normalize(torch.randn(3, 2, 16), dim=-1) * 4
    pid_v, pid_r = torch.arange(12) % 3, torch.arange(9) % 3
    fv = centres[pid_v] + 0.1 * torch.randn(12, 2, 16)
    fr = centres[pid_r] + 0.1 * torch.randn(9, 2, 16)
    for queries, database, q_pid, d_pid in ((fv, fv, pid_v, pid_v), (fv, fr, pid_v, pid_r), (fr, fv, pid_r, pid_v)):
        sets = token_neighbours(queries, database, rho=0.9)
        assert sets.indptr[-1] == sets.indices.numel()
        for i, row in enumerate(sets.to_lists()):
            assert row and all(d_pid[j] == q_pid[i] for j in row)
            assert row == sorted(row)
