"""Entropic optimal transport (Sinkhorn-Knopp) in the log domain: the one solver every association method shares.

Problem and conventions
-----------------------
For a cost ``M`` (``N x K``), marginals ``a`` (``N``, rows) and ``b`` (``K``, columns) with ``sum(a) = sum(b)``
and a regularisation ``reg > 0``, the solver returns the plan of POT's ``ot.sinkhorn(a, b, M, reg)``::

    Q = argmin_{Q 1 = a, Q^T 1 = b}  <Q, M> - reg * H(Q)      (H(Q) = -sum Q_ij (log Q_ij - 1))
      = diag(u) K diag(v),   K = exp(-M / reg),

i.e. ``log Q_ij = log K_ij + log_u_i + log_v_j``. Everything is written with the *log kernel*
``log K = -M / reg``; three entry points differ only in how they build it:

* :func:`sinkhorn_log` ``(log_kernel, a, b)``: ``log K`` given directly (the core).
* :func:`sinkhorn` ``(cost, a, b, reg)``: POT's convention, ``log K = -cost / reg``.
* :func:`sinkhorn_power` ``(probs, lam, a, b)``: the OTLA / DOTLA / MULT form ``Q = diag(u) P^lam diag(v)``, i.e.
  ``cost = -log P`` and ``reg = 1 / lam`` (Eq. 3 of DOTLA: ``min <Q, -log P> + KL(Q || a b^T) / lam``; the KL term
  and ``-H`` differ by a constant and a linear term that the marginal constraints fix, so the plans are equal).
  ``P^25`` of softmax probabilities underflows to exact zeros in float32; ``lam * log P`` never does.

:func:`assign_labels_by_sinkhorn` is the label read-off used by DOTLA and MULT-style transport:
``y_i = argmax_j Q_ij = argmax_j (log K_ij + log_v_j) = argmax_j (log P_ij + log_v_j / lam)`` (the row scaling
``u_i`` does not change a row's argmax).

Shapes: ``log K`` is ``(*B, N, K)`` with any leading batch dims ``*B`` (none for a single problem); ``a`` is
``(N,)`` or ``(*B, N)``, ``b`` is ``(K,)`` or ``(*B, K)``; ``None`` means uniform (``1/N``, ``1/K``). ``N`` and ``K``
may differ. Marginals must be positive; each problem's ``a`` and ``b`` should have the same total mass (the solver
does not renormalise them; :func:`assign_labels_by_sinkhorn` does). CPU and CUDA, float32 or float64 (half
precisions are computed in float32); no gradients are tracked.

Algorithm
---------
Each iteration updates the column potential, then the row potential (POT's order)::

    log_v <- log b - logsumexp_i(log K_ij + log_u_i)          (columns now sum to b)
    log_u <- log a - logsumexp_j(log K_ij + log_v_j)          (rows now sum to a)

so after every (plain) iteration the rows are exact and the error is the violation of the column marginal. The
start is a uniform column scaling (``log_v = 0``) with exact rows, as in OTLA / MULT (POT starts from
``log_u = 0``; the fixed point is the same).

``method="log"``: both updates are literal log-sum-exps over the ``N x K`` matrix (two per iteration). Our
log-sum-exp drops terms below ``exp(-50)`` (float32; ``exp(-100)`` in float64) times the row (column) maximum, a
relative error below ``1e-17``: ``exp`` of very negative float32 arguments, and arithmetic on denormal results,
take a slow path on the CPU (10-100x slower).

``method="stabilized"`` (default): log-domain stabilisation by absorption, with a sparse kernel (Schmitzer,
"Stabilized sparse scaling algorithms for entropy regularized transport problems", SIAM J. Sci. Comput. 2019).
The potentials stay in the log domain, but the kernel is exponentiated once *around the current column
potential* ``g0``: ``Kt_ij = exp(log K_ij + g0_j - m_i)`` with ``m_i`` the row maximum (less a constant shift,
see ``_kernel_range``), so nothing under- or overflows. Each log-sum-exp becomes a matrix-vector product with
small correction scalings: ``logsumexp_j(log K_ij + g_j) = log(sum_j Kt_ij exp(g_j - g0_j)) + m_i`` and
``logsumexp_i(log K_ij + f_i) = log(sum_i Kt_ij exp(f_i + m_i)) - g0_j`` (the scalings are divided by their
maximum, so products stay normal numbers). Entries below ``exp(-60)`` (float64: ``exp(-100)``) of their row's
maximum are dropped; at ``lam = 25`` on softmax predictions only a few classes per row survive, so ``Kt`` is
stored sparse (gathers and ``index_add_``; dense ``matmul`` when more than ``sparse_density`` of it survives).
When the spread ``max - min`` of the drift ``g - g0`` exceeds ``absorb_threshold`` (30), ``Kt`` is rebuilt (a
few passes over the matrix), so a dropped entry stays below ``exp(-60 + 30)`` of its row's maximum. A non-finite
product (e.g. a column whose entries were all dropped) falls back to the exact log-domain step and forces a
rebuild. The iterates equal ``method="log"``'s up to float rounding (the tests check both against POT), for the
price of two sparse products per iteration instead of two full log-sum-exps (over 20x cheaper on CPU at
11,909 x 500).

Over-relaxation (``omega``): ``f <- (1 - w) f + w f_hat`` for both potentials (Thibault, Chizat, Dossal &
Papadakis, "Overrelaxed Sinkhorn-Knopp algorithm for regularized optimal transport", Algorithms 2021; Lehmann,
von Renesse, Sambale & Uschmajew, "A note on overrelaxation in the Sinkhorn algorithm", Optim. Lett. 2022). It
keeps the fixed point (the same plan) and turns a linear rate ``theta`` close to 1 (the regime of a large ``lam``
on peaky predictions, where plain Sinkhorn needs hundreds of iterations) into about ``1 - sqrt(1 - theta)``, with
the optimal ``w = 2 / (1 + sqrt(1 - theta))`` (Young's SOR theory). Safeguard (Thibault et al.): a coordinate
takes the relaxed step only where it still increases the dual objective (``log((exp(s) - 1) / s) <= delta`` with
``delta = f_hat - f``, ``s = w delta``; always true for ``delta <= 0``), else the plain step; the dual increases
monotonically, so the iteration converges for any ``1 <= w < 2``. ``omega="auto"`` (default) estimates ``theta``
from the error decrease of the first ``warmup`` plain iterations (Lehmann et al., Eq. 5), then re-estimates it
every ``adapt_every`` iterations from the relaxed rate ``rho`` (``theta = (rho + w - 1)^2 / (rho w^2)``), keeping
the largest ``w`` found (capped at 1.95): the plain rate keeps growing as the plan sharpens. ``omega=1`` is plain
Sinkhorn. Relaxed rows are not exact, and the column error of the relaxed iterate overstates the distance to the
marginals, so every ``probe_every`` iterations the error is measured on the row-exact plan ``(f_hat, g)`` (one
extra product), which is also what is returned.

Other options: ``init_log_v`` warm-starts the column potential (e.g. from the previous epoch); ``eps_scaling``
solves coarser problems (``reg`` doubled per stage) first, for near-degenerate plans on which Sinkhorn plateaus;
``loop_threads`` (default 1) runs the small per-iteration ops single-threaded on CPU.

Stopping rules (``stop_rule``)
------------------------------
* ``"marginal"`` (default): ``marginal_error = sum_j |sum_i Q_ij - b_j|`` (L1 violation of the column marginal,
  rows being exact) below ``tol`` (default ``1e-6``; the float32 rounding floor is about ``1e-7``), checked every
  ``check_every`` iterations (the error comes for free from the next column update; checking is a host sync, so
  ``check_every`` defaults to 1 on CPU and 10 on CUDA). POT checks the L2 norm of the same vector every 10
  iterations. With over-relaxation the error is measured on the row-exact plan every ``probe_every`` iterations
  (one extra product).
* ``"otla"``: the rule of the OTLA / MULT solvers: ``sum_j |v_j / v_new_j - 1| < tol`` with ``tol = 0.1``, at most
  ``max_iter = 500`` iterations, checked every 10 (``v`` is the column scaling before and after the column update;
  on stopping ``v_new`` is kept, like their ``beta = beta_new``). Its tolerance is loose (a sum over ``K``
  classes); the reported ``marginal_error`` tells how far from the marginals it stopped. Defaults to ``omega=1``.

Both rules stop when *every* problem of a batch meets the tolerance, or at ``max_iter`` (``converged=False``).

KL-relaxed (unbalanced) marginals (``reg_m``)
---------------------------------------------
With ``reg_m`` the marginal constraints become penalties, and the plan is that of POT's
``ot.sinkhorn_unbalanced(a, b, M, reg, reg_m)`` (``reg_type="kl"``, its default; Chizat, Peyre, Schmitzer &
Vialard, "Scaling algorithms for unbalanced optimal transport problems", Math. Comp. 2018)::

    Q = argmin_Q  <Q, M> + reg KL(Q || a b^T) + reg_m_a KL(Q 1 || a) + reg_m_b KL(Q^T 1 || b).

``reg_m`` is a number (both marginals) or a ``(rows, columns)`` pair, in the units of the cost ``M``; ``inf``
keeps that marginal exact (``(inf, r)``: semi-relaxed), ``None`` (default) both. :func:`sinkhorn_log`, whose log
kernel is ``-M / reg`` with ``reg`` implicit, takes ``reg_m / reg``; :func:`sinkhorn` and :func:`sinkhorn_power`
convert. The ``KL(Q || a b^T)`` regulariser puts ``log a_i + log b_j`` into the plan; with the potentials
``f = log u + log a`` and ``g = log v + log b`` (the plan stays ``exp(log K + f_i + g_j)``) the updates are those
above with the log-sum-exps scaled by ``r = reg_m / (reg_m + reg)``::

    g <- log b - r_b logsumexp_i(log K_ij + f_i),      f <- log a - r_a logsumexp_j(log K_ij + g_j),

and the error is ``sum_j |exp(g_j + r_b logsumexp_i(log K_ij + f_i)) - b_j|``, the residual of the column update
(0 at the solution; the column-marginal violation when ``r_b = 1``). Over-relaxation is not used (``omega=1``):
its safeguard assumes exact marginals. A large ``reg_m`` converges slowly: the total mass of the plan settles at
a rate of about ``r^2`` per iteration (``r -> 1``), as in POT.

Input validation
----------------
Empty kernels, NaN or ``+inf`` entries, and rows or columns without a finite log-kernel entry raise
``ValueError`` naming the entries (such a row cannot carry its mass: the plan would be NaN, and the label of an all
``-inf`` row an arbitrary 0); so do non-positive or non-finite marginals, and negative or NaN probabilities given to
:func:`sinkhorn_power` / :func:`assign_labels_by_sinkhorn`.

Large dense kernels
-------------------
:func:`~vireid_plugins.association.sinkhorn_blocks.sinkhorn_blocks` runs the same iterations on a kernel built
row block by row block and held once (float32 or bfloat16), for instance-to-instance plans too large for two
copies.
"""
from __future__ import annotations

