"""The lens's wire format: what Python sends the JavaScript (``lens.js``), and the
JavaScript's row computation mirrored in numpy so that the tests hold it to
``convattn.attention_row``.

The browser gets each head's queries and keys as fp16, (h, N, d) each: 4 h N d bytes,
256 KiB for seed (N = 1,024, C' = 64), against 2 MiB for its (N, N) attention matrix at
the same precision. It then computes softmax(q_i . K^T / sqrt(d)) for the query under the
cursor, N d multiplications, in double precision from the fp16 values (``browser_row``).

Plain numpy: nothing here imports Streamlit.
"""

from __future__ import annotations

import base64
import math

import numpy as np
import torch

from convattn.nn.self_attention import attention_row
from convattn.readout.grid import Grid


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
