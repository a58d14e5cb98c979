"""The attention lens, library side: the score of a guessed row (predict-then-reveal), the
fewest cells that hold a given share of a row (the lens's mass outlines) and the query/key
space of a module on one image.

The browser's side (the fp16 payload of queries and keys, and the JavaScript's row
computation mirrored in numpy for the tests) is ``appkit.lens.wire``; ``appkit.lens``
mounts the component. Nothing here imports Streamlit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from torch import Tensor, nn

from convattn.nn.interface import QueryKeyAttention, require
from convattn.readout.grid import INPUT_SIZE, Grid


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
         image: tuple[int, int] = (INPUT_SIZE, INPUT_SIZE)) -> np.ndarray:
    """(H', W') bool: the cells whose centre lies within ``radius`` input pixels of the
    centre of input pixel ``centre`` (row, col) of an ``image`` (H, W) input. The cell
    holding that pixel is always in, so that a disc smaller than a coarse cell still counts
    the cell guessed."""
    cells = Grid.of(grid, image)
    at = cells.centres() - (centre[0] + 0.5, centre[1] + 0.5)
    inside = ((at ** 2).sum(axis=1) <= radius * radius).reshape(cells.shape)
    inside[cells.cell_of(centre)] = True
    return inside


def guess_score(row: np.ndarray, guess: tuple[int, int], radius: float,
                image: tuple[int, int] = (INPUT_SIZE, INPUT_SIZE)) -> GuessScore:
    """Score a guess of where a query looks: the row's (H', W') attention within ``radius``
    input pixels of ``guess`` (row, col of an ``image`` (H, W) input), against the share of
    the grid that disc covers (what uniform attention would put in it)."""
    inside = disc(row.shape, guess, radius, image)
    cells = int(inside.sum())
    return GuessScore(mass=float(row[inside].sum()), uniform=cells / row.size, cells=cells)


def mass_cells(row: np.ndarray, fractions: tuple[float, ...] | list[float]
               ) -> list[np.ndarray]:
    """For each fraction f in (0, 1], the smallest set of cells of ``row`` (any shape, weights
    >= 0) that holds at least f of its mass, as a bool mask of ``row``'s shape.

    The rule the lens's JavaScript follows too (``lens.js``, ``massCells``), so that both
    outline the same cells: the cells sorted by weight, largest first, ties by row-major
    index; their running sum, added in that order, until it reaches f times the whole
    sum added the same way (a sum in one order, so that float64 agrees with the browser's
    to the last bit). Taking the largest weights first is what makes the set smallest:
    any other set of k cells holds at most the k largest weights."""
    flat = np.asarray(row, dtype=np.float64).ravel()
    if flat.size == 0 or (flat < 0).any():
        raise ValueError("a row of weights >= 0 with at least one cell")
    order = np.argsort(-flat, kind="stable")
    running = np.cumsum(flat[order])  # sequential, as the browser adds
    out = []
    for f in fractions:
        if not 0 < f <= 1:
            raise ValueError(f"a fraction of the mass in (0, 1], not {f}")
        k = min(int(np.searchsorted(running, f * running[-1], side="left")) + 1, flat.size)
        mask = np.zeros(flat.size, dtype=bool)
        mask[order[:k]] = True
        out.append(mask.reshape(np.shape(row)))
    return out


@dataclass(frozen=True)
class QKSpace:
    """Queries and keys of one image and module in one 2-D projection (AttentionViz)."""

    points: np.ndarray  # (Nq + Nk, 2) float32: the Nq queries, then the Nk keys
    explained: tuple[float, float]  # share of the variance along each axis


def qk_vectors(q: np.ndarray, k: np.ndarray, head: int | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """The (Nq, d) queries and (Nk, d) keys a projection shows, normalised as AttentionViz does,
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
    (d, d) scatter matrix of the centred (Nq + Nk, d) points, the right singular vectors of that
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


def module_queries_keys(module: nn.Module, x: Tensor, name: str,
                        what: str = "the query/key space") -> tuple[np.ndarray, np.ndarray]:
    """``module``'s fp32 queries (h, Nq, d) and keys (h, Nk, d) on its input ``x``
    (1, C, H, W), as numpy; ``NotSupported`` naming the module (``name``) and ``what``
    needed them when it does not expose them (``QueryKeyAttention``)."""
    qk = require(module, QueryKeyAttention, name, what)
    if x.shape[0] != 1:
        raise ValueError("the queries and keys of one image: x of shape (1, C, H, W)")
    q, k = qk.queries_keys(x)
    return q[0].cpu().numpy(), k[0].cpu().numpy()


def module_qk_space(module: nn.Module, x: Tensor, name: str, head: int | None = None
                    ) -> QKSpace:
    """``qk_space`` of ``module`` on its input ``x`` (1, C, H, W); a module that does not
    expose its queries and keys raises ``NotSupported`` naming it."""
    return qk_space(*module_queries_keys(module, x, name), head)
