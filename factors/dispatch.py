"""How a map's items are handed to several workers: guided self-scheduling with work stealing.

Guided self-scheduling (Polychronopoulos & Kuck 1987, "Guided self-scheduling: a practical
scheduling scheme for parallel supercomputers"): each chunk is ``ceil(left / (2 x workers))``
items, so the first chunks are large (few round trips) and the last are single items (no
worker finishes long after the others). :class:`Blocks` adds affinity: each worker owns a
contiguous block of the items and takes chunks from its front; a worker whose block is done
takes from the back of the largest block left. Used by :class:`factors.cluster.RayExecutor`,
whose workers keep state (a memo) that neighbouring items share.
"""
from __future__ import annotations

__all__ = ["Blocks", "guided_chunks"]


def guided_chunks(n: int, n_workers: int) -> list[range]:
    """Contiguous ranges covering ``range(n)``, each ``ceil(left / (2 x n_workers))`` long
    (guided self-scheduling): big chunks first, single items last."""
    out, i = [], 0
    while i < n:
        k = _guided(n - i, n_workers)
        out.append(range(i, min(n, i + k)))
        i += k
    return out


def _guided(left: int, n_workers: int) -> int:
    return max(1, -(-left // (2 * max(n_workers, 1))))


class Blocks:
    """The dispatch state of one :meth:`factors.cluster.RayExecutor.map`: each actor's block of item indices
    (contiguous, in order), taken from the front by its owner and from the back by others
    once theirs is done; chunks of a lost actor are sent again first."""

    def __init__(self, n: int, n_actors: int):
        bounds = [n * k // n_actors for k in range(n_actors + 1)]
        self.blocks = [list(range(bounds[k], bounds[k + 1])) for k in range(n_actors)]
        self.heads = [0] * n_actors
        self.retry: list[list[int]] = []

    def left(self) -> int:
        return sum(len(b) - h for b, h in zip(self.blocks, self.heads)) + sum(map(len, self.retry))

    def take(self, k: int, n_live: int) -> list[int]:
        """The next chunk for actor ``k`` (``[]``: nothing left)."""
        if self.retry:
            return self.retry.pop()
        size = _guided(self.left(), n_live)
        own = self.blocks[k]
        if self.heads[k] < len(own):
            chunk = own[self.heads[k]:self.heads[k] + size]
            self.heads[k] += len(chunk)
            return chunk
        j = max(range(len(self.blocks)), key=lambda i: len(self.blocks[i]) - self.heads[i])
        other = self.blocks[j]
        n = min(size, len(other) - self.heads[j])
        if n <= 0:
            return []
        chunk = other[len(other) - n:]
        del other[len(other) - n:]
        return chunk