import math
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Optional, Union

import torch
import torch.nn.functional as F

__all__ = ["SinkhornResult", "assign_labels_by_sinkhorn", "check_log_kernel", "sinkhorn", "sinkhorn_log",
           "sinkhorn_power"]


def _floor(dtype: torch.dtype) -> float:
    """Log-sum-exp: ``exp(x - max)`` with ``x - max`` below this counts as 0; ``exp(-50) = 2e-22`` relative to the
    maximum in float32 (far below the rounding) keeps ``exp`` out of the denormal range (below ``exp(-87.3)``, where
    ``exp``, ``log`` and ``mul`` take a slow path on CPUs); ``exp(-100)`` in float64."""
    return -50.0 if dtype == torch.float32 else -100.0


def _kernel_range(dtype: torch.dtype) -> tuple[float, float]:
    """Absorbed kernel: ``(keep, shift)``: entries above ``exp(keep)`` times their row's maximum are kept and stored
    times ``exp(shift)``, i.e. in ``[exp(keep + shift), exp(shift)]``. float32: ``(-60, 20)``: products with the
    (max-normalised) scalings, down to about ``exp(-absorb_threshold - log K)``, stay normal numbers (above
    ``exp(-87.3)``) and row sums far from overflow; float64: ``(-100, 0)``."""
    return (-60.0, 20.0) if dtype == torch.float32 else (-100.0, 0.0)


_OMEGA_MAX = 1.95
_THETA_MAX = 4.0 * (_OMEGA_MAX - 1.0) / _OMEGA_MAX**2  # the theta whose optimal omega is _OMEGA_MAX


