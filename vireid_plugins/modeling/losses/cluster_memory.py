"""Non-parametric cluster-centroid memory with a momentum update (cluster contrast loss).

Re-implementation of the ``ClusterMemory`` of Cluster-Contrast (Dai et al., "Cluster Contrast for
Unsupervised Person Re-Identification", ACCV'22) as used by ADCA (Yang et al., "Augmented Dual-Contrastive
Aggregation Learning for Unsupervised Visible-Infrared Person Re-Identification", ACM MM'22) and its
descendants (PGM, GUR, MULT, TokenMatcher).

The memory ``M`` (``K x D``, L2-normalised rows) holds one centroid per pseudo-label cluster. For a batch of
features ``f`` (``B x D``)::

    x = normalize(f)                                   # B x D
    z = x @ M^T / tau                                  # B x K logits
    loss = CE(z, y)                                    # y: B hard labels, or B x K soft targets

``M`` receives no gradient; it is refreshed in the *backward* pass of ``z`` (as in the reference ``CM`` /
``CM_Hard`` autograd functions), with the L2-normalised inputs ``x`` of that batch and momentum ``m``:

* ``"sequential"`` (reference ``CM``): for each sample in batch order,
  ``M[y_b] <- normalize(m * M[y_b] + (1 - m) * x_b)``;
* ``"mean"``: one step per class present, ``M[y] <- normalize(m * M[y] + (1 - m) * mean{x_b : y_b = y})``;
* ``"hard"`` (reference ``CM_Hard``): one step per class present with its least similar instance,
  ``M[y] <- normalize(m * M[y] + (1 - m) * x_h)``, ``h = argmin_{b: y_b = y} x_b . M[y]`` (first on ties).

As in the reference, *every* forward call that carries targets (in training mode) updates the memory once,
when its backward runs. Unlike the reference, the gradient w.r.t. the inputs uses the memory *as it was in
the forward pass* (a snapshot), so it stays exact when several calls share one backward.

Per-token memories: a memory built with ``num_tokens = T > 0`` holds ``T x K x D`` centroids (one memory per
class token of a multi-token model, all with the same ``K`` clusters); inputs are ``B x T x D``, logits
``B x T x K`` and the loss is the mean over the ``B x T`` (sample, token) pairs.

Several processes: with more than one rank, each update gathers the inputs and labels of every rank first (in
rank order) and is applied outside the backward pass (:meth:`ClusterMemory.flush`, called before the next forward
and after every training step), so every rank holds the same memory, equal to one process trained on the
concatenated global batch.
"""
from typing import Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from fastreid.utils import comm
from torch import Tensor, nn

__all__ = ["ClusterMemory", "soft_cross_entropy"]

UPDATE_MODES = ("sequential", "mean", "hard")


def soft_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Cross-entropy with hard or soft targets, averaged over the batch.

    Args:
        logits: ``B x K`` unnormalised scores (half precision is computed in float32).
        targets: either ``B`` integer labels in ``[0, K)``, negative entries (e.g. the outlier label ``-1``)
            being ignored, or a ``B x K`` floating-point target distribution per row.

    Returns:
        Scalar loss. Hard targets: mean over the non-ignored samples of ``-log softmax(z_b)[y_b]`` (``0`` when
        all are ignored, instead of ``nan``). Soft targets: ``-mean_b sum_k t_bk log softmax(z_b)_k``.
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must be B x K, got shape {tuple(logits.shape)}")
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    log_prob = F.log_softmax(logits, dim=1)
    if targets.is_floating_point():
        if targets.shape != logits.shape:
            raise ValueError(f"soft targets must have the logits' shape {tuple(logits.shape)}, "
                             f"got {tuple(targets.shape)}")
        return -(targets.to(log_prob.dtype) * log_prob).sum(dim=1).mean()
    if targets.shape != logits.shape[:1]:
        raise ValueError(f"hard targets must have shape ({logits.shape[0]},), got {tuple(targets.shape)}")
    valid = targets >= 0
    nll = -log_prob.gather(1, targets.clamp(min=0).long().unsqueeze(1)).squeeze(1)
    # sum / count without a host sync; an all-ignored batch gives 0 (connected to the graph)
    return (nll * valid).sum() / valid.sum().clamp(min=1)


