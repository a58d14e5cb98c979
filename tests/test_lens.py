"""The attention lens: the rows the browser computes from fp16 queries and keys
(``appkit.lens.wire``) equal ``attention_row`` to within fp16 rounding, a guess is scored
as by hand, the mass outlines are the smallest sets (against every subset), the colour
scales map as by hand, and the query/key space (``convattn.readout.lens``) is the PCA
numpy's SVD gives."""

from __future__ import annotations

import base64
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from appkit import lens as applens
from appkit.lens import wire
from convattn.files.checkpoint import load_checkpoint
from convattn.files.shipped import sample_path
from convattn.nn.self_attention import ConvAttentionModule
from convattn.readout import analysis, lens
from convattn.readout.grid import Grid

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = sample_path()


def _views(path: str) -> list[analysis.ModuleView]:
    model, info = load_checkpoint(ROOT / "checkpoints" / path)
    pixels = np.load(SAMPLE)["images"][7]
    result = analysis.analyse(model.eval(), pixels, info.mean, info.std)
    return list(result.modules.values())


def _multi_head() -> tuple[np.ndarray, np.ndarray]:
    """Queries and keys of a 4-head module whose heads attend distinctly (scaled up, but
    not so far that fp32 softmax underflows)."""
    torch.manual_seed(3)
    m = ConvAttentionModule(16, 16, 4)
    x = torch.randn(1, 16, 8, 8) * 3
    q, k = m.queries_keys(x)
    return q[0].detach().numpy() * 1.5, k[0].detach().numpy() * 1.5


def _check(q: np.ndarray, k: np.ndarray, queries, head: int | None) -> None:
    for query in queries:
        got = wire.browser_row(q, k, query, head)
        want = wire.reference_row(q, k, query, head)
        bound = wire.fp16_tolerance(q, k, query)
        bound = bound.max() if head is None else bound[head].max()
        rel = np.abs(got - want) / want
        assert rel.max() <= bound, (query, rel.max(), bound)
        assert abs(got.sum() - 1) < 1e-9
        # fp16 really is what the browser gets: the rounding shows, within the bound.
        assert not np.array_equal(got, want)


