"""Tests of vireid_plugins.evaluation.rank against a loop port of the official evaluation code."""
import warnings

import numpy as np
import pytest
import torch

from vireid_plugins.evaluation.rank import _count_smaller, eval_regdb, eval_sysu, summarize_trials

# =============================================================================================
# ORACLE: a faithful per-query loop port of the official ``eval_sysu`` / ``eval_regdb``
# (mangye16/Cross-Modal-Re-ID-baseline, eval_metrics.py). Only changes: the "gallery is small"
# print is dropped, and ``kind`` lets the tie tests ask for a stable sort (the official code uses
# the default quicksort, i.e. ``kind=None``). Do not "fix" anything here: it is the reference.
# =============================================================================================


def oracle_eval_sysu(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=20, kind=None):
    num_q, num_g = distmat.shape
    if num_g < max_rank:
        max_rank = num_g
    indices = np.argsort(distmat, axis=1, kind=kind)
    pred_label = g_pids[indices]
    matches = (g_pids[indices] == q_pids[:, np.newaxis]).astype(np.int32)

    new_all_cmc = []
    all_cmc = []
    all_AP = []
    all_INP = []
    num_valid_q = 0.
    for q_idx in range(num_q):
        q_pid = q_pids[q_idx]
        q_camid = q_camids[q_idx]

        order = indices[q_idx]
        remove = (q_camid == 3) & (g_camids[order] == 2)
        keep = np.invert(remove)

        new_cmc = pred_label[q_idx][keep]
        new_index = np.unique(new_cmc, return_index=True)[1]
        new_cmc = [new_cmc[index] for index in sorted(new_index)]

        new_match = (new_cmc == q_pid).astype(np.int32)
        new_cmc = new_match.cumsum()
        new_all_cmc.append(new_cmc[:max_rank])

        orig_cmc = matches[q_idx][keep]
        if not np.any(orig_cmc):
            continue

        cmc = orig_cmc.cumsum()

        pos_idx = np.where(orig_cmc == 1)
        pos_max_idx = np.max(pos_idx)
        inp = cmc[pos_max_idx] / (pos_max_idx + 1.0)
        all_INP.append(inp)

        cmc[cmc > 1] = 1

        all_cmc.append(cmc[:max_rank])
        num_valid_q += 1.

        num_rel = orig_cmc.sum()
        tmp_cmc = orig_cmc.cumsum()
        tmp_cmc = [x / (i + 1.) for i, x in enumerate(tmp_cmc)]
        tmp_cmc = np.asarray(tmp_cmc) * orig_cmc
        AP = tmp_cmc.sum() / num_rel
        all_AP.append(AP)

    assert num_valid_q > 0, "Error: all query identities do not appear in gallery"

    all_cmc = np.asarray(all_cmc).astype(np.float32)
    all_cmc = all_cmc.sum(0) / num_valid_q

    new_all_cmc = np.asarray(new_all_cmc).astype(np.float32)
    new_all_cmc = new_all_cmc.sum(0) / num_valid_q
    mAP = np.mean(all_AP)
    mINP = np.mean(all_INP)
    return new_all_cmc, mAP, mINP


def oracle_eval_regdb(distmat, q_pids, g_pids, max_rank=20, kind=None):
    num_q, num_g = distmat.shape
    if num_g < max_rank:
        max_rank = num_g
    indices = np.argsort(distmat, axis=1, kind=kind)
    matches = (g_pids[indices] == q_pids[:, np.newaxis]).astype(np.int32)

    all_cmc = []
    all_AP = []
    all_INP = []
    num_valid_q = 0.

    q_camids = np.ones(num_q).astype(np.int32)
    g_camids = 2 * np.ones(num_g).astype(np.int32)

    for q_idx in range(num_q):
        q_pid = q_pids[q_idx]
        q_camid = q_camids[q_idx]

        order = indices[q_idx]
        remove = (g_pids[order] == q_pid) & (g_camids[order] == q_camid)
        keep = np.invert(remove)

        raw_cmc = matches[q_idx][keep]
        if not np.any(raw_cmc):
            continue

        cmc = raw_cmc.cumsum()

        pos_idx = np.where(raw_cmc == 1)
        pos_max_idx = np.max(pos_idx)
        inp = cmc[pos_max_idx] / (pos_max_idx + 1.0)
        all_INP.append(inp)

        cmc[cmc > 1] = 1

        all_cmc.append(cmc[:max_rank])
        num_valid_q += 1.

        num_rel = raw_cmc.sum()
        tmp_cmc = raw_cmc.cumsum()
        tmp_cmc = [x / (i + 1.) for i, x in enumerate(tmp_cmc)]
        tmp_cmc = np.asarray(tmp_cmc) * raw_cmc
        AP = tmp_cmc.sum() / num_rel
        all_AP.append(AP)

    assert num_valid_q > 0, "Error: all query identities do not appear in gallery"

    all_cmc = np.asarray(all_cmc).astype(np.float32)
    all_cmc = all_cmc.sum(0) / num_valid_q
    mAP = np.mean(all_AP)
    mINP = np.mean(all_INP)
    return all_cmc, mAP, mINP


