"""The model-randomisation sanity check (Adebayo et al. 2018, "Sanity Checks for
Saliency Maps"), for attributions and for attention rows.

Re-initialise the network's layers one after another from the top (the classifier) down,
on a private copy, and recompute each explanation after every step. An explanation of
what the model computes must change as the model is destroyed; one that stays the same
is showing the input (edges, colours), not the model.

Attention needs care: a module's attention rows are computed from the layers *below*
it, so randomising the layers above leaves them exactly as they were. That is not a
failure of the code but a fact about attention: the weights do not know what the layers
after them do with the result.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Collection
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convattn.device import model_device
from convattn.explain.attribution import (
    AttributionConfig,
    get_method,
    hookable_copy,
    to_map,
)
from convattn.explain.faithfulness import rank_correlation, topk_overlap
from convattn.nn.channel_attention import CBAM, SEBlock
from convattn.nn.interface import AttentionLayer
from convattn.readout.attention import attention_modules, run_with_records

# Modules randomised as one unit; BatchNorm goes with the layer before it.
_UNITS = (nn.Conv2d, nn.Linear, AttentionLayer, SEBlock, CBAM)
_NORMS = (nn.BatchNorm2d, nn.BatchNorm1d, nn.LayerNorm)


@dataclass
class SanityResult:
    """Explanations of one image after each randomisation step."""

    steps: list[str]  # "trained model", then the layer(s) re-initialised at each step
    target: int  # the class explained: the trained model's prediction
    probs: np.ndarray  # (S + 1,) probability of ``target`` after each step
    predicted: list[int]  # the class each model predicts
    maps: dict[str, np.ndarray]  # method -> (S + 1, H, W) attribution maps
    rows: dict[str, np.ndarray]  # attention module -> (S + 1, Hk, Wk) the query's row
    map_similarity: dict[str, dict[str, np.ndarray]]  # method -> metric -> (S + 1,)
    row_similarity: dict[str, dict[str, np.ndarray]]  # module -> metric -> (S + 1,)
    # (S + 1,) whether each step's maps and rows were computed (None: all); the others
    # are NaN, their probabilities are always there
    explained: np.ndarray | None = None

    def is_explained(self, step: int) -> bool:
        return self.explained is None or bool(self.explained[step])


def randomisation_steps(model: nn.Module) -> list[list[str]]:
    """Names of the modules re-initialised at each step, top (output) layer first.

    A unit is a convolution, a linear layer or a whole attention block; a normalisation
    layer joins the unit registered before it. Registration order is the forward order
    for convattn's models.
    """
    units: list[list[str]] = []
    inside: tuple[str, ...] = ()
    for name, m in model.named_modules():
        if inside and any(name.startswith(p + ".") for p in inside):
            continue  # parts of a unit already listed
        if isinstance(m, _UNITS):
            units.append([name])
            inside = (*inside, name)
        elif isinstance(m, _NORMS) and units:
            units[-1].append(name)
    return units[::-1]


def reinitialise(module: nn.Module, generator: torch.Generator) -> None:
    """PyTorch's default initialisation, drawn from ``generator``: weights and biases
    uniform in +-1/sqrt(fan_in), norms reset to identity. Any other parameter is kept: a
    gated attention module keeps its gamma, so the network still mixes in its (now
    random) attention."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                bound = 1 / math.sqrt(m.weight[0].numel())
                m.weight.uniform_(-bound, bound, generator=generator)
                if m.bias is not None:
                    m.bias.uniform_(-bound, bound, generator=generator)
            elif isinstance(m, _NORMS):
                m.reset_parameters()  # weight 1, bias 0, running mean 0 and variance 1


def ssim(a: Tensor, b: Tensor, window: int = 7, sigma: float = 1.5) -> Tensor:
    """Structural similarity of (B, H, W) maps, each scaled to [0, 1] first: (B,).

    Wang et al. 2004 with a Gaussian window (shrunk for small maps) and the usual
    constants for a data range of 1.
    """
    def unit(x: Tensor) -> Tensor:
        x = x.double()
        lo = x.flatten(1).amin(1).view(-1, 1, 1)
        hi = x.flatten(1).amax(1).view(-1, 1, 1)
        return ((x - lo) / (hi - lo).clamp_min(1e-30))[:, None]  # (B, 1, H, W)

    x, y = unit(a), unit(b)
    size = min(window, x.shape[-1], x.shape[-2])
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-t**2 / (2 * sigma**2))
    kernel = (g[:, None] * g[None, :] / g.sum() ** 2)[None, None]  # (1, 1, k, k)

    def blur(z: Tensor) -> Tensor:
        return F.conv2d(z, kernel)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.flatten(1).mean(dim=1).float()


