"""MULT: Modality-Unified Label Transfer (He, Cheng, Wang & Gao, "Exploring Homogeneous and Heterogeneous
Consistent Label Associations for Unsupervised Visible-Infrared Person ReID", IJCV 2024, arXiv 2402.00672).

Pure functions, tensors in and out. Visible images ``v`` (``N_v``, clustered into ``K_v`` classes with centroids
``c^v``), infrared images ``r`` (``N_r``, ``K_r``, ``c^r``); outliers (label -1) take part in the transfer and get
labels, as in the authors' code. Every step, in the visible label space (the infrared one is symmetric):

1. Initial labels. Own modality: ``Y^v = softmax(F_v c^vT / T)`` (``N_v x K_v``, ``T = 0.05``). Other modality:
   ``Y^{r->v} = onehot(argmax_k Q_jk)`` with ``Q = Sinkhorn(||F_r - c^v||^2, lam = 25)`` (``N_r x K_v``, uniform
   marginals, :func:`~.sinkhorn.sinkhorn`, ``reg = 1 / lam``).
2. Homogeneous affinity ``A^v = rownorm(1 - D^v)`` from the k-reciprocal Jaccard distances ``D^v``: a sparse CSR
   matrix over the pairs stored in the :class:`~.graph.NeighbourGraph` (every pair not stored has ``D = 1``, so
   affinity 0; the diagonal is stored at ``D = 0``). Never dense.
3. Heterogeneous affinity from the instance-level plan ``Pi = Sinkhorn(||F_v - F_r||^2, lam = 25)`` (``N_v x N_r``,
   uniform marginals): ``A^{vr} = rownorm(Pi)`` and ``A^{rv} = rownorm(Pi^T)`` (:func:`instance_affinity`).
4. The alternating fixed point (Eq. 16 of the paper; :func:`propagate_labels`), from ``Y_hat = Y``, with
   ``alpha = 0.2``, until the relative L1 change of both label matrices is at most ``1e-2`` or 20 iterations::

       Y_hat^v    <- (1 - alpha) A^{vr} Y_hat^{r->v} + alpha Y^v
       Y_hat^{r->v} <- (1 - alpha) A^{rv} Y_hat^v    + alpha Y^{r->v}
       Y_hat^v    <- (A^v Y_hat^v + Y_hat^v) / 2
       Y_hat^{r->v} <- (A^r Y_hat^{r->v} + Y_hat^{r->v}) / 2

5. Hard labels ``y = argmax Y_hat`` and soft targets ``beta onehot(y) + (1 - beta) Y_hat`` (``beta = 0.7``).

The instance plan is dense
--------------------------
At ``lam = 25`` on L2-normalised features (``||f - g||^2 = 2 - 2 cos``, ``log K = 50 cos - 50``) the plan is not
sparse: its uniform column marginal gives every infrared image the same mass, so images with a weak identity
signal (flat kernel rows or columns) receive it from thousands of partners. Measured on SYSU-sized synthetic
features (22,258 x 11,909, ``tools/benchmark_mult.py``'s data): covering 99% of a row of ``A^{vr}`` takes a
median of 168 but a mean of 1,536 entries (4,234 at the 90th percentile), and only 63% of a row's mass lies on
same-identity images. Keeping the top ``k`` entries per row and column after the solve (or solving on the top-``k``
candidates of a k-NN search) changed 0.6-23% of the final hard labels for ``k = 16 .. 128`` on the ``small``
scale (``A^{vr}`` rows losing 11-45% of their mass); even of the 256 x 256 tiles of the cluster-sorted plan, 98% are
needed to lose less than 1% of a row's mass. So the plan is kept dense, *once*:

* :func:`~.sinkhorn_blocks.sinkhorn_blocks` builds the log kernel (as ``2 lam <f_i, g_j>``: the squared norms
  of ``-lam ||f_i - g_j||^2`` are row and column scalings) row block by row block (a chunked ``F_v F_r^T``,
  O(block x N_r) work memory; with bfloat16 storage on CPU from two-part int8 codes of the features,
  :mod:`.inner_products`, exact integer products 1.6x faster than float32 ones) straight into one absorbed kernel
  array, in
  ``storage_dtype`` (bfloat16 by default: 0.5 GiB at SYSU size; float32 for an exact plan), solves there, and
  re-absorbs the column potential in place, so that the array holds ``Pi`` up to a row scaling;
* ``A^{vr} Y = (P Y) / (P 1)`` and ``A^{rv} Y = (P^T (w * Y)) / (P^T w)`` are computed from that one array ``P``
  (``w`` the row scaling), as bfloat16 matrix products when stored so (2-3x the float32 rate on CPUs with
  AVX512-BF16, half the memory traffic). No transposed or second copy exists. The first product of each label
  space, with the one-hot initial cross labels, is a sum of plan entries by class instead (a pass over ``P``).

bfloat16 rounds every plan entry and every product to 8 significant bits (relative error at most ``2^-9``); on
the ``small`` scale the final hard labels agreed with the float32 dense computation on >= 99.97% of the images in
all four label sets, and at SYSU size 99.97% of the 68,334 hard labels equal those of the authors' dense
computation (``tools/benchmark_mult.py``); ``storage_dtype=torch.float32`` removes this approximation for twice
the memory. Label rows are
renormalised to sum to 1 after each iteration (exact arithmetic keeps them stochastic; this removes the rounding
drift).

Other implementation choices: the instances are processed in cluster order (sorted by label, outliers last) so
that the sparse products read neighbouring rows (3-4x faster on CPU); results are returned in input order. The
features are used as given (the authors pass L2-normalised features); centroids are the means of the member
features (outliers excluded), not re-normalised, as in the authors' code.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from vireid_plugins.association.graph import NeighbourGraph
from vireid_plugins.association.inner_products import Int8Code, encode_int8, int8_inner_products, prepare_rhs
from vireid_plugins.association.jaccard import _timed
from vireid_plugins.association.sinkhorn import SinkhornResult, sinkhorn
from vireid_plugins.association.sinkhorn_blocks import StoredKernel, default_block_rows, sinkhorn_blocks

__all__ = [
    "HeterogeneousAffinity",
    "LabelSpaceTransfer",
    "MULTResult",
    "cluster_centroids",
    "cross_labels_by_sinkhorn",
    "homogeneous_affinity",
    "initial_soft_labels",
    "instance_affinity",
    "mult_label_transfer",
    "propagate_labels",
    "soft_targets",
    "squared_distances",
]

# Default Sinkhorn of the instance plan (with the "marginal" rule): L1 column-marginal error 1e-4 of a total mass
# of 1, in about 65 over-relaxed iterations on the small benchmark scale; the authors' rule (plain iterations, capped
# at 500) and tighter tolerances gave the same labels there, for 4-15x the iterations over the N_v x N_r array.
INSTANCE_TOL = 1e-4
# Default Sinkhorn of the instance-to-centroid problems: over-relaxed, to an L1 column-marginal error of 1e-5. On the
# SYSU-sized benchmark data it stops after 110 and 100 iterations (the authors' rule, plain iterations until
# sum |v / v_new - 1| < 0.1: 321 and 261) and its labels equal those of a solve to 1e-7 on 100.00% of the images in
# both directions (the authors' rule: 100.00% and 99.97%). ``{"stop_rule": "otla"}`` restores the authors' rule.
CENTROID_SINKHORN = {"stop_rule": "marginal", "tol": 1e-5}


# --------------------------------------------------------------------------------------------------------------
# Step 1: initial labels
# --------------------------------------------------------------------------------------------------------------
def _num_classes(labels: torch.Tensor, name: str) -> int:
    if labels.dim() != 1:
        raise ValueError(f"{name} must be a 1-D tensor of cluster ids, got shape {tuple(labels.shape)}")
    if labels.numel() and int(labels.min()) < -1:
        raise ValueError(f"{name} must be cluster ids >= 0 or -1 (outlier), got minimum {int(labels.min())}")
    k = int(labels.max()) + 1 if labels.numel() else 0
    if k == 0:
        raise ValueError(f"{name} has no cluster (all {labels.numel()} images are outliers): nothing to transfer")
    return k


def cluster_centroids(features: torch.Tensor, labels: torch.Tensor, num_classes: Optional[int] = None
                      ) -> torch.Tensor:
    """``(K, D)`` mean feature of every cluster (outliers, label -1, excluded).

    Args:
        features: ``(N, D)``; labels: ``(N,)`` int64 in ``[-1, K)``; num_classes: ``K`` (default ``max + 1``).
    """
    k = _num_classes(labels, "labels") if num_classes is None else int(num_classes)
    member = labels >= 0
    counts = torch.bincount(labels[member], minlength=k)
    if counts.numel() > k or not bool((counts > 0).all()):
        empty = (counts[:k] == 0).nonzero().squeeze(1).tolist()
        raise ValueError(f"labels must use every class of [0, {k}) and no other; empty classes: {empty[:5]}, "
                         f"largest label {int(labels.max())}")
    sums = torch.zeros(k, features.shape[1], dtype=features.dtype, device=features.device)
    sums.index_add_(0, labels[member], features[member])
    return sums / counts.unsqueeze(1).to(features.dtype)


def initial_soft_labels(features: torch.Tensor, centroids: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """``(N, K)`` ``Y = softmax(F c^T / T)``: the own-modality initial labels of MULT (rows sum to 1)."""
    return torch.softmax(features @ centroids.T / temperature, dim=1)


def squared_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(N, M)`` ``||x_i - y_j||^2`` (clamped at 0 against rounding)."""
    d = torch.addmm((x * x).sum(1, keepdim=True), x, y.T, alpha=-2.0)
    return d.add_((y * y).sum(1)).clamp_(min=0.0)


