"""One attention module's attention on one image, kept as what makes it rather than as
its (Nq, Nk) matrix: the queries and keys when they can be had exactly, else the matrix.

At 128x128 = 16,384 positions one head's fp32 matrix is 1 GiB, and its queries and keys
(d = 8) are 1 MiB. So a module whose q, k and scale are known (convattn's own modules,
``F.scaled_dot_product_attention``, an explicit matmul feeding the softmax; see
``convattn.readout.foreign``) is kept as them: a row costs Nk d multiplications, and the
maps (attention received, the spread of each query, the largest weight) are computed in
chunks of query rows, each chunk's scores at most ``CHUNK_BYTES``. A module seen only
through its softmax's output is kept as that one image's matrix: the model formed it
anyway, so holding it costs no more than running the model did.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

CHUNK_BYTES = 32 << 20  # the scores of one chunk of query rows, all heads, in fp32
PASS_BYTES = 16 << 20  # a chunk of the fused path's one pass: few, large operations
_FLASH = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)


@dataclass(frozen=True)
class Summary:
    """The maps of one view (a head, or the mean of the heads' rows), flat."""

    received: Tensor  # (Nk,) mean weight each key gets over all queries (column mean)
    spread: Tensor  # (Nq,) entropy of each query's row / log Nk: 0 one key, 1 uniform
    max_weight: float  # the largest weight of the view's (Nq, Nk) matrix


@dataclass(frozen=True)
class AttentionSource:
    """(h, Nq, Nk) attention of one image, as ``q``, ``k`` and ``scale`` (softmax(q k^T *
    scale) row by row) or as ``matrix``; exactly one of the two is set. fp32, on the CPU."""

    q: Tensor | None = None  # (h, Nq, d)
    k: Tensor | None = None  # (h, Nk, d)
    scale: float = 1.0
    matrix: Tensor | None = None  # (h, Nq, Nk)

    @classmethod
    def from_qk(cls, q: Tensor, k: Tensor, scale: float | None = None) -> AttentionSource:
        """From (h, Nq, d) queries and (h, Nk, d) keys; ``scale`` 1/sqrt(d) by default."""
        if q.dim() != 3 or k.dim() != 3 or q.shape[0] != k.shape[0] or q.shape[2] != k.shape[2]:
            raise ValueError(f"q (h, Nq, d) and k (h, Nk, d) do not agree: {tuple(q.shape)}, "
                             f"{tuple(k.shape)}")
        scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
        return cls(q=q.detach().float().cpu(), k=k.detach().float().cpu(), scale=scale)

    @classmethod
    def from_matrix(cls, matrix: Tensor) -> AttentionSource:
        """From an (h, Nq, Nk) matrix whose rows sum to 1."""
        if matrix.dim() != 3:
            raise ValueError(f"an (h, Nq, Nk) matrix, not {tuple(matrix.shape)}")
        return cls(matrix=matrix.detach().float().cpu())

    def has_qk(self) -> bool:
        return self.q is not None

    @property
    def shape(self) -> tuple[int, int, int]:
        """(h, Nq, Nk)."""
        if self.q is not None and self.k is not None:
            return self.q.shape[0], self.q.shape[1], self.k.shape[1]
        assert self.matrix is not None
        h, nq, nk = self.matrix.shape
        return h, nq, nk

    def rows(self, start: int, stop: int) -> Tensor:
        """(h, stop - start, Nk): the rows of queries start..stop-1 in every head."""
        if self.q is not None and self.k is not None:
            return (self.q[:, start:stop] @ self.k.transpose(1, 2) * self.scale).softmax(-1)
        assert self.matrix is not None
        return self.matrix[:, start:stop]

    def row(self, query: int) -> Tensor:
        """(h, Nk): one query's row in every head."""
        return self.rows(query, query + 1)[:, 0]

    def chunk_rows(self) -> int:
        """How many query rows one chunk holds: its scores, weights and a temporary (three
        (h, rows, Nk) fp32 tensors) within ``CHUNK_BYTES``."""
        h, _, nk = self.shape
        return max(1, CHUNK_BYTES // (3 * 4 * h * nk))

    def _chunk(self, start: int, stop: int) -> tuple[Tensor, Tensor]:
        """(h, n, Nk) weights and (h, n) entropies in nats of rows start..stop-1.

        From scores s, the entropy of softmax(s) is logsumexp(s) - sum_j a_j s_j: no
        logarithm of Nq Nk weights, the slowest step at 16,384 positions."""
        if self.q is None or self.k is None:
            a = self.rows(start, stop)
            return a, torch.special.entr(a).sum(dim=-1)
        s = self.q[:, start:stop] @ self.k.transpose(1, 2)
        s.mul_(self.scale)
        top = s.amax(dim=-1, keepdim=True)
        a = (s - top).exp_()
        total = a.sum(dim=-1, keepdim=True)
        a.div_(total)
        entropy = (total.log_() + top)[..., 0] - (a * s).sum(dim=-1)
        return a, entropy.clamp_min_(0.0)

    def chunks(self, rows: int | None = None) -> Iterator[tuple[int, Tensor]]:
        """(start, (h, n, Nk) rows) for consecutive chunks of query rows."""
        nq, size = self.shape[1], rows or self.chunk_rows()
        for start in range(0, nq, size):
            yield start, self.rows(start, min(start + size, nq))

    def summaries(self, rows: int | None = None, fused: bool = True
                  ) -> tuple[Summary, list[Summary]]:
        """The maps of the mean of the heads' rows, and of each head (an empty list for a
        one-head module), in one pass over chunks of ``rows`` query rows (by default as many
        as ``CHUNK_BYTES`` allows): no (Nq, Nk) matrix is formed at once.

        With ``fused`` (and q and k known, on a torch with the CPU flash-attention kernel)
        most of it comes from that kernel instead (``_fused``), the same numbers to fp32
        rounding, several times faster at 16,384 positions."""
        if fused and rows is None and self.q is not None and _FLASH is not None and (
                self.scale > 0 and self.q.device.type == "cpu"):
            return self._fused()
        h, nq, nk = self.shape
        views = h + 1 if h > 1 else 1  # the mean first, then each head
        received = torch.zeros(views, nk, dtype=torch.float64)
        spread = torch.empty(views, nq)
        top = torch.zeros(views)
        log_n = math.log(nk) if nk > 1 else 1.0
        size = rows or self.chunk_rows()
        with torch.no_grad():
            for start in range(0, nq, size):
                stop = min(start + size, nq)
                a, entropy = self._chunk(start, stop)
                if h > 1:
                    mean = a.mean(dim=0, keepdim=True)
                    a = torch.cat([mean, a])
                    entropy = torch.cat([torch.special.entr(mean).sum(-1), entropy])
                received += a.sum(dim=1, dtype=torch.float64)
                spread[:, start:stop] = entropy / log_n
                top = torch.maximum(top, a.amax(dim=(1, 2)))
        made = [Summary(received=(received[i] / nq).float(), spread=spread[i],
                        max_weight=float(top[i])) for i in range(views)]
        return made[0], made[1:]

    def _fused(self) -> tuple[Summary, list[Summary]]:
        """``summaries`` with the flash-attention kernel, which never forms a matrix, for
        what it can give: its log-sum-exp l_i of each row's scores s_ij and its output with
        the keys as values, E_i = sum_j a_ij k_j, give each head's entropies,
        H_i = l_i - sum_j a_ij s_ij = l_i - scale q_i . E_i, with no logarithm of a weight.
        Then one pass over chunks of rows (``PASS_BYTES``): the log-weights s_ij - l_i from
        one matmul (a column of -l_i beside the scaled queries, of 1 beside the keys), their
        largest per head, the weights (one exp), their column sums (attention received)
        and, for several heads, the mean of the heads' rows: its largest weight and its
        entropies (the only logarithms left).
        """
        assert self.q is not None and self.k is not None and _FLASH is not None
        q, k, scale = self.q, self.k, self.scale
        h, nq, nk = self.shape
        with torch.no_grad():
            out, lse = _FLASH(q[None], k[None], k[None], scale=scale)
            lse, out = lse[0], out[0]  # (h, Nq), (h, Nq, d)
            entropy = (lse - scale * (q * out).sum(-1)).clamp_min_(0.0)  # (h, Nq)
            keys = torch.cat([k, torch.ones(h, nk, 1)], dim=-1)
            q_log = torch.cat([q * scale, -lse[..., None]], dim=-1)
            top = torch.full((h,), -math.inf)
            received = torch.zeros(h, nk)
            mean_top, mean_entropy = 0.0, torch.empty(nq)
            size = max(1, PASS_BYTES // (4 * h * nk))
            for start in range(0, nq, size):
                stop = min(start + size, nq)
                s = q_log[:, start:stop] @ keys.transpose(1, 2)  # (h, n, Nk) log a_ij
                top = torch.maximum(top, s.amax(dim=(1, 2)))
                a = s.exp_()
                received += a.sum(dim=1)
                if h > 1:
                    m = a[0].clone()  # (n, Nk) the mean of the heads' rows, summed head
                    for t in range(1, h):  # by head (a reduction across heads is slower)
                        m.add_(a[t])
                    m.div_(h)
                    mean_top = max(mean_top, float(m.max()))
                    mean_entropy[start:stop] = torch.special.entr(m).sum(-1)
            received /= nq
        log_n = math.log(nk) if nk > 1 else 1.0
        heads = [Summary(received=received[t], spread=entropy[t] / log_n,
                         max_weight=float(top[t].exp())) for t in range(h)]
        if h == 1:
            return heads[0], []
        mean = Summary(received=received.mean(dim=0), spread=mean_entropy / log_n,
                       max_weight=mean_top)
        return mean, heads

    def full(self) -> Tensor:
        """(h, Nq, Nk): every row at once. For small modules and tests; at 16,384
        positions this is 1 GiB a head."""
        return self.rows(0, self.shape[1])
