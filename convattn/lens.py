"""The attention lens, library side: what a browser needs to compute any query's attention
row itself, the score of a guessed row (predict-then-reveal), and the query/key space.

The browser gets each head's queries and keys as fp16, (h, N, d) each: 4 h N d bytes,
256 KiB for seed (N = 1,024, C' = 64), against 2 MiB for its (N, N) attention matrix at
the same precision. It then computes softmax(q_i . K^T / sqrt(d)) for the query under the
cursor, N d multiplications, in double precision from the fp16 values. ``browser_row`` is
that computation in numpy, so the tests hold the JavaScript to ``attention_row``.

Nothing here imports Streamlit: ``appkit.lens`` mounts the component.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass

import numpy as np
import torch

from .layers import attention_row

SOURCE = 32  # side of the input image, in pixels


def b64(array: np.ndarray, dtype: str) -> str:
    """``array`` as little-endian ``dtype`` bytes in base64 (how JSON carries binary)."""
    return base64.b64encode(np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("<"))
                            .tobytes()).decode("ascii")


def module_payload(q: np.ndarray, k: np.ndarray, grid: tuple[int, int]) -> dict[str, object]:
    """One attention module on one image, for the browser: every head's queries and keys,
    (h, N, d) each, as fp16 in base64, with the grid they are laid out on (row-major)."""
    h, n, d = q.shape
    if k.shape != q.shape or n != grid[0] * grid[1]:
        raise ValueError(f"q {q.shape}, k {k.shape} and grid {grid} do not agree")
    return {"grid": [int(grid[0]), int(grid[1])], "heads": int(h), "dim": int(d),
            "q": b64(q, "float16"), "k": b64(k, "float16")}


def image_payload(pixels: np.ndarray) -> str:
    """The (32, 32, 3) uint8 image, row-major RGB, in base64."""
    return b64(pixels, "uint8")


def browser_row(q: np.ndarray, k: np.ndarray, query: int, head: int | None = None
                ) -> np.ndarray:
    """The row the browser paints: fp16 queries and keys, computed in float64 as the
    JavaScript does (max-subtracted softmax); one head, or the mean of the heads' rows."""
    q64 = q.astype(np.float16).astype(np.float64)
    k64 = k.astype(np.float16).astype(np.float64)
    heads = range(q.shape[0]) if head is None else [head]
    rows = []
    for t in heads:
        s = k64[t] @ q64[t, query] / math.sqrt(q.shape[-1])
        e = np.exp(s - s.max())
        rows.append(e / e.sum())
    return np.mean(rows, axis=0)


def fp16_tolerance(q: np.ndarray, k: np.ndarray, query: int) -> np.ndarray:
    """How far, relatively, each weight of ``query``'s row may move when q and k are
    rounded to fp16 (relative error at most 2^-11 each): a score moves by at most
    delta = sum_c |q_c k_c| 2^-10 / sqrt(d), a softmax weight by a factor of at most
    exp(2 max delta). Returns (h, N) bounds on |w16 - w| / w (first order, slightly padded)."""
    eps = 2.0 ** -11
    prod = np.abs(k.astype(np.float64)) @ np.abs(q[:, query].astype(np.float64))[..., None]
    delta = prod[..., 0] * (2 * eps + eps * eps) / math.sqrt(q.shape[-1])  # (h, N)
    return np.expm1(2.2 * delta.max(axis=-1, keepdims=True)) + 1e-6 * np.ones_like(delta)


def reference_row(q: np.ndarray, k: np.ndarray, query: int, head: int | None = None
                  ) -> np.ndarray:
    """``convattn.attention_row`` for the same view (one head, or the heads' mean)."""
    rows = attention_row(torch.from_numpy(q), torch.from_numpy(k), query).double().numpy()
    return rows.mean(axis=0) if head is None else rows[head]


@dataclass(frozen=True)
class GuessScore:
    """How much of a row's attention falls within ``radius`` input pixels of a guess."""

    mass: float  # attention within the disc, 0..1
    uniform: float  # what uniform attention would put there: the disc's share of cells
    cells: int  # cells of the module's grid whose centre lies in the disc

    @property
    def ratio(self) -> float:
        """mass / uniform: 1 is no better than not knowing, N / cells is the best."""
        return self.mass / self.uniform