def cross_labels_by_sinkhorn(features: torch.Tensor, centroids: torch.Tensor, lam: float = 25.0,
                             **sinkhorn_kwargs) -> tuple[torch.Tensor, SinkhornResult]:
    """MULT's initial cross-modality labels: ``argmax_k Q_ik`` of ``Q = Sinkhorn(||F - c||^2, lam)``.

    ``F`` are ``(N, D)`` images of one modality, ``c`` the ``(K, D)`` centroids of the other; uniform marginals
    (each image one label, the classes equally filled), ``reg = 1 / lam``.

    Returns:
        ``(labels, result)``: ``(N,)`` int64 in ``[0, K)`` and the :class:`~.sinkhorn.SinkhornResult`.
    """
    result = sinkhorn(squared_distances(features, centroids), reg=1.0 / lam, **sinkhorn_kwargs)
    return result.row_argmax(), result


# --------------------------------------------------------------------------------------------------------------
# Step 2: homogeneous affinity (sparse)
# --------------------------------------------------------------------------------------------------------------
def homogeneous_affinity(graph: NeighbourGraph, order: Optional[torch.Tensor] = None,
                         device: Optional[torch.device] = None) -> torch.Tensor:
    """``A = rownorm(1 - D)`` over the pairs of a Jaccard :class:`~.graph.NeighbourGraph`, as a sparse CSR tensor.

    Pairs not stored have ``D = graph.max_distance = 1`` and so affinity 0; the stored diagonal (``D = 0``) keeps
    every row sum positive.

    Args:
        graph: ``N`` nodes, distances in ``[0, 1]``.
        order: optional ``(N,)`` permutation: the result is ``A[order][:, order]`` (row ``p`` is node ``order[p]``).
        device: where to put the result (default CPU).

    Returns:
        ``(N, N)`` float32 ``torch.sparse_csr`` tensor with rows summing to 1; use as ``A @ Y``.
    """
    if graph.max_distance != 1.0:
        raise ValueError(f"graph.max_distance must be 1 (Jaccard distances), got {graph.max_distance}")
    n = graph.num_nodes
    rows, cols, aff = graph.rows(), graph.indices, 1.0 - graph.distances
    if bool((aff < 0).any()) or bool((aff > 1).any()):
        raise ValueError("graph distances must lie in [0, 1] (Jaccard distances)")
    sums = torch.zeros(n, dtype=aff.dtype).index_add_(0, rows, aff)
    if not bool((sums > 0).all()):
        empty = (sums <= 0).nonzero().squeeze(1).tolist()
        raise ValueError(f"graph rows with no affinity (no stored pair below distance 1, not even the diagonal): "
                         f"{empty[:5]}")
    aff = aff / sums[rows]
    if order is not None:
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(n)
        permuted = NeighbourGraph.from_coo(inverse[rows], inverse[cols], aff, n)
        crow, cols, aff = permuted.indptr, permuted.indices, permuted.distances
    else:
        crow = graph.indptr
    return torch.sparse_csr_tensor(crow, cols, aff.float(), (n, n), check_invariants=False).to(device or "cpu")


