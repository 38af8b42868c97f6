"""DOTLA: Dual Optimal Transport Label Assignment (Eq. 3-5 of DOTLA: Cheng et al., "Unsupervised Visible-Infrared
Person ReID by Collaborative Learning with Neighbor-Guided Label Refinement", ACM MM'23, Sec. 3.2).

Each modality keeps its own pseudo labels (``y^v`` from the visible clustering, ``K_v`` classes; ``y^r`` from the
infrared one, ``K_r`` classes) and its own classifier head (``phi_v``, ``phi_r``). DOTLA assigns every image a
label from the *other* modality's label space, in both directions at once:

* infrared -> visible (Eq. 3, used by ``L_CV``, Eq. 4): ``P^r = softmax(phi_v(f^r))`` is ``N_r x K_v``, the
  visible classifier's predictions on the infrared images; ``y^{r<-v}_i = argmax_j Q^r_ij`` with::

      Q^r = argmin_Q <Q, -log P^r> + KL(Q || alpha beta^T) / lam,   Q 1 = alpha = 1/N_r,  Q^T 1 = beta = 1/K_v
          = diag(u) (P^r)^lam diag(v)                                 (Sinkhorn-Knopp, lam = 25)

* visible -> infrared (the same Eq. 3 mirrored, used by ``L_CR``, Eq. 5): ``P^v = softmax(phi_r(f^v))``
  (``N_v x K_r``) gives ``y^{v<-r}``.

The transport is solved by :func:`vireid_plugins.association.sinkhorn.assign_labels_by_sinkhorn` in the log
domain (``(P^r)^25`` of softmax probabilities underflows to zeros in float32), and the label is read off by row:
``y_i = argmax_j Q_ij = argmax_j (log P_ij + log v_j / lam)``.

Column marginal (``marginals``):

* ``"uniform"`` (the paper's Eq. 3): ``beta = 1/K``: the ``N`` images are split equally among the ``K`` classes.
* ``"cluster_size"`` (our option, not in the paper): ``beta_j`` proportional to the number of images of the
  target modality's cluster ``j`` (``cluster_sizes_vis`` for infrared -> visible, ``cluster_sizes_ir`` for visible
  -> infrared). DBSCAN clusters are never equally sized; with this marginal a large visible identity receives
  proportionally more infrared images. Sizes come from the pseudo labels, e.g.
  ``torch.bincount(y_v[y_v >= 0], minlength=K_v)``; every size must be positive.

* ``"relaxed"`` (our option, not in the paper): uniform targets ``alpha = 1/N`` and ``beta = 1/K``, both
  relaxed by KL penalties of weight ``reg_m`` (the plan of POT's ``ot.sinkhorn_unbalanced(alpha, beta, -log P,
  1 / lam, reg_m)``): a class may then receive more or fewer images than ``N / K`` when the predictions call for it
  (``reg_m -> inf`` gives back ``"uniform"``; a ``(rows, columns)`` pair relaxes them separately, ``inf`` keeping
  one exact).

The row marginal is uniform (``alpha = 1/N``: each image receives exactly one label) in the first two cases.

The predictions are checked: probabilities must be finite, non-negative and sum to 1 per row (within
``prob_atol``); log-probabilities (``log_input=True``) must have a row-wise ``logsumexp`` of 0 (same tolerance).
Raw logits, or log-probabilities passed as probabilities, raise ``ValueError``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from vireid_plugins.association.sinkhorn import SinkhornResult, assign_labels_by_sinkhorn

__all__ = ["DOTLAResult", "dual_optimal_transport_labels"]


@dataclass
class DOTLAResult:
    """Both directions of DOTLA.

    Attributes:
        ir_to_vis_labels: ``(N_r,)`` int64, ``y^{r<-v}`` in ``[0, K_v)``: visible labels of the infrared images.
        vis_to_ir_labels: ``(N_v,)`` int64, ``y^{v<-r}`` in ``[0, K_r)``: infrared labels of the visible images.
        ir_to_vis: the :class:`SinkhornResult` of ``Q^r`` (``N_r x K_v``).
        vis_to_ir: the :class:`SinkhornResult` of ``Q^v`` (``N_v x K_r``).
    """

    ir_to_vis_labels: torch.Tensor
    vis_to_ir_labels: torch.Tensor
    ir_to_vis: SinkhornResult
    vis_to_ir: SinkhornResult

    def log_plans(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log Q^r, log Q^v)``, ``N_r x K_v`` and ``N_v x K_r`` (materialised on demand)."""
        return self.ir_to_vis.log_plan(), self.vis_to_ir.log_plan()

    def plans(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Q^r, Q^v)``; tiny entries underflow to 0 (use :meth:`log_plans` for the exact values)."""
        return self.ir_to_vis.plan(), self.vis_to_ir.plan()


def _column_marginal(marginals: str, sizes, num_classes: int, name: str) -> Optional[torch.Tensor]:
    if marginals in ("uniform", "relaxed"):
        return None
    if sizes is None:
        raise ValueError(f'marginals="cluster_size" needs {name}')
    sizes = torch.as_tensor(sizes, dtype=torch.float64).flatten()
    if sizes.numel() != num_classes:
        raise ValueError(f"{name} has {sizes.numel()} entries, the predictions have {num_classes} classes")
    if not bool((sizes > 0).all()):
        raise ValueError(f"{name} must be positive (drop empty clusters from the classifier first)")
    return sizes / sizes.sum()


def _check_predictions(p: torch.Tensor, name: str, log_input: bool, atol: float) -> None:
    """Rows of probabilities (or log-probabilities) summing to 1, else ``ValueError`` naming the first bad rows."""
    if p.dim() != 2:
        raise ValueError(f"{name} must be N x K, got shape {tuple(p.shape)}")
    if p.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(p.shape)}): need N >= 1 images and K >= 1 classes")
    p = p.detach().double()
    if log_input:
        if bool(torch.isnan(p).any()) or bool((p > atol).any()):
            raise ValueError(f"{name}: log-probabilities must be <= 0 and not NaN (logits? apply log_softmax)")
        total = torch.logsumexp(p, 1)
        what = "logsumexp of each row must be 0 (log_softmax output; logits?)"
    else:
        if not bool(torch.isfinite(p).all()) or bool((p < 0).any()):
            raise ValueError(f"{name}: probabilities must be finite and >= 0 (logits or log-probabilities? apply "
                             "softmax, or pass log-probabilities with log_input=True)")
        total = p.sum(1)
        what = "each row must sum to 1 (softmax output; logits?)"
    off = (total - (0.0 if log_input else 1.0)).abs() > atol
    if bool(off.any()):
        rows = off.nonzero().squeeze(1)
        raise ValueError(f"{name}: {what}; rows {rows.tolist()[:5]} give {total[rows[:5]].tolist()} "
                         f"(tolerance {atol:g})")


def _warm(previous: Optional[SinkhornResult], num_classes: int) -> Optional[torch.Tensor]:
    if previous is None or previous.log_v.shape != (num_classes,):
        return None
    return previous.log_v


def dual_optimal_transport_labels(
    probs_ir_to_vis: torch.Tensor,
    probs_vis_to_ir: torch.Tensor,
    lam: float = 25.0,
    marginals: str = "uniform",
    cluster_sizes_vis=None,
    cluster_sizes_ir=None,
    *,
    log_input: bool = False,
    warm_start: Optional[DOTLAResult] = None,
    reg_m=None,
    prob_atol: float = 1e-3,
    **sinkhorn_kwargs,
) -> DOTLAResult:
    """DOTLA (Eq. 3-5 of DOTLA): transport infrared images into the visible label space and visible images into the
    infrared label space, and read the labels off the two plans.

    Args:
        probs_ir_to_vis: ``(N_r, K_v)`` ``P^r = softmax(phi_v(f^r))``, the visible classifier's predictions on the
            infrared images (log-probabilities with ``log_input=True``, e.g. ``phi_v(f_r).log_softmax(1)``, which
            keeps the tails softmax rounds to 0).
        probs_vis_to_ir: ``(N_v, K_r)`` ``P^v = softmax(phi_r(f^v))``, the infrared classifier's predictions on the
            visible images.
        lam: ``lambda`` of Eq. 3 (25 in the paper).
        marginals: ``"uniform"`` (Eq. 3: ``beta = 1/K``), ``"cluster_size"`` (``beta`` proportional to the target
            clusters' sizes) or ``"relaxed"`` (uniform targets, KL-relaxed by ``reg_m``); see the module docstring.
        cluster_sizes_vis: ``(K_v,)`` sizes of the visible clusters (``marginals="cluster_size"`` only).
        cluster_sizes_ir: ``(K_r,)`` sizes of the infrared clusters (``marginals="cluster_size"`` only).
        log_input: both inputs are log-probabilities.
        reg_m: ``marginals="relaxed"`` only (required there): the weight of the KL penalties on both marginals, in
            the units of the cost ``-log P`` (POT's ``reg_m`` with ``reg = 1 / lam``), or a ``(rows, columns)``
            pair.
        prob_atol: tolerance of the check that every row of the predictions sums to 1 (``logsumexp`` 0 with
            ``log_input``).
        warm_start: the previous epoch's result: its column scalings start the two solves (each direction only if
            its class count is unchanged, e.g. with the fixed pseudo labels of the spec; ignored otherwise). Same
            solution; fewer iterations when the predictions changed little (about 1.5x fewer at SYSU scale for
            logit changes of 0.05), about as many otherwise.
        sinkhorn_kwargs: passed to :func:`vireid_plugins.association.sinkhorn.sinkhorn_log` for both directions
            (``tol``, ``max_iter``, ``stop_rule="otla"`` for the OTLA / MULT stopping rule, ``method``, ``omega``,
            ``eps_scaling`` for near-degenerate toy problems, ...).

    Returns:
        :class:`DOTLAResult` with ``ir_to_vis_labels`` ``(N_r,)`` and ``vis_to_ir_labels`` ``(N_v,)`` (int64, on the
        inputs' devices) and the two Sinkhorn results (``N_r x K_v`` and ``N_v x K_r`` log plans).
    """
    if marginals not in ("uniform", "cluster_size", "relaxed"):
        raise ValueError(f'marginals must be "uniform", "cluster_size" or "relaxed", got {marginals!r}')
    if (marginals == "relaxed") != (reg_m is not None):
        raise ValueError(f'reg_m is required with marginals="relaxed" and only there (marginals={marginals!r}, '
                         f"reg_m={reg_m!r})")
    for name, p in (("probs_ir_to_vis", probs_ir_to_vis), ("probs_vis_to_ir", probs_vis_to_ir)):
        _check_predictions(torch.as_tensor(p), name, log_input, prob_atol)
    beta_v = _column_marginal(marginals, cluster_sizes_vis, probs_ir_to_vis.shape[1], "cluster_sizes_vis")
    beta_r = _column_marginal(marginals, cluster_sizes_ir, probs_vis_to_ir.shape[1], "cluster_sizes_ir")
    init_v = _warm(warm_start.ir_to_vis if warm_start is not None else None, probs_ir_to_vis.shape[1])
    init_r = _warm(warm_start.vis_to_ir if warm_start is not None else None, probs_vis_to_ir.shape[1])
    y_r2v, q_r = assign_labels_by_sinkhorn(probs_ir_to_vis, lam, beta_v, log_input=log_input, init_log_v=init_v,
                                           reg_m=reg_m, **sinkhorn_kwargs)
    y_v2r, q_v = assign_labels_by_sinkhorn(probs_vis_to_ir, lam, beta_r, log_input=log_input, init_log_v=init_r,
                                           reg_m=reg_m, **sinkhorn_kwargs)
    return DOTLAResult(ir_to_vis_labels=y_r2v, vis_to_ir_labels=y_v2r, ir_to_vis=q_r, vis_to_ir=q_v)
