"""Inspect's analysis of any readable attention module (``convattn.readout.analysis``,
``source``, ``foreign.foreign_found``): foreign zoo networks at sizes other than 32x32,
square or not, keys pooled or not, gated or not; rows, attention received, spread and the
largest weight held to the full matrix the module computed; maps in chunks equal to maps
in one piece; queries and keys taken from a matmul only once they reproduce its softmax."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from concurrency import run_together
from test_foreign import C, TinyNet, make
from torch import nn

from convattn import attention_maps
from convattn.nn.models import create_model
from convattn.readout import analysis
from convattn.readout.foreign import foreign_found
from convattn.readout.source import AttentionSource

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
KINDS = {  # zoo kind -> (module name, heads, kept as q and k)
    "sagan": ("block", 1, True),
    "biggan-pooled": ("block", 1, True),
    "nonlocal-embedded-subsampled": ("block", 1, True),
    "mha-4-heads": ("block.mha", 4, False),  # the fused MHA path: only its weights are seen
    "sdpa": ("block", 2, True),
    "sdpa-strided": ("block", 2, True),
}
POOLED = {"biggan-pooled", "nonlocal-embedded-subsampled"}


def _pixels(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _reference(model: nn.Module, pixels: np.ndarray) -> torch.Tensor:
    """(h, Nq, Nk): every head's full matrix, as the module computed it."""
    x = analysis.normalise(pixels, MEAN, STD)
    (a,) = attention_maps(model, x, per_head=True).values()
    return a[0].double()


