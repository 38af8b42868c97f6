"""Exact k-nearest-neighbour search between two feature sets, chunked (memory O(chunk · M))."""
import torch
import torch.nn.functional as F

__all__ = ["cross_knn"]


def cross_knn(queries: torch.Tensor, database: torch.Tensor, k: int, chunk_size: int = 4096,
              exclude_self: bool = False):
    """The ``k`` database rows nearest to each query by cosine similarity (= L2 on normalised features).

    Args:
        queries: ``(N, D)``; database: ``(M, D)``; rows are L2-normalised here.
        k: neighbours per query (capped at M, or M - 1 with ``exclude_self``).
        exclude_self: queries and database are the same set; a row is not its own neighbour.

    Returns:
        ``(sims, indices)``: ``(N, k)`` cosine similarities (descending) and int64 database indices.
    """
    q, db = F.normalize(queries.float(), dim=1), F.normalize(database.float(), dim=1)
    k = min(k, db.shape[0] - int(exclude_self))
    sims, indices = [], []
    for start in range(0, q.shape[0], chunk_size):
        block = q[start:start + chunk_size] @ db.T
        if exclude_self:
            rows = torch.arange(block.shape[0], device=block.device)
            block[rows, rows + start] = float("-inf")
        s, i = block.topk(k, dim=1)
        sims.append(s)
        indices.append(i)
    return torch.cat(sims), torch.cat(indices)
