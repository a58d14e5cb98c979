"""What the Inspect page computes for one image, as plain torch and numpy.

``analyse`` runs the model once and keeps, per attention module (convattn's own or one
found in a foreign network, ``convattn.readout.foreign``), what makes its attention
(``convattn.readout.source``): its queries, keys and scale where they can be had exactly,
so that a click costs one attention row (``query_view``), O(Nk d), and the lens computes
rows in the browser; else the one image's matrix the module formed. The maps (attention
received, on the key grid; the spread of each query, on the query grid; the largest
weight) are computed in chunks of query rows, so no (Nq, Nk) matrix is formed at once for
a module kept as q and k: at 16,384 positions the server holds 2 Nq d numbers per head,
plus one chunk of rows (``source.CHUNK_BYTES``), whatever the image's size. A module kept
as its matrix costs Nq Nk fp32 numbers per head (1 GiB at 16,384 positions), which the
model held anyway while it ran.

Keys may lie on a coarser grid than the queries (max-pooled keys: ``key_grid``), images
may be any size, square or not (``image``), and a module without a gate has no gamma
(``gamma`` None). Nothing here imports Streamlit, so the benchmark and the tests call the
same functions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from convattn.device import model_device
from convattn.explain.attribution import AttributionConfig, attribute, to_map
from convattn.files.info import normalise as normalise
from convattn.nn.channel_attention import CBAM, SEBlock
from convattn.nn.interface import GatedAttention, QueryKeyAttention
from convattn.readout.attention import attention_modules, run_with_records
from convattn.readout.foreign import foreign_found
from convattn.readout.grid import Grid
from convattn.readout.source import AttentionSource


@dataclass
class ModuleView:
    """One attention module on one image, seen through one head or the heads' mean.

    Its attention is kept as ``q``, ``k`` and ``scale`` (rows softmax(q_i K^T * scale)),
    or, where those could not be had, as ``matrix``; one head's view and the mean share
    the same arrays."""

    name: str
    grid: tuple[int, int]  # (H', W') of the queries
    received: np.ndarray  # (Hk, Wk) mean attention each key position receives (column mean)
    spread: np.ndarray  # (H', W') entropy of each query's row / log Nk: 0 one spot, 1 uniform
    max_weight: float  # the largest weight anywhere in the view's (Nq, Nk) matrix
    key_grid: tuple[int, int] = (0, 0)  # (Hk, Wk) of the keys; (0, 0): the query grid
    image: tuple[int, int] = (32, 32)  # (H, W) of the input image, in pixels
    q: np.ndarray | None = None  # (h, Nq, d) fp32 queries of every head
    k: np.ndarray | None = None  # (h, Nk, d) fp32 keys of every head
    scale: float | None = None  # the scores' factor; None: 1/sqrt(d)
    matrix: np.ndarray | None = None  # (h, Nq, Nk) fp32, when q and k are not known
    gamma: float | None = None  # None: the module has no gate
    ratio: float | None = None  # ||gamma Z|| / ||X|| for this image, when known
    head: int | None = None  # the head shown; None: the mean of the heads' matrices
    num_heads: int = 1

    def __post_init__(self) -> None:
        if self.key_grid == (0, 0):
            self.key_grid = self.grid
        if self.scale is None and self.q is not None:
            self.scale = 1.0 / math.sqrt(self.q.shape[-1])

    def has_qk(self) -> bool:
        """Whether rows can be computed from queries and keys (else from ``matrix``)."""
        return self.q is not None

    def has_gamma(self) -> bool:
        return self.gamma is not None

    def source(self) -> AttentionSource:
        """The module's attention, every head, as torch (sharing this view's memory)."""
        if self.q is not None and self.k is not None:
            return AttentionSource.from_qk(torch.from_numpy(self.q), torch.from_numpy(self.k),
                                           self.scale)
        assert self.matrix is not None
        return AttentionSource.from_matrix(torch.from_numpy(self.matrix))

    def query_grid(self) -> Grid:
        """The queries' cells over the input image."""
        return Grid(*self.grid, *self.image)

    def keys(self) -> Grid:
        """The keys' cells over the input image."""
        return Grid(*self.key_grid, *self.image)

    def row(self, index: int) -> np.ndarray:
        """(Nk,) fp32: query ``index``'s row in this view's head, or the heads' mean."""
        rows = self.source().row(int(index))
        return (rows.mean(dim=0) if self.head is None else rows[self.head]).numpy()


