"""``dbscan`` on a NeighbourGraph must give exactly scikit-learn's labels on the dense matrix."""
import numpy as np
import pytest
import torch
from sklearn.cluster import DBSCAN

from vireid_plugins.association.dbscan import dbscan, relabel_outliers
from vireid_plugins.association.graph import NeighbourGraph


def sklearn_labels(graph: NeighbourGraph, eps, min_samples: int) -> np.ndarray:
    dense = graph.to_dense().numpy()
    return DBSCAN(eps=eps, min_samples=min_samples, metric="precomputed").fit_predict(dense)


def assert_same_as_sklearn(graph: NeighbourGraph, eps, min_samples: int) -> np.ndarray:
    labels = dbscan(graph, eps, min_samples)
    assert labels.dtype == torch.int64 and labels.shape == (graph.num_nodes,)
    np.testing.assert_array_equal(labels.numpy(), sklearn_labels(graph, eps, min_samples))
    return labels.numpy()


def blob_distances(rng: np.random.Generator, n: int) -> np.ndarray:
    """Euclidean distances of points drawn around a few random centres, scaled into [0, 1]."""
    centres = rng.normal(scale=3.0, size=(int(rng.integers(1, 6)), 2))
    points = centres[rng.integers(0, len(centres), n)] + rng.normal(scale=rng.uniform(0.2, 1.0), size=(n, 2))
    dist = np.sqrt(((points[:, None] - points[None]) ** 2).sum(-1))
    return (dist / max(dist.max(), 1e-9)).astype(np.float32)


def symmetric_random_distances(rng: np.random.Generator, n: int) -> np.ndarray:
    dist = rng.uniform(0.0, 1.0, size=(n, n)).astype(np.float32)
    dist = np.minimum(dist, dist.T)
    np.fill_diagonal(dist, 0.0)
    return dist


@pytest.mark.parametrize("seed", range(20))
def test_random_blobs_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    dist = blob_distances(rng, int(rng.integers(2, 120)))
    max_distance = float(rng.uniform(0.15, 1.0))
    graph = NeighbourGraph.from_dense(torch.from_numpy(dist), max_distance=max_distance)
    for _ in range(4):
        eps = float(rng.uniform(0.01, max_distance * 0.999))
        assert_same_as_sklearn(graph, eps, int(rng.integers(1, 10)))


@pytest.mark.parametrize("seed", range(20))
def test_thresholded_symmetric_random_matrices_match_sklearn(seed):
    rng = np.random.default_rng(1000 + seed)
    n = int(rng.integers(1, 150))
    graph = NeighbourGraph.from_dense(torch.from_numpy(symmetric_random_distances(rng, n)), max_distance=0.3)
    # Sparse: each pair is stored with probability ~0.3, a neighbour with probability eps.
    for eps in (0.005, 0.02, 0.05, 0.1, 0.29):
        assert_same_as_sklearn(graph, eps, int(rng.integers(1, 8)))


@pytest.mark.parametrize("seed", range(12))
def test_asymmetric_graphs_match_sklearn(seed):
    # Not symmetric: neighbourhoods are directed, which exercises the propagation over the condensation DAG.
    rng = np.random.default_rng(2000 + seed)
    n = int(rng.integers(2, 100))
    dist = rng.uniform(0.0, 1.0, size=(n, n)).astype(np.float32)
    np.fill_diagonal(dist, 0.0)
    graph = NeighbourGraph.from_dense(torch.from_numpy(dist), max_distance=0.5)
    for eps in (0.02, 0.05, 0.1, 0.3):
        assert_same_as_sklearn(graph, eps, int(rng.integers(1, 5)))


@pytest.mark.parametrize("forward", [True, False])
def test_directed_chain(forward):
    # Edges i -> i + 1 (or i + 1 -> i) only: sklearn's visiting order gives one cluster forward, singletons backward.
    n = 30
    src = np.arange(n - 1) if forward else np.arange(1, n)
    dst = src + 1 if forward else src - 1
    rows, cols = np.concatenate([src, np.arange(n)]), np.concatenate([dst, np.arange(n)])
    dist = np.where(rows == cols, 0.0, 0.1)
    graph = NeighbourGraph.from_coo(rows, cols, dist, n)
    labels = assert_same_as_sklearn(graph, 0.2, 1)
    np.testing.assert_array_equal(labels, np.zeros(n) if forward else np.arange(n))


def line_graph(positions, max_distance: float = 100.0) -> NeighbourGraph:
    positions = torch.tensor(positions, dtype=torch.float32)
    return NeighbourGraph.from_dense((positions[:, None] - positions[None]).abs(), max_distance=max_distance)


