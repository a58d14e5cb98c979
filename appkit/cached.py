"""Cached runs of the teaching pages' library functions, keyed per checkpoint.

Work over many images is cached in chunks of a fixed balanced order of the test set
(``convattn.stats.balanced_order``): a sample of n images is the first n of that order,
so growing the sample only computes the new chunks, and the page can show progress
between chunks. Every function takes ``Loaded`` (the shared model, never changed) and
its key, which names the checkpoint file, its modification time and the device.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import streamlit as st
import torch

from convattn import faithfulness, sanity, stats, stepthrough
from convattn.attention import module_inputs
from convattn.attribution import AttributionConfig

from .analysis import normalise
from .sources import ImageSet
from .state import Loaded

STATS_CHUNK = 25  # images per cached chunk of attention statistics
FAITHFULNESS_CHUNK = 4  # images per cached chunk of deletion / insertion curves

Progress = Callable[[int, int], None]  # (images done, images in all)


def _device(loaded: Loaded) -> torch.device:
    return next(loaded.model.parameters()).device


def batch(loaded: Loaded, images: ImageSet, indices: np.ndarray) -> torch.Tensor:
    """Normalised (B, 3, 32, 32) inputs of the set's images at ``indices``."""
    x = torch.from_numpy(np.ascontiguousarray(images.images[indices])).to(_device(loaded))
    mean = torch.tensor(loaded.info["mean"], device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(loaded.info["std"], device=x.device).view(1, 3, 1, 1)
    return (x.permute(0, 3, 1, 2).float() / 255 - mean) / std


def labels(loaded: Loaded, images: ImageSet, indices: np.ndarray) -> torch.Tensor:
    """True classes of the images at ``indices`` as the model's class indices (-1 for a
    class the model does not know)."""
    to_model = np.array([loaded.classes.index(c) if c in loaded.classes else -1
                         for c in images.classes])
    return torch.from_numpy(to_model[images.labels[indices]])


@st.cache_data(show_spinner=False, max_entries=16)
def _order(set_key: str, _labels: np.ndarray) -> np.ndarray:
    return stats.balanced_order(_labels)


def sample(images: ImageSet, n: int) -> np.ndarray:
    """The first ``n`` images of the set's balanced order (every class in turn)."""
    return _order(images.key, images.labels)[:n]


def _chunks(indices: np.ndarray, size: int) -> list[np.ndarray]:
    return [indices[i:i + size] for i in range(0, len(indices), size)]


@st.cache_data(show_spinner=False, max_entries=4096)
def _stats_chunk(_loaded: Loaded, key: tuple, set_key: str, indices: tuple[int, ...],
                 _images: ImageSet) -> stats.AttentionStats:
    idx = np.array(indices)
    return stats.attention_statistics(_loaded.model, batch(_loaded, _images, idx),
                                      labels(_loaded, _images, idx), indices=idx,
                                      batch_size=STATS_CHUNK)


def attention_stats(loaded: Loaded, images: ImageSet, n: int,
                    progress: Progress | None = None) -> stats.AttentionStats:
    """Attention statistics of the first ``n`` images of the balanced order."""
    parts, done = [], 0
    chunks = _chunks(sample(images, n), STATS_CHUNK)
    for chunk in chunks:
        parts.append(_stats_chunk(loaded, loaded.key, images.key, tuple(int(i) for i in chunk),
                                  images))
        done += len(chunk)
        if progress is not None:
            progress(done, n)
    return stats.merge(parts)


@st.cache_data(show_spinner=False, max_entries=4096)
def _faithfulness_chunk(_loaded: Loaded, key: tuple, set_key: str, indices: tuple[int, ...],
                        methods: tuple[str, ...], cfg: faithfulness.FaithfulnessConfig,
                        attribution_cfg: AttributionConfig, _images: ImageSet
                        ) -> faithfulness.FaithfulnessResult:
    idx = np.array(indices)
    return faithfulness.evaluate(_loaded.model, batch(_loaded, _images, idx),
                                 labels(_loaded, _images, idx), list(methods),
                                 idx, cfg, attribution_cfg)


def faithfulness_run(loaded: Loaded, images: ImageSet, n: int, methods: list[str],
                     cfg: faithfulness.FaithfulnessConfig,
                     attribution_cfg: AttributionConfig,
                     progress: Progress | None = None) -> faithfulness.FaithfulnessResult:
    """Deletion / insertion curves and agreement on the first ``n`` balanced images."""
    parts, done = [], 0
    for chunk in _chunks(sample(images, n), FAITHFULNESS_CHUNK):
        parts.append(_faithfulness_chunk(loaded, loaded.key, images.key,
                                         tuple(int(i) for i in chunk), tuple(methods), cfg,
                                         attribution_cfg, images))
        done += len(chunk)
        if progress is not None:
            progress(done, n)
    return faithfulness.merge(parts)


@st.cache_data(show_spinner=False, max_entries=64)
def _sanity(_loaded: Loaded, key: tuple, pixels: np.ndarray, methods: tuple[str, ...],
            queries: tuple[tuple[str, int], ...], cfg: AttributionConfig
            ) -> sanity.SanityResult:
    x = normalise(pixels, _loaded.info["mean"], _loaded.info["std"], _device(_loaded))
    return sanity.cascading_randomisation(_loaded.model, x, list(methods), dict(queries), cfg)


def sanity_run(loaded: Loaded, pixels: np.ndarray, methods: list[str],
               queries: dict[str, int], cfg: AttributionConfig) -> sanity.SanityResult:
    """The cascading randomisation of ``loaded``'s model for one image (cached)."""
    return _sanity(loaded, loaded.key, pixels, tuple(methods), tuple(sorted(queries.items())),
                   cfg)


@st.cache_data(show_spinner=False, max_entries=64)
def _inputs(_loaded: Loaded, key: tuple, pixels: np.ndarray) -> dict[str, np.ndarray]:
    x = normalise(pixels, _loaded.info["mean"], _loaded.info["std"], _device(_loaded))
    return {n: v.cpu().numpy() for n, v in module_inputs(_loaded.model, x).items()}


def grids(loaded: Loaded, pixels: np.ndarray) -> dict[str, tuple[int, int]]:
    """Each attention module's (H', W') on this image, in forward order."""
    return {n: tuple(v.shape[2:]) for n, v in _inputs(loaded, loaded.key, pixels).items()}


def step_through(loaded: Loaded, pixels: np.ndarray, module: str, query: int
                 ) -> stepthrough.StepThrough:
    """One query through ``module`` on this image; the module input is cached."""
    x = torch.from_numpy(_inputs(loaded, loaded.key, pixels)[module]).to(_device(loaded))
    named = dict(loaded.model.named_modules())
    return stepthrough.step_through(named[module], x, query)


@st.cache_data(show_spinner=False, max_entries=256)
def _what_if(_loaded: Loaded, key: tuple, pixels: np.ndarray, module: str, gamma: float
             ) -> np.ndarray:
    x = normalise(pixels, _loaded.info["mean"], _loaded.info["std"], _device(_loaded))
    return stepthrough.predict_with_gamma(_loaded.model, x, {module: gamma})[0].numpy()


def what_if(loaded: Loaded, pixels: np.ndarray, module: str, gamma: float) -> np.ndarray:
    """Class probabilities (K,) with ``module``'s gamma set to ``gamma``, on a copy."""
    return _what_if(loaded, loaded.key, pixels, module, round(float(gamma), 4))