@dataclass
class ImageAnalysis:
    probs: np.ndarray  # (K,) class probabilities
    modules: dict[str, ModuleView]  # each module as its heads' mean (a one-head module's head)
    heads: dict[str, list[ModuleView]] = field(default_factory=dict)  # each head, if several

    def view(self, name: str, head: int | None = None) -> ModuleView:
        """Module ``name`` through head ``head``, or the mean of its heads (None)."""
        return self.modules[name] if head is None else self.heads[name][head]

    def head_choices(self, name: str) -> list[int | None]:
        """What a page can offer for the module: the mean, then each head if it has several."""
        return [None, *range(len(self.heads.get(name, [])))]


def head_label(head: int | None, num_heads: int) -> str:
    if head is None:
        return "one head" if num_heads == 1 else f"mean of the {num_heads} heads"
    return f"head {head + 1} of {num_heads}"


@dataclass
class QueryView:
    """One query's attention row, over the module's key grid."""

    pixel: tuple[int, int]  # (row, col) in the input image
    cell: tuple[int, int]  # (row, col) in the module's query grid
    index: int  # row-major query index, cell[0] * W' + cell[1]
    row: np.ndarray  # (Hk, Wk) attention weights, summing to 1

    def strongest(self) -> tuple[tuple[int, int], float]:
        """The key cell this query attends to most, and its weight."""
        i = int(self.row.argmax())
        return divmod(i, self.row.shape[1]), float(self.row.flat[i])


@dataclass(frozen=True)
class ModuleAttention:
    """One module's attention on one image, before any map is computed: its source (q and
    k, or the matrix), its query and key grids, its gamma and ratio when it has a gate."""

    source: AttentionSource
    grid: tuple[int, int]
    key_grid: tuple[int, int]
    gamma: float | None = None
    ratio: float | None = None


def _own(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, ModuleAttention]]:
    """convattn's own modules, run on their fused path: q and k from ``queries_keys``, or
    the matrix from ``weights`` for a module without them."""
    named = attention_modules(model)
    logits, records = run_with_records(model, x, with_attention=False)
    found = {}
    with torch.no_grad():
        for name, rec in records.items():
            module = named[name]
            if isinstance(module, QueryKeyAttention):
                q, k = module.queries_keys(rec.x)  # (1, h, N, d) each
                source = AttentionSource.from_qk(q[0], k[0])
            else:
                source = AttentionSource.from_matrix(module.weights(rec.x)[0])
            gamma = ratio = None
            if isinstance(module, GatedAttention):
                gamma = module.gate()
                if rec.z is not None:
                    gz = abs(gamma) * rec.z.float().norm()
                    ratio = float(gz / rec.x.float().norm().clamp_min(1e-12))
            found[name] = ModuleAttention(source, tuple(rec.x.shape[2:]),
                                  tuple(module.key_grid(rec.x)), gamma, ratio)
    return logits, found


def _foreign(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, ModuleAttention]]:
    logits, found = foreign_found(model, x)
    out = {}
    for name, f in found.items():
        assert f.grid is not None and f.key_grid is not None
        source = (AttentionSource.from_matrix(f.matrix[0]) if f.matrix is not None
                  else AttentionSource.from_qk(f.q[0], f.k[0], f.scale))
        out[name] = ModuleAttention(source, f.grid, f.key_grid)
    return logits, out


def attention_sources(model: nn.Module, x: torch.Tensor
                      ) -> tuple[torch.Tensor, dict[str, ModuleAttention]]:
    """Logits and each attention module's ``ModuleAttention`` on one normalised image x
    (1, C, H, W): convattn's own modules (on their fused path), else the foreign ones."""
    return (_own if attention_modules(model) else _foreign)(model, x)


def analyse(model: nn.Module, pixels: np.ndarray, mean: Sequence[float],
            std: Sequence[float], chunk_rows: int | None = None) -> ImageAnalysis:
    """Probabilities and every attention module's queries and keys (or matrix) and summary
    maps, for the mean of its heads and, when it has several, for each head.

    ``pixels``: one uint8 (H, W, 3) image of any size the model takes; ``chunk_rows``:
    query rows per chunk of the maps (by default as ``source.CHUNK_BYTES`` allows)."""
    x = normalise(pixels, mean, std, model_device(model))
    image = (int(x.shape[-2]), int(x.shape[-1]))
    logits, found = attention_sources(model, x)
    views, heads = {}, {}
    for name, m in found.items():
        src = m.source
        arrays = ({"q": src.q.numpy(), "k": src.k.numpy(), "scale": src.scale}
                  if src.q is not None and src.k is not None
                  else {"matrix": src.matrix.numpy()})  # type: ignore[union-attr]
        common = dict(name=name, grid=m.grid, key_grid=m.key_grid, image=image,
                      gamma=m.gamma, ratio=m.ratio, num_heads=src.shape[0], **arrays)
        mean_view, per_head = src.summaries(chunk_rows)
        views[name] = _view(common, mean_view, None)
        if per_head:
            heads[name] = [_view(common, s, t) for t, s in enumerate(per_head)]
    probs = logits.float().softmax(dim=1)[0].cpu().numpy()
    return ImageAnalysis(probs=probs, modules=views, heads=heads)