def labels_from_targets(targets: Tensor) -> Tensor:
    """Labels used for the memory update: hard targets as they are, soft targets by their argmax.

    Args:
        targets: ``B`` integer labels or ``B x K`` soft targets.

    Returns:
        ``B`` int64 labels; ``-1`` (no update) for negative hard labels and for soft rows summing to ``<= 0``.
    """
    if not targets.is_floating_point():
        return targets.long()
    labels = targets.argmax(dim=1)
    return torch.where(targets.sum(dim=1) > 0, labels, torch.full_like(labels, -1))


# ------------------------------------------------------------------------------------------------ updates
def _occurrence_groups(labels: Tensor):
    """Group the samples of ``labels`` (``n``, all ``>= 0``) by class, keeping batch order inside a class.

    Returns ``(order, classes, starts, counts)``: ``order`` (``n``) sorts the samples by class (stable), and the
    ``t``-th occurrence of ``classes[g]`` is sample ``order[starts[g] + t]`` for ``t < counts[g]``.
    """
    order = torch.argsort(labels, stable=True)
    classes, counts = torch.unique_consecutive(labels[order], return_counts=True)
    starts = torch.cumsum(counts, dim=0) - counts
    return order, classes, starts, counts


def _momentum_step(memory: Tensor, classes: Tensor, x: Tensor, momentum: float) -> None:
    """``memory[c] <- normalize(m * memory[c] + (1 - m) * x_c)`` in place for distinct ``classes`` (``n x D``)."""
    new = F.normalize(momentum * memory[classes] + (1.0 - momentum) * x, dim=1)
    memory.index_copy_(0, classes, new)


def update_memory(memory: Tensor, inputs: Tensor, labels: Tensor, momentum: float, mode: str) -> None:
    """Momentum update of ``memory`` (``K x D``) in place with ``inputs`` (``B x D``, L2-normalised).

    Args:
        memory: ``K x D`` centroids, modified in place (computed in at least float32).
        inputs: ``B x D`` L2-normalised features of the batch.
        labels: ``B`` int64 cluster indices in ``[0, K)``; negative entries are skipped.
        momentum: weight ``m`` of the old centroid.
        mode: ``"sequential"``, ``"mean"`` or ``"hard"`` (see the module docstring).
    """
    if mode not in UPDATE_MODES:
        raise ValueError(f"unknown update mode {mode!r}, expected one of {UPDATE_MODES}")
    keep = labels >= 0
    labels, inputs = labels[keep], inputs[keep]
    if labels.numel() == 0:
        return
    dtype = torch.promote_types(memory.dtype, torch.float32)
    mem = memory.to(dtype)  # a view of ``memory`` itself when no cast is needed
    x = inputs.to(dtype)

    if mode == "sequential":
        # Updates of different classes commute, so the per-sample loop in batch order equals processing the
        # t-th occurrence of every class at once, for t = 0 .. (max occurrences of a class) - 1.
        order, classes, starts, counts = _occurrence_groups(labels)
        for t in range(int(counts.max())):
            present = counts > t
            _momentum_step(mem, classes[present], x[order[starts[present] + t]], momentum)
    elif mode == "mean":
        num_classes = mem.shape[0]
        sums = torch.zeros_like(mem).index_add_(0, labels, x)
        counts = torch.bincount(labels, minlength=num_classes)
        classes = torch.nonzero(counts, as_tuple=True)[0]
        _momentum_step(mem, classes, sums[classes] / counts[classes].unsqueeze(1).to(dtype), momentum)
    else:  # "hard"
        n, num_classes = labels.numel(), mem.shape[0]
        sim = (x * mem[labels]).sum(dim=1)  # n, similarity to the current centroid of its class
        min_sim = torch.full((num_classes,), float("inf"), dtype=dtype, device=x.device)
        min_sim = min_sim.scatter_reduce(0, labels, sim, reduce="amin")
        # first sample (in batch order) reaching its class minimum, like numpy's argmin
        index = torch.arange(n, device=x.device)
        candidate = torch.where(sim == min_sim[labels], index, torch.full_like(index, n))
        hardest = torch.full((num_classes,), n, dtype=index.dtype, device=x.device)
        hardest = hardest.scatter_reduce(0, labels, candidate, reduce="amin")
        classes = torch.nonzero(hardest < n, as_tuple=True)[0]
        _momentum_step(mem, classes, x[hardest[classes]], momentum)

    if mem is not memory:
        memory.copy_(mem)


