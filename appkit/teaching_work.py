"""The teaching pages' work (Learn, Predict then reveal, Attention statistics,
Faithfulness, Sanity check): their library functions run once per checkpoint and kept.

Work over many images is cached in chunks of a fixed balanced order of the test set
(``convattn.readout.stats.balanced_order``): a sample of n images is the first n of that order,
so growing the sample only computes the new chunks, and the page can show progress
between chunks. Every function takes ``Loaded`` (the shared model, never changed); the
cache keys it, and image sets, by identity (``loaded_model.HASH``). Work that moves the
page's progress bar while it runs (faithfulness chunks, the randomisation over many
images) is kept by ``appkit.progress_cache``, everything else by ``st.cache_data``.
"""

from __future__ import annotations

import time

import numpy as np
import streamlit as st
import torch

from appkit import progress_cache, work_speed
from appkit.loaded_model import HASH, Loaded
from appkit.progress_cache import Progress
from convattn.device import model_device
from convattn.explain import faithfulness, sanity, sequential
from convattn.explain import faithfulness_batched as faithrun
from convattn.explain.attribution import AttributionConfig
from convattn.files.data import ImageSet
from convattn.readout import stats, stepthrough
from convattn.readout.attention import attention_maps, attention_modules, module_inputs

STATS_CHUNK = 25  # images per cached chunk of attention statistics
FAITHFULNESS_CHUNK = 32  # images per cached chunk of deletion / insertion curves
FAITHFULNESS_STEP = 8  # images per batch inside a chunk (progress moves after each)
FAITHFULNESS_KEEP = 512  # chunks kept
SANITY_KEEP = 16  # randomisation summaries kept


def batch(loaded: Loaded, images: ImageSet, indices: np.ndarray) -> torch.Tensor:
    """Normalised (B, C, H, W) inputs of the set's images at ``indices``, at the model's
    size and channels."""
    return loaded.inputs(images.images[indices])


def labels(loaded: Loaded, images: ImageSet, indices: np.ndarray) -> torch.Tensor:
    """True classes of the images at ``indices`` as the model's class indices (-1 for a
    class the model does not know)."""
    to_model = np.array([loaded.classes.index(c) if c in loaded.classes else -1
                         for c in images.classes])
    return torch.from_numpy(to_model[images.labels[indices]])


@st.cache_data(show_spinner=False, max_entries=16, hash_funcs=HASH)
def _order(images: ImageSet) -> np.ndarray:
    return stats.balanced_order(images.labels)


def sample(images: ImageSet, n: int) -> np.ndarray:
    """The first ``n`` images of the set's balanced order (every class in turn)."""
    return _order(images)[:n]


def _chunks(indices: np.ndarray, size: int) -> list[tuple[int, ...]]:
    return [tuple(int(i) for i in indices[i:i + size]) for i in range(0, len(indices), size)]


@st.cache_data(show_spinner=False, max_entries=4096, hash_funcs=HASH)
def _stats_chunk(loaded: Loaded, images: ImageSet, indices: tuple[int, ...]
                 ) -> stats.AttentionStats:
    idx = np.array(indices)
    return stats.attention_statistics(loaded.model, batch(loaded, images, idx),
                                      labels(loaded, images, idx), indices=idx,
                                      batch_size=STATS_CHUNK)


def attention_stats(loaded: Loaded, images: ImageSet, n: int,
                    progress: Progress | None = None) -> stats.AttentionStats:
    """Attention statistics of the first ``n`` images of the balanced order."""
    parts, done = [], 0
    for chunk in _chunks(sample(images, n), STATS_CHUNK):
        parts.append(_stats_chunk(loaded, images, chunk))
        done += len(chunk)
        if progress is not None:
            progress(done, n)
    return stats.merge(parts)


FAITHFULNESS_POOL = "faithfulness chunks"


def _faithfulness_key(loaded: Loaded, images: ImageSet, indices: tuple[int, ...],
                      methods: tuple[str, ...], cfg: faithfulness.FaithfulnessConfig,
                      attribution_cfg: AttributionConfig) -> tuple:
    return (loaded.key, images.key, indices, methods, cfg, attribution_cfg)