# --------------------------------------------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------------------------------------------
@dataclass
class SinkhornResult:
    """Output of the solvers: the plan is ``exp(log_kernel + log_u[..., :, None] + log_v[..., None, :])``.

    Attributes:
        log_kernel: ``(*B, N, K)`` the log kernel ``-cost / reg`` (a reference to the solver's, not a copy);
            ``None`` when the kernel is held by ``kernel`` instead (:func:`~.sinkhorn_blocks.sinkhorn_blocks`).
        log_u: ``(*B, N)`` log row scaling (row dual potential divided by ``reg``).
        log_v: ``(*B, K)`` log column scaling. The pair is defined up to ``(log_u + c, log_v - c)`` (exact
            marginals only: with ``reg_m`` the pair is unique).
        iterations: number of column+row updates run.
        marginal_error: ``(*B,)`` L1 violation of the column marginal ``sum_j |sum_i Q_ij - b_j|`` of the returned
            plan (whose rows are exact up to float rounding); 0-d tensor for an unbatched problem. With ``reg_m``
            the marginals are not met by design, and this is the residual of the column scaling equation
            (module docstring), 0 at the solution.
        converged: whether the stopping rule was met before ``max_iter``.
        stop_rule: the rule used, ``"marginal"`` or ``"otla"``.
        reg_m: the marginal relaxation solved with (``None``: exact marginals), in the units of ``-log_kernel``.
        kernel: the stored kernel (:class:`~.sinkhorn_blocks.StoredKernel`) when ``log_kernel`` is ``None``.
    """

    log_kernel: Optional[torch.Tensor]
    log_u: torch.Tensor
    log_v: torch.Tensor
    iterations: int
    marginal_error: torch.Tensor
    converged: bool
    stop_rule: str = "marginal"
    reg_m: object = None
    kernel: object = None

    def _log_kernel(self) -> torch.Tensor:
        if self.log_kernel is not None:
            return self.log_kernel
        if self.kernel is None:
            raise ValueError("this result holds no kernel (sinkhorn_blocks(method='log') keeps none): only its "
                             "potentials log_u, log_v are available")
        return self.kernel.log_dense()

    def log_plan(self) -> torch.Tensor:
        """``(*B, N, K)`` log of the transport plan (``-inf`` where the kernel is 0); materialises one matrix."""
        return self._log_kernel() + self.log_u.unsqueeze(-1) + self.log_v.unsqueeze(-2)

    def plan(self) -> torch.Tensor:
        """``(*B, N, K)`` the transport plan ``diag(u) K diag(v)`` (entries may underflow to 0)."""
        return self.log_plan().exp_()

    def row_argmax(self) -> torch.Tensor:
        """``(*B, N)`` int64: ``argmax_j Q_ij`` for every row (``u_i`` drops out: ``argmax_j log K_ij + log_v_j``)."""
        if self.log_kernel is None and self.kernel is not None:
            return self.kernel.row_argmax(self.log_v)
        return (self.log_kernel + self.log_v.unsqueeze(-2)).argmax(-1)

    def col_argmax(self) -> torch.Tensor:
        """``(*B, K)`` int64: ``argmax_i Q_ij`` for every column."""
        return (self._log_kernel() + self.log_u.unsqueeze(-1)).argmax(-2)

    def row_marginal(self) -> torch.Tensor:
        """``(*B, N)`` ``sum_j Q_ij`` (for checks; materialises the plan)."""
        return self.plan().sum(-1)

    def col_marginal(self) -> torch.Tensor:
        """``(*B, K)`` ``sum_i Q_ij`` (for checks; materialises the plan)."""
        return self.plan().sum(-2)


