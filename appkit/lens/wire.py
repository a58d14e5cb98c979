"""The lens's wire format: what Python sends the JavaScript (``lens.js``), and the
JavaScript's row computation mirrored in numpy so that the tests hold it to
``convattn.attention_row``.

A module kept as queries and keys (``kind`` "qk") goes as each head's queries (h, Nq, d)
and keys (h, Nk, d), fp16 (4 h N d bytes: 256 KiB for seed, N = 1,024, C' = 64; 512 KiB
at 16,384 positions and d = 8), or fp32 where fp16 rounding moves sampled weights by more
than ``FP16_WEIGHT_ERROR`` (``qk_dtype``), with the scale of their scores (``qk_scale``).
The browser computes softmax(q_i . K^T * scale) for the query under the cursor, Nk d
multiplications, in double precision from those values (``browser_row``), maps each
weight to a colour (``browser_range``, ``browser_colour_index``: linear or log) and
outlines the fewest key cells holding given shares of it (``browser_mass_cells``).

A module seen only through its softmax (``kind`` "matrix") goes as its (h, Nq, Nk) matrix in
fp16 when that fits ``MATRIX_BYTES``; beyond, ``kind`` "server": hovering shows the query's
cell only, and each clicked query's row comes from the server with the page's rerun.

Every payload travels as JSON in bytes (``pack``; ``lens.js`` parses them). Given a dict,
Streamlit looks through it for data frames, importing pandas to do so (about 0.2 s, in
the first page of a server); bytes it forwards as they are.

The query grid (``grid``), the key grid (``keys``, coarser when keys are pooled) and the
input (``input``, any H x W) are sent as ``Grid.data`` gives them.

Plain numpy: nothing here imports Streamlit.
"""

from __future__ import annotations

import base64
import json
import math

import numpy as np
import torch

from convattn.nn.self_attention import attention_row
from convattn.readout.analysis import ModuleView
from convattn.readout.grid import Grid
from convattn.readout.lens import mass_cells

LOG_SPAN = 1000.0  # lens.js's LOG_SPAN: a log scale shows three decades below its top
MATRIX_BYTES = 16 << 20  # the largest fp16 matrix sent to the browser (2,896^2, one head)
FP16_WEIGHT_ERROR = 0.01  # the largest relative move of a weight fp16 queries and keys may cause


def pack(data: dict[str, object]) -> bytes:
    """A payload as the component receives it: JSON, in UTF-8 bytes."""
    return json.dumps(data, separators=(",", ":")).encode()


def unpack(sent: bytes) -> dict[str, object]:
    """``pack``'s inverse: what ``lens.js`` reads from the bytes it was sent."""
    return json.loads(sent.decode())


def b64(array: np.ndarray, dtype: str) -> str:
    """``array`` as little-endian ``dtype`` bytes in base64 (how JSON carries binary)."""
    return base64.b64encode(np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("<"))
                            .tobytes()).decode("ascii")


def qk_dtype(q: np.ndarray, k: np.ndarray, scale: float, samples: int = 16) -> str:
    """"float16", unless rounding q and k to it moves some weight of the rows of
    ``samples`` queries (spread over the grid, and the one with the longest query) by more
    than ``FP16_WEIGHT_ERROR``, relatively, among weights over 1/(10 Nk): then "float32".
    The worst case over every row (``fp16_tolerance``) is far looser than what rounding
    does (3.6% against 0.1% on seed's first sample image), so the rows are measured;
    O(samples Nk d), nothing at 16,384 positions."""
    if not (np.isfinite(q).all() and np.isfinite(k).all()):
        return "float32"
    if max(float(np.abs(q).max(initial=0)), float(np.abs(k).max(initial=0))) > 60000:
        return "float32"  # fp16 overflows at 65,504
    nq, nk = q.shape[1], k.shape[1]
    picks = {*np.linspace(0, nq - 1, samples).astype(int).tolist(),
             int(np.linalg.norm(q, axis=-1).max(axis=0).argmax())}
    for i in sorted(picks):
        exact = _rows(q[:, i], k, scale)
        rounded = _rows(q[:, i].astype(np.float16), k.astype(np.float16), scale)
        big = exact > 0.1 / nk
        if big.any() and float((np.abs(rounded - exact)[big] / exact[big]).max()) > (
                FP16_WEIGHT_ERROR):
            return "float32"
    return "float16"


def _rows(q: np.ndarray, k: np.ndarray, scale: float) -> np.ndarray:
    """(h, Nk) rows of one query (h, d) over keys (h, Nk, d), in float64."""
    s = (k.astype(np.float64) @ q.astype(np.float64)[..., None])[..., 0] * scale
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def module_payload(q: np.ndarray, k: np.ndarray, grid: tuple[int, int],
                   key_grid: tuple[int, int] | None = None,
                   image: tuple[int, int] = (32, 32), scale: float | None = None,
                   dtype: str | None = None) -> dict[str, object]:
    """One attention module on one image, for the browser, as queries and keys: every
    head's queries (h, Nq, d) and keys (h, Nk, d) in base64 (``dtype``, by default
    ``qk_dtype``'s choice), the scale of their scores (1/sqrt(d) by default), and the grids
    they are laid out on (row-major) over the input (``Grid.data``)."""
    key_grid = tuple(grid) if key_grid is None else tuple(key_grid)
    h, nq, d = q.shape
    if (k.shape[0] != h or k.shape[2] != d or nq != grid[0] * grid[1]
            or k.shape[1] != key_grid[0] * key_grid[1]):
        raise ValueError(f"q {q.shape}, k {k.shape}, grid {grid} and key grid {key_grid} "
                         "do not agree")
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    dtype = dtype or qk_dtype(q, k, scale)
    return {**_grids(grid, key_grid, image), "kind": "qk", "heads": int(h), "dim": int(d),
            "qk_scale": scale, "dtype": dtype, "q": b64(q, dtype), "k": b64(k, dtype)}


