"""Sinkhorn on a large dense kernel that is built block by block and held once (e.g. ``N x M`` instance plans).

:func:`sinkhorn_log` takes the log kernel as one tensor and, with ``method="stabilized"``, keeps a second
(absorbed) copy of it: two dense ``N x K`` arrays, plus the temporaries of a rebuild. For an instance-to-instance
plan (MULT: 22,258 visible x 11,909 infrared images, 1 GiB per float32 copy) :func:`sinkhorn_blocks` instead takes
a function that returns the rows ``start:stop`` of ``log K`` and keeps a single dense array,
:class:`StoredKernel`::

    K_ij = values_ij * exp(row_log_i - col_log_j),

the absorbed kernel of :mod:`.sinkhorn` (module docstring there): ``values_ij = exp(log K_ij + g0_j - m_i)`` with
``g0 = col_log`` the absorbed column potential and ``m = row_log`` the row maxima less a shift, so every row
peaks at ``exp(20)`` (float64: ``1``); entries below ``exp(-107)`` (float64: ``exp(-700)``) times their row's
maximum, which would be denormal numbers, are stored as 0. ``values`` may be stored in float32 (the default),
bfloat16 (half the memory; every entry rounded to 8 significant bits, a relative error of at most ``2^-9``: the
solver then solves exactly the problem of the rounded kernel) or float64; products are computed block by block in
float32 (float64 for float64 storage).

The iterations are those of :func:`~.sinkhorn.sinkhorn_log` (the same loop, stopping rules, over-relaxation and
KL-relaxed marginals); each is two passes over ``values`` (``values @ x`` and ``x @ values``). When the column
potential has drifted from ``g0`` by a spread of more than ``absorb_threshold`` the kernel is re-absorbed *in
place* (``values_ij *= exp(g_j - g0_j - (m'_i - m_i))``: a pass over the array, no call to the source), so that
the products stay in range. In-place re-absorption drops nothing on purpose; an entry that underflows there was
below ``exp(-123)`` of its row's maximum. The kernel is rebuilt from the source once the spread of the drift since
the last build exceeds 45 (so every entry stored as 0 stays below ``exp(-30)`` of its row's maximum, the bound of
:func:`~.sinkhorn.sinkhorn_log`), and after a product that is not finite (a column whose entries all underflowed),
which is then computed exactly from the source.

Memory: the ``N x K`` array in the storage dtype, plus O(block_rows x K) work buffers and O(N + K) vectors.
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Optional, Union

import torch
import torch.nn.functional as F

from vireid_plugins.association.sinkhorn import (
    SinkhornResult,
    _centred_exp,
    _check_shape,
    _first_bad,
    _iterate,
    _logsumexp,
    _num_threads,
    _options,
    _prepare_marginal,
    _warn_not_converged,
)

__all__ = ["StoredKernel", "sinkhorn_blocks"]

LogKernelRows = Callable[[int, int], torch.Tensor]

_SHIFT = {torch.float32: 20.0, torch.float64: 0.0}
_KEEP = {torch.float32: -107.0, torch.float64: -700.0}  # relative to the row max; exp stays a normal number
_REBUILD_DRIFT = 45.0  # total drift spread since the last build from the source that forces a rebuild


def _compute_dtype(storage_dtype: torch.dtype) -> torch.dtype:
    if storage_dtype not in (torch.float32, torch.bfloat16, torch.float64):
        raise ValueError(f"storage_dtype must be float32, bfloat16 or float64, got {storage_dtype}")
    return torch.float64 if storage_dtype == torch.float64 else torch.float32


_POOLS: dict = {}


def _pool(workers: int) -> ThreadPoolExecutor:
    """A process-wide pool of ``workers`` threads for :class:`StoredKernel`'s products (created once)."""
    if workers not in _POOLS:
        _POOLS[workers] = ThreadPoolExecutor(workers, thread_name_prefix="vireid-sinkhorn")
    return _POOLS[workers]