def _check_view(view: analysis.ModuleView, a: torch.Tensor, points) -> None:
    """``view`` (a head, or the heads' mean) against the reference matrix ``a`` (Nq, Nk)."""
    nq, nk = a.shape
    assert view.grid[0] * view.grid[1] == nq and view.key_grid[0] * view.key_grid[1] == nk
    for p in points:
        q = analysis.query_view(view, p)
        index = view.query_grid().index_of(p)
        assert q.row.shape == view.key_grid
        np.testing.assert_allclose(q.row.ravel(), a[index].numpy(), atol=1e-6, rtol=1e-5)
    np.testing.assert_allclose(view.received.ravel(), a.mean(dim=0).numpy(), atol=1e-7,
                               rtol=1e-5)
    spread = -(a * a.clamp_min(1e-12).log()).sum(1) / math.log(nk)
    np.testing.assert_allclose(view.spread.ravel(), spread.numpy(), atol=1e-5)
    assert view.max_weight == pytest.approx(float(a.max()), rel=1e-5)


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("size", [(12, 16), (20, 20)])
def test_foreign_networks_at_other_sizes_give_their_own_rows_and_maps(kind, size):
    model, pixels = make(kind), _pixels(*size)
    name, heads, qk = KINDS[kind]
    x = analysis.normalise(pixels, MEAN, STD)
    with torch.no_grad():
        plain = model(x)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    result = analysis.analyse(model, pixels, MEAN, STD)
    np.testing.assert_array_equal(result.probs, plain.float().softmax(dim=1)[0].numpy())
    assert list(result.modules) == [name]
    view = result.modules[name]
    h, w = size
    keys = (h // 2, w // 2) if kind in POOLED else (h, w)
    assert (view.grid, view.key_grid, view.image) == ((h, w), keys, (h, w))
    assert view.has_qk() is qk and view.num_heads == heads
    assert view.gamma is None and view.ratio is None and not view.has_gamma()
    a = _reference(model, pixels)
    points = [(0, 0), (h - 1, w - 1), (h // 2, 3), (5, w - 2)]
    _check_view(view, a.mean(dim=0), points)
    for t, head in enumerate(result.heads.get(name, [])):
        _check_view(head, a[t], points)
    assert len(result.heads.get(name, [])) == (heads if heads > 1 else 0)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_sdpa_queries_and_keys_are_the_kernels_own():
    model = make("sdpa")  # timm's Attention: the fused CPU kernel
    x = torch.randn(1, 3, 6, 10, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        plain = model(x)
        q, k, _ = model.block._qkv(model.stem(x).flatten(2).transpose(1, 2))
    logits, found = foreign_found(model, x)
    assert torch.equal(logits, plain)  # bitwise
    f = found["block"]
    assert f.matrix is None and f.grid == f.key_grid == (6, 10)
    torch.testing.assert_close(f.q, q, rtol=0, atol=0)
    torch.testing.assert_close(f.k, k, rtol=0, atol=0)
    assert f.scale == pytest.approx(1 / math.sqrt(q.size(-1)))
    # Strided q and k take SDPA's math path, whose own matmul and softmax are what is seen:
    # q and k scaled by sqrt(scale) each, the same weights.
    model = make("sdpa-strided")
    _, found = foreign_found(model, x)
    with torch.no_grad():
        want = model.block.reference(model.stem(x))
    assert found["block"].matrix is None
    torch.testing.assert_close(found["block"].weights(), want, atol=1e-6, rtol=1e-5)


class EditedEnergy(nn.Module):
    """SAGAN-style, but the energies are changed in place after the matmul: q and k alone
    no longer give the softmax's input, and must not be taken for it."""

    def __init__(self, c: int):
        super().__init__()
        self.query_conv, self.key_conv = nn.Conv2d(c, c // 4, 1), nn.Conv2d(c, c // 4, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        q = self.query_conv(x).view(b, -1, h * w).permute(0, 2, 1)
        k = self.key_conv(x).view(b, -1, h * w)
        energy = torch.bmm(q, k) / 2.0
        energy.add_(torch.arange(h * w, dtype=x.dtype))  # a positional bias, in place
        a = F.softmax(energy, dim=-1)
        return x + torch.bmm(x.view(b, c, -1), a.transpose(1, 2)).view(b, c, h, w)

    def reference(self, x):
        q = self.query_conv(x).flatten(2).transpose(1, 2)
        k = self.key_conv(x).flatten(2)
        n = x[0, 0].numel()
        return torch.softmax(q @ k / 2.0 + torch.arange(n, dtype=x.dtype), dim=-1)


def test_queries_and_keys_are_used_only_when_they_reproduce_the_softmax():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 6, 6)
    # A matmul then a division by a number: q, k and scale 1/2, checked, kept.
    model = make("sagan")
    _, found = foreign_found(model, x)
    assert found["block"].matrix is None and found["block"].scale == 1.0
    model = TinyNet(EditedEnergy(C)).eval()
    with torch.no_grad():
        plain = model(x)
        want = model.block.reference(model.stem(x))
    logits, found = foreign_found(model, x)
    assert torch.equal(logits, plain)
    f = found["block"]
    assert f.q is None and f.matrix is not None  # the check failed: the matrix is kept
    torch.testing.assert_close(f.matrix[0, 0], want[0], atol=1e-6, rtol=1e-5)


def test_a_scaled_matmul_is_kept_as_queries_keys_and_its_scale():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.qk = nn.Conv2d(C, 2 * 8, 1)

        def forward(self, x):
            b, c, h, w = x.shape
            q, k = self.qk(x).flatten(2).transpose(1, 2).reshape(b, h * w, 2, 8).unbind(2)
            a = (q @ k.transpose(-1, -2) * 0.3).softmax(dim=-1)
            return x + (a @ x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(b, c, h, w)

    torch.manual_seed(1)
    model = TinyNet(Scaled()).eval()
    x = torch.randn(1, 3, 5, 7)
    _, found = foreign_found(model, x)
    f = found["block"]
    assert f.matrix is None and f.scale == pytest.approx(0.3) and f.grid == (5, 7)
    _, maps = attention_maps(model, x, per_head=True).popitem()
    torch.testing.assert_close(f.weights(), maps, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("heads", [1, 3])
def test_maps_in_chunks_equal_maps_in_one_piece(heads):
    g = torch.Generator().manual_seed(4)
    q, k = torch.randn(heads, 50, 6, generator=g) * 2, torch.randn(heads, 13, 6, generator=g)
    one = AttentionSource.from_qk(q, k, 0.7)
    a = (q @ k.transpose(1, 2) * 0.7).softmax(-1)
    whole, whole_heads = one.summaries(rows=50)
    for rows in (1, 7, 49):
        mean, per_head = one.summaries(rows=rows)
        assert torch.equal(mean.spread, whole.spread) or torch.allclose(
            mean.spread, whole.spread, atol=1e-7)
        torch.testing.assert_close(mean.received, whole.received, atol=1e-7, rtol=1e-6)
        assert mean.max_weight == whole.max_weight
        assert len(per_head) == len(whole_heads) == (heads if heads > 1 else 0)
    torch.testing.assert_close(whole.received, a.mean(0).mean(0), atol=1e-6, rtol=1e-5)
    assert whole.max_weight == pytest.approx(float(a.mean(0).max()), rel=1e-6)
    for t, s in enumerate(whole_heads):
        torch.testing.assert_close(s.received, a[t].mean(0), atol=1e-6, rtol=1e-5)
    # The flash-attention path (the default) gives the same maps, to fp32 rounding.
    fused, fused_heads = one.summaries()
    for got, want in [(fused, whole), *zip(fused_heads, whole_heads)]:
        torch.testing.assert_close(got.received, want.received, atol=1e-7, rtol=1e-5)
        torch.testing.assert_close(got.spread, want.spread, atol=1e-5, rtol=1e-5)
        assert got.max_weight == pytest.approx(want.max_weight, rel=1e-5)
    # A source kept as its matrix gives the same maps.
    m, _ = AttentionSource.from_matrix(a).summaries(rows=5)
    torch.testing.assert_close(m.spread, whole.spread, atol=1e-6, rtol=1e-5)
    # A chunk holds at most CHUNK_BYTES of scores: 16,384 keys and 2 heads -> 85 rows.
    big = AttentionSource.from_qk(torch.zeros(2, 16384, 8), torch.zeros(2, 16384, 8))
    assert big.chunk_rows() == (32 << 20) // (3 * 4 * 2 * 16384)


def test_own_modules_keep_queries_and_keys_and_their_gate():
    torch.manual_seed(0)
    model = create_model("seed").eval()
    pixels = _pixels(32, 32, 3)
    view = analysis.analyse(model, pixels, MEAN, STD).modules["attention"]
    assert view.has_qk() and view.has_gamma() and view.image == (32, 32)
    assert view.ratio is not None and view.ratio >= 0
    _check_view(view, _reference(model, pixels).mean(dim=0), [(0, 0), (17, 20), (31, 31)])


@pytest.mark.parametrize("kind", ["sdpa", "biggan-pooled"])
def test_the_server_never_holds_a_matrix_for_a_module_kept_as_queries_and_keys(kind):
    """At 64x64 = 4,096 positions a head's matrix is 64 MiB; the analysis keeps q and k
    (Nq d + Nk d numbers) and forms at most one chunk of rows at a time."""
    model, pixels = make(kind), _pixels(64, 64)
    view = analysis.analyse(model, pixels, MEAN, STD, chunk_rows=256).modules["block"]
    assert view.matrix is None and view.q.shape[1] == 4096
    assert view.q.nbytes + view.k.nbytes < 4096 * 64 * 4  # far under one 4,096 x 64 slice
    a = analysis.query_view(view, (40, 9)).row
    assert a.sum() == pytest.approx(1.0, abs=1e-5)


def test_two_threads_analysing_one_shared_model_each_get_their_own_image():
    model = make("biggan-pooled")
    images = [_pixels(10, 14, 1), _pixels(10, 14, 2)]
    alone = [analysis.analyse(model, p, MEAN, STD).modules["block"] for p in images]
    assert not np.allclose(alone[0].q, alone[1].q)
    barrier, got, errors = threading.Barrier(2), [[], []], []

    def work(i):
        try:
            barrier.wait()
            for _ in range(8):
                got[i].append(analysis.analyse(model, images[i], MEAN, STD).modules["block"])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    run_together(lambda: work(0), lambda: work(1))
    assert errors == []
    for i in range(2):
        for v in got[i]:
            assert np.array_equal(v.q, alone[i].q) and np.array_equal(v.k, alone[i].k)
            assert np.array_equal(v.received, alone[i].received)


def test_the_arrays_download_leaves_out_a_matrix_over_its_budget():
    import io

    from appkit import downloads

    model, pixels = make("sdpa"), _pixels(12, 16)
    view = analysis.analyse(model, pixels, MEAN, STD).modules["block"]
    query = analysis.query_view(view, (3, 5))
    full = np.load(io.BytesIO(downloads.attention_npz(pixels, view, query)))
    a = _reference(model, pixels).mean(dim=0).numpy()
    np.testing.assert_allclose(full["attention"], a, atol=1e-6)
    assert full["key_grid"].tolist() == [12, 16] and np.isnan(full["gamma"])
    np.testing.assert_array_equal(full["queries"], view.q)
    small = np.load(io.BytesIO(downloads.attention_npz(pixels, view, query, matrix_bytes=1000)))
    assert "attention" not in small.files and "over 0 MiB" in str(small["attention_left_out"])
    np.testing.assert_array_equal(small["attention_row"], query.row)