# --------------------------------------------------------------------------------------------------------------
# Log-sum-exp kernels
# --------------------------------------------------------------------------------------------------------------
def _logsumexp(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``log(sum(exp(x), dim))``, consuming ``x`` (modified in place). Terms below ``exp(_floor)`` times the maximum
    are dropped (they would only hit the slow denormal path of ``exp``). An all ``-inf`` slice gives ``-inf``."""
    m = x.amax(dim, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    x.sub_(m)
    F.threshold_(x, _floor(x.dtype), -math.inf)
    return x.exp_().sum(dim).log_().add_(m.squeeze(dim))


def _centred_exp(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(exp(z - c), c)`` with ``c`` the maximum over the last dim, so the scalings are at most 1."""
    c = z.amax(-1, keepdim=True)
    c = torch.where(torch.isfinite(c), c, torch.zeros_like(c))
    return (z - c).exp_(), c


class _LogOps:
    """Exact log-domain updates: two log-sum-exps over the full matrix per iteration."""

    def __init__(self, log_kernel: torch.Tensor):
        self.log_kernel = log_kernel

    def col_lse(self, f: torch.Tensor) -> torch.Tensor:  # logsumexp_i (log K_ij + f_i)
        return _logsumexp(self.log_kernel + f.unsqueeze(-1), -2)

    def row_lse(self, g: torch.Tensor) -> torch.Tensor:  # logsumexp_j (log K_ij + g_j)
        return _logsumexp(self.log_kernel + g.unsqueeze(-2), -1)


class _AbsorbedOps:
    """Stabilised (and, when the kernel is peaky, sparse) scaling around an absorbed column potential ``g0``.

    ``Kt_ij = exp(log K_ij + g0_j - m_i)`` with ``m_i = max_j (log K_ij + g0_j) - shift``: every row of ``Kt`` peaks
    at ``exp(shift)``; entries below ``exp(keep)`` times the row maximum are dropped (``_kernel_range``). Then
    ``logsumexp_j(log K_ij + g_j) = log(sum_j Kt_ij exp(g_j - g0_j)) + m_i`` and ``logsumexp_i(log K_ij + f_i) =
    log(sum_i Kt_ij exp(f_i + m_i)) - g0_j``, the scalings being divided by their maximum (added back after the
    log). ``f_i + m_i`` is, up to the drift of ``g`` and ``shift``, the log of the largest entry of plan row ``i``,
    so only the drift of ``g`` calls for a rebuild. If at most ``sparse_density`` of the entries are kept (the usual
    case at ``lam = 25``: a few classes per row), ``Kt`` is a list of non-zeros and the products are gathers and
    ``index_add_``; otherwise it is a dense matrix and the products are ``matmul``.
    """

    def __init__(self, log_kernel: torch.Tensor, threshold: float, sparse_density: float):
        self.log_kernel = log_kernel
        self.threshold = threshold
        self.sparse_density = sparse_density
        *self.batch_shape, self.n, self.k = log_kernel.shape
        self.batch = math.prod(self.batch_shape)
        self.absorptions = 0
        self.dirty = False  # a log-domain fallback happened: rebuild after this iteration
        self.dense_products = False  # iterate with loop_threads (the products are small or sparse)

    def absorb(self, g: torch.Tensor) -> None:
        keep, shift = _kernel_range(self.log_kernel.dtype)
        y = self.log_kernel + g.unsqueeze(-2)
        m = y.amax(-1, keepdim=True)
        m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
        m.sub_(shift)  # Kt = exp(y - m): at most exp(shift)
        self.g0, self.m = g.clone(), m.squeeze(-1)
        flat = (y > m + (keep + shift)).view(-1).nonzero().squeeze(1)
        if flat.numel() <= self.sparse_density * y.numel():
            self.rows = flat // self.k  # in [0, B * N)
            self.cols = torch.div(flat, self.n * self.k, rounding_mode="floor") * self.k + flat % self.k  # [0, B*K)
            self.vals = (y.view(-1).index_select(0, flat) - self.m.reshape(-1).index_select(0, self.rows)).exp_()
            self.kt = None
        else:
            y.sub_(m)
            F.threshold_(y, keep + shift, -math.inf)
            self.kt = y.exp_()
        self.absorptions += 1
        self.dirty = False

    def needs_absorb(self, g: torch.Tensor) -> bool:
        """Rebuild when the *spread* of the drift ``g - g0`` exceeds the threshold: a common shift of ``g`` (the
        ``(f + c, g - c)`` gauge) changes nothing, the scalings being divided by their maximum."""
        drift = g - self.g0
        spread = drift.amax(-1) - drift.amin(-1)
        return self.dirty or not bool((spread <= self.threshold).all())  # also true for NaN

    def col_lse(self, f: torch.Tensor) -> torch.Tensor:
        x, c = _centred_exp(f + self.m)
        if self.kt is not None:
            s = torch.matmul(x.unsqueeze(-2), self.kt).squeeze(-2)
        else:
            s = torch.zeros(self.batch * self.k, device=x.device, dtype=x.dtype)
            s.index_add_(0, self.cols, self.vals * x.reshape(-1).index_select(0, self.rows))
            s = s.view(*self.batch_shape, self.k)
        return s.log_().add_(c).sub_(self.g0)

    def row_lse(self, g: torch.Tensor) -> torch.Tensor:
        x, c = _centred_exp(g - self.g0)
        if self.kt is not None:
            s = torch.matmul(self.kt, x.unsqueeze(-1)).squeeze(-1)
        else:
            s = torch.zeros(self.batch * self.n, device=x.device, dtype=x.dtype)
            s.index_add_(0, self.rows, self.vals * x.reshape(-1).index_select(0, self.cols))
            s = s.view(*self.batch_shape, self.n)
        return s.log_().add_(c).add_(self.m)


@contextmanager
def _num_threads(n: Optional[int]):
    """Temporarily set torch's intra-op thread count (``None``: leave it)."""
    old = torch.get_num_threads()
    if n is None or n == old:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _all_finite(x: torch.Tensor) -> bool:
    return bool(torch.isfinite(x).all())


# --------------------------------------------------------------------------------------------------------------
# Over-relaxation
# --------------------------------------------------------------------------------------------------------------
def _relax(old: torch.Tensor, new: torch.Tensor, omega: Optional[torch.Tensor]) -> torch.Tensor:
    """``(1 - w) old + w new`` per coordinate where the dual objective still increases, else ``new``.

    ``omega`` is ``None`` (plain step) or a ``(*B, 1)`` tensor. For ``delta = new - old > 0`` the relaxed step
    increases the dual iff ``w delta - exp(-delta) (exp(w delta) - 1) >= 0``, i.e. ``psi(w delta) <= delta`` with
    ``psi(s) = log(expm1(s) / s)`` (``~ s/2 + s^2/24`` for small ``s``); for ``delta <= 0`` it always does (w < 2).
    """
    if omega is None:
        return new
    delta = new - old
    s_raw = omega * delta
    s = s_raw.clamp(1e-30, 80.0)  # beyond 80 the step is unsafe anyway (psi(s) ~ s - log s > s / w)
    psi = torch.where(s < 1e-3, s * (0.5 + s / 24.0), torch.log(torch.expm1(s) / s))
    safe = (delta <= 0) | ((s_raw <= 80.0) & (psi <= delta))
    relaxed = old + omega * delta
    return torch.where(safe & torch.isfinite(old), relaxed, new)


class _OmegaSchedule:
    """Chooses the over-relaxation ``w`` per problem of the batch (see the module docstring)."""

    def __init__(self, omega, batch_shape, device, dtype, warmup: int, adapt_every: int):
        self.auto = omega == "auto"
        self.warmup, self.adapt_every = max(2, warmup), max(2, adapt_every)
        self.history: list[tuple[int, torch.Tensor]] = []  # (iteration, error) at checks
        self.value: Optional[torch.Tensor] = None  # (*B, 1), None = plain steps
        self.last_adapt = None
        if not self.auto:
            w = float(omega)
            if not 1.0 <= w < 2.0:
                raise ValueError(f"omega must be in [1, 2) or 'auto', got {omega}")
            if w != 1.0:
                self.value = torch.full((*batch_shape, 1), w, device=device, dtype=dtype)

    def _rate(self, it: int, span: int) -> Optional[torch.Tensor]:
        """Per-iteration factor of the error over the last ``>= span`` iterations (None if the history is short).
        Both ends of the window are the largest error of the checks within a quarter window of it."""
        past = [i for i, _ in self.history if it - i >= span]
        if not past:
            return None
        i0, q = past[-1], max(1, span // 4)
        e0 = torch.stack([e for i, e in self.history if i0 - q <= i <= i0]).amax(0)
        e1 = torch.stack([e for i, e in self.history if it - q <= i]).amax(0)
        ratio = e1 / e0.clamp(min=torch.finfo(e0.dtype).tiny)
        return ratio.nan_to_num(1.0).clamp(min=1e-12) ** (1.0 / (it - i0))

    @staticmethod
    def _optimal(theta: torch.Tensor) -> torch.Tensor:
        return 2.0 / (1.0 + torch.sqrt(1.0 - theta.clamp(0.0, _THETA_MAX)))

    def update(self, it: int, err: torch.Tensor) -> None:
        """Called with ``err`` ``(*B,)``, the marginal error of the row-exact plan after ``it`` iterations."""
        self.history.append((it, err))
        del self.history[:-64]
        if not self.auto:
            return
        if self.last_adapt is None:
            if it >= self.warmup:  # plain iterations so far: their rate is theta (Lehmann et al., Eq. 5)
                theta = self._rate(it, self.warmup // 2)
                if theta is not None:
                    self.value, self.last_adapt = self._optimal(theta).unsqueeze(-1), it
        elif it - self.last_adapt >= self.adapt_every:
            rho = self._rate(it, self.adapt_every)
            if rho is not None:
                # relaxed rate rho -> plain rate theta (Young's SOR relation); w only grows: an early estimate
                # underrates theta, which keeps growing as the plan sharpens
                w = self.value.squeeze(-1)
                theta = (rho + w - 1.0) ** 2 / (rho * w * w)
                self.value, self.last_adapt = torch.maximum(w, self._optimal(theta)).unsqueeze(-1), it


# --------------------------------------------------------------------------------------------------------------
# Solvers
# --------------------------------------------------------------------------------------------------------------
def _prepare_marginal(m, n: int, batch_shape, like: torch.Tensor, name: str) -> torch.Tensor:
    if m is None:
        return torch.full((*batch_shape, n), -math.log(n), device=like.device, dtype=like.dtype)
    m = torch.as_tensor(m, dtype=like.dtype, device=like.device)  # lists / numpy arrays at full precision
    if m.shape[-1:] != (n,):
        raise ValueError(f"{name} must have last dimension {n}, got shape {tuple(m.shape)}")
    if not bool(torch.isfinite(m).all()):
        raise ValueError(f"{name} must be finite, got {_first_bad(~torch.isfinite(m))}")
    if not bool((m > 0).all()):
        raise ValueError(f"{name} must be positive (zero-mass rows/columns: drop them before the transport), got "
                         f"{_first_bad(m <= 0)}")
    return m.log().expand(*batch_shape, n)


def _prepare_init(init_log_v, log_b: torch.Tensor) -> torch.Tensor:
    g = torch.as_tensor(init_log_v, dtype=log_b.dtype, device=log_b.device).detach()
    if g.shape[-1:] != log_b.shape[-1:] or not _all_finite(g):
        raise ValueError(f"init_log_v must be finite with last dimension {log_b.shape[-1]}, got {tuple(g.shape)}")
    return g.expand_as(log_b).clone()


def _first_bad(mask: torch.Tensor, limit: int = 5) -> str:
    """``"entries [i, ...] (and n more)"`` for the ``True`` positions of ``mask`` (multi-dim positions as tuples)."""
    idx = mask.nonzero().tolist()
    shown = [tuple(i) if len(i) > 1 else i[0] for i in idx[:limit]]
    more = f" and {len(idx) - limit} more" if len(idx) > limit else ""
    return f"entries {shown}{more}"


def _check_shape(shape, name: str = "log_kernel") -> None:
    if len(shape) < 2:
        raise ValueError(f"{name} must be (*B, N, K), got shape {tuple(shape)}")
    if math.prod(shape) == 0:
        raise ValueError(f"{name} is empty (shape {tuple(shape)}): there is nothing to transport; need N >= 1 rows "
                         "and K >= 1 columns")


def check_log_kernel(log_kernel: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``log_kernel`` (``(*B, N, K)``) is non-empty, has no NaN or ``+inf``, and every
    row and every column holds a finite entry (a row or column of ``-inf`` cannot carry its mass: the plan would be
    NaN, or the label of an all ``-inf`` row an arbitrary 0)."""
    _check_shape(log_kernel.shape)
    bad = torch.isnan(log_kernel) | (log_kernel == math.inf)
    if bool(bad.any()):
        raise ValueError(f"log_kernel contains NaN or +inf at {_first_bad(bad)}")
    for dim, what in ((-1, "row"), (-2, "column")):
        empty = log_kernel.amax(dim) == -math.inf
        if bool(empty.any()):
            where = "(batch..., index) " if log_kernel.dim() > 2 else ""
            raise ValueError(f"log_kernel {what}s without a finite entry {where}at {_first_bad(empty)}: every {what} "
                             f"must be able to carry its mass (drop it, or give it a finite cost)")


def _relaxation(reg_m, name: str = "reg_m") -> tuple[float, float]:
    """POT's ``reg_m`` (a number, or a (rows, columns) pair; ``inf`` = exact marginal) -> the exponents
    ``(reg_m_a / (reg_m_a + 1), reg_m_b / (reg_m_b + 1))`` of the scaling updates (``reg = 1``); ``(1, 1)`` for
    ``None`` (balanced)."""
    if reg_m is None:
        return 1.0, 1.0
    pair = tuple(float(r) for r in reg_m) if isinstance(reg_m, (tuple, list)) else (float(reg_m),) * 2
    if len(pair) != 2 or not all(r > 0 for r in pair):  # NaN fails too
        raise ValueError(f"{name} must be > 0 (inf: exact marginal), or a (rows, columns) pair of such, got {reg_m!r}")
    return tuple(1.0 if r == math.inf else r / (r + 1.0) for r in pair)


def _scale_reg_m(reg_m, factor: float):
    """``reg_m`` expressed in units of a regularisation ``1 / factor`` times smaller (``None`` stays ``None``)."""
    if reg_m is None:
        return None
    if isinstance(reg_m, (tuple, list)):
        return tuple(float(r) * factor for r in reg_m)
    return float(reg_m) * factor


@dataclass
class _Options:
    max_iter: int
    tol: float
    otla: bool
    check_every: int
    omega: Union[str, float]
    warmup: int
    adapt_every: int
    probe_every: int
    loop_threads: Optional[int]
    relax_a: float = 1.0
    relax_b: float = 1.0


def _options(stop_rule, max_iter, tol, check_every, omega, warmup, adapt_every, probe_every, loop_threads, reg_m,
             cuda: bool) -> _Options:
    if stop_rule not in ("marginal", "otla"):
        raise ValueError(f"stop_rule must be 'marginal' or 'otla', got {stop_rule!r}")
    otla = stop_rule == "otla"
    relax_a, relax_b = _relaxation(reg_m)
    if omega is None or (omega == "auto" and reg_m is not None):
        omega = 1.0 if (otla or reg_m is not None) else "auto"
    if reg_m is not None and float(omega) != 1.0:
        raise ValueError(f"over-relaxation (omega={omega!r}) is only safeguarded for exact marginals; use omega=1 "
                         "with reg_m")
    if check_every is None:
        check_every = 10 if (otla or cuda) else 1
    return _Options(max_iter=(500 if otla else 1000) if max_iter is None else int(max_iter),
                    tol=(0.1 if otla else 1e-6) if tol is None else float(tol), otla=otla,
                    check_every=max(1, int(check_every)), omega=omega, warmup=warmup, adapt_every=adapt_every,
                    probe_every=probe_every, loop_threads=loop_threads, relax_a=relax_a, relax_b=relax_b)


def _iterate(fast, exact, log_a: torch.Tensor, log_b: torch.Tensor, init_log_v, opt: _Options, batch_shape,
             device: torch.device, dtype: torch.dtype):
    """The Sinkhorn loop shared by every kernel representation.

    ``fast`` (or ``None``) provides ``absorb(g)``, ``needs_absorb(g)``, ``col_lse(f)``, ``row_lse(g)``, a ``dirty``
    flag and ``dense_products`` (its products are O(N K): run them with torch's thread setting); ``exact`` provides
    exact ``col_lse`` / ``row_lse``, used where ``fast`` returns a non-finite value (and, with ``fast=None``,
    always). ``col_lse(f)_j = logsumexp_i(log K_ij + f_i)``, ``row_lse(g)_i = logsumexp_j(log K_ij + g_j)``.

    With exponents ``ra, rb`` (1 for exact marginals, ``reg_m / (reg_m + 1)`` for KL-relaxed ones) the updates are
    ``g <- log b - rb * col_lse(f)`` and ``f <- log a - ra * row_lse(g)``, and the error is
    ``sum_j |exp(g_j + rb * col_lse(f)_j) - b_j|`` (the L1 column-marginal violation for exact marginals).

    Returns:
        ``(f, g, iterations, error, converged)``.
    """
    b_lin = log_b.exp()
    ra, rb = opt.relax_a, opt.relax_b
    schedule = _OmegaSchedule(opt.omega, batch_shape, device, dtype, opt.warmup, opt.adapt_every)
    outer_threads = torch.get_num_threads()
    cheap_loop = fast is not None and not fast.dense_products and device.type == "cpu"
    small_threads = opt.loop_threads if cheap_loop else None

    def large(fn, *args):  # O(N K) work: torch's thread setting
        with _num_threads(outer_threads):
            return fn(*args)

    def lse(name, potential):  # the fast log-sum-exp, or the exact one where it is not finite
        if fast is not None:
            out = large(getattr(fast, name), potential) if fast.dense_products else getattr(fast, name)(potential)
            if _all_finite(out):
                return out
            fast.dirty = True
        return large(getattr(exact, name), potential)

    def col_step(lc):  # the column potential that the row potential calls for
        return log_b - lc if rb == 1.0 else log_b - rb * lc

    def row_step(g):
        rl = lse("row_lse", g)
        return log_a - rl if ra == 1.0 else log_a - ra * rl

    def col_error(g, lc):  # residual of the column equation of the plan (f, g), lc = col_lse(f)
        return (torch.exp(g + lc if rb == 1.0 else g + rb * lc) - b_lin).abs().sum(-1)

    otla, tol, check_every = opt.otla, opt.tol, opt.check_every
    with _num_threads(small_threads):
        # Start from a uniform column scaling (g = 0) with exact rows, as OTLA / MULT do.
        g = torch.zeros_like(log_b) if init_log_v is None else _prepare_init(init_log_v, log_b)
        if fast is not None:
            large(fast.absorb, g)
        f = row_step(g)
        lc = lse("col_lse", f)
        it, converged, f_plain, err = 0, False, True, None  # f_plain: f = f_hat(g), the rows are exact
        while True:
            check = it % check_every == 0
            if f_plain and it > 0 and check and not otla:
                err = col_error(g, lc)
                schedule.update(it, err)
                if bool((err < tol).all()):
                    converged = True
                    break
            if it >= opt.max_iter:
                break
            g_hat = col_step(lc)
            if otla and it > 0 and check and bool(((torch.exp(g - g_hat) - 1.0).abs().sum(-1) < tol).all()):
                g, f, f_plain, err, converged = g_hat, row_step(g_hat), True, None, True  # v = v_new
                it += 1
                break
            w = schedule.value
            g = _relax(g, g_hat, w)
            if fast is not None and fast.needs_absorb(g):
                large(fast.absorb, g)
            f_hat = row_step(g)
            it += 1
            if w is None:
                f, f_plain, err = f_hat, True, None
            else:
                # relaxed rows are not exact: every probe_every-th check, measure the row-exact plan (f_hat, g)
                # (one extra product) for the stopping rule and the omega schedule
                if not otla and it % check_every == 0 and it % opt.probe_every == 0:
                    err = col_error(g, lse("col_lse", f_hat))
                    schedule.update(it, err)
                    if bool((err < tol).all()):
                        f, f_plain, converged = f_hat, True, True
                        break
                f, f_plain, err = _relax(f, f_hat, w), False, None
            lc = lse("col_lse", f)
        if not f_plain:
            f = row_step(g)
            err = None
        if err is None:  # the state changed after the last measurement
            err = col_error(g, lse("col_lse", f))
    return f, g, it, err, converged


def _warn_not_converged(warn: bool, converged: bool, opt: _Options, err: torch.Tensor) -> None:
    if warn and not converged and not opt.otla:
        warnings.warn(f"Sinkhorn did not converge in {opt.max_iter} iterations: marginal error "
                      f"{float(err.max()):.3g} >= tol {opt.tol:g}", RuntimeWarning, stacklevel=3)


def sinkhorn_log(
    log_kernel: torch.Tensor,
    a=None,
    b=None,
    *,
    max_iter: Optional[int] = None,
    tol: Optional[float] = None,
    stop_rule: str = "marginal",
    check_every: Optional[int] = None,
    method: str = "stabilized",
    omega: Union[str, float, None] = None,
    absorb_threshold: float = 30.0,
    sparse_density: float = 0.1,
    warmup: int = 10,
    adapt_every: int = 20,
    probe_every: int = 5,
    warn: bool = True,
    loop_threads: Optional[int] = 1,
    init_log_v: Optional[torch.Tensor] = None,
    eps_scaling: int = 0,
    reg_m=None,
) -> SinkhornResult:
    """Entropic OT on a given log kernel: the plan ``diag(u) exp(log_kernel) diag(v)`` with marginals ``a``, ``b``.

    Args:
        log_kernel: ``(*B, N, K)`` ``log K = -cost / reg`` (``-inf`` allowed for forbidden pairs; every row and
            column needs a finite entry). Not modified. Empty kernels, NaN, ``+inf`` and rows or columns without a
            finite entry raise ``ValueError`` (:func:`check_log_kernel`).
        a: ``(N,)`` or ``(*B, N)`` positive row marginals; ``None`` = uniform ``1/N``.
        b: ``(K,)`` or ``(*B, K)`` positive column marginals; ``None`` = uniform ``1/K``.
        max_iter: iteration cap (default 1000 for ``"marginal"``, 500 for ``"otla"``).
        tol: tolerance of the stopping rule (default ``1e-6`` for ``"marginal"``, ``0.1`` for ``"otla"``).
        stop_rule: ``"marginal"`` (L1 column-marginal violation < tol) or ``"otla"`` (``sum |v/v_new - 1| < tol``);
            see the module docstring.
        check_every: test the rule every this many iterations (default: 1 on CPU, 10 on CUDA; 10 for ``"otla"``).
        method: ``"stabilized"`` (matrix-vector products on an absorbed kernel; default) or ``"log"`` (two full
            log-sum-exps per iteration).
        omega: over-relaxation ``w`` in ``[1, 2)``, or ``"auto"`` (default for ``"marginal"``; ``1`` for ``"otla"``
            and with ``reg_m``).
        absorb_threshold: ``"stabilized"`` only: rebuild the kernel when the spread of the drift of ``log_v`` from
            the absorbed one exceeds this (dropped entries then stay below ``exp(-60 + threshold)`` of their row's
            maximum in float32; keep ``threshold <= 35`` there so that products stay normal numbers).
        sparse_density: ``"stabilized"`` only: keep the absorbed kernel sparse when at most this fraction of its
            entries is above ``exp(-60)`` (float64: ``exp(-100)``) times the row maximum.
        warmup: ``omega="auto"``: plain iterations before the first rate estimate.
        adapt_every: ``omega="auto"``: iterations between re-estimates.
        probe_every: with ``omega != 1``: iterations between measurements of the error of the row-exact plan.
        loop_threads: ``"stabilized"`` on CPU: torch intra-op threads while iterating (``None``: leave torch's
            setting; restored on return). The iteration ops are O(N + K) or O(non-zeros): an OpenMP fork/join per
            op costs more than it saves at that size, and stalls for milliseconds when the CPU is shared (measured:
            ``exp`` of 11,909 floats 8 ms on 2 contended threads, 40 us on 1). The kernel rebuilds and log-domain
            fallbacks, O(N K), run with torch's setting.
        warn: emit a ``RuntimeWarning`` when the ``"marginal"`` rule is not met within ``max_iter`` (the ``"otla"``
            rule's cap is part of the rule and never warns).
        init_log_v: ``(K,)`` or ``(*B, K)`` warm start of ``log_v`` (e.g. the previous epoch's); default 0.
        eps_scaling: number of coarser stages solved first (Schmitzer 2019; Feydy et al. 2019): the kernels
            ``log_kernel / 2^s`` for ``s = eps_scaling .. 1`` (``reg`` doubled each time), each to tolerance
            ``max(tol, 1e-3)``, each warm-starting the next with ``2 log_v``. Default 0. It rescues near-degenerate
            problems (plans close to a permutation, e.g. 2 samples on 2 classes at ``lam = 25``), on which Sinkhorn
            moves its potentials by about the (small) marginal error per iteration and plateaus for thousands of
            iterations; on ordinary DOTLA problems it costs 30-100% more iterations. ``iterations`` counts all
            stages. Not with ``reg_m``.
        reg_m: ``None`` (default): exact marginals. Otherwise the marginals are relaxed by KL penalties, with POT's
            ``ot.sinkhorn_unbalanced(a, b, M, reg=1, reg_m)`` semantics for ``M = -log_kernel`` (see the module
            docstring): a number > 0 for both, or a ``(rows, columns)`` pair; ``inf`` keeps that marginal exact.
            Implies ``omega=1``; the reported error is the residual of the column scaling equation.

    Returns:
        :class:`SinkhornResult`.
    """
    if eps_scaling > 0:
        if reg_m is not None:
            raise ValueError("eps_scaling is for near-degenerate balanced problems; it does not combine with reg_m")
        stage_kwargs = dict(max_iter=max_iter, stop_rule=stop_rule, check_every=check_every, method=method,
                            omega=omega, absorb_threshold=absorb_threshold, sparse_density=sparse_density,
                            warmup=warmup, adapt_every=adapt_every, probe_every=probe_every,
                            loop_threads=loop_threads)
        coarse_tol = max(1e-3, tol) if tol is not None else None
        g, stage_iterations = init_log_v, 0
        if g is not None:
            g = torch.as_tensor(g, device=log_kernel.device) / 2**eps_scaling
        for stage in range(eps_scaling, 0, -1):
            coarse = sinkhorn_log(log_kernel.detach() / 2**stage, a, b, tol=coarse_tol, warn=False, init_log_v=g,
                                  **stage_kwargs)
            g, stage_iterations = coarse.log_v * 2.0, stage_iterations + coarse.iterations
        result = sinkhorn_log(log_kernel, a, b, tol=tol, warn=warn, init_log_v=g, **stage_kwargs)
        result.iterations += stage_iterations
        return result
    if method not in ("stabilized", "log"):
        raise ValueError(f"method must be 'stabilized' or 'log', got {method!r}")
    opt = _options(stop_rule, max_iter, tol, check_every, omega, warmup, adapt_every, probe_every, loop_threads,
                   reg_m, log_kernel.is_cuda)

    with torch.no_grad():
        log_kernel = log_kernel.detach()
        if log_kernel.dtype not in (torch.float32, torch.float64):
            log_kernel = log_kernel.float()
        check_log_kernel(log_kernel)
        *batch_shape, n, k = log_kernel.shape
        log_a = _prepare_marginal(a, n, batch_shape, log_kernel, "a")
        log_b = _prepare_marginal(b, k, batch_shape, log_kernel, "b")
        absorbed = _AbsorbedOps(log_kernel, absorb_threshold, sparse_density) if method == "stabilized" else None
        f, g, it, err, converged = _iterate(absorbed, _LogOps(log_kernel), log_a, log_b, init_log_v, opt,
                                            batch_shape, log_kernel.device, log_kernel.dtype)
    _warn_not_converged(warn, converged, opt, err)
    return SinkhornResult(log_kernel=log_kernel, log_u=f, log_v=g, iterations=it, marginal_error=err,
                          converged=converged, stop_rule=stop_rule, reg_m=reg_m)


def _as_float(x: torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(x).detach()
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def sinkhorn(cost: torch.Tensor, a=None, b=None, reg: float = 1.0, *, reg_m=None, **kwargs) -> SinkhornResult:
    """POT's convention: ``argmin <Q, cost> - reg * H(Q)`` s.t. ``Q 1 = a, Q^T 1 = b``, as
    ``ot.sinkhorn(a, b, cost, reg, method="sinkhorn_log")``; with ``reg_m``, the plan of
    ``ot.sinkhorn_unbalanced(a, b, cost, reg, reg_m)`` (KL-relaxed marginals, ``reg_m`` in the cost's units).
    ``cost`` is ``(*B, N, K)``; see :func:`sinkhorn_log` for the other arguments."""
    if not reg > 0:
        raise ValueError(f"reg must be > 0, got {reg}")
    cost = _as_float(cost)
    return sinkhorn_log(cost * (-1.0 / reg), a, b, reg_m=_scale_reg_m(reg_m, 1.0 / reg), **kwargs)


def _log_probs(probs: torch.Tensor, log_input: bool) -> torch.Tensor:
    probs = _as_float(probs)
    if log_input:
        if bool(torch.isnan(probs).any()) or bool((probs == math.inf).any()):
            raise ValueError(f"log-probabilities contain NaN or +inf at {_first_bad(~(probs < math.inf))}")
        return probs
    bad = ~(probs >= 0) | (probs == math.inf)  # negative, NaN or inf
    if bool(bad.any()):
        raise ValueError(f"probabilities must be finite and >= 0 (log-probabilities or logits? pass log_input=True "
                         f"for log-probabilities), got {_first_bad(bad)}")
    if probs.numel() and bool((probs.amax(-1) <= 0).any()):
        raise ValueError(f"probability rows without a positive entry (they cannot carry mass) at "
                         f"{_first_bad(probs.amax(-1) <= 0)}")
    # exact zeros (softmax underflow) become the smallest normal number: lam * log(tiny) is ~ -2200 in float32
    return probs.clamp(min=torch.finfo(probs.dtype).tiny).log()


def sinkhorn_power(probs: torch.Tensor, lam: float = 25.0, a=None, b=None, *, log_input: bool = False,
                   reg_m=None, **kwargs) -> SinkhornResult:
    """The OTLA / DOTLA form ``Q = diag(u) P^lam diag(v)`` (Eq. 3 of DOTLA), computed as ``log K = lam * log P``.

    Args:
        probs: ``(*B, N, K)`` probabilities ``P`` (e.g. softmax predictions; finite and ``>= 0``), or
            log-probabilities with ``log_input=True`` (preferred when available: ``log_softmax`` keeps the tails
            that softmax rounds to 0).
        lam: the power ``lambda`` (``reg = 1 / lam``).
        reg_m: KL relaxation of the marginals in the units of the cost ``-log P`` (POT's
            ``ot.sinkhorn_unbalanced(a, b, -log P, 1 / lam, reg_m)``); ``None``: exact marginals.
        a, b, kwargs: as in :func:`sinkhorn_log`.
    """
    if not lam > 0:
        raise ValueError(f"lam must be > 0, got {lam}")
    return sinkhorn_log(_log_probs(probs, log_input) * float(lam), a, b, reg_m=_scale_reg_m(reg_m, float(lam)),
                        **kwargs)


def assign_labels_by_sinkhorn(
    probs: torch.Tensor,
    lam: float = 25.0,
    class_marginals=None,
    *,
    sample_marginals=None,
    log_input: bool = False,
    reg_m=None,
    **kwargs,
) -> tuple[torch.Tensor, SinkhornResult]:
    """Transport ``N`` samples onto ``K`` classes and read the labels off the plan rows (DOTLA Eq. 3, OTLA).

    Solves ``min_Q <Q, -log P> + KL(Q || a b^T) / lam`` with ``Q 1 = a`` (default uniform ``1/N``: each sample gets
    exactly one label) and ``Q^T 1 = b`` (default uniform ``1/K``: the samples are split equally among the
    classes), i.e. ``Q = diag(u) P^lam diag(v)``, and returns ``y_i = argmax_j Q_ij = argmax_j (log P_ij +
    log v_j / lam)``. With ``reg_m`` the two constraints become penalties ``reg_m * KL(Q 1 || a)`` and
    ``reg_m * KL(Q^T 1 || b)`` (a large class may then keep more than ``b`` of the samples).

    Args:
        probs: ``(N, K)`` (or ``(*B, N, K)``) class probabilities of the samples (softmax of the other modality's
            classifier; finite and ``>= 0``), or log-probabilities with ``log_input=True``.
        lam: ``lambda`` of Eq. 3 (25 in DOTLA, OTLA and MULT).
        class_marginals: ``(K,)`` (or ``(*B, K)``) positive class weights, e.g. cluster sizes; normalised here
            to sum to 1. ``None`` = uniform.
        sample_marginals: ``(N,)`` positive sample weights, normalised here; ``None`` = uniform.
        log_input: ``probs`` holds log-probabilities.
        reg_m: KL relaxation of the marginals, as in :func:`sinkhorn_power`; ``None``: exact marginals.
        kwargs: passed to :func:`sinkhorn_log` (``tol``, ``max_iter``, ``stop_rule``, ``method``, ...).

    Returns:
        ``(labels, result)``: ``labels`` int64 ``(N,)`` (or ``(*B, N)``) in ``[0, K)`` on ``probs``' device;
        ``result`` the :class:`SinkhornResult` (``result.log_plan()`` gives ``log Q``).
    """
    log_p = _log_probs(probs, log_input)
    b = None if class_marginals is None else _normalise(class_marginals, log_p)
    a = None if sample_marginals is None else _normalise(sample_marginals, log_p)
    result = sinkhorn_power(log_p, lam, a, b, log_input=True, reg_m=reg_m, **kwargs)
    return result.row_argmax(), result


def _normalise(m, like: torch.Tensor) -> torch.Tensor:
    m = torch.as_tensor(m, dtype=like.dtype, device=like.device)
    return m / m.sum(-1, keepdim=True)