def _similarity(inputs: Tensor, memory: Tensor) -> Tensor:
    """``B x D`` and ``K x D`` -> ``B x K``; ``B x T x D`` and ``T x K x D`` -> ``B x T x K``."""
    return inputs.mm(memory.t()) if memory.dim() == 2 else torch.einsum("btd,tkd->btk", inputs, memory)


def _similarity_grad(grad_output: Tensor, memory: Tensor) -> Tensor:
    return grad_output.mm(memory) if memory.dim() == 2 else torch.einsum("btk,tkd->btd", grad_output, memory)


class _MemoryLogits(torch.autograd.Function):
    """``z = x M^T / tau`` (per token); backward returns ``dz M / tau`` for ``x`` and hands ``(x, labels)`` to
    ``owner._update`` once."""

    @staticmethod
    def forward(ctx, inputs: Tensor, memory: Tensor, labels: Optional[Tensor], temperature: float, owner) -> Tensor:
        snapshot = memory.to(inputs.dtype, copy=True)  # the M of this forward, for an exact gradient
        ctx.save_for_backward(inputs, snapshot)
        ctx.labels, ctx.temperature, ctx.owner = labels, temperature, owner
        return _similarity(inputs, snapshot) / temperature

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        inputs, snapshot = ctx.saved_tensors
        grad_inputs = _similarity_grad(grad_output, snapshot) / ctx.temperature if ctx.needs_input_grad[0] else None
        if ctx.labels is not None:  # update only once, even if the graph is back-propagated again
            ctx.owner._update(inputs.detach(), ctx.labels)
            ctx.labels = None
        return grad_inputs, None, None, None, None


def _all_gather_rows(x: Tensor) -> Tensor:
    """Rows of ``x`` from every rank, concatenated in rank order (ranks may hold different numbers of rows)."""
    world = dist.get_world_size()
    count = torch.tensor([x.shape[0]], device=x.device)
    counts = [torch.zeros_like(count) for _ in range(world)]
    dist.all_gather(counts, count)
    size = int(max(c.item() for c in counts))
    padded = x.new_zeros((size, *x.shape[1:]))
    padded[:x.shape[0]] = x
    parts = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([p[:int(c.item())] for p, c in zip(parts, counts)])