# ============================================================================ helpers


def assert_same(result, expected, atol=1e-6):
    cmc, m_ap, m_inp = result
    exp_cmc, exp_ap, exp_inp = expected
    assert isinstance(cmc, np.ndarray) and cmc.dtype == np.float32
    assert isinstance(m_ap, float) and isinstance(m_inp, float)
    assert cmc.shape == np.shape(exp_cmc)
    np.testing.assert_allclose(cmc, exp_cmc, rtol=0, atol=atol)
    assert m_ap == pytest.approx(exp_ap, abs=atol)
    assert m_inp == pytest.approx(exp_inp, abs=atol)


def random_sysu_case(rng, num_q, num_g, num_ids):
    """Tie-free distances; query pids partly missing from the gallery; cams 3/6 vs 1/2/4/5."""
    g_pids = rng.integers(0, num_ids, num_g)
    g_pids[:num_ids] = np.arange(num_ids)  # every gallery id present at least once
    g_camids = rng.choice([1, 2, 4, 5], num_g)
    q_pids = rng.integers(0, num_ids + max(2, num_ids // 4), num_q)  # some ids never in the gallery
    q_camids = rng.choice([3, 6], num_q)
    q_pids[0], q_camids[0] = g_pids[np.flatnonzero(g_camids != 2)[0]], 3  # a valid camera-3 query
    distmat = rng.random((num_q, num_g))
    assert all(len(np.unique(row)) == num_g for row in distmat)  # tie-free
    return distmat, q_pids, g_pids, q_camids, g_camids


# ===================================================== (a) random cases against the oracle


@pytest.mark.parametrize("seed, num_q, num_g, num_ids, max_rank", [
    (0, 1, 40, 12, 5),
    (1, 30, 60, 15, 10),
    (2, 200, 120, 30, 20),
    (3, 500, 301, 96, 20),
    (4, 64, 25, 25, 1),
])
def test_sysu_matches_oracle_on_random_cases(seed, num_q, num_g, num_ids, max_rank):
    rng = np.random.default_rng(seed)
    args = random_sysu_case(rng, num_q, num_g, num_ids)
    q_camids, g_camids = args[3], args[4]
    assert (q_camids == 3).any() and (g_camids == 2).any()
    expected = oracle_eval_sysu(*args, max_rank=max_rank)
    assert_same(eval_sysu(*args, max_rank=max_rank), expected)
    num_valid = sum(p in set(args[2]) for p in args[1])
    assert num_valid < num_q or num_q == 1  # unmatched queries are exercised


def test_sysu_matches_stable_oracle_with_ties():
    rng = np.random.default_rng(5)
    distmat, q_pids, g_pids, q_camids, g_camids = random_sysu_case(rng, 150, 80, 20)
    distmat = np.round(distmat * 6)  # only 7 distinct values: ties everywhere
    expected = oracle_eval_sysu(distmat, q_pids, g_pids, q_camids, g_camids, 10, kind="stable")
    assert_same(eval_sysu(distmat, q_pids, g_pids, q_camids, g_camids, 10), expected)


def test_sysu_matches_stable_oracle_with_infinite_distances():
    rng = np.random.default_rng(8)
    distmat, q_pids, g_pids, q_camids, g_camids = random_sysu_case(rng, 120, 60, 15)
    distmat[rng.random(distmat.shape) < 0.2] = np.inf  # must not be mistaken for removed items
    distmat[rng.random(distmat.shape) < 0.05] = -np.inf
    expected = oracle_eval_sysu(distmat, q_pids, g_pids, q_camids, g_camids, 10, kind="stable")
    assert_same(eval_sysu(distmat, q_pids, g_pids, q_camids, g_camids, 10), expected)


def test_single_infinite_distance_is_an_ordinary_rank():
    # Gallery pids [1, 2, 1]; the query's first match has distance -inf, the other +inf:
    # ranked pids [1, 2, 1], matches [1, 0, 1] -> AP = (1/1 + 2/3)/2 = 5/6, INP = 2/3, CMC = [1, 1].
    distmat = np.array([[-np.inf, 0.5, np.inf]])
    expected = (np.array([1.0, 1.0]), 5 / 6, 2 / 3)
    assert_same(eval_sysu(distmat, np.array([1]), np.array([1, 2, 1]), np.array([6]), np.array([1, 4, 5]), 2),
                expected)
    assert_same(eval_regdb(distmat, np.array([1]), np.array([1, 2, 1]), 2), expected)


def test_sysu_float32_distmat_from_features():
    rng = np.random.default_rng(6)
    _, q_pids, g_pids, q_camids, g_camids = random_sysu_case(rng, 300, 100, 30)
    q = rng.standard_normal((300, 64)).astype(np.float32)
    g = rng.standard_normal((100, 64)).astype(np.float32)
    distmat = -q @ g.T
    expected = oracle_eval_sysu(distmat, q_pids, g_pids, q_camids, g_camids, 20, kind="stable")
    assert_same(eval_sysu(distmat, q_pids, g_pids, q_camids, g_camids, 20), expected)


def test_batched_binary_search_equals_searchsorted_per_row():
    rng = np.random.default_rng(9)
    for num_g in (1, 2, 3, 8, 9, 301):
        ranked = np.sort(np.where(rng.random((40, num_g)) < 0.2, np.inf, rng.random((40, num_g))), axis=1)
        values = np.concatenate([rng.random((40, 3)), ranked[:, :1], np.full((40, 1), np.inf)], axis=1)
        expected = np.stack([np.searchsorted(row, vals) for row, vals in zip(ranked, values)])
        np.testing.assert_array_equal(_count_smaller(ranked, values), expected)


# ============================================================= (c) RegDB against its oracle


@pytest.mark.parametrize("seed, num_q, num_g, num_ids, max_rank", [
    (0, 1, 30, 10, 5),
    (1, 100, 100, 10, 20),
    (2, 300, 200, 40, 20),
    (3, 20, 8, 8, 8),
])
def test_regdb_matches_oracle_on_random_cases(seed, num_q, num_g, num_ids, max_rank):
    rng = np.random.default_rng(seed)
    distmat, q_pids, g_pids, _, _ = random_sysu_case(rng, num_q, num_g, num_ids)
    expected = oracle_eval_regdb(distmat, q_pids, g_pids, max_rank)
    assert_same(eval_regdb(distmat, q_pids, g_pids, max_rank), expected)


def test_regdb_matches_stable_oracle_with_ties():
    rng = np.random.default_rng(7)
    distmat, q_pids, g_pids, _, _ = random_sysu_case(rng, 100, 50, 10)
    distmat = np.round(distmat * 4)
    expected = oracle_eval_regdb(distmat, q_pids, g_pids, 10, kind="stable")
    assert_same(eval_regdb(distmat, q_pids, g_pids, 10), expected)


# ============================================================ (b) hand-worked, one per quirk

# Quirk 1. One query (pid 1), gallery of 4, distances increasing with the index:
#   g0 pid 1 cam 2 d=.1 | g1 pid 2 cam 2 d=.2 | g2 pid 2 cam 1 d=.3 | g3 pid 1 cam 4 d=.4
QUIRK1 = dict(distmat=np.array([[0.1, 0.2, 0.3, 0.4]]), g_pids=np.array([1, 2, 2, 1]),
              g_camids=np.array([2, 2, 1, 4]), q_pids=np.array([1]))


def test_quirk1_camera3_query_drops_every_camera2_image_whatever_its_pid():
    # Query from cam 3: g0 (SAME pid) and g1 (other pid) are both dropped -> kept [g2 pid2, g3 pid1].
    # matches [0, 1]: dedup CMC = [0, 1]; AP = (1/2)/1 = 0.5; INP = 1 match / rank 2 = 0.5.
    cmc, m_ap, m_inp = eval_sysu(**QUIRK1, q_camids=np.array([3]), max_rank=2)
    np.testing.assert_array_equal(cmc, [0.0, 1.0])
    assert (m_ap, m_inp) == (0.5, 0.5)
    # Query from cam 6: nothing dropped -> ranked pids [1, 2, 2, 1], matches [1, 0, 0, 1]:
    # dedup list [1, 2] -> CMC [1, 1]; AP = (1/1 + 2/4)/2 = 0.75; INP = 2 matches / rank 4 = 0.5.
    cmc, m_ap, m_inp = eval_sysu(**QUIRK1, q_camids=np.array([6]), max_rank=2)
    np.testing.assert_array_equal(cmc, [1.0, 1.0])
    assert (m_ap, m_inp) == (0.75, 0.5)


# Quirk 2. Query pid 1 (cam 6); ranked gallery pids [2, 2, 2, 1, 3] (distances .1 ... .5).
QUIRK2 = dict(distmat=np.array([[0.1, 0.2, 0.3, 0.4, 0.5]]), q_pids=np.array([1]),
              g_pids=np.array([2, 2, 2, 1, 3]))


def test_quirk2_sysu_cmc_is_identity_deduplicated_but_ap_is_not():
    # SYSU: distinct ranked ids [2, 1, 3] -> the query id is 2nd -> CMC@3 = [0, 1, 1].
    # AP / INP on the full list: the single match is at rank 4 -> AP = 1/4, INP = 1/4.
    cmc, m_ap, m_inp = eval_sysu(**QUIRK2, q_camids=np.array([6]), g_camids=np.array([1, 4, 5, 1, 2]),
                                 max_rank=3)
    np.testing.assert_array_equal(cmc, [0.0, 1.0, 1.0])
    assert (m_ap, m_inp) == (0.25, 0.25)
    # RegDB: standard CMC, first match at rank 4 -> CMC@3 = [0, 0, 0], CMC@5 = [0, 0, 0, 1, 1].
    cmc, m_ap, m_inp = eval_regdb(**QUIRK2, max_rank=3)
    np.testing.assert_array_equal(cmc, [0.0, 0.0, 0.0])
    assert (m_ap, m_inp) == (0.25, 0.25)
    np.testing.assert_array_equal(eval_regdb(**QUIRK2, max_rank=5)[0], [0, 0, 0, 1, 1])


def test_quirk3_cmc_divides_by_valid_queries_only():
    # Gallery: g0 pid 2 cam 1 | g1 pid 1 cam 2 | g2 pid 3 cam 4 ; the same distances .1 .2 .3 for
    # every query.
    #   q0 pid 1 cam 6: dedup list [2, 1, 3] -> row [0, 1, 1]; AP = 1/2, INP = 1/2.    (valid)
    #   q1 pid 9 cam 6: not in the gallery   -> row [0, 0, 0].                       (not valid)
    #   q2 pid 1 cam 3: g1 (its only match, cam 2) dropped -> row [0, 0].            (not valid)
    #       and its kept list has only 2 distinct ids, so max_rank must be <= 2.
    # CMC = ([0,1] + [0,0] + [0,0]) / 1 valid query = [0, 1] (NOT / 3); mAP = mINP = 0.5.
    distmat = np.tile([0.1, 0.2, 0.3], (3, 1))
    args = (distmat, np.array([1, 9, 1]), np.array([2, 1, 3]), np.array([6, 6, 3]), np.array([1, 2, 4]))
    cmc, m_ap, m_inp = eval_sysu(*args, max_rank=2)
    np.testing.assert_array_equal(cmc, [0.0, 1.0])
    assert (m_ap, m_inp) == (0.5, 0.5)
    assert_same((cmc, m_ap, m_inp), oracle_eval_sysu(*args, max_rank=2))


def test_quirk4_torch_inputs_and_mixed_id_types_compare_as_numbers():
    q_camids = np.array([3])
    expected = eval_sysu(**QUIRK1, q_camids=q_camids, max_rank=2)
    as_torch = {key: torch.as_tensor(value) for key, value in QUIRK1.items()}
    assert_same(eval_sysu(**as_torch, q_camids=torch.tensor([3]), max_rank=2), expected)
    mixed = dict(QUIRK1, g_pids=QUIRK1["g_pids"].astype(np.float32), q_pids=torch.tensor([1]),
                 distmat=torch.tensor(QUIRK1["distmat"], dtype=torch.float32))
    assert_same(eval_sysu(**mixed, q_camids=np.array(["3"]), max_rank=2), expected)
    strings = dict(QUIRK1, g_pids=np.array(["0001", "0002", "0002", "0001"]))
    assert_same(eval_sysu(**strings, q_camids=q_camids, max_rank=2), expected)
    regdb = eval_regdb(torch.tensor(QUIRK2["distmat"]), torch.tensor([1]), torch.tensor([2, 2, 2, 1, 3]), 5)
    assert_same(regdb, eval_regdb(**QUIRK2, max_rank=5))


def test_quirk5_max_rank_beyond_kept_identities_raises_where_the_official_code_crashes():
    # q0 (cam 6) keeps all 4 items, 3 distinct ids; q1 (cam 3) drops g1 (cam 2) and keeps 2 ids.
    # With max_rank=3 the official rows have lengths 3 and 2 -> inhomogeneous-shape crash.
    distmat = np.array([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]])
    args = (distmat, np.array([1, 2]), np.array([1, 3, 2, 1]), np.array([6, 3]), np.array([1, 2, 1, 4]))
    with pytest.raises(ValueError):
        oracle_eval_sysu(*args, max_rank=3)
    with pytest.raises(ValueError, match=r"max_rank=3 .*minimum 2, gallery size 4"):
        eval_sysu(*args, max_rank=3)
    assert_same(eval_sysu(*args, max_rank=2), oracle_eval_sysu(*args, max_rank=2))


def test_max_rank_is_clamped_to_the_gallery_size_like_the_official_code():
    with pytest.warns(UserWarning, match="max_rank=20 exceeds the gallery size 5"):
        result = eval_regdb(**QUIRK2, max_rank=20)
    assert_same(result, oracle_eval_regdb(**QUIRK2, max_rank=20))
    assert result[0].shape == (5,)


def test_no_valid_query_raises():
    with pytest.raises(ValueError, match="no valid query"):
        eval_sysu(np.array([[0.1, 0.2]]), np.array([9]), np.array([1, 2]), np.array([6]), np.array([1, 4]), 2)
    with pytest.raises(ValueError, match="no valid query"):
        eval_regdb(np.array([[0.1, 0.2]]), np.array([9]), np.array([1, 2]), 2)
    # A query whose only match is dropped by the camera rule is not valid either.
    with pytest.raises(ValueError, match="no valid query"):
        eval_sysu(np.array([[0.1, 0.2]]), np.array([1]), np.array([1, 2]), np.array([3]), np.array([2, 4]), 1)


def test_invalid_inputs_raise():
    with pytest.raises(ValueError, match="NaN"):
        eval_regdb(np.array([[0.1, np.nan]]), np.array([1]), np.array([1, 2]), 1)
    with pytest.raises(ValueError, match="shape"):
        eval_regdb(np.array([[0.1, 0.2]]), np.array([1, 2]), np.array([1, 2]), 1)
    with pytest.raises(ValueError, match="max_rank"):
        eval_regdb(np.array([[0.1, 0.2]]), np.array([1]), np.array([1, 2]), 0)


def test_no_warning_when_max_rank_fits():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        eval_regdb(**QUIRK2, max_rank=5)


# ================================================================== (d) summarize_trials


def test_summarize_trials_matches_numpy_mean_and_population_std():
    cmc_a = np.linspace(0.5, 0.9, 20, dtype=np.float32)
    cmc_b = np.linspace(0.3, 1.0, 20, dtype=np.float32)
    summary = summarize_trials([(cmc_a, 0.5, 0.2), (cmc_b, 0.7, 0.3)])
    assert list(summary) == ["Rank-1", "Rank-1_std", "Rank-5", "Rank-5_std", "Rank-10", "Rank-10_std",
                             "Rank-20", "Rank-20_std", "mAP", "mAP_std", "mINP", "mINP_std"]
    for k in (1, 5, 10, 20):
        pair = np.array([cmc_a[k - 1], cmc_b[k - 1]], dtype=np.float64)
        assert summary[f"Rank-{k}"] == pytest.approx(100 * pair.mean())
        assert summary[f"Rank-{k}_std"] == pytest.approx(100 * pair.std(ddof=0))
    # Hand values: mAP 50 and 70 -> mean 60, population std 10; mINP 20, 30 -> 25, 5.
    assert summary["mAP"] == pytest.approx(60.0) and summary["mAP_std"] == pytest.approx(10.0)
    assert summary["mINP"] == pytest.approx(25.0) and summary["mINP_std"] == pytest.approx(5.0)
    assert summary["Rank-1"] == pytest.approx(40.0) and summary["Rank-1_std"] == pytest.approx(10.0)


def test_summarize_trials_reports_only_available_ranks():
    summary = summarize_trials([(np.array([0.2, 0.4, 0.6, 0.8, 1.0], dtype=np.float32), 0.5, 0.4)])
    assert [k for k in summary if k.startswith("Rank")] == ["Rank-1", "Rank-1_std", "Rank-5", "Rank-5_std"]
    assert summary["Rank-5"] == pytest.approx(100.0) and summary["Rank-5_std"] == 0.0
    with pytest.raises(ValueError):
        summarize_trials([])