def _grids(grid: tuple[int, int], key_grid: tuple[int, int], image: tuple[int, int]) -> dict:
    return {**Grid.of(grid, image).data(), "keys": [int(key_grid[0]), int(key_grid[1])]}


def kind(view: ModuleView, matrix_bytes: int = MATRIX_BYTES) -> str:
    """How ``view`` goes to the browser: "qk" (queries and keys), "matrix" (its fp16
    matrix fits ``matrix_bytes``) or "server" (rows come with each click)."""
    if view.q is not None and view.k is not None:
        return "qk"
    assert view.matrix is not None
    return "matrix" if view.matrix.size * 2 <= matrix_bytes else "server"


def view_payload(view: ModuleView, matrix_bytes: int = MATRIX_BYTES) -> dict[str, object]:
    """``module_payload`` for a view kept as queries and keys; else its matrix as fp16
    when that fits ``matrix_bytes`` (kind "matrix"), or nothing but the grids (kind
    "server": rows come with each click)."""
    how = kind(view, matrix_bytes)
    if how == "qk":
        assert view.q is not None and view.k is not None
        return module_payload(view.q, view.k, view.grid, view.key_grid, view.image,
                              view.scale)
    assert view.matrix is not None
    common = {**_grids(view.grid, view.key_grid, view.image), "heads": int(view.num_heads),
              "dim": 0, "qk_scale": 1.0, "q": None, "k": None}
    if how == "matrix":
        return {**common, "kind": "matrix", "dtype": "float16",
                "matrix": b64(view.matrix, "float16")}
    return {**common, "kind": "server", "dtype": None}


def where_rows_come_from(how: str) -> str:
    """One sentence for under the lens when hovering cannot show rows (``kind`` "server"),
    else ""."""
    if how != "server":
        return ""
    return ("This module's attention is known only as its matrix, too large to send to the "
            f"browser (over {MATRIX_BYTES >> 20} MiB): hovering marks the query, and a "
            "click computes its row on the server.")


def image_payload(pixels: np.ndarray) -> str:
    """The (H, W, 3) uint8 image, row-major RGB, in base64."""
    return b64(pixels, "uint8")


def browser_row(q: np.ndarray, k: np.ndarray, query: int, head: int | None = None,
                scale: float | None = None, dtype: str = "float16") -> np.ndarray:
    """The row the browser paints: queries and keys rounded to ``dtype``, computed in
    float64 as the JavaScript does (max-subtracted softmax, scores times ``scale``, by
    default 1/sqrt(d)); one head, or the mean of the heads' rows."""
    q64 = q.astype(dtype).astype(np.float64)
    k64 = k.astype(dtype).astype(np.float64)
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    heads = range(q.shape[0]) if head is None else [head]
    rows = []
    for t in heads:
        s = k64[t] @ q64[t, query] * scale
        e = np.exp(s - s.max())
        rows.append(e / e.sum())
    return np.mean(rows, axis=0)


def fp16_tolerance(q: np.ndarray, k: np.ndarray, query: int, scale: float | None = None
                   ) -> np.ndarray:
    """How far, relatively, each weight of ``query``'s row may move when q and k are
    rounded to fp16 (relative error at most 2^-11 each): a score moves by at most
    delta = sum_c |q_c k_c| 2^-10 |scale|, a softmax weight by a factor of at most
    exp(2 max delta). Returns (h, Nk) bounds on |w16 - w| / w (first order, slightly padded)."""
    eps = 2.0 ** -11
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else abs(scale)
    prod = np.abs(k.astype(np.float64)) @ np.abs(q[:, query].astype(np.float64))[..., None]
    delta = prod[..., 0] * (2 * eps + eps * eps) * scale  # (h, Nk)
    return np.expm1(2.2 * delta.max(axis=-1, keepdims=True)) + 1e-6 * np.ones_like(delta)


def reference_row(q: np.ndarray, k: np.ndarray, query: int, head: int | None = None,
                  scale: float | None = None) -> np.ndarray:
    """``convattn.attention_row`` for the same view (one head, or the heads' mean); with
    ``scale``, softmax(k q_i * scale) in fp32 as torch computes it."""
    qt, kt = torch.from_numpy(q), torch.from_numpy(k)
    rows = (attention_row(qt, kt, query) if scale is None else
            (kt @ qt[:, query, :, None])[..., 0].mul(scale).softmax(dim=-1)).double().numpy()
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