def test_border_point_shared_by_two_clusters_takes_smallest_cluster_id():
    # Integer positions keep every distance exact. With eps=3, min_samples=4 the point at 7 sees only 4, 10 and
    # itself (3 < 4: border), while 4 and 10 are core points of the clusters {0..4} and {10..14}.
    a, b = [0, 1, 2, 3, 4], [10, 11, 12, 13, 14]
    labels = assert_same_as_sklearn(line_graph(a + b + [7]), 3.0, 4)
    np.testing.assert_array_equal(labels, [0] * 5 + [1] * 5 + [0])
    # Listing the right-hand cluster first makes it cluster 0, and the border point follows it.
    labels = assert_same_as_sklearn(line_graph(b + [7] + a), 3.0, 4)
    np.testing.assert_array_equal(labels, [0] * 5 + [0] + [1] * 5)
    # Border point listed first: still the smallest cluster id, not the first cluster seen from it.
    labels = assert_same_as_sklearn(line_graph([7] + b + a), 3.0, 4)
    np.testing.assert_array_equal(labels, [0] + [0] * 5 + [1] * 5)


def test_cluster_ids_ordered_by_smallest_core_index():
    # eps=1.5, min_samples=3: the core points are 11, 12 (indices 3, 4) and 21, 22 (indices 6, 7); 20 (index 0)
    # is a border point of {20..23}. The first point is not a core point, so {10..13}, whose smallest core index
    # is 3, is cluster 0 and {20..23} is cluster 1; 17 and 50 are noise.
    labels = assert_same_as_sklearn(line_graph([20, 17, 10, 11, 12, 13, 21, 22, 23, 50]), 1.5, 3)
    np.testing.assert_array_equal(labels, [1, -1, 0, 0, 0, 0, 1, 1, 1, -1])


def test_all_noise():
    rng = np.random.default_rng(0)
    graph = NeighbourGraph.from_dense(torch.from_numpy(symmetric_random_distances(rng, 50)), max_distance=0.5)
    labels = assert_same_as_sklearn(graph, 1e-4, 2)
    assert (labels == -1).all()


def test_single_cluster():
    rng = np.random.default_rng(0)
    dist = rng.uniform(0.0, 0.1, size=(40, 40)).astype(np.float32)
    dist = np.minimum(dist, dist.T)
    np.fill_diagonal(dist, 0.0)
    labels = assert_same_as_sklearn(NeighbourGraph.from_dense(torch.from_numpy(dist)), 0.2, 5)
    assert (labels == 0).all()


def test_min_samples_one_makes_every_point_core():
    rng = np.random.default_rng(3)
    graph = NeighbourGraph.from_dense(torch.from_numpy(blob_distances(rng, 80)), max_distance=0.5)
    labels = assert_same_as_sklearn(graph, 0.05, 1)
    assert (labels >= 0).all()


def test_eps_compared_like_sklearn():
    # float32(0.3) > 0.3 in float64: a Python float eps is compared in float32, an np.float64 one in float64.
    graph = line_graph([0.0, 0.3, 5.0], max_distance=1.0)
    for eps in (0.3, np.float32(0.3), np.float64(0.3)):
        assert_same_as_sklearn(graph, eps, 2)
    assert dbscan(graph, 0.3, 2).tolist() == [0, 0, -1]
    assert dbscan(graph, np.float64(0.3), 2).tolist() == [-1, -1, -1]


def test_graph_without_diagonal_entries():
    # A row without its diagonal does not count the point itself, exactly as the dense matrix (max_distance there).
    graph = NeighbourGraph.from_coo([0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2], [0.1] * 6, 4)
    assert_same_as_sklearn(graph, 0.2, 2)


def test_empty_graph():
    graph = NeighbourGraph(torch.zeros(1, dtype=torch.int64), torch.zeros(0, dtype=torch.int64), torch.zeros(0))
    assert dbscan(graph, 0.5, 2).shape == (0,)


@pytest.mark.parametrize("eps", [0.0, -0.1, float("nan"), float("inf"), 1.0, 2.0, "0.5", True])
def test_invalid_eps(eps):
    graph = line_graph([0.0, 0.1], max_distance=1.0)
    with pytest.raises(ValueError, match="eps"):
        dbscan(graph, eps, 2)


@pytest.mark.parametrize("min_samples", [0, -1, 2.5, True])
def test_invalid_min_samples(min_samples):
    with pytest.raises(ValueError, match="min_samples"):
        dbscan(line_graph([0.0, 0.1], max_distance=1.0), 0.5, min_samples)


def test_relabel_outliers():
    labels = torch.tensor([1, -1, 0, -1, 1])
    assert relabel_outliers(labels, "drop").tolist() == [1, -1, 0, -1, 1]
    assert relabel_outliers(labels, "singleton").tolist() == [1, 2, 0, 3, 1]
    assert relabel_outliers(np.array([-1, -1]), "singleton").tolist() == [0, 1]
    assert labels.tolist() == [1, -1, 0, -1, 1]  # input untouched
    with pytest.raises(ValueError, match="mode"):
        relabel_outliers(labels, "keep")