# --------------------------------------------------------------------------------------------------------------
# Step 3: heterogeneous affinity (one dense plan)
# --------------------------------------------------------------------------------------------------------------
class HeterogeneousAffinity:
    """``A^{vr} = rownorm(Pi)`` and ``A^{rv} = rownorm(Pi^T)`` from one stored array ``P``, ``Pi = diag(w) P``.

    Attributes:
        kernel: the :class:`~.sinkhorn_blocks.StoredKernel` holding ``P`` (its block loops serve the class sums).
        values: ``(N_v, N_r)`` ``P`` in the storage dtype (each row proportional to the plan's row).
        row_weight: ``(N_v,)`` ``w``, scaled to a maximum of 1.
        vis_sums: ``(N_v,)`` ``P 1``; ir_sums: ``(N_r,)`` ``P^T w`` (accumulated block by block).
        (These three in the compute dtype: float64 for float64 storage, else float32.)
        iterations, marginal_error: of the Sinkhorn solve.
    """

    def __init__(self, kernel: StoredKernel, row_weight: torch.Tensor, iterations: int = 0,
                 marginal_error: float = 0.0):
        self.kernel, self.values, self.row_weight = kernel, kernel.values, row_weight.to(kernel.compute_dtype)
        self.iterations, self.marginal_error = iterations, marginal_error
        self.vis_sums = kernel.matvec(torch.ones(kernel.shape[1], dtype=kernel.compute_dtype,
                                                 device=self.values.device))
        self.ir_sums = kernel.rmatvec(self.row_weight)

    @classmethod
    def from_solution(cls, kernel: StoredKernel, result: SinkhornResult) -> "HeterogeneousAffinity":
        """Re-absorb the solution's column potential into ``kernel`` in place and wrap it."""
        kernel.rescale_(result.log_v)  # values_ij = K_ij exp(g_j - m_i): Pi = diag(exp(f + m)) values
        log_w = result.log_u + kernel.row_log
        row_weight = torch.exp(log_w - log_w.max())
        return cls(kernel, row_weight, result.iterations, float(result.marginal_error))

    @staticmethod
    def _product(matrix_t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``matrix_t^T @ y`` as one GEMM in ``matrix_t``'s dtype, computed as ``(y^T @ matrix_t)^T`` (the faster
        operand order for oneDNN's bfloat16 kernels: 1.2-1.5x on CPU), returned contiguous in ``y``'s dtype."""
        out_t = y.to(matrix_t.dtype).T @ matrix_t  # (K, M)
        return torch.empty(out_t.shape[::-1], dtype=y.dtype, device=y.device).copy_(out_t.T)

    def to_visible(self, y_ir: torch.Tensor) -> torch.Tensor:
        """``(N_v, K)`` ``A^{vr} @ y_ir`` for ``y_ir`` ``(N_r, K)``."""
        return self._product(self.values.T, y_ir).div_(self.vis_sums.unsqueeze(1).to(y_ir.dtype))

    def to_infrared(self, y_vis: torch.Tensor) -> torch.Tensor:
        """``(N_r, K)`` ``A^{rv} @ y_vis`` for ``y_vis`` ``(N_v, K)``."""
        weighted = self.row_weight.unsqueeze(1).to(y_vis.dtype) * y_vis
        return self._product(self.values, weighted).div_(self.ir_sums.unsqueeze(1).to(y_vis.dtype))

    def to_visible_from_classes(self, classes: torch.Tensor, num_classes: int) -> torch.Tensor:
        """``(N_v, K)`` ``A^{vr} @ onehot(classes)`` for ``(N_r,)`` int64 classes in ``[0, K)``, in the compute
        dtype: sums of each row's plan entries by class (a pass over ``P``, no ``N_r x K`` one-hot matrix and no
        matrix product; unlike :meth:`to_visible`, no bfloat16 rounding of the product)."""
        n_v = self.values.shape[0]
        out = torch.zeros(n_v, num_classes, dtype=self.vis_sums.dtype, device=self.values.device)
        for r0, r1, block in self.kernel.blocks():
            out[r0:r1].index_add_(1, classes, block)
        return out.div_(self.vis_sums.unsqueeze(1))

    def to_infrared_from_classes(self, classes: torch.Tensor, num_classes: int) -> torch.Tensor:
        """``(N_r, K)`` ``A^{rv} @ onehot(classes)`` for ``(N_v,)`` int64 classes in ``[0, K)`` (as
        :meth:`to_visible_from_classes`: weighted plan rows added to their class's row)."""
        acc = torch.zeros(num_classes, self.values.shape[1], dtype=self.ir_sums.dtype, device=self.values.device)
        for r0, r1, block in self.kernel.blocks():
            acc.index_add_(0, classes[r0:r1], block.mul_(self.row_weight[r0:r1].unsqueeze(1)))
        return acc.T.div(self.ir_sums.unsqueeze(1))

    def dense(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A^{vr}, A^{rv})`` as dense matrices in the compute dtype (for checks; materialises both)."""
        p = self.values.to(self.row_weight.dtype)
        a_vr = p / p.sum(1, keepdim=True)
        pi_t = (self.row_weight.unsqueeze(1) * p).T
        return a_vr, pi_t / pi_t.sum(1, keepdim=True)


def instance_affinity(feats_v: torch.Tensor, feats_r: torch.Tensor, lam: float = 25.0, *,
                      storage_dtype: torch.dtype = torch.bfloat16, block_rows: Optional[int] = None,
                      order_v: Optional[torch.Tensor] = None, order_r: Optional[torch.Tensor] = None,
                      **sinkhorn_kwargs) -> HeterogeneousAffinity:
    """MULT's heterogeneous affinity: ``Pi = Sinkhorn(||F_v - F_r||^2, lam)`` with uniform marginals, held once.

    The kernel is built by row blocks into a single ``N_v x N_r`` array in ``storage_dtype`` and solved there
    (:func:`~.sinkhorn_blocks.sinkhorn_blocks`; module docstring), as ``log K_ij = 2 lam <f_i, g_j>``:
    ``exp(-lam ||f_i - g_j||^2)`` is that times ``exp(-lam ||f_i||^2)`` and ``exp(-lam ||g_j||^2)``, a row and a
    column scaling, which the Sinkhorn scalings absorb (the plan is the same).

    Args:
        feats_v: ``(N_v, D)``; feats_r: ``(N_r, D)`` (same device).
        lam: ``lambda`` (``reg = 1 / lam``), 25 in the paper.
        storage_dtype: ``torch.bfloat16`` (default), ``torch.float32`` (exact up to float32 rounding; twice the
            memory) or ``torch.float64`` (computed in float64; for checks).
        block_rows: rows per block of the products (default about 2^20 numbers; the kernel is built in blocks of
            at least 2^22 numbers, for the matrix product's efficiency).
        order_v, order_r: optional permutations: the affinity is that of ``feats_v[order_v]`` and
            ``feats_r[order_r]`` (the visible rows gathered block by block; the infrared features are copied once,
            permuted and scaled).
        sinkhorn_kwargs: for :func:`~.sinkhorn_blocks.sinkhorn_blocks` (default: the ``"marginal"`` rule with
            ``tol=1e-4``).

    Returns:
        :class:`HeterogeneousAffinity`.
    """
    if feats_v.dim() != 2 or feats_r.dim() != 2 or feats_v.shape[1] != feats_r.shape[1]:
        raise ValueError(f"features must be (N_v, D) and (N_r, D), got {tuple(feats_v.shape)} and "
                         f"{tuple(feats_r.shape)}")
    dtype = torch.float64 if storage_dtype == torch.float64 else torch.float32
    x, y = feats_v.detach().to(dtype), feats_r.detach().to(dtype)
    n_v, n_r = x.shape[0], y.shape[0]
    log_kernel_rows = _scaled_inner_products(x, y, 2.0 * lam, order_v, order_r, int8=storage_dtype == torch.bfloat16)

    kwargs = dict(sinkhorn_kwargs)
    if kwargs.get("stop_rule", "marginal") == "marginal":
        kwargs.setdefault("tol", INSTANCE_TOL)
    block_rows = default_block_rows(n_r) if block_rows is None else int(block_rows)
    result = sinkhorn_blocks(log_kernel_rows, (n_v, n_r), storage_dtype=storage_dtype, device=x.device,
                             block_rows=block_rows, build_rows=max(block_rows, default_block_rows(n_r, 1 << 22)),
                             fresh_rows=True, **kwargs)
    return HeterogeneousAffinity.from_solution(result.kernel, result)


def _scaled_inner_products(x: torch.Tensor, y: torch.Tensor, scale: float, order_x: Optional[torch.Tensor],
                           order_y: Optional[torch.Tensor], int8: bool) -> Callable[[int, int], torch.Tensor]:
    """``(r0, r1) -> scale * x[order_x[r0:r1]] @ y[order_y]^T`` as a new float tensor per call.

    The column order and the scale are applied once to ``y`` (a copy of ``N_y x D``, a fifth of the bfloat16 plan at
    SYSU size), so that a block is one product with no gather or scaling pass over it. With ``int8`` on CPU the
    products are :func:`~.inner_products.int8_inner_products` (1.6x faster, absolute error ~1e-5 before scaling);
    else float32/float64 matrix products.
    """
    y = y if order_y is None else y[order_y.to(y.device)]
    order_x = None if order_x is None else order_x.to(x.device)
    pick = (lambda r0, r1: slice(r0, r1)) if order_x is None else (lambda r0, r1: order_x[r0:r1])
    if int8 and x.device.type == "cpu":
        code_x, code_y = encode_int8(x), encode_int8(y)
        rhs, col_scale = prepare_rhs(code_y), code_y.scale.mul(scale)

        def rows(r0: int, r1: int) -> torch.Tensor:
            i = pick(r0, r1)
            return int8_inner_products(Int8Code(code_x.high[i], code_x.low[i], code_x.scale[i]), rhs, col_scale)
        return rows
    y_cols = y.mul(scale).T
    return lambda r0, r1: torch.mm(x[pick(r0, r1)], y_cols)


# --------------------------------------------------------------------------------------------------------------
# Steps 4-5: alternating fixed point, targets
# --------------------------------------------------------------------------------------------------------------
Operator = Callable[[torch.Tensor], torch.Tensor]


def _as_operator(a) -> Operator:
    return a if callable(a) else (lambda y: a @ y)


def _relative_change(new: torch.Tensor, old: torch.Tensor, rows: int = 4096) -> float:
    """``|new - old|_1 / |old|_1``, by row chunks (no full-size temporary)."""
    diff = sum(float((new[i:i + rows] - old[i:i + rows]).abs().sum()) for i in range(0, new.shape[0], rows))
    return diff / float(old.abs().sum())


def propagate_labels(y_own: torch.Tensor, y_cross: torch.Tensor, homo_own, homo_other, own_from_other,
                     other_from_own, alpha: float = 0.2, max_iter: int = 20, tol: float = 1e-2,
                     own_from_other_classes: Optional[Callable[[torch.Tensor, int], torch.Tensor]] = None
                     ) -> tuple[torch.Tensor, torch.Tensor, int, float]:
    """The alternating fixed point of MULT (Eq. 16) in one label space of ``K`` classes.

    Visible space: own = visible (``Y^v``, ``A^v``), other = infrared (``Y^{r->v}``, ``A^r``), ``own_from_other =
    A^{vr}``, ``other_from_own = A^{rv}``; the infrared space swaps the roles. Each iteration::

        Y_own   <- (1 - alpha) own_from_other(Y_cross) + alpha y_own
        Y_cross <- (1 - alpha) other_from_own(Y_own)   + alpha y_cross
        Y_own   <- (homo_own @ Y_own + Y_own) / 2;     Y_cross <- (homo_other @ Y_cross + Y_cross) / 2

    then both are renormalised to rows summing to 1 (a no-op in exact arithmetic) and the change
    ``max(|Y_own - Y_own_prev|_1 / |Y_own_prev|_1, same for Y_cross)`` is measured; the loop stops when it is at most
    ``tol`` or after ``max_iter`` iterations (the authors' rule).

    Args:
        y_own: ``(N_own, K)`` and y_cross: ``(N_other, K)`` initial row-stochastic labels (the start and the
            fidelity terms); ``y_cross`` may also be an ``(N_other,)`` int64 vector of classes, meaning one-hot rows
            (MULT's case; no ``N_other x K`` matrix is then kept for it).
        homo_own, homo_other: ``(N_own, N_own)`` / ``(N_other, N_other)`` row-stochastic affinities (sparse or dense
            tensors, or callables ``Y -> A @ Y``).
        own_from_other: ``(N_other, K) -> (N_own, K)``; other_from_own: ``(N_own, K) -> (N_other, K)`` (callables or
            matrices).
        alpha, max_iter, tol: as above (0.2, 20, 1e-2 in the paper's code).
        own_from_other_classes: optional ``(classes, K) -> own_from_other(onehot(classes))``, used for the first
            product when ``y_cross`` is given by its classes (e.g.
            :meth:`HeterogeneousAffinity.to_visible_from_classes`: a pass instead of a matrix product).

    Returns:
        ``(Y_own, Y_cross, iterations, change)``: float32 ``(N_own, K)`` and ``(N_other, K)``, the iterations run and
        the last change.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    homo_own, homo_other = _as_operator(homo_own), _as_operator(homo_other)
    own_from_other, other_from_own = _as_operator(own_from_other), _as_operator(other_from_own)
    y_own = y_own.float()
    k = y_own.shape[1]
    hard = y_cross.dim() == 1  # one-hot rows given by their classes: no N_other x K matrix is kept for them
    if hard:
        cross_rows = torch.arange(y_cross.shape[0], device=y_cross.device)
        first_product = (own_from_other_classes(y_cross, k).float() if own_from_other_classes is not None
                         else own_from_other(F.one_hot(y_cross, k).float()))
    else:
        y_cross = y_cross.float()
        first_product = own_from_other(y_cross)
    prev_own, prev_cross, cur_cross = y_own, None if hard else y_cross, None
    change, it = float("inf"), 0
    while it < max_iter:
        product = first_product if it == 0 else own_from_other(cur_cross)
        first_product = None
        cur_own = product.mul_(1.0 - alpha).add_(y_own, alpha=alpha)
        del product
        cur_cross = other_from_own(cur_own).mul_(1.0 - alpha)
        if hard:
            cur_cross[cross_rows, y_cross] += alpha
        else:
            cur_cross.add_(y_cross, alpha=alpha)
        cur_own = homo_own(cur_own).add_(cur_own).mul_(0.5)
        cur_cross = homo_other(cur_cross).add_(cur_cross).mul_(0.5)
        cur_own.div_(cur_own.sum(1, keepdim=True))
        cur_cross.div_(cur_cross.sum(1, keepdim=True))
        it += 1
        change_cross = (_relative_change(cur_cross, prev_cross) if prev_cross is not None
                        else _change_from_onehot(cur_cross, y_cross, cross_rows))
        change = max(_relative_change(cur_own, prev_own), change_cross)
        prev_own, prev_cross = cur_own, cur_cross
        if change <= tol:
            break
    return prev_own, prev_cross, it, change


def _change_from_onehot(new: torch.Tensor, labels: torch.Tensor, rows: torch.Tensor) -> float:
    """``|new - onehot(labels)|_1 / N`` without the one-hot matrix: ``sum |new| - sum |new_il| + sum |new_il - 1|``."""
    at = new[rows, labels]
    return float(new.abs().sum() - at.abs().sum() + (at - 1.0).abs().sum()) / new.shape[0]


def soft_targets(y_hat: torch.Tensor, beta: float = 0.7, inplace: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``(labels, targets)``: ``y = argmax Y_hat`` (``(N,)`` int64) and ``beta onehot(y) + (1 - beta) Y_hat``
    (written into ``y_hat`` with ``inplace=True``)."""
    labels = y_hat.argmax(1)
    targets = y_hat.mul_(1.0 - beta) if inplace else y_hat * (1.0 - beta)
    targets[torch.arange(len(labels), device=labels.device), labels] += beta
    return labels, targets


# --------------------------------------------------------------------------------------------------------------
# Top level
# --------------------------------------------------------------------------------------------------------------
@dataclass
class LabelSpaceTransfer:
    """MULT's output in one label space (``K`` classes of the "own" modality).

    Attributes:
        own_labels: ``(N_own,)`` int64, e.g. ``y^v`` (visible images, visible space).
        cross_labels: ``(N_other,)`` int64, e.g. ``y^{r->v}`` (infrared images in the visible space).
        own_targets: ``(N_own, K)`` float32 ``beta onehot + (1 - beta) Y_hat`` (rows sum to 1).
        cross_targets: ``(N_other, K)`` float32, likewise.
        initial_cross_labels: ``(N_other,)`` int64, the Sinkhorn-to-centroids labels before the transfer.
        iterations: fixed-point iterations run; change: the last relative L1 change.
    """

    own_labels: torch.Tensor
    cross_labels: torch.Tensor
    own_targets: torch.Tensor
    cross_targets: torch.Tensor
    initial_cross_labels: torch.Tensor
    iterations: int
    change: float


@dataclass
class MULTResult:
    """Both label spaces of MULT.

    Attributes:
        visible: the visible label space (``K_v``): own = visible images, cross = infrared images.
        infrared: the infrared label space (``K_r``): own = infrared images, cross = visible images.
        plan_iterations, plan_marginal_error: the instance plan's Sinkhorn solve.
    """

    visible: LabelSpaceTransfer
    infrared: LabelSpaceTransfer
    plan_iterations: int
    plan_marginal_error: float


def _cluster_order(labels: torch.Tensor) -> torch.Tensor:
    """Permutation sorting the images by cluster, outliers last (stable)."""
    key = torch.where(labels >= 0, labels, torch.full_like(labels, torch.iinfo(labels.dtype).max))
    return torch.argsort(key, stable=True)


def _transfer(y_own, cross_init, homo_own, homo_other, own_from_other, other_from_own, own_from_classes, alpha,
              beta, max_iter, tol, order_own, order_other) -> LabelSpaceTransfer:
    own, cross, it, change = propagate_labels(y_own, cross_init, homo_own, homo_other, own_from_other,
                                              other_from_own, alpha, max_iter, tol, own_from_classes)
    own_labels, own_targets = soft_targets(own, beta, inplace=True)
    cross_labels, cross_targets = soft_targets(cross, beta, inplace=True)

    def unsort(x, order):  # back to input order
        out = torch.empty_like(x)
        out[order] = x
        return out

    return LabelSpaceTransfer(
        own_labels=unsort(own_labels, order_own), cross_labels=unsort(cross_labels, order_other),
        own_targets=unsort(own_targets, order_own), cross_targets=unsort(cross_targets, order_other),
        initial_cross_labels=unsort(cross_init, order_other), iterations=it, change=change)


def mult_label_transfer(
    feats_v: torch.Tensor,
    feats_r: torch.Tensor,
    labels_v: torch.Tensor,
    labels_r: torch.Tensor,
    graph_v: NeighbourGraph,
    graph_r: NeighbourGraph,
    *,
    temperature: float = 0.05,
    lam: float = 25.0,
    alpha: float = 0.2,
    beta: float = 0.7,
    max_iter: int = 20,
    tol: float = 1e-2,
    storage_dtype: torch.dtype = torch.bfloat16,
    centroid_sinkhorn: Optional[dict] = None,
    instance_sinkhorn: Optional[dict] = None,
    timings: Optional[dict] = None,
) -> MULTResult:
    """MULT label transfer in both label spaces (module docstring, steps 1-5).

    Args:
        feats_v: ``(N_v, D)`` visible features; feats_r: ``(N_r, D)`` infrared features (same device; used as
            given, the authors L2-normalise them).
        labels_v: ``(N_v,)`` int64 visible cluster ids in ``[-1, K_v)`` (-1: outlier; every class used);
            labels_r: ``(N_r,)`` likewise.
        graph_v, graph_r: the k-reciprocal Jaccard graphs of each modality's features
            (:func:`~.jaccard.jaccard_distance`), ``N_v`` and ``N_r`` nodes.
        temperature: of the initial soft labels (0.05). lam: of both Sinkhorn problems (25).
        alpha: fidelity weight of the fixed point (0.2); max_iter, tol: its stopping rule (20, 1e-2).
        beta: weight of the one-hot part of the soft targets (0.7).
        storage_dtype: of the instance plan (``torch.bfloat16``, or ``torch.float32`` for the exact plan).
        centroid_sinkhorn: keyword arguments of the two instance-to-centroid Sinkhorn solves (default
            ``CENTROID_SINKHORN``: an L1 marginal error of 1e-5; ``{"stop_rule": "otla"}`` for the authors' rule).
        instance_sinkhorn: keyword arguments of the instance plan's solve (default: ``tol=1e-4`` of the
            ``"marginal"`` rule).
        timings: optional dict that receives the seconds of each step (``initial_labels``, ``homogeneous``,
            ``instance_plan``, ``propagation_visible``, ``propagation_infrared``).

    Returns:
        :class:`MULTResult`; every tensor on the features' device, in input order.
    """
    if feats_v.dim() != 2 or feats_r.dim() != 2 or feats_v.shape[1] != feats_r.shape[1]:
        raise ValueError(f"features must be (N_v, D) and (N_r, D), got {tuple(feats_v.shape)} and "
                         f"{tuple(feats_r.shape)}")
    for name, feats, labels, graph in (("visible", feats_v, labels_v, graph_v),
                                        ("infrared", feats_r, labels_r, graph_r)):
        if labels.shape != (feats.shape[0],):
            raise ValueError(f"{name} labels must have shape ({feats.shape[0]},), got {tuple(labels.shape)}")
        if graph.num_nodes != feats.shape[0]:
            raise ValueError(f"{name} graph has {graph.num_nodes} nodes, the features {feats.shape[0]} rows")
    device = feats_v.device
    k_v, k_r = _num_classes(labels_v, "labels_v"), _num_classes(labels_r, "labels_r")
    order_v, order_r = _cluster_order(labels_v.cpu()).to(device), _cluster_order(labels_r.cpu()).to(device)
    with torch.no_grad():
        x_v, x_r = feats_v.detach().float(), feats_r.detach().float()  # input order (no copy for float32)
        lab_v, lab_r = labels_v.to(device), labels_r.to(device)
        with _timed(timings, "initial_labels", device):
            c_v, c_r = cluster_centroids(x_v, lab_v, k_v), cluster_centroids(x_r, lab_r, k_r)
            y_v = initial_soft_labels(x_v, c_v, temperature)[order_v]  # cluster order from here on
            kw = CENTROID_SINKHORN if centroid_sinkhorn is None else centroid_sinkhorn
            cross_r2v = cross_labels_by_sinkhorn(x_r, c_v, lam, **kw)[0][order_r]  # infrared -> visible classes
            cross_v2r = cross_labels_by_sinkhorn(x_v, c_r, lam, **kw)[0][order_v]
        with _timed(timings, "homogeneous", device):
            homo_v = homogeneous_affinity(graph_v, order_v.cpu(), device)
            homo_r = homogeneous_affinity(graph_r, order_r.cpu(), device)
        with _timed(timings, "instance_plan", device):
            hetero = instance_affinity(x_v, x_r, lam, storage_dtype=storage_dtype, order_v=order_v, order_r=order_r,
                                       **(instance_sinkhorn or {}))
        settings = (alpha, beta, max_iter, tol)
        with _timed(timings, "propagation_visible", device):
            visible = _transfer(y_v, cross_r2v, homo_v, homo_r, hetero.to_visible, hetero.to_infrared,
                                hetero.to_visible_from_classes, *settings, order_v, order_r)
            del y_v
        with _timed(timings, "initial_labels", device):  # made only now, to keep the peak memory down
            y_r = initial_soft_labels(x_r, c_r, temperature)[order_r]
        with _timed(timings, "propagation_infrared", device):
            infrared = _transfer(y_r, cross_v2r, homo_r, homo_v, hetero.to_infrared, hetero.to_visible,
                                 hetero.to_infrared_from_classes, *settings, order_r, order_v)
    return MULTResult(visible=visible, infrared=infrared, plan_iterations=hetero.iterations,
                      plan_marginal_error=hetero.marginal_error)
