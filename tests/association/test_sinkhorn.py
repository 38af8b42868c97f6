"""Log-domain Sinkhorn (``association.sinkhorn``) against POT and hand-worked cases, and DOTLA's label read-off."""
import math

import numpy as np
import ot
import pytest
import torch

from vireid_plugins.association.dotla import dual_optimal_transport_labels
from vireid_plugins.association.sinkhorn import (
    assign_labels_by_sinkhorn,
    sinkhorn,
    sinkhorn_log,
    sinkhorn_power,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
SOLVERS = [("stabilized", "auto"), ("stabilized", 1.0), ("log", "auto"), ("log", 1.0)]


@pytest.fixture(autouse=True)
def single_thread():
    """Small problems: one intra-op thread avoids OpenMP barrier stalls on a shared CPU (restored afterwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_problem(n, k, seed, uniform=False):
    rng = np.random.default_rng(seed)
    cost = rng.random((n, k))
    if uniform:
        return cost, np.full(n, 1.0 / n), np.full(k, 1.0 / k)
    a, b = rng.random(n) + 0.1, rng.random(k) + 0.1
    return cost, a / a.sum(), b / b.sum()


def pot_plan(a, b, cost, reg):
    return ot.sinkhorn(a, b, cost, reg, method="sinkhorn_log", numItermax=200000, stopThr=1e-13)


# ------------------------------------------------------------------------------------------------ against POT
@pytest.mark.parametrize("method,omega", SOLVERS)
@pytest.mark.parametrize(
    "n,k,reg,uniform",
    [(12, 12, 0.1, True), (40, 7, 0.05, False), (7, 40, 0.05, False), (30, 30, 0.02, False), (25, 9, 1.0, False)],
)
def test_equals_pot(method, omega, n, k, reg, uniform):
    cost, a, b = random_problem(n, k, seed=n * 100 + k, uniform=uniform)
    expected = pot_plan(a, b, cost, reg)
    res = sinkhorn(torch.from_numpy(cost), torch.from_numpy(a), torch.from_numpy(b), reg,
                   tol=1e-12, max_iter=100000, method=method, omega=omega)
    assert res.converged and float(res.marginal_error) < 1e-12
    plan = res.plan().numpy()
    np.testing.assert_allclose(plan, expected, rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(plan.sum(1), a, rtol=1e-9)  # rows exact
    np.testing.assert_allclose(plan.sum(0), b, rtol=1e-9)
    # the reported error is the L1 column violation of the returned plan
    assert abs(float(res.marginal_error) - np.abs(plan.sum(0) - b).sum()) < 1e-12


def test_equals_pot_uniform_default_marginals_float32():
    cost, a, b = random_problem(50, 20, seed=3, uniform=True)
    expected = pot_plan(a, b, cost, 0.05)
    res = sinkhorn(torch.from_numpy(cost).float(), None, None, 0.05, tol=1e-6)
    assert res.converged and res.plan().dtype == torch.float32
    np.testing.assert_allclose(res.plan().double().numpy(), expected, rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize("method", ["stabilized", "log"])
def test_batched_equals_pot_per_problem(method):
    batch, n, k, reg = (2, 3), 20, 9, 0.05
    rng = np.random.default_rng(7)
    cost = rng.random((*batch, n, k))
    a = rng.random((*batch, n)) + 0.1
    b = rng.random((*batch, k)) + 0.1
    a /= a.sum(-1, keepdims=True)
    b /= b.sum(-1, keepdims=True)
    res = sinkhorn(torch.from_numpy(cost), torch.from_numpy(a), torch.from_numpy(b), reg, tol=1e-12,
                   max_iter=100000, method=method)
    assert res.log_u.shape == (*batch, n) and res.log_v.shape == (*batch, k)
    assert res.marginal_error.shape == batch and res.converged
    plan = res.plan().numpy()
    for idx in np.ndindex(*batch):
        np.testing.assert_allclose(plan[idx], pot_plan(a[idx], b[idx], cost[idx], reg), rtol=1e-5, atol=1e-12)
    # shared (K,) marginals broadcast over the batch
    shared = sinkhorn(torch.from_numpy(cost), None, torch.from_numpy(b[0, 0]), reg, tol=1e-12, max_iter=100000)
    np.testing.assert_allclose(shared.plan().numpy()[1, 2],
                               pot_plan(np.full(n, 1 / n), b[0, 0], cost[1, 2], reg), rtol=1e-5, atol=1e-12)


# ------------------------------------------------------------------------------------------------ hand-worked
def test_hand_worked_2x2_symmetric():
    # M = [[0, 1], [1, 0]], a = b = [1/2, 1/2], reg = 1: K = [[1, 1/e], [1/e, 1]]. By symmetry u = v = c, so
    # Q = c^2 K and a row sums to c^2 (1 + 1/e) = 1/2:
    #   Q = [[e, 1], [1, e]] / (2 (e + 1)) = [[0.3655293, 0.1344707], [0.1344707, 0.3655293]]
    # (the example of POT's ot.sinkhorn docstring).
    res = sinkhorn(torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64), [0.5, 0.5], [0.5, 0.5], 1.0,
                   tol=1e-14)
    e = math.e
    expected = torch.tensor([[e, 1.0], [1.0, e]], dtype=torch.float64) / (2 * (e + 1))
    torch.testing.assert_close(res.plan(), expected, rtol=0, atol=1e-12)
    assert abs(expected[0, 0].item() - 0.3655293) < 1e-7


def test_hand_worked_2x2_asymmetric_marginals():
    # M = [[0, 1], [1, 0]], a = [0.7, 0.3], b = [0.4, 0.6], reg = 1. The marginals leave one unknown x:
    #   Q = [[x, 0.7 - x], [0.4 - x, x - 0.1]],  0.1 < x < 0.4,
    # and an entropic plan diag(u) K diag(v) has the cross ratio of K: Q11 Q22 / (Q12 Q21) = e^2, i.e.
    #   (1 - e^2) x^2 + (1.1 e^2 - 0.1) x - 0.28 e^2 = 0   ->   x = 0.3620179...
    e2 = math.e**2
    qa, qb, qc = 1 - e2, 1.1 * e2 - 0.1, -0.28 * e2
    x = (-qb + math.sqrt(qb * qb - 4 * qa * qc)) / (2 * qa)
    if not 0.1 < x < 0.4:
        x = (-qb - math.sqrt(qb * qb - 4 * qa * qc)) / (2 * qa)
    assert abs(x - 0.3620179) < 1e-6
    expected = torch.tensor([[x, 0.7 - x], [0.4 - x, x - 0.1]], dtype=torch.float64)
    for method in ("stabilized", "log"):
        res = sinkhorn(torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64), [0.7, 0.3], [0.4, 0.6], 1.0,
                       tol=1e-14, method=method)
        torch.testing.assert_close(res.plan(), expected, rtol=0, atol=1e-12)


def test_uniform_kernel_gives_product_plan():
    # M = 0: K = 1 and Q = a b^T for any marginals, after a single iteration.
    res = sinkhorn(torch.zeros(3, 4, dtype=torch.float64), [0.5, 0.3, 0.2], [0.1, 0.2, 0.3, 0.4], 0.5, tol=1e-14)
    expected = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)[:, None] * torch.tensor([0.1, 0.2, 0.3, 0.4],
                                                                                         dtype=torch.float64)
    torch.testing.assert_close(res.plan(), expected, rtol=0, atol=1e-15)
    assert res.iterations == 1


# ------------------------------------------------------------------------------------------------ lam = 25
def flat_softmax(n, k, seed):
    """Early-training predictions: nearly flat over k = 200 classes, p <= ~0.012, so p^25 <= ~1e-48."""
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(0.3 * torch.randn(n, k, generator=g), 1)


@pytest.mark.parametrize("method", ["stabilized", "log"])
def test_power_25_underflows_naively_but_not_here(method):
    n, k, lam = 300, 200, 25.0
    p = flat_softmax(n, k, seed=1)
    naive_kernel = p**lam
    assert bool((naive_kernel == 0).all())  # P^25 is all exact zeros in float32 (the smallest float32 is 1.4e-45)
    # the textbook Sinkhorn on P^25 (OTLA's) divides 0 by 0
    u, v = torch.full((n,), 1.0 / n), torch.full((k,), 1.0 / k)
    for _ in range(5):
        u = (1.0 / n) / (naive_kernel @ v)
        v = (1.0 / k) / (naive_kernel.t() @ u)
    assert not bool(torch.isfinite(u).all() and torch.isfinite(v).all())

    res = sinkhorn_power(p, lam, tol=1e-6, method=method)
    assert res.converged
    assert bool(torch.isfinite(res.log_u).all() and torch.isfinite(res.log_v).all())
    assert float((res.row_marginal() - 1.0 / n).abs().sum()) < 1e-4
    assert float((res.col_marginal() - 1.0 / k).abs().sum()) < 1e-4
    # same plan as POT in float64 on cost = -log P, reg = 1/lam
    expected = pot_plan(np.full(n, 1 / n), np.full(k, 1 / k), -np.log(p.double().numpy()), 1 / lam)
    np.testing.assert_allclose(res.plan().double().numpy(), expected, atol=2e-6)
    labels, _ = assign_labels_by_sinkhorn(p, lam, method=method)
    assert torch.equal(labels, torch.from_numpy(expected.argmax(1)))


def test_label_read_off_equals_plan_argmax():
    g = torch.Generator().manual_seed(0)
    logp = torch.log_softmax(4 * torch.randn(500, 30, generator=g, dtype=torch.float64), 1)
    labels, res = assign_labels_by_sinkhorn(logp, 25.0, log_input=True, tol=1e-10)
    assert labels.dtype == torch.int64 and labels.shape == (500,)
    assert torch.equal(labels, res.log_plan().argmax(1))
    assert torch.equal(labels, (logp + res.log_v / 25.0).argmax(1))  # argmax_j log P_ij + log v_j / lam
    # columns: ties are common (rows whose whole mass 1/N sits in one column), so compare the maxima
    torch.testing.assert_close(res.log_plan().gather(0, res.col_argmax()[None]).squeeze(0),
                               res.log_plan().amax(0), rtol=0, atol=1e-12)
    # probabilities in, or log-probabilities in, or float16: same labels
    assert torch.equal(assign_labels_by_sinkhorn(logp.exp(), 25.0)[0], labels)
    half_labels, half_res = assign_labels_by_sinkhorn(logp.exp().half(), 25.0)
    assert half_res.log_kernel.dtype == torch.float32 and (half_labels != labels).float().mean() < 0.05
    # the equal split: 500 samples over 30 classes -> 16 or 17 each
    counts = torch.bincount(labels, minlength=30)
    assert int(counts.min()) >= 15 and int(counts.max()) <= 18


def test_sparse_dense_and_log_paths_agree():
    g = torch.Generator().manual_seed(4)
    logp = torch.log_softmax(5 * torch.randn(600, 40, generator=g), 1)
    results = [
        sinkhorn_power(logp, 25.0, log_input=True, tol=1e-6, sparse_density=1.0),  # sparse kernel
        sinkhorn_power(logp, 25.0, log_input=True, tol=1e-6, sparse_density=0.0),  # dense kernel, matmul
        sinkhorn_power(logp, 25.0, log_input=True, tol=1e-6, method="log"),
        sinkhorn_power(logp, 25.0, log_input=True, tol=1e-6, omega=1.5),
    ]
    ref = results[2].plan()
    for res in results:
        assert res.converged and float(res.marginal_error) < 1e-6
        assert float((res.plan() - ref).abs().sum()) < 5e-6
        assert (res.row_argmax() != results[2].row_argmax()).sum() <= 2  # ties within float32 rounding


def test_dead_class_falls_back_to_log_domain():
    # class 2 is e^-10 below every row's best class: at lam = 25 its kernel entries are all below exp(-80) of
    # their row maximum, so the first absorbed column sum is 0; the exact log-domain step takes over.
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(60, 4, generator=g, dtype=torch.float64)
    logits[:, 2] = logits.max(1).values - 10.0
    logp = torch.log_softmax(logits, 1)
    res = sinkhorn_power(logp, 25.0, log_input=True, tol=1e-12)
    expected = pot_plan(np.full(60, 1 / 60), np.full(4, 1 / 4), -logp.numpy(), 1 / 25)
    np.testing.assert_allclose(res.plan().numpy(), expected, rtol=1e-5, atol=1e-12)
    torch.testing.assert_close(res.col_marginal(), torch.full((4,), 0.25, dtype=torch.float64), rtol=0, atol=1e-11)
    assert int((res.row_argmax() == 2).sum()) >= 10  # the dead class gets its share of labels


def test_otla_stop_rule_matches_reference_loop():
    # OTLA / MULT solver, linear domain (float64, moderate lam so that P^lam does not underflow):
    #   alpha = inv_K / (PS beta);  beta_new = inv_N / (alpha^T PS)^T;  every 10 steps err = sum |beta / beta_new - 1|
    g = torch.Generator().manual_seed(2)
    p = torch.softmax(2 * torch.randn(200, 12, generator=g, dtype=torch.float64), 1)
    lam = 5.0
    ps = p**lam
    n, k = ps.shape
    beta = torch.full((k, 1), 1.0 / k, dtype=torch.float64)
    err, step = 1.0, 0
    while err > 1e-1 and step < 500:
        alpha = (1.0 / n) / (ps @ beta)
        beta_new = (1.0 / k) / (alpha.t() @ ps).t()
        if step % 10 == 0:
            err = float((beta / beta_new - 1).abs().sum())
        beta = beta_new
        step += 1
    ref_labels = (alpha * ps * beta.t()).argmax(1)

    labels, res = assign_labels_by_sinkhorn(p, lam, stop_rule="otla")
    assert res.converged and res.stop_rule == "otla"
    assert res.iterations == step
    assert torch.equal(labels, ref_labels)
    # same column scaling up to a constant
    diff = res.log_v - beta.squeeze(1).log()
    assert float(diff.max() - diff.min()) < 1e-9


def test_eps_scaling_rescues_a_near_permutation():
    # P = [[0.2, 0.8], [0.6, 0.4]], lam = 25, uniform marginals: Q = [[x, 1/2 - x], [1/2 - x, x]] and the cross
    # ratio Q00 Q11 / (Q01 Q10) = (P00 P11 / (P01 P10))^25 = 6^-25, so x / (1/2 - x) = 6^-12.5:
    #   x = 0.5 * 6^-12.5 / (1 + 6^-12.5) = 9.377e-11,  log x = -23.09.
    # Plain Sinkhorn starts with a marginal error of 4e-5 and moves the potentials by about that much per iteration:
    # it plateaus (the labels are right all along); two coarser stages (lam = 6.25, 12.5) solve it.
    p = torch.tensor([[0.2, 0.8], [0.6, 0.4]])
    log_x = math.log(0.5) - 12.5 * math.log(6.0) - math.log1p(6.0**-12.5)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        labels, res = assign_labels_by_sinkhorn(p)
    assert labels.tolist() == [1, 0] and not res.converged and float(res.marginal_error) > 1e-6
    labels, res = assign_labels_by_sinkhorn(p, eps_scaling=2)
    assert labels.tolist() == [1, 0] and res.converged and res.iterations < 200
    assert abs(float(res.log_plan()[0, 0]) - log_x) < 1e-3 and abs(float(res.log_plan()[1, 1]) - log_x) < 1e-3
    # same plan as POT (float64) on a problem where both converge, with and without eps-scaling
    cost, a, b = random_problem(30, 12, seed=9)
    expected = pot_plan(a, b, cost, 0.02)
    scaled = sinkhorn(torch.from_numpy(cost), torch.from_numpy(a), torch.from_numpy(b), 0.02, tol=1e-12,
                      max_iter=100000, eps_scaling=3)
    np.testing.assert_allclose(scaled.plan().numpy(), expected, rtol=1e-5, atol=1e-12)


def test_warm_start():
    logp = torch.log_softmax(4 * torch.randn(800, 30, generator=torch.Generator().manual_seed(11)), 1)
    cold = sinkhorn_power(logp, 25.0, log_input=True, tol=1e-6)
    warm = sinkhorn_power(logp, 25.0, log_input=True, tol=1e-6, init_log_v=cold.log_v + 3.0)  # any gauge
    assert warm.converged and warm.iterations <= 2 < cold.iterations
    assert torch.equal(warm.row_argmax(), cold.row_argmax())
    with pytest.raises(ValueError):
        sinkhorn_power(logp, 25.0, log_input=True, init_log_v=torch.zeros(29))


def test_max_iter_and_batch_convergence_flags():
    logp = torch.log_softmax(5 * torch.randn(400, 40, generator=torch.Generator().manual_seed(3)), 1)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        res = sinkhorn_power(logp, 25.0, log_input=True, max_iter=3, omega=1.0)
    assert not res.converged and res.iterations == 3
    assert float((res.row_marginal() - 1 / 400).abs().sum()) < 1e-5  # rows exact even when stopped early
    assert abs(float(res.marginal_error) - float((res.col_marginal() - 1 / 40).abs().sum())) < 1e-5


def test_input_validation():
    cost = torch.rand(4, 3)
    with pytest.raises(ValueError):
        sinkhorn(cost, [0.5, 0.5, 0.0, 0.0], None, 0.1)
    with pytest.raises(ValueError):
        sinkhorn(cost, None, [0.5, 0.5], 0.1)
    with pytest.raises(ValueError):
        sinkhorn_log(torch.tensor([[0.0, float("nan")], [0.0, 0.0]]))
    with pytest.raises(ValueError):
        sinkhorn(cost, reg=0.0)
    with pytest.raises(ValueError):
        sinkhorn(cost, reg=0.1, omega=2.0)
    with pytest.raises(ValueError):
        sinkhorn(cost, reg=0.1, stop_rule="nope")


@pytest.mark.parametrize("device", DEVICES)
def test_device_agnostic(device):
    g = torch.Generator().manual_seed(6)
    logits = 4 * torch.randn(2, 300, 25, generator=g)
    labels_cpu, res_cpu = assign_labels_by_sinkhorn(logits.log_softmax(-1), log_input=True, tol=1e-6)
    labels, res = assign_labels_by_sinkhorn(logits.to(device).log_softmax(-1), log_input=True, tol=1e-6)
    assert labels.device.type == device and res.log_v.device.type == device and res.converged
    assert labels.shape == (2, 300)
    assert (labels.cpu() != labels_cpu).sum() <= 2
    torch.testing.assert_close(res.plan().cpu(), res_cpu.plan(), rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------------------------ DOTLA
def test_dotla_uniform_marginal_forces_equal_split():
    # 4 infrared images, 2 visible classes; the visible classifier prefers class 0 for all of them.
    p_r = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4]])
    assert torch.equal(p_r.argmax(1), torch.zeros(4, dtype=torch.int64))
    # Q = diag(u) P^25 diag(v) with rows 1/4 and columns 1/2: row i goes to class 1 iff
    # log(P_i1 / P_i0) + c > 0 with c = (log v_1 - log v_0) / 25; the ratios are log(1/9, 2/8, 3/7, 4/6) =
    # (-2.20, -1.39, -0.85, -0.41), and the 2/2 split puts c between 0.85 and 1.39 (it lands at ~1.117).
    # Infrared -> visible: p_r. Visible -> infrared: 3 visible images, 3 infrared classes (a permutation).
    p_v = torch.tensor([[0.5, 0.3, 0.2], [0.6, 0.3, 0.1], [0.7, 0.2, 0.1]])
    res = dual_optimal_transport_labels(p_r, p_v)
    assert res.ir_to_vis_labels.tolist() == [0, 0, 1, 1]
    c = float(res.ir_to_vis.log_v[1] - res.ir_to_vis.log_v[0]) / 25.0
    assert math.log(7 / 3) < c < math.log(8 / 2)
    # every visible image prefers infrared class 0; the 1/3 marginals give one image per class: at lam = 25 the
    # plan is close to the best permutation, argmax_s sum_i log P_i,s(i) = (2, 1, 0) (log-likelihood -4.07)
    assert res.vis_to_ir_labels.tolist() == [2, 1, 0]
    q_r, q_v = res.plans()
    assert q_r.shape == (4, 2) and q_v.shape == (3, 3)
    torch.testing.assert_close(q_r.sum(0), torch.full((2,), 0.5), rtol=0, atol=1e-5)
    torch.testing.assert_close(q_r.sum(1), torch.full((4,), 0.25), rtol=0, atol=1e-5)
    log_q_r, _ = res.log_plans()
    assert torch.equal(log_q_r.argmax(1), res.ir_to_vis_labels)


def test_dotla_cluster_size_marginals():
    # 6 visible images, 2 infrared classes with 20 and 10 images: the cluster-size marginal (2/3, 1/3) sends 4
    # images to class 0 and 2 to class 1; the uniform one splits 3/3.
    p_v = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4], [0.45, 0.55], [0.3, 0.7]])
    p_r = torch.tensor([[0.2, 0.8], [0.6, 0.4]])  # 2 infrared images, 2 visible classes
    uniform = dual_optimal_transport_labels(p_r, p_v, eps_scaling=2)
    assert uniform.vis_to_ir_labels.tolist() == [0, 0, 0, 1, 1, 1]
    # (p_r, 2 images on 2 classes at lam = 25, is a near-permutation: eps_scaling, see the test above)
    sized = dual_optimal_transport_labels(p_r, p_v, marginals="cluster_size", cluster_sizes_vis=[5, 5],
                                          cluster_sizes_ir=torch.tensor([20, 10]), eps_scaling=2)
    assert sized.ir_to_vis.converged and sized.vis_to_ir.converged
    assert sized.vis_to_ir_labels.tolist() == [0, 0, 0, 0, 1, 1]
    assert sized.ir_to_vis_labels.tolist() == [1, 0]
    torch.testing.assert_close(sized.vis_to_ir.col_marginal(), torch.tensor([2 / 3, 1 / 3]), rtol=0, atol=1e-5)
    # the other way round: 1/3, 2/3
    flipped = dual_optimal_transport_labels(p_r, p_v, marginals="cluster_size", cluster_sizes_vis=[1, 1],
                                            cluster_sizes_ir=[1, 2], eps_scaling=2)
    assert flipped.vis_to_ir_labels.tolist() == [0, 0, 1, 1, 1, 1]
    with pytest.raises(ValueError):
        dual_optimal_transport_labels(p_r, p_v, marginals="cluster_size", cluster_sizes_vis=[1, 1])
    with pytest.raises(ValueError):
        dual_optimal_transport_labels(p_r, p_v, marginals="cluster_size", cluster_sizes_vis=[1, 1],
                                      cluster_sizes_ir=[1, 0])
    with pytest.raises(ValueError):
        dual_optimal_transport_labels(p_r, p_v, marginals="sizes")


def test_dotla_log_input_and_otla_rule():
    g = torch.Generator().manual_seed(8)
    logits_r, logits_v = 4 * torch.randn(240, 12, generator=g), 4 * torch.randn(300, 15, generator=g)
    res = dual_optimal_transport_labels(logits_r.log_softmax(1), logits_v.log_softmax(1), log_input=True)
    res_p = dual_optimal_transport_labels(logits_r.softmax(1), logits_v.softmax(1))
    assert res.ir_to_vis_labels.shape == (240,) and res.vis_to_ir_labels.shape == (300,)
    assert (res.ir_to_vis_labels != res_p.ir_to_vis_labels).sum() <= 1
    # close to the equal split (240 / 12 and 300 / 15 = 20); plain argmax is far from it
    assert torch.bincount(res.ir_to_vis_labels, minlength=12).sub(20).abs().max() <= 2
    assert torch.bincount(res.vis_to_ir_labels, minlength=15).sub(20).abs().max() <= 2
    assert torch.bincount(logits_r.argmax(1), minlength=12).sub(20).abs().max() > 2
    otla = dual_optimal_transport_labels(logits_r.softmax(1), logits_v.softmax(1), stop_rule="otla")
    assert otla.ir_to_vis.stop_rule == "otla" and otla.ir_to_vis.iterations <= 500
    # next epoch: slightly different predictions, warm-started from this epoch
    logits_r2, logits_v2 = logits_r + 0.05 * torch.randn(240, 12, generator=g), logits_v
    cold = dual_optimal_transport_labels(logits_r2.log_softmax(1), logits_v2.log_softmax(1), log_input=True)
    warm = dual_optimal_transport_labels(logits_r2.log_softmax(1), logits_v2.log_softmax(1), log_input=True,
                                         warm_start=res)
    assert warm.ir_to_vis.converged and warm.vis_to_ir.iterations <= 2  # unchanged direction: already solved
    assert (warm.ir_to_vis_labels != cold.ir_to_vis_labels).sum() <= 1
    assert torch.equal(warm.vis_to_ir_labels, cold.vis_to_ir_labels)


# ------------------------------------------------------------------------------------------------ relaxed marginals
def pot_unbalanced(a, b, cost, reg, reg_m):
    return ot.sinkhorn_unbalanced(a, b, cost, reg, reg_m, numItermax=500000, stopThr=1e-15)


@pytest.mark.parametrize("method", ["stabilized", "log"])
@pytest.mark.parametrize("reg_m", [0.05, 0.5, 5.0, (math.inf, 0.3), (0.3, math.inf)])
@pytest.mark.parametrize("uniform", [True, False])
def test_unbalanced_equals_pot(method, reg_m, uniform):
    cost, a, b = random_problem(18, 11, seed=31, uniform=uniform)
    reg = 0.1
    expected = pot_unbalanced(a, b, cost, reg, reg_m)
    res = sinkhorn(torch.from_numpy(cost), torch.from_numpy(a), torch.from_numpy(b), reg, reg_m=reg_m,
                   tol=1e-13, max_iter=500000, method=method)
    assert res.converged and res.reg_m == reg_m / reg if not isinstance(reg_m, tuple) else res.converged
    np.testing.assert_allclose(res.plan().numpy(), expected, rtol=1e-6, atol=1e-14)
    if not isinstance(reg_m, tuple):  # both marginals relaxed: neither is met
        plan = res.plan().numpy()
        assert np.abs(plan.sum(0) - b).sum() > 1e-4 and np.abs(plan.sum(1) - a).sum() > 1e-4


def test_unbalanced_power_form_and_labels_equal_pot():
    # DOTLA form: M = -log P, reg = 1 / lam, reg_m in the units of M
    g = torch.Generator().manual_seed(12)
    logp = torch.log_softmax(2 * torch.randn(40, 6, generator=g, dtype=torch.float64), 1)
    lam, reg_m = 5.0, 0.5
    n, k = logp.shape
    expected = pot_unbalanced(np.full(n, 1 / n), np.full(k, 1 / k), -logp.numpy(), 1 / lam, reg_m)
    res = sinkhorn_power(logp, lam, log_input=True, reg_m=reg_m, tol=1e-13, max_iter=500000)
    np.testing.assert_allclose(res.plan().numpy(), expected, rtol=1e-6, atol=1e-14)
    labels, _ = assign_labels_by_sinkhorn(logp, lam, log_input=True, reg_m=reg_m, tol=1e-13, max_iter=500000)
    assert labels.tolist() == expected.argmax(1).tolist()
    # relaxing the class marginal lets the popular classes keep more samples than the balanced plan gives them
    balanced, _ = assign_labels_by_sinkhorn(logp, lam, log_input=True, tol=1e-12, max_iter=100000)
    argmax = logp.argmax(1)
    assert (labels == argmax).sum() >= (balanced == argmax).sum()


def test_unbalanced_limits_and_options():
    cost, a, b = random_problem(15, 9, seed=4)
    ta, tb, tc = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(cost)
    balanced = sinkhorn(tc, ta, tb, 0.1, tol=1e-13, max_iter=100000)
    exact = sinkhorn(tc, ta, tb, 0.1, reg_m=math.inf, tol=1e-13, max_iter=100000)
    np.testing.assert_allclose(exact.plan().numpy(), balanced.plan().numpy(), rtol=1e-9, atol=1e-15)
    # a large reg_m approaches the balanced plan (relative gap ~ reg / reg_m); it converges slowly, the mass
    # direction contracting by about (reg_m / (reg_m + reg))^2 per iteration
    loose = sinkhorn(tc, ta, tb, 0.1, reg_m=100.0, tol=1e-8, max_iter=100000)
    assert loose.converged
    gap = (loose.plan() - balanced.plan()).abs() / balanced.plan()
    assert 1e-4 < float(gap.max()) < 2e-2
    # the reported error is the residual of the column update, small at convergence
    relaxed = sinkhorn(tc, ta, tb, 0.1, reg_m=0.2, tol=1e-10, max_iter=100000)
    assert relaxed.converged and float(relaxed.marginal_error) < 1e-10
    with pytest.raises(ValueError, match="over-relaxation"):
        sinkhorn(tc, ta, tb, 0.1, reg_m=0.2, omega=1.5)
    with pytest.raises(ValueError, match="eps_scaling"):
        sinkhorn(tc, ta, tb, 0.1, reg_m=0.2, eps_scaling=2)
    for bad in (0.0, -1.0, float("nan"), (1.0, 2.0, 3.0)):
        with pytest.raises(ValueError, match="reg_m"):
            sinkhorn(tc, ta, tb, 0.1, reg_m=bad)


def test_dotla_relaxed_marginals():
    g = torch.Generator().manual_seed(13)
    p_r = torch.softmax(2 * torch.randn(30, 5, generator=g, dtype=torch.float64), 1)
    p_v = torch.softmax(2 * torch.randn(25, 4, generator=g, dtype=torch.float64), 1)
    lam, reg_m = 25.0, 0.05
    res = dual_optimal_transport_labels(p_r, p_v, lam, marginals="relaxed", reg_m=reg_m, tol=1e-12,
                                        max_iter=500000)
    for probs, labels in ((p_r, res.ir_to_vis_labels), (p_v, res.vis_to_ir_labels)):
        n, k = probs.shape
        expected = pot_unbalanced(np.full(n, 1 / n), np.full(k, 1 / k), -probs.log().numpy(), 1 / lam, reg_m)
        assert labels.tolist() == expected.argmax(1).tolist()
    np.testing.assert_allclose(res.ir_to_vis.plan().numpy(), pot_unbalanced(
        np.full(30, 1 / 30), np.full(5, 1 / 5), -p_r.log().numpy(), 1 / lam, reg_m), rtol=1e-6, atol=1e-14)
    # default behaviour unchanged, and reg_m only with "relaxed"
    default = dual_optimal_transport_labels(p_r, p_v, lam, tol=1e-10, max_iter=100000)
    uniform = dual_optimal_transport_labels(p_r, p_v, lam, marginals="uniform", tol=1e-10, max_iter=100000)
    assert torch.equal(default.ir_to_vis_labels, uniform.ir_to_vis_labels)
    assert default.ir_to_vis.reg_m is None
    with pytest.raises(ValueError, match="reg_m is required"):
        dual_optimal_transport_labels(p_r, p_v, marginals="relaxed")
    with pytest.raises(ValueError, match="reg_m is required"):
        dual_optimal_transport_labels(p_r, p_v, reg_m=1.0)


# ------------------------------------------------------------------------------------------------ validation
def test_empty_inputs_raise():
    for shape in ((0, 3), (3, 0), (2, 0, 3)):
        with pytest.raises(ValueError, match="empty"):
            sinkhorn_log(torch.zeros(shape))
    with pytest.raises(ValueError, match="empty"):
        assign_labels_by_sinkhorn(torch.zeros(0, 4))
    with pytest.raises(ValueError, match=r"empty \(shape \(0, 2\)\)"):
        dual_optimal_transport_labels(torch.zeros(0, 2), torch.full((2, 2), 0.5))


def test_rows_and_columns_without_finite_entry_raise():
    log_k = torch.zeros(4, 3)
    log_k[2] = -math.inf
    with pytest.raises(ValueError, match=r"rows without a finite entry at entries \[2\]"):
        sinkhorn_log(log_k)
    log_k = torch.zeros(4, 3)
    log_k[:, 1] = -math.inf
    with pytest.raises(ValueError, match=r"columns without a finite entry at entries \[1\]"):
        sinkhorn_log(log_k, method="log")
    batched = torch.zeros(2, 4, 3)
    batched[1, 3] = -math.inf
    with pytest.raises(ValueError, match=r"rows without a finite entry \(batch..., index\) at entries \[\(1, 3\)\]"):
        sinkhorn_log(batched)
    # an all -inf log-probability row used to get the label 0 silently; an all-zero probability row cannot carry
    # mass either (exact zeros next to positive entries are softmax underflow, and are kept as tiny numbers)
    log_p = torch.tensor([[-0.1, -2.0], [-math.inf, -math.inf], [-1.0, -0.5]])
    with pytest.raises(ValueError, match=r"rows without a finite entry at entries \[1\]"):
        assign_labels_by_sinkhorn(log_p, log_input=True)
    probs = torch.tensor([[0.5, 0.5], [0.0, 0.0], [1.0, 0.0]])
    with pytest.raises(ValueError, match=r"probability rows without a positive entry .* entries \[1\]"):
        assign_labels_by_sinkhorn(probs)
    labels, _ = assign_labels_by_sinkhorn(probs[[0, 2]], 5.0)  # an underflowed zero next to a 1: fine
    assert labels.tolist() == [1, 0]
    with pytest.raises(ValueError, match=r"NaN or \+inf at entries \[\(0, 1\)\]"):
        sinkhorn_log(torch.tensor([[0.0, math.inf], [0.0, 0.0]]))


def test_bad_marginals_and_probabilities_raise():
    cost = torch.rand(4, 3)
    with pytest.raises(ValueError, match=r"a must be finite, got entries \[1\]"):
        sinkhorn(cost, [0.5, float("nan"), 0.25, 0.25], None, 0.1)
    with pytest.raises(ValueError, match=r"b must be positive .* got entries \[2\]"):
        sinkhorn(cost, None, [0.5, 0.5, 0.0], 0.1)
    with pytest.raises(ValueError, match=r"probabilities must be finite and >= 0 .* entries \[\(1, 0\)\]"):
        sinkhorn_power(torch.tensor([[0.5, 0.5], [-0.1, 1.1]]))
    with pytest.raises(ValueError, match="log-probabilities contain NaN"):
        sinkhorn_power(torch.tensor([[0.0, float("nan")]]), log_input=True)


def test_dotla_rejects_logits_and_non_probabilities():
    g = torch.Generator().manual_seed(14)
    logits_r, logits_v = 3 * torch.randn(20, 4, generator=g), 3 * torch.randn(15, 5, generator=g)
    ok_r, ok_v = logits_r.softmax(1), logits_v.softmax(1)
    with pytest.raises(ValueError, match="probs_ir_to_vis: probabilities must be finite and >= 0"):
        dual_optimal_transport_labels(logits_r, ok_v)  # raw logits (negative entries)
    with pytest.raises(ValueError, match=r"probs_vis_to_ir: each row must sum to 1 .* rows \[0, 1, 2, 3, 4\]"):
        dual_optimal_transport_labels(ok_r, logits_v.abs())  # positive but not normalised
    with pytest.raises(ValueError, match="log-probabilities must be <= 0"):
        dual_optimal_transport_labels(logits_r, logits_v.log_softmax(1), log_input=True)
    with pytest.raises(ValueError, match="logsumexp of each row must be 0"):
        dual_optimal_transport_labels(logits_r.log_softmax(1), logits_v.log_softmax(1) - 1.0, log_input=True)
    with pytest.raises(ValueError, match="logits or log-probabilities"):
        dual_optimal_transport_labels(ok_r.log(), ok_v.log())  # log-probabilities passed as probabilities
    res = dual_optimal_transport_labels(ok_r, ok_v)  # float32 softmax rows pass the check
    assert res.ir_to_vis_labels.shape == (20,)


# ------------------------------------------------------------------------------------------------ blocks
from vireid_plugins.association.sinkhorn_blocks import StoredKernel, sinkhorn_blocks  # noqa: E402


def _rows_of(log_k, calls=None):
    def rows(r0, r1):
        if calls is not None:
            calls.append((r0, r1))
        return log_k[r0:r1]
    return rows


@pytest.mark.parametrize("storage,tol,rtol", [(torch.float64, 1e-12, 1e-7), (torch.float32, 1e-6, 1e-4),
                                              (torch.bfloat16, 1e-6, 1e-2)])
@pytest.mark.parametrize("uniform", [True, False])
def test_blocks_equal_pot(storage, tol, rtol, uniform):
    cost, a, b = random_problem(37, 23, seed=21, uniform=uniform)
    reg = 0.05
    expected = pot_plan(a, b, cost, reg)
    dtype = torch.float64 if storage == torch.float64 else torch.float32
    log_k = torch.from_numpy(-cost / reg).to(dtype)
    res = sinkhorn_blocks(_rows_of(log_k), (37, 23), torch.from_numpy(a), torch.from_numpy(b), storage_dtype=storage,
                          block_rows=5, tol=tol, max_iter=100000)
    assert res.converged and res.log_kernel is None and res.kernel.values.dtype == storage
    np.testing.assert_allclose(res.plan().double().numpy(), expected, rtol=rtol, atol=rtol * 1e-3)
    assert torch.equal(res.row_argmax(), res.log_plan().argmax(1))
    # the kernel is held once: the stored array and the log kernel it represents
    assert res.kernel.values.shape == (37, 23)
    torch.testing.assert_close(res.kernel.log_dense().double(), log_k.double(), rtol=0, atol=max(rtol, 1e-10))


def test_blocks_log_method_and_unbalanced_equal_pot():
    cost, a, b = random_problem(20, 13, seed=22)
    reg, reg_m = 0.05, 0.4
    log_k = torch.from_numpy(-cost / reg)
    res = sinkhorn_blocks(_rows_of(log_k), (20, 13), torch.from_numpy(a), torch.from_numpy(b),
                          storage_dtype=torch.float64, method="log", tol=1e-12, max_iter=100000, block_rows=6)
    expected = pot_plan(a, b, cost, reg)
    plan = (log_k + res.log_u[:, None] + res.log_v[None]).exp()
    np.testing.assert_allclose(plan.numpy(), expected, rtol=1e-7, atol=1e-15)
    with pytest.raises(ValueError, match="holds no kernel"):
        res.plan()
    relaxed = sinkhorn_blocks(_rows_of(log_k), (20, 13), torch.from_numpy(a), torch.from_numpy(b),
                              storage_dtype=torch.float64, reg_m=reg_m / reg, tol=1e-13, max_iter=500000)
    np.testing.assert_allclose(relaxed.plan().numpy(), pot_unbalanced(a, b, cost, reg, reg_m), rtol=1e-6,
                               atol=1e-15)


def test_blocks_in_place_reabsorption_and_rebuild():
    # column j's cost is lowered by 2j / 23 ... so that the column potentials spread over ~70 (> 45): the kernel
    # is re-absorbed in place while the spread since the build is <= 45, then rebuilt from the source once
    n, k = 40, 24
    rng = np.random.default_rng(8)
    log_k = torch.from_numpy(rng.random((n, k)) - np.linspace(0, 70, k)[None, :])
    calls = []
    res = sinkhorn_blocks(_rows_of(log_k, calls), (n, k), storage_dtype=torch.float64, block_rows=8, tol=1e-12,
                          max_iter=100000, device="cpu")
    expected = pot_plan(np.full(n, 1 / n), np.full(k, 1 / k), -log_k.numpy(), 1.0)
    np.testing.assert_allclose(res.plan().numpy(), expected, rtol=1e-7, atol=1e-15)
    spread = float(res.log_v.max() - res.log_v.min())
    assert spread > 45
    builds = len(calls) // 5  # 5 blocks per pass over the source
    assert 2 <= builds <= 3 and len(calls) % 5 == 0


def test_blocks_copy_the_source_rows_unless_fresh():
    cost, a, b = random_problem(30, 17, seed=23)
    log_k = torch.from_numpy(-cost / 0.05).float()
    kept = log_k.clone()
    shared = sinkhorn_blocks(lambda r0, r1: log_k[r0:r1], (30, 17), block_rows=30, tol=1e-6, max_iter=10000)
    assert torch.equal(log_k, kept)  # rows of a kept tensor (views) are copied before the in-place work
    fresh = sinkhorn_blocks(lambda r0, r1: log_k[r0:r1].clone(), (30, 17), block_rows=30, tol=1e-6, max_iter=10000,
                            fresh_rows=True)
    assert torch.equal(fresh.kernel.values, shared.kernel.values) and torch.equal(fresh.log_v, shared.log_v)
    with_g = sinkhorn_blocks(lambda r0, r1: log_k[r0:r1].clone(), (30, 17), block_rows=7, tol=1e-6, max_iter=10000,
                             fresh_rows=True, init_log_v=torch.linspace(-3, 3, 17))  # built around a non-zero g
    torch.testing.assert_close(with_g.plan(), shared.plan(), rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("workers", [2, 3])
def test_stored_kernel_products_split_over_workers(workers):
    g = torch.Generator().manual_seed(4)
    values = torch.rand(50, 9, generator=g).bfloat16()
    x, y = torch.rand(9, generator=g), torch.rand(50, 3, generator=g)
    single = StoredKernel(values, torch.zeros(50), torch.zeros(9), block_rows=4, workers=1)
    split = StoredKernel(values, torch.zeros(50), torch.zeros(9), block_rows=4, workers=workers)
    threads = torch.get_num_threads()
    expected = values.float()
    torch.testing.assert_close(split.matvec(x), expected @ x)
    torch.testing.assert_close(split.rmatvec(y), expected.T @ y)
    torch.testing.assert_close(split.matvec(x), single.matvec(x))
    assert torch.get_num_threads() == threads  # the workers' thread setting does not leak


def test_blocks_validation():
    log_k = torch.zeros(6, 4)
    with pytest.raises(ValueError, match="empty"):
        sinkhorn_blocks(_rows_of(log_k), (0, 4))
    bad = log_k.clone()
    bad[3, 2] = float("nan")
    with pytest.raises(ValueError, match=r"rows 2:4 contain NaN or \+inf at \(row - 2, column\) entries \[\(1, 2\)\]"):
        sinkhorn_blocks(_rows_of(bad), (6, 4), block_rows=2)
    bad = log_k.clone()
    bad[4, 0] = math.inf
    with pytest.raises(ValueError, match=r"rows 4:6 contain NaN or \+inf at \(row - 4, column\) entries \[\(0, 0\)\]"):
        sinkhorn_blocks(_rows_of(bad), (6, 4), block_rows=2)
    bad = log_k.clone()
    bad[5] = -math.inf
    with pytest.raises(ValueError, match=r"rows without a finite entry: \[5\]"):
        sinkhorn_blocks(_rows_of(bad), (6, 4), block_rows=4)
    bad = log_k.clone()
    bad[:, 0] = -math.inf
    for method in ("stabilized", "log"):
        with pytest.raises(ValueError, match=r"columns without a finite entry: entries \[0\]"):
            sinkhorn_blocks(_rows_of(bad), (6, 4), method=method)
    with pytest.raises(ValueError, match="returned shape"):
        sinkhorn_blocks(lambda r0, r1: torch.zeros(r1 - r0, 3), (6, 4))
    with pytest.raises(ValueError, match="storage_dtype"):
        sinkhorn_blocks(_rows_of(log_k), (6, 4), storage_dtype=torch.float16)


def test_stored_kernel_products_and_rescale():
    g = torch.Generator().manual_seed(9)
    log_k = torch.randn(13, 7, generator=g, dtype=torch.float64) * 3
    res = sinkhorn_blocks(_rows_of(log_k), (13, 7), storage_dtype=torch.float64, block_rows=4, tol=1e-12,
                          max_iter=100000)
    kern: StoredKernel = res.kernel
    dense = kern.log_dense().exp()
    x, y = torch.rand(7, 3, generator=g, dtype=torch.float64), torch.rand(13, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(kern.matvec(x) * kern.row_log.exp()[:, None], dense @ (x * kern.col_log.exp()[:, None]))
    torch.testing.assert_close(kern.rmatvec(y), kern.values.T @ y)
    before = kern.log_dense()
    kern.rescale_(res.log_v)  # the represented kernel does not change; rows now follow the plan
    torch.testing.assert_close(kern.log_dense(), before)
    plan_rows = res.plan() / res.plan().sum(1, keepdim=True)
    torch.testing.assert_close(kern.values / kern.values.sum(1, keepdim=True), plan_rows)