@pytest.mark.parametrize("path", ["seed.pt", "seed-mh4.pt", "resnet9-attn.pt"])
def test_browser_rows_equal_attention_row_within_fp16_rounding(path):
    for view in _views(path):
        n = view.grid[0] * view.grid[1]
        _check(view.q, view.k, [0, n // 2 + 3, n - 1], None)


def test_browser_rows_of_each_head_and_their_mean():
    q, k = _multi_head()
    for head in [None, 0, 3]:
        _check(q, k, [0, 17, 63], head)
    # The heads differ, so the mean is not any one head.
    assert not np.allclose(wire.browser_row(q, k, 5, 0), wire.browser_row(q, k, 5, 1), atol=1e-3)


def test_payload_is_fp16_in_base64_and_round_trips():
    q, k = _multi_head()
    p = wire.module_payload(q, k, (8, 8), dtype="float16")
    raw = base64.b64decode(p["q"])
    assert len(raw) == q.size * 2 and (p["heads"], p["dim"], p["grid"]) == (4, 4, [8, 8])
    back = np.frombuffer(raw, dtype="<f2").reshape(q.shape)
    np.testing.assert_array_equal(back, q.astype(np.float16))
    with pytest.raises(ValueError):
        wire.module_payload(q, k, (4, 4))


def test_guess_score_by_hand():
    row = np.zeros((32, 32))
    row[10, 10], row[10, 12], row[20, 20] = 0.5, 0.25, 0.25
    s = lens.guess_score(row, (10, 10), radius=2)
    # Pixel centres within 2 of (10.5, 10.5): offsets (dy, dx) with dy^2 + dx^2 <= 4: 13.
    assert s.cells == 13 and s.mass == pytest.approx(0.75)
    assert s.uniform == pytest.approx(13 / 1024) and s.ratio == pytest.approx(0.75 * 1024 / 13)
    assert lens.guess_score(row, (0, 0), radius=2).mass == 0.0
    # Uniform attention scores 1 wherever the guess is, whole disc on the image or not.
    flat = np.full((32, 32), 1 / 1024)
    for guess in [(16, 16), (0, 31)]:
        assert lens.guess_score(flat, guess, radius=4).ratio == pytest.approx(1.0)


def test_guess_score_on_a_coarse_grid_counts_cells_by_their_centre():
    row = np.zeros((4, 4))
    row[1, 2] = 1.0  # the cell covering input pixels rows 8-15, columns 16-23
    s = lens.guess_score(row, (12, 20), radius=1)  # smaller than a cell: the cell itself
    assert s.cells == 1 and s.mass == 1.0 and s.ratio == 16
    s = lens.guess_score(row, (15, 15), radius=8)  # centre (15.5, 15.5): cells at 12 and 20
    assert s.cells == 4 and s.mass == 1.0 and s.uniform == 0.25


def test_cell_centre_is_in_its_cell():
    assert Grid(32, 32).centre_pixel(0) == (0, 0)
    assert Grid(8, 8).centre_pixel(3 * 8 + 7) == (14, 30)  # rows 12-15, columns 28-31
    for cell in range(64):
        r, c = Grid(8, 8).centre_pixel(cell)
        assert (r * 8 // 32) * 8 + c * 8 // 32 == cell


def test_qk_space_is_numpys_pca_of_the_normalised_queries_and_keys():
    q, k = _multi_head()
    for head in [None, 1]:
        qs, ks = lens.qk_vectors(q, k, head)
        # The normalisation leaves every attention weight as it was.
        a0 = torch.softmax(torch.from_numpy(qs @ ks.T), -1)
        qq = np.concatenate(list(q), -1) if head is None else q[head]
        kk = np.concatenate(list(k), -1) if head is None else k[head]
        scores = qq.astype(np.float64) @ kk.astype(np.float64).T
        torch.testing.assert_close(a0, torch.softmax(torch.from_numpy(scores), -1))
        np.testing.assert_allclose(ks.mean(0), qs.mean(0), atol=1e-9)
        space = lens.qk_space(q, k, head)
        x = np.concatenate([qs, ks])
        x = x - x.mean(0)
        _, s, vt = np.linalg.svd(x)
        for axis in range(2):
            v = vt[axis] * np.sign(vt[axis][np.abs(vt[axis]).argmax()])
            np.testing.assert_allclose(space.points[:, axis], x @ v, rtol=1e-4, atol=1e-4)
        assert space.explained == pytest.approx(tuple(s[:2] ** 2 / (s ** 2).sum()))
        assert space.points.shape == (2 * q.shape[1], 2)
        # The same input gives the same picture (signs fixed).
        np.testing.assert_array_equal(space.points, lens.qk_space(q, k, head).points)


def _smallest_by_brute_force(row: np.ndarray, f: float) -> tuple[int, float]:
    """The fewest cells of ``row`` whose weights reach f of its sum, and the most any set
    of that many cells holds: every subset tried."""
    flat, total = row.ravel(), row.sum()
    for k in range(1, flat.size + 1):
        best = max(sum(c) for c in itertools.combinations(flat.tolist(), k))
        if best >= f * total * (1 - 1e-12):
            return k, best
    raise AssertionError("unreachable: all cells hold the whole mass")


@pytest.mark.parametrize("shape", [(3, 3), (2, 4), (1, 7)])
def test_mass_cells_are_the_smallest_sets_that_hold_each_share(shape):
    rng = np.random.default_rng(sum(shape))
    for trial in range(20):
        row = rng.random(shape) ** (1 + 4 * trial / 20)  # flat to peaked
        row /= row.sum()
        fractions = (0.25, 0.5, 0.9, 1.0)
        for f, mask in zip(fractions, lens.mass_cells(row, fractions), strict=True):
            k, best = _smallest_by_brute_force(row, f)
            assert mask.shape == shape and mask.dtype == bool
            assert mask.sum() == k, (trial, f)
            assert row[mask].sum() >= f * row.sum() * (1 - 1e-12)
            assert row[mask].sum() == pytest.approx(best, abs=1e-12)


def test_mass_cells_by_hand_ties_and_bad_input():
    peaked = np.array([[0.6, 0.1], [0.2, 0.1]])
    half, most = lens.mass_cells(peaked, (0.5, 0.9))
    assert half.tolist() == [[True, False], [False, False]]  # 0.6 alone holds half
    # 0.6 + 0.2 = 0.8 < 0.9: one of the two 0.1s too, the first in row-major order.
    assert most.tolist() == [[True, True], [True, False]]
    (flat,) = lens.mass_cells(np.full((2, 2), 0.25), (0.5,))
    assert flat.tolist() == [[True, True], [False, False]]  # ties: lower index first
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="fraction"):
            lens.mass_cells(peaked, (bad,))
    with pytest.raises(ValueError, match="weights >= 0"):
        lens.mass_cells(-peaked, (0.5,))


def test_the_browsers_outlines_colours_and_legend_by_hand():
    # The mirror of lens.js's massCells is the library's rule on the flat row.
    row = np.array([0.05, 0.5, 0.05, 0.3, 0.1])
    assert wire.browser_mass_cells(row, (0.5, 0.9)) == [[1], [1, 3, 4]]
    # Linear per-map colours: the row's own min..max; log: three decades below the top.
    weights = np.array([1e-6, 1e-3, 1e-2, 1e-1])
    lo, hi = wire.browser_range(weights, shared=False, max_weight=1.0, log=False)
    assert (lo, hi) == (1e-6, 1e-1)
    assert wire.browser_colour_index(weights, lo, hi, False).tolist() == [0, 3, 25, 255]
    lo, hi = wire.browser_range(weights, shared=False, max_weight=1.0, log=True)
    assert (lo, hi) == pytest.approx((1e-4, 1e-1))
    assert wire.browser_colour_index(weights, lo, hi, True).tolist() == [0, 85, 170, 255]
    assert wire.browser_range(weights, shared=True, max_weight=0.5, log=True) == (5e-4, 0.5)
    # A flat row is one colour, the middle one on the log scale.
    flat = np.full(64, 1 / 64)
    lo, hi = wire.browser_range(flat, shared=False, max_weight=1.0, log=True)
    assert wire.browser_colour_index(flat, lo, hi, True).tolist() == [128] * 64
    # What the outlines enclose, in words (lens.js writes the same from its row).
    grid = np.full((32, 32), 0.09 / 1020)
    grid[5, 5], grid[5, 6], grid[6, 5], grid[20, 1] = 0.45, 0.25, 0.15, 0.06
    assert applens.mass_legend(grid) == (
        "Outlined: the fewest pixels that hold 50% (solid) and 90% (dashed) of this row's "
        "attention: 2 and 4 of 1,024.")
    assert applens.mass_legend(np.full((8, 8), 1 / 64)).endswith(": 32 and 58 of 64.")
    assert "fewest cells" in applens.mass_legend(np.full((8, 8), 1 / 64))


def test_the_wire_carries_a_coarser_key_grid_on_a_wide_image_and_round_trips():
    g = np.random.default_rng(5)
    q = g.standard_normal((2, 6 * 10, 4)).astype(np.float32)  # queries on 6x10
    k = g.standard_normal((2, 3 * 5, 4)).astype(np.float32)  # keys pooled to 3x5
    p = wire.module_payload(q, k, (6, 10), (3, 5), image=(24, 40), scale=0.9)
    assert (p["grid"], p["keys"], p["input"], p["kind"]) == ([6, 10], [3, 5], [24, 40], "qk")
    assert (p["heads"], p["dim"], p["qk_scale"], p["dtype"]) == (2, 4, 0.9, "float16")
    back_q = np.frombuffer(base64.b64decode(p["q"]), "<f2").reshape(q.shape)
    back_k = np.frombuffer(base64.b64decode(p["k"]), "<f2").reshape(k.shape)
    np.testing.assert_array_equal(back_q, q.astype(np.float16))
    np.testing.assert_array_equal(back_k, k.astype(np.float16))
    for query in (0, 37, 59):
        for head in (None, 1):
            got = wire.browser_row(q, k, query, head, scale=0.9)
            want = wire.reference_row(q, k, query, head, scale=0.9)
            assert got.shape == (15,) and abs(got.sum() - 1) < 1e-9
            bound = wire.fp16_tolerance(q, k, query, scale=0.9).max()
            assert (np.abs(got - want) / want).max() <= bound
    with pytest.raises(ValueError, match="key grid"):
        wire.module_payload(q, k, (6, 10), (5, 3 + 1))


def test_fp32_goes_where_fp16_would_move_weights_by_more_than_a_percent():
    g = np.random.default_rng(6)
    q = g.standard_normal((1, 64, 8)).astype(np.float32)
    k = g.standard_normal((1, 64, 8)).astype(np.float32)
    assert wire.qk_dtype(q, k, 1 / math.sqrt(8)) == "float16"
    # Keys far from 0 (a common offset, which softmax ignores): fp16 rounds them by ~0.15.
    far = k + 300
    assert wire.qk_dtype(q, far, 1.0) == "float32"
    p = wire.module_payload(q, far, (8, 8), scale=1.0)
    back = np.frombuffer(base64.b64decode(p["k"]), "<f4").reshape(k.shape)
    np.testing.assert_array_equal(back, far)
    rows = wire.browser_row(q, far, 3, scale=1.0, dtype=p["dtype"])
    np.testing.assert_allclose(rows, wire.reference_row(q, far, 3, scale=1.0), rtol=1e-3)


def test_a_module_known_by_its_matrix_sends_it_within_the_budget_else_nothing():
    g = np.random.default_rng(7)
    a = g.random((2, 16, 4)).astype(np.float32)
    a /= a.sum(-1, keepdims=True)
    view = analysis.ModuleView(name="m", grid=(4, 4), key_grid=(2, 2), image=(8, 8),
                               received=a.mean((0, 1)).reshape(2, 2), spread=np.zeros((4, 4)),
                               max_weight=float(a.max()), matrix=a, num_heads=2)
    p = wire.view_payload(view)
    assert p["kind"] == "matrix" and p["keys"] == [2, 2] and p["q"] is None
    back = np.frombuffer(base64.b64decode(p["matrix"]), "<f2").reshape(a.shape)
    np.testing.assert_array_equal(back, a.astype(np.float16))
    assert wire.where_rows_come_from(p["kind"]) == "" and wire.kind(view) == "matrix"
    small = wire.view_payload(view, matrix_bytes=100)
    assert small["kind"] == "server" and "matrix" not in small
    assert "click computes its row on the server" in wire.where_rows_come_from("server")
    assert wire.kind(view, matrix_bytes=100) == "server"
    row = analysis.query_view(view, (7, 0)).row  # pixel (7, 0) is cell (3, 0): query 12
    np.testing.assert_allclose(row.ravel(), a[:, 12].mean(0), rtol=1e-6)