class ClusterMemory(nn.Module):
    """Memory of ``K`` L2-normalised cluster centroids with a cluster-contrast cross-entropy loss.

    Args:
        num_features: feature dimension ``D``.
        num_clusters: initial number of clusters ``K`` (zeros until :meth:`initialize`; usually 0 and set every
            epoch by :meth:`initialize` or built with :meth:`from_features`).
        temperature: softmax temperature ``tau``.
        momentum: weight ``m`` of the old centroid in the update (ADCA/MULT pass 0.1, the default is 0.2).
        update: ``"sequential"`` (reference ``CM``), ``"mean"`` or ``"hard"`` (reference ``CM_Hard``); see the
            module docstring.
        num_tokens: ``0`` for one memory (``K x D``), ``T > 0`` for one memory per token (``T x K x D``).

    The centroids are the buffer ``features``: it follows ``.to(device)`` and is saved in the ``state_dict``
    (loading resizes it to the saved ``K``). The logits and the loss are computed in (at least) float32 with
    autocast disabled.

    Example::

        memory = ClusterMemory.from_features(feats, pseudo_labels, momentum=0.1)  # every epoch
        loss = memory(model_features, pseudo_labels_of_batch)                     # in the training step
        loss.backward()                                                            # also updates the memory
    """

    features: Tensor

    resizable_state = True  # K changes with the clusters: VIReIDCheckpointer resizes before loading

    def __init__(self, num_features: int, num_clusters: int = 0, temperature: float = 0.05, momentum: float = 0.2,
                 update: str = "sequential", num_tokens: int = 0):
        super().__init__()
        if update not in UPDATE_MODES:
            raise ValueError(f"unknown update mode {update!r}, expected one of {UPDATE_MODES}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if num_tokens < 0:
            raise ValueError(f"num_tokens must be >= 0, got {num_tokens}")
        self.num_features = int(num_features)
        self.num_tokens = int(num_tokens)
        self.temperature = float(temperature)
        self.momentum = float(momentum)
        self.update = update
        self._pending = []  # (inputs, labels) awaiting a multi-process update (see flush)
        self.register_buffer("features", torch.zeros(*self._token_shape, int(num_clusters), self.num_features))

    @property
    def _token_shape(self) -> tuple:
        return (self.num_tokens,) if self.num_tokens else ()

    @property
    def num_clusters(self) -> int:
        """Current number of centroids ``K``."""
        return self.features.shape[-2]

    def extra_repr(self) -> str:
        return (f"num_features={self.num_features}, num_clusters={self.num_clusters}, num_tokens={self.num_tokens}, "
                f"temperature={self.temperature}, momentum={self.momentum}, update={self.update!r}")

    # ------------------------------------------------------------------------------------------- centroids
    @torch.no_grad()
    def initialize(self, centroids: Tensor) -> "ClusterMemory":
        """Replace the memory by ``normalize(centroids)`` (``K' x D``, or ``T x K' x D`` per token; any ``K'``)."""
        expected = (*self._token_shape, self.num_features)
        if centroids.dim() != len(expected) + 1 or (centroids.shape[:-2], centroids.shape[-1]) != (
                torch.Size(self._token_shape), self.num_features):
            shape = "T x K x D" if self.num_tokens else "K x D"
            raise ValueError(f"centroids must be {shape} with {expected}, got shape {tuple(centroids.shape)}")
        centroids = centroids.detach().to(self.features.device, self.features.dtype)
        self.features = F.normalize(centroids, dim=-1).contiguous()
        return self

    @staticmethod
    def cluster_centroids(features: Tensor, labels: Tensor) -> Tensor:
        """L2-normalised mean feature of each cluster.

        Args:
            features: ``N x D`` features (normalised or not; they are averaged as given), or ``N x T x D`` per-token
                features (centroids per token).
            labels: ``N`` cluster labels in ``0..K-1``, ``-1`` (outliers) ignored; every cluster must be present.

        Returns:
            ``K x D`` (``T x K x D``) centroids ``normalize(mean{features_i : labels_i = k})`` in float32 (or float64).
        """
        if features.dim() not in (2, 3) or labels.shape != features.shape[:1]:
            raise ValueError(f"expected N x D or N x T x D features and N labels, got {tuple(features.shape)} and "
                             f"{tuple(labels.shape)}")
        labels = labels.to(features.device).long()
        if (labels < -1).any():
            raise ValueError("labels must be -1 (ignored) or cluster indices 0..K-1")
        keep = labels >= 0
        labels, features = labels[keep], features[keep].to(torch.promote_types(features.dtype, torch.float32))
        num_clusters = int(labels.max()) + 1 if labels.numel() else 0
        counts = torch.bincount(labels, minlength=num_clusters)
        if (counts == 0).any():
            missing = torch.nonzero(counts == 0, as_tuple=True)[0][:10].tolist()
            raise ValueError(f"labels must be 0..K-1 with every cluster present; empty clusters: {missing}")
        flat = features.reshape(features.shape[0], -1)
        sums = flat.new_zeros(num_clusters, flat.shape[1]).index_add_(0, labels, flat)
        means = (sums / counts.unsqueeze(1).to(sums.dtype)).view(num_clusters, *features.shape[1:])
        return F.normalize(means if features.dim() == 2 else means.transpose(0, 1), dim=-1)

    @classmethod
    def from_features(cls, features: Tensor, labels: Tensor, **kwargs) -> "ClusterMemory":
        """Memory on ``features``' device initialised with :meth:`cluster_centroids` (``K = max label + 1``); per-token
        (``num_tokens = T``) for ``N x T x D`` features. ``kwargs`` go to the constructor (``temperature``,
        ``momentum``, ``update``)."""
        centroids = cls.cluster_centroids(features, labels)
        num_tokens = features.shape[1] if features.dim() == 3 else 0
        memory = cls(features.shape[-1], num_tokens=num_tokens, **kwargs).to(features.device)
        return memory.initialize(centroids)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # the number of clusters changes every epoch: resize the buffer to the saved K before copying
        saved = state_dict.get(prefix + "features")
        if isinstance(saved, Tensor) and saved.dim() == self.features.dim() and saved.shape != self.features.shape:
            self.features = self.features.new_empty(saved.shape)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ---------------------------------------------------------------------------------------------- updates
    @torch.no_grad()
    def _update(self, inputs: Tensor, labels: Tensor) -> None:
        """Momentum update with ``B x D`` (``B x T x D``) normalised inputs and ``B`` labels (``-1`` skipped): now in
        one process, at :meth:`flush` (after gathering every rank's batch) in several."""
        if comm.get_world_size() > 1:
            self._pending.append((inputs, labels))
        else:
            self._apply_update(inputs, labels)

    def _apply_update(self, inputs: Tensor, labels: Tensor) -> None:
        if self.num_tokens == 0:
            update_memory(self.features, inputs, labels, self.momentum, self.update)
            return
        # the T memories as one (T*K) x D memory: token t's class k is row t*K + k (classes of different tokens
        # never share a row, so the updates are those of T separate memories)
        t, k = self.num_tokens, self.num_clusters
        flat_labels = torch.where(labels >= 0, labels, torch.full_like(labels, -t * k - 1))
        flat_labels = (flat_labels.unsqueeze(1) + k * torch.arange(t, device=labels.device)).clamp(min=-1)
        memory = self.features.view(t * k, self.num_features)
        update_memory(memory, inputs.reshape(-1, self.num_features), flat_labels.reshape(-1), self.momentum,
                      self.update)

    @torch.no_grad()
    def flush(self) -> None:
        """Apply the pending updates of a multi-process step: every rank gathers all ranks' batches (in rank order)
        and applies the same updates, so the memories stay identical across ranks."""
        pending, self._pending = self._pending, []
        for inputs, labels in pending:
            self._apply_update(_all_gather_rows(inputs), _all_gather_rows(labels))

    # ---------------------------------------------------------------------------------------------- losses
    def _logits(self, inputs: Tensor, update_labels: Optional[Tensor]) -> Tensor:
        """``normalize(inputs) M^T / tau``; schedules an update with ``update_labels`` if training."""
        self.flush()
        if self.num_clusters == 0:
            raise RuntimeError("ClusterMemory is empty: call initialize() or build it with from_features()")
        expected = (*self._token_shape, self.num_features)
        if inputs.dim() != len(expected) + 1 or tuple(inputs.shape[1:]) != expected:
            raise ValueError(f"inputs must be B x {' x '.join(map(str, expected))}, got shape {tuple(inputs.shape)}")
        labels = None
        if update_labels is not None and self.training:
            if update_labels.shape != inputs.shape[:1]:
                raise ValueError(f"update labels must have shape ({inputs.shape[0]},), "
                                 f"got {tuple(update_labels.shape)}")
            labels = update_labels.detach().to(inputs.device).long()
        with torch.autocast(device_type=inputs.device.type, enabled=False):
            x = F.normalize(inputs.to(torch.promote_types(inputs.dtype, torch.float32)), dim=-1)
            return _MemoryLogits.apply(x, self.features, labels, self.temperature, self)

    def logits(self, inputs: Tensor, targets: Optional[Tensor] = None) -> Tensor:
        """Similarity logits to the centroids.

        Args:
            inputs: ``B x D`` features (``B x T x D`` for a per-token memory; normalised here).
            targets: optional ``B`` hard labels (``-1`` skipped) or ``B x K`` soft targets (their argmax is used).
                When given and the module is training, backward through the logits updates the memory once.

        Returns:
            ``B x K`` (``B x T x K``) logits ``normalize(inputs) M^T / tau`` (at least float32).
        """
        return self._logits(inputs, None if targets is None else labels_from_targets(targets))

    def forward(self, inputs: Tensor, targets: Tensor, update_labels: Optional[Tensor] = None) -> Tensor:
        """Cluster contrast loss ``soft_cross_entropy(logits(inputs), targets)`` (per-token: over every token).

        Args:
            inputs: ``B x D`` features (``B x T x D`` for a per-token memory).
            targets: ``B`` hard labels in ``[0, K)`` (``-1`` entries are ignored by the loss and the update) or
                ``B x K`` soft target distributions (the update then uses each row's argmax as the label; rows
                summing to 0 do not update); the same for every token.
            update_labels: optional ``B`` labels for the memory update instead of those derived from ``targets``
                (``-1`` = do not update with this sample; all ``-1`` disables the update of this call), e.g. to
                train on cross-modality labels while updating with the own-modality clusters.

        Returns:
            Scalar loss. In training mode its backward also updates the memory (see the module docstring).
        """
        if update_labels is None:
            update_labels = labels_from_targets(targets)
        logits = self._logits(inputs, update_labels)
        targets = targets.to(inputs.device)
        if self.num_tokens:  # every (sample, token) pair with the sample's target
            targets = targets.unsqueeze(1).expand(-1, self.num_tokens, *targets.shape[1:])
            logits, targets = logits.flatten(0, 1), targets.flatten(0, 1)
        return soft_cross_entropy(logits, targets)
