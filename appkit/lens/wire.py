"""The lens's wire format: what Python sends the JavaScript (``lens.js``), and the
JavaScript's row computation mirrored in numpy so that the tests hold it to
``convattn.attention_row``.

The browser gets each head's queries and keys as fp16, (h, N, d) each: 4 h N d bytes,
256 KiB for seed (N = 1,024, C' = 64), against 2 MiB for its (N, N) attention matrix at
the same precision. It then computes softmax(q_i . K^T / sqrt(d)) for the query under the
cursor, N d multiplications, in double precision from the fp16 values (``browser_row``),
maps each weight to a colour (``browser_range``, ``browser_colour_index``: linear or log)
and outlines the fewest cells holding given shares of it (``browser_mass_cells``).

Plain numpy: nothing here imports Streamlit.
"""

from __future__ import annotations

import base64
import math

import numpy as np
import torch

from convattn.nn.self_attention import attention_row
from convattn.readout.grid import Grid
from convattn.readout.lens import mass_cells

LOG_SPAN = 1000.0  # lens.js's LOG_SPAN: a log scale shows three decades below its top


def b64(array: np.ndarray, dtype: str) -> str:
    """``array`` as little-endian ``dtype`` bytes in base64 (how JSON carries binary)."""
    return base64.b64encode(np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("<"))
                            .tobytes()).decode("ascii")


def module_payload(q: np.ndarray, k: np.ndarray, grid: tuple[int, int]) -> dict[str, object]:
    """One attention module on one image, for the browser: every head's queries and keys,
    (h, N, d) each, as fp16 in base64, with the grid they are laid out on (row-major) and
    the input it covers (``Grid.data``)."""
    h, n, d = q.shape
    if k.shape != q.shape or n != grid[0] * grid[1]:
        raise ValueError(f"q {q.shape}, k {k.shape} and grid {grid} do not agree")
    return {**Grid.of(grid).data(), "heads": int(h), "dim": int(d),
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


def browser_range(row: np.ndarray, shared: bool, max_weight: float, log: bool
                  ) -> tuple[float, float]:
    """The weights at the two ends of the colour bar, as ``lens.js``'s ``range`` sets them
    for a (flat) row: shared 0..``max_weight`` or the row's own min..max (0..2/N for a row
    flat to 1% of 1/N); on a log scale the bottom raised to at most ``LOG_SPAN`` below the
    top (0.5/N..2/N for a flat row, which puts 1/N in the middle)."""
    n = row.size
    if shared:
        lo, hi = 0.0, float(max_weight)
    else:
        lo, hi = float(row.min()), float(row.max())
        if hi - lo < 0.01 / n:
            return (0.5 / n, 2 / n) if log else (0.0, 2 / n)
        hi = max(hi, lo + 1e-9)
    return (max(lo, hi / LOG_SPAN), hi) if log else (lo, hi)


def browser_colour_index(row: np.ndarray, lo: float, hi: float, log: bool) -> np.ndarray:
    """Each weight's entry of the 256-colour map, as ``lens.js``'s ``colourIndex``: its
    place between ``lo`` and ``hi``, linear or in log (weights under ``lo`` at the bottom)."""
    v = np.asarray(row, dtype=np.float64)
    if log:
        t = (np.log(np.maximum(v, lo)) - math.log(lo)) / (math.log(hi) - math.log(lo))
    else:
        t = (v - lo) / (hi - lo)
    # Math.round rounds halves up; numpy's round, to even.
    return np.clip(np.floor(t * 255 + 0.5), 0, 255).astype(np.int64)


def browser_mass_cells(row: np.ndarray, fractions: tuple[float, ...] | list[float]
                       ) -> list[list[int]]:
    """The cells ``lens.js`` outlines on its (flat) row, row-major indices in order:
    ``convattn.readout.lens.mass_cells``, whose rule (order, ties, sums) the JavaScript's
    ``massCells`` follows step for step, so that the two agree to the bit on one row."""
    return [np.flatnonzero(m).tolist() for m in mass_cells(np.asarray(row).ravel(), fractions)]