def _faithfulness_chunk(loaded: Loaded, images: ImageSet, indices: tuple[int, ...],
                        methods: tuple[str, ...], cfg: faithfulness.FaithfulnessConfig,
                        attribution_cfg: AttributionConfig,
                        progress: Progress | None = None) -> faithfulness.FaithfulnessResult:
    idx = np.array(indices)

    def compute() -> faithfulness.FaithfulnessResult:
        # Timed: the next estimate of how long a run takes here comes from this one.
        start = time.perf_counter()
        result = faithrun.run(loaded.model, batch(loaded, images, idx),
                              labels(loaded, images, idx), list(methods), idx, cfg,
                              attribution_cfg, chunk=FAITHFULNESS_STEP, progress=progress)
        passes = work_speed.faithfulness_passes(list(methods), cfg, attribution_cfg,
                                                len(attention_modules(loaded.model)),
                                                tuple(loaded.info.image_size))
        work_speed.record(loaded, time.perf_counter() - start, len(idx) * passes)
        return result

    return progress_cache.remember(
        FAITHFULNESS_POOL,
        _faithfulness_key(loaded, images, indices, methods, cfg, attribution_cfg),
        compute, FAITHFULNESS_KEEP)


def faithfulness_missing(loaded: Loaded, images: ImageSet, n: int, methods: list[str],
                         cfg: faithfulness.FaithfulnessConfig,
                         attribution_cfg: AttributionConfig,
                         plan: sequential.Plan | None = None) -> int:
    """How many of the first ``n`` balanced images ``faithfulness_run`` would compute now
    (the rest are kept from earlier runs); none when, under ``plan``, the kept images
    already settle every verdict at one of its looks."""
    chunks = _chunks(sample(images, n), FAITHFULNESS_CHUNK)
    keys = [_faithfulness_key(loaded, images, c, tuple(methods), cfg, attribution_cfg)
            for c in chunks]
    looks = [k for k in plan.looks if k < n] if plan is not None else []
    parts, done = [], 0
    for chunk, key in zip(chunks, keys):
        kept = progress_cache.peek(FAITHFULNESS_POOL, key) if looks else None
        if kept is None:
            break
        parts.append(kept)
        done += len(chunk)
        reached = [k for k in looks if k <= done]
        looks = [k for k in looks if k > done]
        if reached and sequential.settled(faithfulness.merge(parts),
                                          plan.level(max(reached))):
            return 0
    return sum(len(chunk) for chunk, key in zip(chunks, keys)
               if not progress_cache.has(FAITHFULNESS_POOL, key))


def faithfulness_run(loaded: Loaded, images: ImageSet, n: int, methods: list[str],
                     cfg: faithfulness.FaithfulnessConfig,
                     attribution_cfg: AttributionConfig,
                     progress: Progress | None = None,
                     plan: sequential.Plan | None = None) -> faithfulness.FaithfulnessResult:
    """Deletion / insertion curves and agreement on the first ``n`` balanced images,
    batched (``convattn.explain.faithfulness_batched``); ``progress`` moves every few images.
    With ``plan`` (``sequential.Plan(n)``), stops after the first look (a multiple of the
    cached chunk) where every verdict against the random order is settled."""
    parts, done = [], 0
    looks = [k for k in plan.looks if k < n] if plan is not None else []
    for chunk in _chunks(sample(images, n), FAITHFULNESS_CHUNK):
        step = None
        if progress is not None:
            def step(d: int, _: int, base: int = done) -> None:
                progress(base + d, n)
        parts.append(_faithfulness_chunk(loaded, images, chunk, tuple(methods), cfg,
                                         attribution_cfg, step))
        done += len(chunk)
        if progress is not None:
            progress(done, n)
        if looks and done >= looks[0]:
            look = max(k for k in looks if k <= done)
            looks = [k for k in looks if k > done]
            if sequential.settled(faithfulness.merge(parts), plan.level(look)):
                break
    return faithfulness.merge(parts)


