"""What the Inspect page computes for one image, as plain torch and numpy.

``analyse`` runs the model once and keeps, per attention module, the queries and keys:
a click then costs one attention row (``query_view``), O(N C'), instead of a forward pass.
Nothing here imports Streamlit, so the benchmark and the tests call the same functions.

So ``analyse`` needs of every attention module its queries and keys
(``QueryKeyAttention``: the lens computes rows from them in the browser), its gate
(``GatedAttention``: gamma and ||gamma Z|| / ||X|| are shown) and keys on the same grid
as its queries (the lens paints a row over the image, cell for cell). A module lacking one
raises ``NotSupported``, one sentence naming it, before the model is run. (Keeping such
a module's (N, N) weights instead of q and k, 2 N d numbers, would work for the maps but
not for the lens, which computes rows in the browser; so it is not done.)
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
from convattn.nn.interface import GatedAttention, NotSupported, QueryKeyAttention, require
from convattn.nn.self_attention import attention_row
from convattn.readout.attention import attention_modules, residual_ratios, run_with_records
from convattn.readout.grid import Grid


@dataclass
class ModuleView:
    """One attention module on one image, seen through one head or the heads' mean."""

    name: str
    grid: tuple[int, int]  # (H', W') of the module's feature map
    q: np.ndarray  # (h, N, C'/h) fp32 queries of every head
    k: np.ndarray  # (h, N, C'/h) fp32 keys of every head
    received: np.ndarray  # (H', W') mean attention each position receives (column mean)
    spread: np.ndarray  # (H', W') entropy of each query's row / log N: 0 one spot, 1 uniform
    max_weight: float  # the largest weight anywhere in the (N, N) matrix
    gamma: float
    ratio: float  # ||gamma Z|| / ||X|| for this image
    head: int | None = None  # the head shown; None: the mean of the heads' matrices
    num_heads: int = 1


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
    """One query's attention row, at the module's resolution."""

    pixel: tuple[int, int]  # (row, col) in the 32x32 input
    cell: tuple[int, int]  # (row, col) in the module's H' x W' grid
    index: int  # row-major query index, cell[0] * W' + cell[1]
    row: np.ndarray  # (H', W') attention weights, summing to 1

    def strongest(self) -> tuple[tuple[int, int], float]:
        """The cell this query attends to most, and its weight."""
        i = int(self.row.argmax())
        return divmod(i, self.row.shape[1]), float(self.row.flat[i])


def _maps(a: torch.Tensor, grid: tuple[int, int]) -> dict[str, object]:
    """Received attention, spread and largest weight of one (N, N) matrix."""
    entropy = -(a * a.clamp_min(1e-12).log()).sum(dim=1) / math.log(a.shape[1])  # (N,)
    return {"received": a.mean(dim=0).view(grid).cpu().numpy(),
            "spread": entropy.view(grid).cpu().numpy(), "max_weight": float(a.max())}


def analyse(model: nn.Module, pixels: np.ndarray, mean: Sequence[float],
            std: Sequence[float]) -> ImageAnalysis:
    """Probabilities and every attention module's queries, keys and summary maps, for the
    mean of its heads and, when it has several, for each head.

    A module without queries and keys, without a gate, or with keys on another grid than
    its queries raises ``NotSupported`` (see the module's docstring)."""
    named = attention_modules(model)
    for name, module in named.items():
        require(module, QueryKeyAttention, name, "the Inspect analysis (for its lens)")
        require(module, GatedAttention, name, "the Inspect analysis (for gamma and its ratio)")
    x = normalise(pixels, mean, std, model_device(model))
    logits, records = run_with_records(model, x, with_attention=True)
    ratios = residual_ratios(model, x)
    views, heads = {}, {}
    for name, rec in records.items():
        grid = tuple(rec.x.shape[2:])
        keys = tuple(named[name].key_grid(rec.x))
        if keys != grid:
            raise NotSupported(
                f"Module {name} ({type(named[name]).__name__}) has its keys on a "
                f"{keys[0]}x{keys[1]} grid and its queries on {grid[0]}x{grid[1]}, but the "
                "Inspect analysis needs both on one grid.")
        q, k = named[name].queries_keys(rec.x)  # (1, h, N, C'/h) each
        a = rec.attention[0].float()  # (h, N, N)
        common = dict(name=name, grid=grid, q=q[0].cpu().numpy(), k=k[0].cpu().numpy(),
                      gamma=named[name].gate(), ratio=float(ratios[name][0]),
                      num_heads=a.shape[0])
        views[name] = ModuleView(**common, **_maps(a.mean(dim=0), grid))
        if a.shape[0] > 1:
            heads[name] = [ModuleView(**common, **_maps(a[t], grid), head=t)
                           for t in range(a.shape[0])]
    probs = logits.float().softmax(dim=1)[0].cpu().numpy()
    return ImageAnalysis(probs=probs, modules=views, heads=heads)


def query_view(view: ModuleView, pixel: tuple[int, int]) -> QueryView:
    """The attention row of the cell holding input ``pixel`` (row, col), in the view's
    head or as the mean of the heads' rows."""
    h, w = view.grid
    cells = Grid.of(view.grid)
    (r, c), cell, index = cells.clamp(pixel), cells.cell_of(pixel), cells.index_of(pixel)
    rows = attention_row(torch.from_numpy(view.q), torch.from_numpy(view.k), index)  # (h, N)
    row = rows.mean(dim=0) if view.head is None else rows[view.head]
    return QueryView(pixel=(r, c), cell=cell, index=index, row=row.view(h, w).numpy())


def attribution_map(model: nn.Module, pixels: np.ndarray, mean: Sequence[float],
                    std: Sequence[float], target: int, method: str,
                    cfg: AttributionConfig | None = None) -> np.ndarray:
    """One method's (32, 32) signed attribution map for ``target``."""
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