class StoredKernel:
    """A dense ``N x K`` kernel ``K_ij = values_ij * exp(row_log_i - col_log_j)`` held once.

    Attributes:
        values: ``(N, K)`` non-negative, in the storage dtype.
        row_log: ``(N,)`` and ``col_log``: ``(K,)`` log offsets, in the compute dtype (float32, or float64 for
            float64 storage).
        block_rows: rows per block of the products (one reused work buffer of ``block_rows x K`` compute-dtype
            numbers per worker).
        loop_threads: torch intra-op threads of the block loops on CPU (default 1: hundreds of small ops, each an
            OpenMP fork/join that stalls on a shared CPU; measured at 22,258 x 11,909 bfloat16 on 2 busy cores:
            0.05 s per product with 1 thread, 0.4-7 s with 2). ``None`` keeps torch's setting.
        workers: on CPU, the products split the rows into this many contiguous ranges, each looped over by its own
            thread (``loop_threads`` intra-op threads each): coarse-grained parallelism without the per-op
            fork/join (1.4-1.8x on 2 idle cores at the size above). Default: torch's intra-op thread count. The
            result depends on it only through the order of a sum (rounding); 1 on GPU.
    """

    def __init__(self, values: torch.Tensor, row_log: torch.Tensor, col_log: torch.Tensor, block_rows: int,
                 loop_threads: Optional[int] = 1, workers: Optional[int] = None):
        self.values, self.row_log, self.col_log = values, row_log, col_log
        self.block_rows = max(1, int(block_rows))
        self.compute_dtype = _compute_dtype(values.dtype)
        on_cpu = values.device.type == "cpu"
        self.loop_threads = loop_threads if on_cpu else None
        self.workers = max(1, int(workers or torch.get_num_threads())) if on_cpu else 1
        self._buffers: dict = {}

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.values.shape)

    def _buffer(self, slot: int) -> torch.Tensor:
        if slot not in self._buffers:
            n, k = self.values.shape
            self._buffers[slot] = torch.empty((min(self.block_rows, n), k), dtype=self.compute_dtype,
                                              device=self.values.device)
        return self._buffers[slot]

    def _block_loop(self, r0: int, r1: int, slot: int = 0):
        """Yield ``(start, stop, values[start:stop] in the compute dtype)`` for the rows ``r0:r1``; the block is the
        reused buffer ``slot`` (valid until the next one is yielded)."""
        buffer = self._buffer(slot)
        for b0 in range(r0, r1, self.block_rows):
            b1 = min(b0 + self.block_rows, r1)
            block = buffer[:b1 - b0]
            block.copy_(self.values[b0:b1])
            yield b0, b1, block

    def blocks(self):
        """Yield ``(start, stop, values[start:stop] in the compute dtype)`` over all rows, in one thread."""
        with _num_threads(self.loop_threads):
            yield from self._block_loop(0, self.values.shape[0])

    def _parallel(self, fn) -> list:
        """``[fn(r0, r1, slot) for each worker's row range]``, the ranges run by the module's thread pool; torch's
        thread setting (process-wide) is restored afterwards."""
        n = self.values.shape[0]
        per = -(-n // self.workers)
        per = -(-per // self.block_rows) * self.block_rows  # whole blocks per range
        ranges = [(r0, min(r0 + per, n)) for r0 in range(0, n, per)]
        if len(ranges) == 1:
            with _num_threads(self.loop_threads):
                return [fn(0, n, 0)]
        outer = torch.get_num_threads()

        def task(slot, r0, r1):
            if self.loop_threads is not None:
                torch.set_num_threads(self.loop_threads)
            return fn(r0, r1, slot)

        try:
            futures = [_pool(len(ranges)).submit(task, i, r0, r1) for i, (r0, r1) in enumerate(ranges)]
            return [f.result() for f in futures]
        finally:
            torch.set_num_threads(outer)

    # products -------------------------------------------------------------------------------------------------
    def matvec(self, x: torch.Tensor) -> torch.Tensor:
        """``(N,)`` or ``(N, C)``: ``values @ x`` for ``x`` of shape ``(K,)`` or ``(K, C)`` (compute dtype)."""
        if self.values.dtype == self.compute_dtype:
            return self.values @ x
        out = x.new_empty((self.values.shape[0], *x.shape[1:]))

        def rows(r0, r1, slot):
            for b0, b1, v in self._block_loop(r0, r1, slot):
                torch.matmul(v, x, out=out[b0:b1])

        self._parallel(rows)
        return out

    def rmatvec(self, y: torch.Tensor) -> torch.Tensor:
        """``(K,)`` or ``(K, C)``: ``values^T @ y`` for ``y`` of shape ``(N,)`` or ``(N, C)``."""
        if self.values.dtype == self.compute_dtype:
            return self.values.T @ y

        def rows(r0, r1, slot):
            acc = y.new_zeros((self.values.shape[1], *y.shape[1:]))
            for b0, b1, v in self._block_loop(r0, r1, slot):
                acc += v.T @ y[b0:b1]
            return acc

        partial = self._parallel(rows)
        out = partial[0]
        for p in partial[1:]:  # in range order: deterministic for a given number of workers
            out += p
        return out

    # re-centring ----------------------------------------------------------------------------------------------
    def rescale_(self, g: torch.Tensor) -> None:
        """Re-absorb the column potential ``g`` (``(K,)``) in place: afterwards ``col_log = g`` and every row of
        ``values`` peaks at ``exp(shift)``; the represented kernel is unchanged (up to the storage rounding), and
        ``values`` is proportional, row by row, to ``K_ij exp(g_j)``."""
        shift = _SHIFT[self.compute_dtype]
        w, c = _centred_exp(g - self.col_log)  # the column factors, at most 1
        for r0, r1, v in self.blocks():
            v.mul_(w)
            top = v.amax(1, keepdim=True)  # > 0 while the drift spread is below ~100 (see _StoredOps.absorb)
            v.mul_(math.exp(shift) / top)
            self.values[r0:r1] = v
            self.row_log[r0:r1] += top.squeeze(1).log() + c - shift
        self.col_log = g.clone()

    # read-outs ------------------------------------------------------------------------------------------------
    def log_dense(self) -> torch.Tensor:
        """``(N, K)`` ``log K`` in the compute dtype (``-inf`` where an entry was dropped); materialises it."""
        return self.values.to(self.compute_dtype).log() + self.row_log.unsqueeze(1) - self.col_log.unsqueeze(0)

    def row_argmax(self, g: torch.Tensor) -> torch.Tensor:
        """``(N,)`` int64: ``argmax_j (log K_ij + g_j)`` (block by block)."""
        offset = g - self.col_log
        out = torch.empty(self.values.shape[0], dtype=torch.int64, device=self.values.device)
        for r0, r1, v in self.blocks():
            out[r0:r1] = (v.log_() + offset).argmax(1)
        return out


def _source_block(source: LogKernelRows, r0: int, r1: int, k: int, like: torch.Tensor, fresh: bool = False
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``r0:r1`` of the log kernel in ``like``'s dtype and device, checked (shape, NaN, +inf, empty rows), and
    their ``(r1 - r0,)`` row maxima. The rows are copied unless ``fresh`` (the source returns a new tensor, which
    the callers then modify in place)."""
    y = source(r0, r1)
    if tuple(y.shape) != (r1 - r0, k):
        raise ValueError(f"log_kernel_rows({r0}, {r1}) returned shape {tuple(y.shape)}, expected {(r1 - r0, k)}")
    y = y.to(device=like.device, dtype=like.dtype, copy=not fresh)
    row_max = y.amax(1)  # NaN (propagated) or +inf in a row shows here: one pass instead of three
    if not bool(((row_max < math.inf) | (row_max == -math.inf)).all()):
        bad = torch.isnan(y) | (y == math.inf)
        raise ValueError(f"log kernel rows {r0}:{r1} contain NaN or +inf at (row - {r0}, column) {_first_bad(bad)}")
    empty = row_max == -math.inf
    if bool(empty.any()):
        raise ValueError(f"log kernel rows without a finite entry: {(empty.nonzero().squeeze(1) + r0).tolist()[:5]}: "
                         "every row must be able to carry its mass (drop it, or give it a finite cost)")
    return y, row_max


def _check_columns(col_max: torch.Tensor) -> None:
    if not bool(torch.isfinite(col_max).all()):
        raise ValueError(f"log kernel columns without a finite entry: {_first_bad(~torch.isfinite(col_max))}: every "
                         "column must be able to carry its mass (drop it, or give it a finite cost)")


def _validate_source(source: LogKernelRows, shape, like: torch.Tensor, block_rows: int) -> None:
    n, k = shape
    col_max = torch.full((k,), -math.inf, dtype=like.dtype, device=like.device)
    for r0 in range(0, n, block_rows):
        torch.maximum(col_max, _source_block(source, r0, min(r0 + block_rows, n), k, like)[0].amax(0), out=col_max)
    _check_columns(col_max)


def _build(source: LogKernelRows, shape, g: torch.Tensor, storage_dtype, block_rows: int, build_rows: int,
           out: Optional[torch.Tensor] = None, fresh: bool = False) -> StoredKernel:
    """Evaluate ``source`` in blocks of ``build_rows`` rows, absorbing ``g``, into ``out`` (or a new array); the
    kernel's products then use blocks of ``block_rows``."""
    n, k = shape
    keep, shift = _KEEP[g.dtype], _SHIFT[g.dtype]
    values = torch.empty((n, k), dtype=storage_dtype, device=g.device) if out is None else out
    row_log = torch.empty(n, dtype=g.dtype, device=g.device)
    col_max = torch.full((k,), -math.inf, dtype=g.dtype, device=g.device)
    shifted = bool(g.any())  # else the rows' maxima are the source's
    for r0 in range(0, n, build_rows):
        r1 = min(r0 + build_rows, n)
        y, m = _source_block(source, r0, r1, k, g, fresh)
        torch.maximum(col_max, y.amax(0), out=col_max)
        if shifted:
            y += g
            m = y.amax(1)
        m = m.unsqueeze(1) - shift
        y.sub_(m)
        F.threshold_(y, keep + shift, -math.inf)  # below exp(keep) of the row maximum: 0, no denormal
        values[r0:r1] = y.exp_()
        row_log[r0:r1] = m.squeeze(1)
    _check_columns(col_max)
    return StoredKernel(values, row_log, g.clone(), block_rows)


class _SourceLogOps:
    """Exact log-sum-exps that re-evaluate the source block by block (a full pass over it per call)."""

    def __init__(self, source: LogKernelRows, shape, dtype, device, block_rows: int):
        self.source, self.shape, self.dtype, self.device, self.block_rows = source, shape, dtype, device, block_rows

    def _rows(self):
        n = self.shape[0]
        for r0 in range(0, n, self.block_rows):
            r1 = min(r0 + self.block_rows, n)
            yield r0, r1, self.source(r0, r1).to(device=self.device, dtype=self.dtype, copy=True)

    def col_lse(self, f: torch.Tensor) -> torch.Tensor:
        run_max = torch.full((self.shape[1],), -math.inf, dtype=self.dtype, device=self.device)
        run_sum = torch.zeros_like(run_max)
        for r0, r1, y in self._rows():
            y += f[r0:r1].unsqueeze(1)
            new_max = torch.maximum(run_max, y.amax(0))
            safe = torch.where(torch.isfinite(new_max), new_max, torch.zeros_like(new_max))
            run_sum = run_sum * torch.exp(run_max - safe) + torch.exp(y - safe).sum(0)
            run_max = new_max
        return run_sum.log() + torch.where(torch.isfinite(run_max), run_max, torch.zeros_like(run_max))

    def row_lse(self, g: torch.Tensor) -> torch.Tensor:
        out = torch.empty(self.shape[0], dtype=self.dtype, device=self.device)
        for r0, r1, y in self._rows():
            out[r0:r1] = _logsumexp(y + g, -1)
        return out


class _StoredOps:
    """The ``fast`` ops of :func:`~.sinkhorn._iterate` on a :class:`StoredKernel` (see the module docstring)."""

    dense_products = True

    def __init__(self, source: LogKernelRows, shape, storage_dtype, block_rows: int, build_rows: int,
                 threshold: float, fresh: bool = False):
        self.source, self.shape, self.storage_dtype, self.fresh = source, shape, storage_dtype, fresh
        self.block_rows, self.build_rows, self.threshold = block_rows, build_rows, threshold
        self.kernel: Optional[StoredKernel] = None
        self.built_at = None  # column potential of the last build from the source
        self.dirty = False
        self.builds = self.rescales = 0

    def absorb(self, g: torch.Tensor) -> None:
        if self.kernel is None or self.dirty or self._spread(g - self.built_at) > _REBUILD_DRIFT:
            out = None if self.kernel is None else self.kernel.values
            self.kernel = _build(self.source, self.shape, g, self.storage_dtype, self.block_rows, self.build_rows,
                                 out=out, fresh=self.fresh)
            self.built_at = g.clone()
            self.builds += 1
        else:
            self.kernel.rescale_(g)
            self.rescales += 1
        self.dirty = False

    @staticmethod
    def _spread(d: torch.Tensor) -> float:
        return float(d.amax() - d.amin())

    def needs_absorb(self, g: torch.Tensor) -> bool:
        spread = self._spread(g - self.kernel.col_log)
        return self.dirty or not spread <= self.threshold  # also true for NaN

    def col_lse(self, f: torch.Tensor) -> torch.Tensor:  # logsumexp_i (log K_ij + f_i)
        kern = self.kernel
        x, c = _centred_exp(f + kern.row_log)
        return kern.rmatvec(x).log_().add_(c).sub_(kern.col_log)

    def row_lse(self, g: torch.Tensor) -> torch.Tensor:  # logsumexp_j (log K_ij + g_j)
        kern = self.kernel
        x, c = _centred_exp(g - kern.col_log)
        return kern.matvec(x).log_().add_(c).add_(kern.row_log)


def default_block_rows(k: int, elements: int = 1 << 20) -> int:
    """Rows per block so that a block holds about ``elements`` numbers (4 MiB of float32 by default)."""
    return max(1, elements // max(1, k))


def sinkhorn_blocks(
    log_kernel_rows: LogKernelRows,
    shape: tuple[int, int],
    a=None,
    b=None,
    *,
    storage_dtype: torch.dtype = torch.float32,
    dtype: Optional[torch.dtype] = None,
    device: Union[str, torch.device, None] = None,
    block_rows: Optional[int] = None,
    build_rows: Optional[int] = None,
    method: str = "stabilized",
    max_iter: Optional[int] = None,
    tol: Optional[float] = None,
    stop_rule: str = "marginal",
    check_every: Optional[int] = None,
    omega: Union[str, float, None] = None,
    absorb_threshold: float = 30.0,
    warmup: int = 10,
    adapt_every: int = 20,
    probe_every: int = 5,
    warn: bool = True,
    init_log_v: Optional[torch.Tensor] = None,
    reg_m=None,
    fresh_rows: bool = False,
) -> SinkhornResult:
    """Entropic OT on a dense log kernel given by rows, held once (module docstring).

    Same problem, stopping rules and options as :func:`~.sinkhorn.sinkhorn_log` (unbatched: one ``N x K``
    problem); the result's ``kernel`` is the :class:`StoredKernel` (``log_kernel`` is ``None``), absorbed around
    a column potential close to ``log_v``.

    Args:
        log_kernel_rows: ``(start, stop) -> (stop - start, K)`` tensor, the rows ``start:stop`` of ``log K``
            (``-cost / reg``; copied before use, so a view of a larger tensor is fine; ``-inf`` allowed, NaN and
            ``+inf`` are not; every row and column needs a finite entry). Called once per block to build the
            kernel, and again only for a rebuild or an exact fallback.
        shape: ``(N, K)``.
        a, b: ``(N,)`` and ``(K,)`` positive marginals; ``None`` = uniform.
        storage_dtype: dtype of the stored ``values``: ``torch.float32`` (default), ``torch.bfloat16`` (half the
            memory, entries rounded to 8 significant bits) or ``torch.float64``.
        dtype: dtype of the potentials and of the block computations: ``torch.float32`` for float32 or bfloat16
            storage, ``torch.float64`` for float64 storage (the default follows ``storage_dtype``).
        device: where the kernel and potentials live (default: the device of ``log_kernel_rows(0, 1)``).
        block_rows: rows per block of the products (default: about 2^20 numbers per block).
        build_rows: rows per call of ``log_kernel_rows`` (default ``block_rows``; larger blocks make a matrix
            product inside the source more efficient).
        method: ``"stabilized"`` (the stored kernel; default) or ``"log"`` (no stored kernel: every log-sum-exp
            re-evaluates the source, a pass over it per update; for checks).
        reg_m: KL-relaxed marginals with POT's ``ot.sinkhorn_unbalanced(a, b, -log K, 1, reg_m)`` semantics.
        fresh_rows: ``log_kernel_rows`` returns a new tensor of the compute dtype on every call (not a view of
            anything kept): the solver then works in it without a copy.
        max_iter, tol, stop_rule, check_every, omega, absorb_threshold, warmup, adapt_every, probe_every, warn,
            init_log_v: as in :func:`~.sinkhorn.sinkhorn_log`.

    Returns:
        :class:`~.sinkhorn.SinkhornResult` (``kernel`` set for ``method="stabilized"``; with ``method="log"`` the
        result holds neither kernel, and its plan methods are unavailable).
    """
    n, k = (int(s) for s in shape)
    _check_shape((n, k))
    if method not in ("stabilized", "log"):
        raise ValueError(f"method must be 'stabilized' or 'log', got {method!r}")
    dtype = _compute_dtype(storage_dtype) if dtype is None else dtype
    if dtype != _compute_dtype(storage_dtype):
        raise ValueError(f"dtype {dtype} does not match storage_dtype {storage_dtype} (float32 computes float32 and "
                         "bfloat16 storage, float64 float64 storage)")
    if device is None:
        device = log_kernel_rows(0, 1).device
    device = torch.device(device)
    block_rows = default_block_rows(k) if block_rows is None else int(block_rows)
    build_rows = block_rows if build_rows is None else int(build_rows)
    opt = _options(stop_rule, max_iter, tol, check_every, omega, warmup, adapt_every, probe_every, None, reg_m,
                   device.type == "cuda")
    like = torch.empty(0, dtype=dtype, device=device)
    with torch.no_grad():
        log_a = _prepare_marginal(a, n, [], like, "a")
        log_b = _prepare_marginal(b, k, [], like, "b")
        exact = _SourceLogOps(log_kernel_rows, (n, k), dtype, device, build_rows)
        stored = _StoredOps(log_kernel_rows, (n, k), storage_dtype, block_rows, build_rows, absorb_threshold,
                            fresh_rows) \
            if method == "stabilized" else None
        if stored is None:  # validate the source once (the stored path does it while building)
            _validate_source(log_kernel_rows, (n, k), like, build_rows)
        f, g, it, err, converged = _iterate(stored, exact, log_a, log_b, init_log_v, opt, [], device, dtype)
    _warn_not_converged(warn, converged, opt, err)
    return SinkhornResult(log_kernel=None, log_u=f, log_v=g, iterations=it, marginal_error=err, converged=converged,
                          stop_rule=stop_rule, reg_m=reg_m, kernel=None if stored is None else stored.kernel)
