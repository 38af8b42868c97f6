"""MULT label transfer (``association.mult``) against hand-worked cases, an independent numpy implementation of
the paper's formulas (with POT for the transport plans) and brute-force dense affinities."""
import numpy as np
import ot
import pytest
import torch

from vireid_plugins.association.graph import NeighbourGraph
from vireid_plugins.association.jaccard import jaccard_distance, jaccard_distance_dense
from vireid_plugins.association.mult import (
    cluster_centroids,
    cross_labels_by_sinkhorn,
    homogeneous_affinity,
    initial_soft_labels,
    instance_affinity,
    mult_label_transfer,
    propagate_labels,
    soft_targets,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(autouse=True)
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------------------ reference
# The small problems use lam = 5 (10 for the random case): at the paper's lam = 25 a handful of points gives plans
# close to a permutation, on which every Sinkhorn (POT's too) needs 10^4-10^5 iterations; the code paths are the same.
LAM_SMALL, LAM_RANDOM = 5.0, 10.0


def _pot_plan(cost: np.ndarray, lam: float) -> np.ndarray:
    n, k = cost.shape
    return ot.sinkhorn(np.full(n, 1 / n), np.full(k, 1 / k), cost, 1 / lam, method="sinkhorn_log",
                       numItermax=200000, stopThr=1e-12)


def _sq(x, y):
    return ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)


def _rownorm(a):
    return a / a.sum(1, keepdims=True)