def _view(common: dict, summary, head: int | None) -> ModuleView:
    return ModuleView(**common, head=head, max_weight=summary.max_weight,
                      received=summary.received.view(common["key_grid"]).numpy(),
                      spread=summary.spread.view(common["grid"]).numpy())


def query_view(view: ModuleView, pixel: tuple[int, int]) -> QueryView:
    """The attention row of the query cell holding input ``pixel`` (row, col), in the
    view's head or as the mean of the heads' rows, over the key grid."""
    cells = view.query_grid()
    (r, c), cell, index = cells.clamp(pixel), cells.cell_of(pixel), cells.index_of(pixel)
    return QueryView(pixel=(r, c), cell=cell, index=index,
                     row=view.row(index).reshape(view.key_grid))


def attribution_map(model: nn.Module, pixels: np.ndarray, mean: Sequence[float],
                    std: Sequence[float], target: int, method: str,
                    cfg: AttributionConfig | None = None) -> np.ndarray:
    """One method's (H, W) signed attribution map for ``target``."""
    x = normalise(pixels, mean, std, model_device(model))
    return to_map(attribute(model, x, target, method, cfg))[0].cpu().numpy()


def colour_limits(maps: dict[str, np.ndarray], shared: bool
                  ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Attribution maps as drawn, and each one's symmetric colour limit.

    Shared: each map as percent of its own total |attribution|, so methods measured in
    different units sit on one colour scale; one limit for all. Per map: raw values, each
    with its own limit. Limits are 99th percentiles of |value|, so a few extreme pixels do
    not wash out the rest.
    """
    if shared:
        maps = {k: 100 * v / max(float(np.abs(v).sum()), 1e-30) for k, v in maps.items()}
    limits = {k: max(float(np.percentile(np.abs(v), 99)), 1e-12) for k, v in maps.items()}
    if shared and limits:
        limits = dict.fromkeys(limits, max(limits.values()))
    return maps, limits


# The methods whose maps are never negative, and why; every other method's map is signed.
_UNSIGNED = {
    "saliency": "it is |gradient|, so a colour says only how much a pixel matters, not "
                "whether it raises or lowers the score",
    "smoothgrad": "it averages |gradient|, so a colour says only how much a pixel matters, "
                  "not whether it raises or lowers the score",
    "gradcam": "it keeps only what supports the class (a ReLU cuts off the rest), so a "
               "colour says where the layer finds evidence for it, never against it",
}


def colour_meaning(method: str) -> str:
    """How to read the colours of ``method``'s map, as one sentence."""
    if method in _UNSIGNED:
        return f"Never negative: {_UNSIGNED[method]}."
    return "Red pixels raise the score, blue ones lower it."


def attention_range(values: np.ndarray, largest: float, shared: bool, typical: float
                    ) -> tuple[float, float]:
    """Colour range of an attention map: shared from 0 to the image's largest weight, or
    the map's own smallest to largest value. A map that varies by less than 1% of its
    ``typical`` value gets 0 to twice that: one even colour, not stretched rounding noise."""
    if shared:
        return 0.0, largest
    lo, hi = float(values.min()), float(values.max())
    if hi - lo < 0.01 * typical:
        return 0.0, 2 * typical
    return lo, max(hi, lo + 1e-9)


FAINT = 0.25  # a map whose strong pixels reach less of the shared colour bar looks blank


def faint_note(part: float, what: str, faint: float = FAINT) -> str:
    """Under a map drawn on a shared scale that its own values reach only ``part`` of:
    a sentence saying so, or "" when the map is not faint."""
    if part >= faint:
        return ""
    return (f"Faint on the shared scale: {what} reach under {math.ceil(100 * part)}% of the "
            "bar. Choose per map to see the pattern.")


def reach(values: np.ndarray, limit: float) -> float:
    """How far up a colour bar ending at ``limit`` a map's strong pixels get (its 99th
    percentile of |value| over the limit): on a shared scale a map far below 1 looks blank."""
    return float(np.percentile(np.abs(values), 99)) / limit


def no_attention_map(model: nn.Module) -> str:
    """One sentence on why a model without an attention layer has no attention map."""
    kinds = {type(m) for m in model.modules()}
    if CBAM in kinds:
        return ("CBAM re-weights channels and then positions with weights computed from "
                "the image, but no position gathers features from the others: there is no "
                "attention map and no γ to show.")
    if SEBlock in kinds:
        return ("Squeeze-and-excitation re-weights whole channels with weights computed from "
                "the image's average, but no position gathers features from the others: "
                "there is no attention map and no γ to show.")
    return "This network has no attention at all: there is no attention map and no γ to show."