def similarities(reference: Tensor, maps: Tensor, fraction: float = 0.1
                 ) -> dict[str, np.ndarray]:
    """Each of (S, H, W) ``maps`` against ``reference`` (H, W): Spearman rank correlation
    of |values|, SSIM of |values|, and top-k overlap of the top ``fraction`` |values|.

    A constant map (for example Grad-CAM's all-zero map when no feature supports the
    class) ranks nothing, so all its similarities are NaN.
    """
    ref = reference.abs().expand_as(maps).numpy()
    m = maps.abs().numpy()
    flat = (m.reshape(len(m), -1).max(1) == m.reshape(len(m), -1).min(1)) | (ref.max() == ref.min())
    out = {
        "spearman": rank_correlation(ref, m),
        "ssim": ssim(torch.from_numpy(ref), torch.from_numpy(m)).numpy().astype(np.float64),
        "topk": topk_overlap(ref, m, fraction),
    }
    return {k: np.where(flat, np.nan, v) for k, v in out.items()}


def _rows(model: nn.Module, image: Tensor, queries: dict[str, int]
          ) -> tuple[Tensor, dict[str, Tensor]]:
    """The logits and the attention row of one query per module (the mean of its heads'
    rows), on the module's key grid (``AttentionLayer.key_grid``: its input's grid unless
    it pools its keys), from one forward pass."""
    if not queries:
        with torch.no_grad():
            return model(image), {}
    logits, records = run_with_records(model, image, with_attention=False)
    named = attention_modules(model)
    out = {}
    for name, query in queries.items():
        x = records[name].x
        keys = named[name].key_grid(x)
        out[name] = named[name].row(x, query)[0].mean(dim=0).view(keys)  # (Hk, Wk)
    return logits, out


def first_steps(model: nn.Module, queries: dict[str, int] | None = None) -> list[int]:
    """The steps a first look needs (``cascading_randomisation``'s ``at``): the trained
    model, the top layer re-initialised, each queried attention module's own step and
    the last; the verdicts read nothing else."""
    steps = randomisation_steps(model)
    own = [i + 1 for i, names in enumerate(steps) if any(n in names for n in queries or {})]
    return sorted({0, min(1, len(steps)), len(steps), *own})


def cascading_randomisation(model: nn.Module, image: Tensor, methods: list[str],
                            queries: dict[str, int] | None = None,
                            cfg: AttributionConfig | None = None, seed: int = 0,
                            progress: Callable[[int, int], None] | None = None,
                            at: Collection[int] | None = None) -> SanityResult:
    """Randomise ``model``'s layers from the top down on a copy; after each step, the
    attributions of ``methods`` for the trained model's predicted class and the
    attention row of ``queries`` ({module name: query index}) on ``image`` (1, 3, H, W).

    With ``at``, maps and rows are computed only after those steps (0, the trained
    model, always): every step is still applied, in order, so the randomised networks
    are the same, and the skipped steps' maps and similarities are NaN.
    ``model`` itself is never changed.
    """
    private = copy.deepcopy(model).eval()
    device = model_device(private)
    image = image.to(device, torch.float32)
    generator = torch.Generator(device=device).manual_seed(seed)
    steps = randomisation_steps(private)
    modules = dict(private.named_modules())
    queries = dict(queries or {})
    cfg = cfg or AttributionConfig()
    hooks = any(get_method(m).hooks for m in methods)
    maps: dict[str, list[Tensor]] = {m: [] for m in methods}
    rows: dict[str, list[Tensor]] = {n: [] for n in queries}
    probs, predicted = [], []
    target: int | None = None
    explain = np.ones(len(steps) + 1, dtype=bool)
    if at is not None:
        explain[:] = False
        explain[[0, *at]] = True
    for i in range(len(steps) + 1):
        if i > 0:
            for name in steps[i - 1]:
                reinitialise(modules[name], generator)
        # The rows' pass gives the logits.
        logits, found = _rows(private, image, queries if explain[i] else {})
        p = logits.float().softmax(dim=1)[0]
        if target is None:
            target = int(p.argmax())
        probs.append(float(p[target]))
        predicted.append(int(p.argmax()))
        if not explain[i]:
            for v in (*maps.values(), *rows.values()):
                v.append(torch.full_like(v[0], float("nan")))
            if progress is not None:
                progress(i + 1, len(steps) + 1)
            continue
        # One hookable copy per step for every hook-based method (``attribute`` would
        # trace one per call), and the methods on this private model without a copy.
        hooked = hookable_copy(private) if hooks else None
        for m in methods:
            method = get_method(m)
            xg = image.detach().clone().requires_grad_(True)
            maps[m].append(to_map(method.run(hooked if method.hooks else private, xg,
                                             target, cfg))[0].cpu())
        for name, row in found.items():
            rows[name].append(row.cpu())
        if progress is not None:
            progress(i + 1, len(steps) + 1)
    stacked = {m: torch.stack(v).float() for m, v in maps.items()}
    stacked_rows = {n: torch.stack(v).float() for n, v in rows.items()}

    def similar(v: Tensor) -> dict[str, np.ndarray]:
        sims = similarities(v[0], v.nan_to_num())
        return {k: np.where(explain, x, np.nan) for k, x in sims.items()}

    return SanityResult(
        steps=["trained model"] + [", ".join(s) for s in steps],
        target=int(target),
        probs=np.array(probs),
        predicted=predicted,
        maps={m: v.numpy() for m, v in stacked.items()},
        rows={n: v.numpy() for n, v in stacked_rows.items()},
        map_similarity={m: similar(v) for m, v in stacked.items()},
        row_similarity={n: similar(v) for n, v in stacked_rows.items()},
        explained=None if at is None else explain,
    )