def numpy_mult(fv, fr, lv, lr, dv, dr, lam, temperature=0.05, alpha=0.2, beta=0.7, max_iter=20, tol=1e-2):
    """MULT written directly from the formulas (dense numpy, float64): returns per label space
    ``(own labels, cross labels, own targets, cross targets, iterations)``."""
    def centroids(f, lab):
        return np.stack([f[lab == c].mean(0) for c in range(lab.max() + 1)])

    def softmax(z):
        z = z - z.max(1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(1, keepdims=True)

    cv, cr = centroids(fv, lv), centroids(fr, lr)
    y = {"v": softmax(fv @ cv.T / temperature), "r": softmax(fr @ cr.T / temperature)}
    cross = {"v": np.eye(len(cr))[_pot_plan(_sq(fv, cr), lam).argmax(1)],  # visible images, infrared classes
             "r": np.eye(len(cv))[_pot_plan(_sq(fr, cv), lam).argmax(1)]}
    pi = _pot_plan(_sq(fv, fr), lam)
    a_vr, a_rv = _rownorm(pi), _rownorm(pi.T)
    a_v, a_r = _rownorm(1 - dv), _rownorm(1 - dr)

    def lp(a_own, a_other, own_from_other, other_from_own, y_own, y_cross):
        prev_o, prev_c, c, iterations = y_own, y_cross, y_cross, 0
        while iterations < max_iter:
            iterations += 1
            o = (1 - alpha) * own_from_other @ c + alpha * y_own
            c = (1 - alpha) * other_from_own @ o + alpha * y_cross
            o = 0.5 * a_own @ o + 0.5 * o
            c = 0.5 * a_other @ c + 0.5 * c
            change = max(np.abs(o - prev_o).sum() / prev_o.sum(), np.abs(c - prev_c).sum() / prev_c.sum())
            prev_o, prev_c = o, c
            if change <= tol:
                break
        targets = [beta * np.eye(z.shape[1])[z.argmax(1)] + (1 - beta) * z for z in (o, c)]
        return o.argmax(1), c.argmax(1), targets[0], targets[1], iterations

    return {"visible": lp(a_v, a_r, a_vr, a_rv, y["v"], cross["r"]),
            "infrared": lp(a_r, a_v, a_rv, a_vr, y["r"], cross["v"])}


def _symmetric_distances(n, pairs):
    d = np.ones((n, n))
    np.fill_diagonal(d, 0.0)
    for (i, j), v in pairs.items():
        d[i, j] = d[j, i] = v
    return d


def small_case():
    """4 visible and 4 infrared images of 2 identities in 3-d, unit norm; hand-made Jaccard distances."""
    fv = np.array([[1.0, 0.1, 0.0], [0.9, 0.2, 0.1], [0.1, 1.0, 0.1], [0.3, 0.8, 0.5]])
    fr = np.array([[0.8, 0.3, 0.2], [0.2, 0.9, 0.3], [0.1, 0.7, 0.6], [0.6, 0.6, 0.3]])
    fv, fr = (f / np.linalg.norm(f, axis=1, keepdims=True) for f in (fv, fr))
    fv, fr = fv.astype(np.float32).astype(np.float64), fr.astype(np.float32).astype(np.float64)
    lv, lr = np.array([0, 0, 1, -1]), np.array([0, 1, 1, -1])  # one outlier per modality
    dv = _symmetric_distances(4, {(0, 1): 0.3, (2, 3): 0.6, (1, 3): 0.9})
    dr = _symmetric_distances(4, {(1, 2): 0.4, (0, 3): 0.7})
    return fv, fr, lv, lr, dv, dr


def _run_ours(fv, fr, lv, lr, dv, dr, **kwargs):
    tol = 1e-10 if kwargs.get("storage_dtype") == torch.float64 else 1e-5  # float32: above its rounding floor
    kwargs.setdefault("centroid_sinkhorn", {"tol": 1e-5, "max_iter": 100000})  # float32 features
    kwargs.setdefault("instance_sinkhorn", {"tol": tol, "max_iter": 100000})
    kwargs.setdefault("lam", LAM_SMALL)
    return mult_label_transfer(torch.from_numpy(fv).float(), torch.from_numpy(fr).float(), torch.from_numpy(lv),
                               torch.from_numpy(lr), NeighbourGraph.from_dense(torch.from_numpy(dv)),
                               NeighbourGraph.from_dense(torch.from_numpy(dr)), **kwargs)


def _assert_space(ours, ref, atol):
    own, cross, own_t, cross_t, iterations = ref
    assert ours.own_labels.tolist() == own.tolist() and ours.cross_labels.tolist() == cross.tolist()
    np.testing.assert_allclose(ours.own_targets.double().numpy(), own_t, atol=atol)
    np.testing.assert_allclose(ours.cross_targets.double().numpy(), cross_t, atol=atol)
    assert ours.iterations == iterations


# ------------------------------------------------------------------------------------------------ whole transfer
@pytest.mark.parametrize("storage,atol", [(torch.float64, 1e-6), (torch.float32, 1e-5), (torch.bfloat16, 1e-2)])
def test_small_case_equals_numpy_reference(storage, atol):
    fv, fr, lv, lr, dv, dr = small_case()
    ref = numpy_mult(fv, fr, lv, lr, dv, dr, LAM_SMALL)
    res = _run_ours(fv, fr, lv, lr, dv, dr, storage_dtype=storage)
    _assert_space(res.visible, ref["visible"], atol)
    _assert_space(res.infrared, ref["infrared"], atol)
    # outliers (label -1) get labels in both spaces
    assert res.visible.own_labels[3] >= 0 and res.infrared.own_labels[3] >= 0
    for space in (res.visible, res.infrared):  # soft targets are rows of probabilities
        for t in (space.own_targets, space.cross_targets):
            torch.testing.assert_close(t.sum(1), torch.ones(4), rtol=0, atol=1e-5)
            assert bool((t >= 0).all())
    assert res.visible.own_targets.shape == (4, 2) and res.visible.cross_targets.shape == (4, 2)
    assert res.infrared.own_targets.shape == (4, 2) and res.infrared.cross_targets.shape == (4, 2)


@pytest.mark.parametrize("max_iter,tol", [(1, 1e-2), (3, 0.0), (20, 10.0), (20, 1e-4)])
def test_iteration_cap_and_tolerance(max_iter, tol):
    fv, fr, lv, lr, dv, dr = small_case()
    ref = numpy_mult(fv, fr, lv, lr, dv, dr, LAM_SMALL, max_iter=max_iter, tol=tol)
    res = _run_ours(fv, fr, lv, lr, dv, dr, storage_dtype=torch.float64, max_iter=max_iter, tol=tol)
    _assert_space(res.visible, ref["visible"], 1e-6)
    _assert_space(res.infrared, ref["infrared"], 1e-6)
    if tol >= 10:  # any change is below the tolerance: one iteration
        assert res.visible.iterations == res.infrared.iterations == 1
    if tol == 0.0:
        assert res.visible.iterations == res.infrared.iterations == max_iter
    if tol == 1e-4:  # converges before the cap, the last change below the tolerance
        assert 1 < res.visible.iterations < 20 and res.visible.change <= 1e-4


def test_larger_random_case_against_numpy_and_permutation():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 5, 40)
    protos = rng.standard_normal((5, 16))
    fv = protos[ids[:24]] + 0.6 * rng.standard_normal((24, 16))
    fr = protos[ids[24:]] + 0.6 * rng.standard_normal((16, 16)) + 0.3
    fv, fr = (f / np.linalg.norm(f, axis=1, keepdims=True) for f in (fv, fr))
    fv, fr = fv.astype(np.float32).astype(np.float64), fr.astype(np.float32).astype(np.float64)
    lv, lr = ids[:24].copy(), ids[24:].copy()
    lv[[3, 7]] = -1
    _, lr = np.unique(lr, return_inverse=True)  # contiguous class ids
    dv = jaccard_distance_dense(torch.from_numpy(fv).float(), k1=6, k2=2).double().numpy()
    dr = jaccard_distance_dense(torch.from_numpy(fr).float(), k1=6, k2=2).double().numpy()
    ref = numpy_mult(fv, fr, lv, lr, dv, dr, LAM_RANDOM)
    res = _run_ours(fv, fr, lv, lr, dv, dr, storage_dtype=torch.float64, lam=LAM_RANDOM)
    _assert_space(res.visible, ref["visible"], 1e-5)
    _assert_space(res.infrared, ref["infrared"], 1e-5)
    # the same images in another order give the same labels, in that order (cluster-order bookkeeping)
    pv, pr = rng.permutation(24), rng.permutation(16)
    shuffled = _run_ours(fv[pv], fr[pr], lv[pv], lr[pr], dv[pv][:, pv], dr[pr][:, pr], storage_dtype=torch.float64,
                         lam=LAM_RANDOM)
    assert torch.equal(shuffled.visible.own_labels, res.visible.own_labels[pv])
    assert torch.equal(shuffled.visible.cross_labels, res.visible.cross_labels[pr])
    assert torch.equal(shuffled.infrared.own_labels, res.infrared.own_labels[pr])
    assert torch.equal(shuffled.infrared.cross_labels, res.infrared.cross_labels[pv])
    torch.testing.assert_close(shuffled.infrared.cross_targets, res.infrared.cross_targets[pv], rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------------------------ fixed point
def test_propagate_labels_hand_worked():
    # two images per side, K = 2, cross affinities swap the images, homogeneous affinities are the identity:
    #   own   = 0.8 * swap @ I + 0.2 * I           = [[0.2, 0.8], [0.8, 0.2]]
    #   cross = 0.8 * swap @ own + 0.2 * I         = [[0.84, 0.16], [0.16, 0.84]]
    #   change = max(|own - I|_1 / 2, |cross - I|_1 / 2) = max(1.6, 0.32)
    eye, swap = torch.eye(2), torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    own, cross, it, change = propagate_labels(eye, eye, eye, eye, swap, swap, alpha=0.2, max_iter=1)
    torch.testing.assert_close(own, torch.tensor([[0.2, 0.8], [0.8, 0.2]]))
    torch.testing.assert_close(cross, torch.tensor([[0.84, 0.16], [0.16, 0.84]]))
    assert it == 1 and abs(change - 1.6) < 1e-6
    # the one-hot cross labels given by their classes: the same iterates and change
    own_h, cross_h, it_h, change_h = propagate_labels(eye, torch.tensor([0, 1]), eye, eye, swap, swap, alpha=0.2,
                                                      max_iter=1)
    torch.testing.assert_close(own_h, own)
    torch.testing.assert_close(cross_h, cross)
    assert it_h == 1 and abs(change_h - change) < 1e-6
    calls = []

    def swap_classes(classes, k):  # the first product from the classes, without the one-hot matrix
        calls.append((classes.tolist(), k))
        return swap @ torch.nn.functional.one_hot(classes, k).float()

    own_c, cross_c, _, _ = propagate_labels(eye, torch.tensor([0, 1]), eye, eye, swap, swap, alpha=0.2, max_iter=1,
                                            own_from_other_classes=swap_classes)
    torch.testing.assert_close(own_c, own)
    torch.testing.assert_close(cross_c, cross)
    assert calls == [([0, 1], 2)]
    # targets: 0.7 onehot(argmax) + 0.3 Y_hat
    labels, targets = soft_targets(own, beta=0.7)
    assert labels.tolist() == [1, 0]
    torch.testing.assert_close(targets, torch.tensor([[0.06, 0.94], [0.94, 0.06]]))
    # second iteration with a homogeneous averaging of the cross side: cross <- (H cross + cross) / 2
    half = torch.full((2, 2), 0.5)
    own2, cross2, it2, _ = propagate_labels(eye, eye, eye, half, swap, swap, alpha=0.2, max_iter=2, tol=0.0)
    c1 = (half @ torch.tensor([[0.84, 0.16], [0.16, 0.84]]) + torch.tensor([[0.84, 0.16], [0.16, 0.84]])) / 2
    o2 = 0.8 * swap @ c1 + 0.2 * eye
    c2 = 0.8 * swap @ o2 + 0.2 * eye
    c2 = (half @ c2 + c2) / 2
    torch.testing.assert_close(own2, o2)
    torch.testing.assert_close(cross2, c2)
    assert it2 == 2
    own2_h, cross2_h, _, _ = propagate_labels(eye, torch.tensor([0, 1]), eye, half, swap, swap, alpha=0.2,
                                              max_iter=2, tol=0.0)
    torch.testing.assert_close(own2_h, o2)
    torch.testing.assert_close(cross2_h, c2)
    # row-stochastic inputs stay row-stochastic
    assert torch.allclose(own2.sum(1), torch.ones(2)) and torch.allclose(cross2.sum(1), torch.ones(2))


def test_propagate_labels_validation():
    eye = torch.eye(2)
    with pytest.raises(ValueError, match="alpha"):
        propagate_labels(eye, eye, eye, eye, eye, eye, alpha=1.5)
    with pytest.raises(ValueError, match="max_iter"):
        propagate_labels(eye, eye, eye, eye, eye, eye, max_iter=0)


# ------------------------------------------------------------------------------------------------ pieces
def test_homogeneous_affinity_matches_dense_brute_force():
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(80, 8, generator=g) + 2.0 * torch.randn(8, 8, generator=g)[torch.randint(0, 8, (80,),
                                                                                                generator=g)]
    graph = jaccard_distance(feats, k1=10, k2=3)
    dense = jaccard_distance_dense(feats, k1=10, k2=3)
    expected = (1 - dense) / (1 - dense).sum(1, keepdim=True)
    aff = homogeneous_affinity(graph)
    assert aff.layout == torch.sparse_csr and aff._nnz() == graph.nnz < 80 * 80 / 2
    torch.testing.assert_close(aff.to_dense(), expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(aff.to_dense().sum(1), torch.ones(80), rtol=0, atol=1e-6)
    y = torch.rand(80, 5, generator=g)
    torch.testing.assert_close(aff @ y, expected @ y, rtol=0, atol=1e-5)
    order = torch.randperm(80, generator=g)
    permuted = homogeneous_affinity(graph, order)
    torch.testing.assert_close(permuted.to_dense(), expected[order][:, order], rtol=0, atol=1e-6)
    bad = NeighbourGraph(graph.indptr, graph.indices, graph.distances, max_distance=2.0)
    with pytest.raises(ValueError, match="max_distance"):
        homogeneous_affinity(bad)
    empty_row = NeighbourGraph.from_coo([0, 1], [1, 0], [0.5, 0.5], 3)  # node 2 has no pair, not even itself
    with pytest.raises(ValueError, match=r"no affinity.*\[2\]"):
        homogeneous_affinity(empty_row)


@pytest.mark.parametrize("storage,rtol", [(torch.float64, 1e-7), (torch.float32, 5e-4), (torch.bfloat16, 1e-2)])
def test_instance_affinity_equals_pot_plan(storage, rtol):
    g = torch.Generator().manual_seed(5)
    fv = torch.nn.functional.normalize(torch.randn(30, 6, generator=g, dtype=torch.float64), dim=1)
    fr = torch.nn.functional.normalize(torch.randn(17, 6, generator=g, dtype=torch.float64), dim=1)
    pi = _pot_plan(_sq(fv.numpy(), fr.numpy()), 25.0)  # 30 x 17 at the paper's lam: well conditioned
    aff = instance_affinity(fv, fr, 25.0, storage_dtype=storage, tol=1e-12 if storage == torch.float64 else 1e-5,
                            max_iter=100000, block_rows=7)
    a_vr, a_rv = aff.dense()
    np.testing.assert_allclose(a_vr.double().numpy(), _rownorm(pi), rtol=rtol, atol=rtol * 1e-3)
    np.testing.assert_allclose(a_rv.double().numpy(), _rownorm(pi.T), rtol=rtol, atol=rtol * 1e-3)
    # the operators used by the fixed point are these matrices
    y_r, y_v = torch.rand(17, 4, generator=g), torch.rand(30, 4, generator=g)
    torch.testing.assert_close(aff.to_visible(y_r), (a_vr @ y_r.to(a_vr.dtype)).float(), rtol=2 * rtol, atol=1e-6)
    torch.testing.assert_close(aff.to_infrared(y_v), (a_rv @ y_v.to(a_rv.dtype)).float(), rtol=2 * rtol, atol=1e-6)
    assert aff.values.dtype == storage and aff.values.shape == (30, 17)
    # one-hot labels given by their classes: the same products, without the one-hot matrix (exact: rtol only of
    # the dense check's own storage rounding)
    c_r, c_v = torch.randint(0, 4, (17,), generator=g), torch.randint(0, 4, (30,), generator=g)
    onehot_r, onehot_v = (torch.nn.functional.one_hot(c, 4).to(a_vr.dtype) for c in (c_r, c_v))
    torch.testing.assert_close(aff.to_visible_from_classes(c_r, 4), (a_vr @ onehot_r).to(a_vr.dtype),
                               rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(aff.to_infrared_from_classes(c_v, 4), (a_rv @ onehot_v).to(a_rv.dtype),
                               rtol=1e-5, atol=1e-7)


def test_initial_labels_and_cross_labels():
    fv, fr, lv, lr, _, _ = small_case()
    fv_t, lv_t = torch.from_numpy(fv), torch.from_numpy(lv)
    c = cluster_centroids(fv_t, lv_t)
    np.testing.assert_allclose(c.numpy(), np.stack([fv[:2].mean(0), fv[2:3].mean(0)]))  # outlier excluded
    y = initial_soft_labels(fv_t, c, 0.05)
    logits = fv @ c.numpy().T / 0.05
    expected = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(y.numpy(), expected / expected.sum(1, keepdims=True), rtol=1e-10)
    labels, res = cross_labels_by_sinkhorn(torch.from_numpy(fr), c, LAM_SMALL, tol=1e-12, max_iter=100000)
    assert labels.tolist() == _pot_plan(_sq(fr, c.numpy()), LAM_SMALL).argmax(1).tolist()
    assert res.converged
    with pytest.raises(ValueError, match="empty classes"):
        cluster_centroids(fv_t, torch.tensor([0, 0, 2, -1]))
    with pytest.raises(ValueError, match="no cluster"):
        cluster_centroids(fv_t, torch.full((4,), -1))


def test_input_validation():
    fv, fr, lv, lr, dv, dr = small_case()
    with pytest.raises(ValueError, match="visible labels must have shape"):
        _run_ours(fv, fr, lv[:3], lr, dv, dr)
    with pytest.raises(ValueError, match="infrared graph has 3 nodes"):
        _run_ours(fv, fr, lv, lr, dv, dr[:3, :3])
    with pytest.raises(ValueError, match="features must be"):
        _run_ours(fv, fr[:, :2], lv, lr, dv, dr)
    with pytest.raises(ValueError, match="no cluster"):
        _run_ours(fv, fr, lv, np.full(4, -1), dv, dr)
    with pytest.raises(ValueError, match=">= 0 or -1"):
        _run_ours(fv, fr, np.array([0, 0, 1, -2]), lr, dv, dr)


@pytest.mark.parametrize("device", DEVICES)
def test_device(device):
    fv, fr, lv, lr, dv, dr = small_case()
    cpu = _run_ours(fv, fr, lv, lr, dv, dr, storage_dtype=torch.float32)
    res = mult_label_transfer(torch.from_numpy(fv).float().to(device), torch.from_numpy(fr).float().to(device),
                              torch.from_numpy(lv), torch.from_numpy(lr),
                              NeighbourGraph.from_dense(torch.from_numpy(dv)),
                              NeighbourGraph.from_dense(torch.from_numpy(dr)), storage_dtype=torch.float32,
                              lam=LAM_SMALL, centroid_sinkhorn={"tol": 1e-5, "max_iter": 100000},
                              instance_sinkhorn={"tol": 1e-5, "max_iter": 100000})
    assert res.visible.own_targets.device.type == device
    assert torch.equal(res.visible.own_labels.cpu(), cpu.visible.own_labels)
    assert torch.equal(res.infrared.cross_labels.cpu(), cpu.infrared.cross_labels)
    torch.testing.assert_close(res.infrared.own_targets.cpu(), cpu.infrared.own_targets, rtol=0, atol=1e-4)