def sanity_summary(loaded: Loaded, images: ImageSet, n: int, methods: list[str],
                   cfg: AttributionConfig, progress: Progress | None = None
                   ) -> sanity.SanitySummary:
    """The randomisation over the first ``n`` balanced images (``progress`` counts the
    randomisation steps)."""
    idx = sample(images, n)
    return progress_cache.remember(
        "sanity summaries", (loaded.key, images.key, n, tuple(methods), cfg),
        lambda: sanity.randomisation_summary(loaded.model, batch(loaded, images, idx),
                                             list(methods), idx, cfg, progress=progress),
        SANITY_KEEP)


@st.cache_data(show_spinner=False, max_entries=64, hash_funcs=HASH)
def _sanity(loaded: Loaded, pixels: np.ndarray, methods: tuple[str, ...],
            queries: tuple[tuple[str, int], ...], cfg: AttributionConfig,
            at: tuple[int, ...] | None) -> sanity.SanityResult:
    return sanity.cascading_randomisation(loaded.model, loaded.inputs(pixels), list(methods),
                                          dict(queries), cfg, at=at)


def sanity_run(loaded: Loaded, pixels: np.ndarray, methods: list[str],
               queries: dict[str, int], cfg: AttributionConfig,
               at: list[int] | None = None) -> sanity.SanityResult:
    """The cascading randomisation of ``loaded``'s model for one image (cached), its maps
    after the steps ``at`` only (None: every step)."""
    return _sanity(loaded, pixels, tuple(methods), tuple(sorted(queries.items())), cfg,
                   None if at is None else tuple(at))


@st.cache_data(show_spinner=False, max_entries=64, hash_funcs=HASH)
def _inputs(loaded: Loaded, pixels: np.ndarray) -> dict[str, np.ndarray]:
    return {n: v.cpu().numpy() for n, v in module_inputs(loaded.model,
                                                          loaded.inputs(pixels)).items()}


@st.cache_data(show_spinner=False, max_entries=64, hash_funcs=HASH)
def _attention_names(loaded: Loaded, pixels: np.ndarray) -> list[str]:
    return list(attention_maps(loaded.model, loaded.inputs(pixels)))


def attention_names(loaded: Loaded, pixels: np.ndarray) -> list[str]:
    """The modules computing a softmax attention over positions on this image: convattn's
    own and, in a network without them, those ``convattn.readout.foreign`` finds."""
    return _attention_names(loaded, pixels)


def grids(loaded: Loaded, pixels: np.ndarray) -> dict[str, tuple[int, int]]:
    """Each attention module's (H', W') on this image, in forward order."""
    return {n: tuple(v.shape[2:]) for n, v in _inputs(loaded, pixels).items()}


def heads(loaded: Loaded) -> dict[str, int]:
    """How many heads each attention module has."""
    return {n: m.heads() for n, m in attention_modules(loaded.model).items()}


def step_through(loaded: Loaded, pixels: np.ndarray, module: str, query: int, head: int = 0
                 ) -> stepthrough.StepThrough:
    """One query through ``module``'s head ``head`` on this image; the module input is
    cached."""
    x = torch.from_numpy(_inputs(loaded, pixels)[module]).to(model_device(loaded.model))
    return stepthrough.step_through(attention_modules(loaded.model)[module], x, query, head)


@st.cache_data(show_spinner=False, max_entries=256, hash_funcs=HASH)
def _what_if(loaded: Loaded, pixels: np.ndarray, module: str, gamma: float) -> np.ndarray:
    return stepthrough.predict_with_gamma(loaded.model, loaded.inputs(pixels),
                                          {module: gamma})[0].numpy()


def what_if(loaded: Loaded, pixels: np.ndarray, module: str, gamma: float) -> np.ndarray:
    """Class probabilities (K,) with ``module``'s gamma set to ``gamma``, on a copy."""
    return _what_if(loaded, pixels, module, round(float(gamma), 4))