def paired_similarities(reference: Tensor, maps: Tensor, fraction: float = 0.1
                        ) -> dict[str, np.ndarray]:
    """``similarities`` image by image: (B, H, W) maps against their own (B, H, W)
    references, (B,) per metric; NaN where either map is constant."""
    ref, m = reference.abs().float(), maps.abs().float()

    def constant(z: Tensor) -> np.ndarray:
        flat = z.flatten(1)
        return (flat.amax(1) == flat.amin(1)).numpy()

    out = {
        "spearman": rank_correlation(ref.numpy(), m.numpy()),
        "ssim": ssim(ref, m).numpy().astype(np.float64),
        "topk": topk_overlap(ref.numpy(), m.numpy(), fraction),
    }
    flat = constant(ref) | constant(m)
    return {k: np.where(flat, np.nan, v) for k, v in out.items()}


@dataclass
class SanitySummary:
    """The cascading randomisation on many images: each explanation's similarity to the
    trained model's, image by image and step by step."""

    steps: list[str]  # as in SanityResult
    indices: np.ndarray  # (B,) positions of the images in their set
    probs: np.ndarray  # (B, S + 1) probability of the trained model's class at each step
    similarity: dict[str, dict[str, np.ndarray]]  # explanation -> metric -> (B, S + 1)


def randomisation_summary(model: nn.Module, images: Tensor, methods: list[str],
                          indices: np.ndarray | None = None,
                          cfg: AttributionConfig | None = None, seed: int = 0,
                          chunk: int = 64, attention: bool = True,
                          progress: Callable[[int, int], None] | None = None
                          ) -> SanitySummary:
    """``cascading_randomisation`` on B images (B, 3, H, W) at once, keeping the
    similarities: every image sees the same randomised networks (one generator, one
    sequence of steps), each method runs on whole chunks, and with ``attention`` the
    attention each position receives in every module is compared as well (named as in
    ``faithfulness.attention_name``). ``progress(done, total)`` counts steps.
    """
    from convattn.explain.faithfulness import attention_name, attention_ranking

    private = copy.deepcopy(model).eval()
    device = model_device(private)
    x = images.to(device, torch.float32)
    generator = torch.Generator(device=device).manual_seed(seed)
    steps = randomisation_steps(private)
    modules = dict(private.named_modules())
    cfg = cfg or AttributionConfig()
    found: dict[str, list[Tensor]] = {}
    probs: list[Tensor] = []
    target: Tensor | None = None
    for i in range(len(steps) + 1):
        if i > 0:
            for name in steps[i - 1]:
                reinitialise(modules[name], generator)
        hooked = hookable_copy(private) if any(get_method(m).hooks for m in methods) else None
        step_probs, step_targets, step_maps = [], [], {}
        for start in range(0, len(x), chunk):
            xc = x[start:start + chunk]
            with torch.no_grad():  # not inference_mode, which hides foreign attention
                p = private(xc).float().softmax(dim=1)
                ranks = attention_ranking(private, xc) if attention else {}
            t = p.argmax(dim=1) if target is None else target[start:start + chunk]
            step_targets.append(t.clone())
            step_probs.append(p.gather(1, t[:, None])[:, 0].clone())
            for m in methods:
                net = hooked if get_method(m).hooks else private
                xg = xc.detach().clone().requires_grad_(True)
                step_maps.setdefault(m, []).append(
                    to_map(get_method(m).run(net, xg, t.clone(), cfg)).cpu())
            for n, r in ranks.items():
                step_maps.setdefault(attention_name(n), []).append(r.clone().cpu())
        if target is None:
            target = torch.cat(step_targets)
        probs.append(torch.cat(step_probs))
        for k, v in step_maps.items():
            found.setdefault(k, []).append(torch.cat(v).float())
        if progress is not None:
            progress(i + 1, len(steps) + 1)
    similarity = {}
    for k, v in found.items():  # v: S + 1 maps (B, H, W)
        per_step = [paired_similarities(v[0], m) for m in v]
        similarity[k] = {metric: np.stack([s[metric] for s in per_step], axis=1)
                         for metric in ("spearman", "ssim", "topk")}
    return SanitySummary(
        steps=["trained model"] + [", ".join(s) for s in steps],
        indices=np.arange(len(x)) if indices is None else np.asarray(indices),
        probs=torch.stack(probs, dim=1).cpu().numpy(),
        similarity=similarity)