def disc(grid: tuple[int, int], centre: tuple[int, int], radius: float,
         source: int = SOURCE) -> np.ndarray:
    """(H', W') bool: the cells whose centre lies within ``radius`` input pixels of the
    centre of input pixel ``centre`` (row, col). The cell holding that pixel is always in,
    so that a disc smaller than a coarse cell still counts the cell guessed."""
    h, w = grid
    ys = (np.arange(h) + 0.5) * source / h
    xs = (np.arange(w) + 0.5) * source / w
    cy, cx = centre[0] + 0.5, centre[1] + 0.5
    inside = (ys[:, None] - cy) ** 2 + (xs[None, :] - cx) ** 2 <= radius * radius
    inside[centre[0] * h // source, centre[1] * w // source] = True
    return inside


def guess_score(row: np.ndarray, guess: tuple[int, int], radius: float,
                source: int = SOURCE) -> GuessScore:
    """Score a guess of where a query looks: the row's (H', W') attention within ``radius``
    input pixels of ``guess`` (row, col of the input), against the share of the grid that
    disc covers (what uniform attention would put in it)."""
    inside = disc(row.shape, guess, radius, source)
    cells = int(inside.sum())
    return GuessScore(mass=float(row[inside].sum()), uniform=cells / row.size, cells=cells)


def cell_centre(cell: int, grid: tuple[int, int], source: int = SOURCE) -> tuple[int, int]:
    """The input pixel (row, col) at the centre of row-major ``cell`` of ``grid``."""
    r, c = divmod(int(cell), grid[1])
    return (int((r + 0.5) * source / grid[0]), int((c + 0.5) * source / grid[1]))


@dataclass(frozen=True)
class QKSpace:
    """Queries and keys of one image and module in one 2-D projection (AttentionViz)."""

    points: np.ndarray  # (2N, 2) float32: the N queries, then the N keys
    explained: tuple[float, float]  # share of the variance along each axis


def qk_vectors(q: np.ndarray, k: np.ndarray, head: int | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """The (N, d) queries and keys a projection shows, normalised as AttentionViz does,
    without changing any attention weight: q scaled by s and k by 1/s so that both have
    the same mean norm (q . k is unchanged), then the keys translated so that their mean
    is the queries' mean (adding one vector to every key adds the same number to every
    score of a query, which softmax ignores). ``head`` None takes all heads' channels together."""
    if head is None:
        qs = np.concatenate(list(q), axis=-1).astype(np.float64)
        ks = np.concatenate(list(k), axis=-1).astype(np.float64)
    else:
        qs, ks = q[head].astype(np.float64), k[head].astype(np.float64)
    nq = np.linalg.norm(qs, axis=1).mean()
    nk = np.linalg.norm(ks, axis=1).mean()
    s = math.sqrt(nk / nq) if nq > 0 and nk > 0 else 1.0
    qs, ks = qs * s, ks / s
    return qs, ks - ks.mean(axis=0) + qs.mean(axis=0)


def qk_space(q: np.ndarray, k: np.ndarray, head: int | None = None) -> QKSpace:
    """PCA of queries and keys together (after ``qk_vectors``): the top eigenvectors of the
    (d, d) scatter matrix of the centred (2N, d) points, the right singular vectors of that
    matrix (an SVD of the (2N, d) matrix itself took a second on a busy 2-core machine).
    Each axis's sign is fixed (its largest loading positive), so the same image always
    gives the same picture."""
    qs, ks = qk_vectors(q, k, head)
    x = np.concatenate([qs, ks])
    x = x - x.mean(axis=0)
    var, vecs = np.linalg.eigh(x.T @ x)  # ascending
    var, axes = np.clip(var[::-1], 0, None), vecs[:, ::-1][:, :2].T
    axes = axes * np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)])[:, None]
    total = float(var.sum()) or 1.0
    explained = tuple(float(v) / total for v in var[:2])
    points = (x @ axes.T).astype(np.float32)
    if points.shape[1] < 2:  # d = 1: a line
        points = np.pad(points, ((0, 0), (0, 2 - points.shape[1])))
        explained = (*explained, 0.0)
    return QKSpace(points=points, explained=(explained[0], explained[1]))
