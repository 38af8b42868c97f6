"""k-reciprocal Jaccard distance: the sparse ``jaccard_distance`` must equal the dense oracle on every pair."""
import math

import numpy as np
import pytest
import torch

from vireid_plugins.association.graph import NeighbourGraph
from vireid_plugins.association.jaccard import _column_counts, jaccard_distance, jaccard_distance_dense, knn


def clustered(n: int, dim: int, num_clusters: int, seed: int, noise: float = 0.6) -> torch.Tensor:
    """Points around random centres, with cluster sizes drawn unevenly; not normalised."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(num_clusters, dim, generator=g)
    weights = torch.rand(num_clusters, generator=g) + 0.2
    labels = torch.multinomial(weights, n, replacement=True, generator=g)
    scale = noise * (0.5 + torch.rand(n, 1, generator=g))
    return centres[labels] + scale * torch.randn(n, dim, generator=g)


def angles(degrees) -> torch.Tensor:
    rad = torch.tensor(degrees, dtype=torch.float64) * math.pi / 180
    return torch.stack([rad.cos(), rad.sin()], 1).float()


# ------------------------------------------------------------------------------------------------ knn
@pytest.mark.parametrize("chunk_size", [7, 64, 1000])
@pytest.mark.parametrize("use_faiss", [False, True])
def test_knn_equals_brute_force(chunk_size, use_faiss):
    x = clustered(300, 32, 12, seed=1)
    k = 10
    sims, idx = knn(x, k, chunk_size=chunk_size, use_faiss=use_faiss)
    xn = torch.nn.functional.normalize(x, dim=1)
    full = xn @ xn.T
    ref_sims, ref_idx = full.topk(k, dim=1)
    assert sims.shape == (300, k) and idx.shape == (300, k) and idx.dtype == torch.int64
    assert torch.equal(idx.sort(1).values, ref_idx.sort(1).values)
    torch.testing.assert_close(sims, ref_sims, atol=1e-5, rtol=0)
    assert (sims[:, :-1] >= sims[:, 1:]).all()  # descending
    assert torch.equal(idx[:, 0], torch.arange(300))  # every point is its own nearest neighbour


def test_knn_caps_k_at_n():
    x = clustered(5, 4, 2, seed=2)
    sims, idx = knn(x, 30, chunk_size=2)
    assert idx.shape == (5, 5)
    assert torch.equal(idx.sort(1).values, torch.arange(5).expand(5, 5))


# ------------------------------------------------------------------------------------------------ reference details
def test_column_counts_follow_the_reference():
    # faiss search(k1) gives k1 columns (self included); [:k1 + 1] reads them all; half sets use round(k1/2) + 1
    assert _column_counts(1000, 30, 6) == (30, 16, 6)
    assert _column_counts(1000, 5, 6) == (5, 3, 5)  # round(2.5) = 2 (half to even); k2 capped by the k1 columns
    assert _column_counts(1000, 7, 1) == (7, 5, 1)  # round(3.5) = 4
    assert _column_counts(10, 30, 6) == (10, 10, 6)  # fewer points than k1


def test_oracle_hand_checked_case():
    """Two groups on the unit circle; k1=2 means 2 rank columns: the point itself and its nearest neighbour.

    Points (degrees): A = 0, 10, 30 (ids 0, 1, 2), B = 90, 100, 130 (ids 3, 4, 5). Nearest neighbours:
    0 -> 1, 1 -> 0, 2 -> 1, 3 -> 4, 4 -> 3, 5 -> 4, so rank = [[0,1],[1,0],[2,1],[3,4],[4,3],[5,4]].
    R(0) = R(1) = {0, 1}; R(2) = {2} (1 does not list 2); likewise R(3) = R(4) = {3, 4}, R(5) = {5}.
    Half sets use round(2/2)+1 = 2 columns, so they equal the full sets and every candidate's half set is
    fully inside R(i) (2 > 2/3·2): R*(i) = R(i).
    V[0] = softmax(-[0, d]) over {0, 1} with d = 2 - 2 cos(10°); V[1] the mirror image; V[2] = {2: 1}.
    k2 = 1: m(0, 1) = 2 / (1 + e^d), so d_J(0, 1) = 1 - m / (2 - m) = 1 - e^-d ≈ 0.029927; groups share no
    support: d_J = 1 across groups and between 2 and {0, 1}.
    k2 = 2: V_qe[i] = (V[i] + V[nn(i)]) / 2, so V_qe[0] = V_qe[1] = {0: 1/2, 1: 1/2} -> d_J(0, 1) = 0, and
    V_qe[2] = {0: V[1,0]/2, 1: V[1,1]/2, 2: 1/2} -> m(0, 2) = 1/2, d_J(0, 2) = 1 - (1/2) / (3/2) = 2/3.
    """
    x = angles([0, 10, 30, 90, 100, 130])
    d = 2 - 2 * math.cos(math.radians(10))

    dist = jaccard_distance_dense(x, k1=2, k2=1)
    expected = torch.ones(6, 6)
    expected.fill_diagonal_(0)
    for i, j in [(0, 1), (3, 4)]:
        expected[i, j] = expected[j, i] = 1 - math.exp(-d)
    torch.testing.assert_close(dist, expected, atol=1e-6, rtol=0)

    dist = jaccard_distance_dense(x, k1=2, k2=2)
    assert dist[0, 1] == pytest.approx(0.0, abs=1e-6) and dist[3, 4] == pytest.approx(0.0, abs=1e-6)
    assert dist[0, 2] == pytest.approx(2 / 3, abs=1e-6) and dist[1, 2] == pytest.approx(2 / 3, abs=1e-6)
    assert dist[3, 5] == pytest.approx(2 / 3, abs=1e-6)
    assert (dist[:3, 3:] == 1).all() and (dist.diagonal() == 0).all()

    for k2 in (1, 2):
        torch.testing.assert_close(jaccard_distance(x, k1=2, k2=k2).to_dense(), jaccard_distance_dense(x, 2, k2),
                                   atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------------------------ sparse vs dense
def assert_matches_oracle(graph: NeighbourGraph, oracle: torch.Tensor) -> None:
    n = oracle.shape[0]
    assert isinstance(graph, NeighbourGraph) and graph.num_nodes == n and graph.max_distance == 1.0
    assert graph.indptr.dtype == torch.int64 and graph.indices.dtype == torch.int64
    assert graph.distances.dtype == torch.float32
    dense = graph.to_dense()
    assert (dense - oracle).abs().max().item() <= 1e-5
    # stored = pairs with common support (oracle < 1) plus the diagonal, nothing else
    stored = torch.zeros(n, n, dtype=torch.bool)
    stored[graph.rows(), graph.indices] = True
    expected = oracle < 1
    expected.fill_diagonal_(True)
    assert torch.equal(stored, expected)
    # CSR invariants: indices sorted within rows, diagonal at 0, symmetric
    for i in range(0, n, max(1, n // 17)):
        row = graph.indices[graph.indptr[i]:graph.indptr[i + 1]]
        assert (row[1:] > row[:-1]).all()
    assert (dense.diagonal() == 0).all()
    assert torch.equal(dense, dense.T)


@pytest.mark.parametrize("n, dim, clusters, k1, k2, seed", [
    (50, 16, 4, 5, 2, 0),
    (120, 24, 6, 30, 6, 1),
    (200, 32, 10, 20, 6, 2),
    (300, 16, 8, 10, 1, 3),
    (400, 64, 20, 30, 6, 4),
    (250, 48, 5, 7, 3, 5),
    (20, 8, 2, 30, 6, 6),  # fewer points than k1
])
def test_sparse_equals_dense_oracle(n, dim, clusters, k1, k2, seed):
    x = clustered(n, dim, clusters, seed)
    oracle = jaccard_distance_dense(x, k1=k1, k2=k2)
    graph = jaccard_distance(x, k1=k1, k2=k2, chunk_size=37)
    assert_matches_oracle(graph, oracle)


def test_sparse_small_chunks_and_buffers():
    """Tiny work / buffer bounds force many chunks in every step; the result must not change."""
    x = clustered(240, 32, 9, seed=7)
    oracle = jaccard_distance_dense(x, k1=20, k2=6)
    graph = jaccard_distance(x, k1=20, k2=6, chunk_size=16, max_work=500, max_buffer=2000)
    assert_matches_oracle(graph, oracle)
    big = jaccard_distance(x, k1=20, k2=6, chunk_size=4096)
    assert torch.equal(graph.indptr, big.indptr) and torch.equal(graph.indices, big.indices)
    torch.testing.assert_close(graph.distances, big.distances, atol=1e-6, rtol=0)


def test_sparse_is_deterministic_and_scale_invariant():
    x = clustered(200, 32, 7, seed=8)
    a = jaccard_distance(x, k1=15, k2=4)
    b = jaccard_distance(x, k1=15, k2=4)
    assert torch.equal(a.indptr, b.indptr) and torch.equal(a.indices, b.indices)
    assert torch.equal(a.distances, b.distances)
    c = jaccard_distance(3.0 * x, k1=15, k2=4)  # features are L2-normalised internally
    assert torch.equal(a.indices, c.indices)
    torch.testing.assert_close(a.distances, c.distances, atol=1e-6, rtol=0)


def test_sparse_with_faiss_knn_matches():
    x = clustered(150, 16, 6, seed=9)
    oracle = jaccard_distance_dense(x, k1=12, k2=3)
    assert_matches_oracle(jaccard_distance(x, k1=12, k2=3, use_faiss=True), oracle)


def test_single_point_and_float64_input():
    graph = jaccard_distance(torch.randn(1, 8, dtype=torch.float64))
    assert graph.num_nodes == 1 and graph.indices.tolist() == [0] and graph.distances.tolist() == [0.0]
    x = clustered(60, 8, 3, seed=10).double()
    np.testing.assert_allclose(jaccard_distance(x, 10, 3).to_dense().numpy(),
                               jaccard_distance_dense(x, 10, 3).numpy(), atol=1e-5)
