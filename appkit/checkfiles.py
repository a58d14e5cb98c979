"""The checks file beside a checkpoint (``python -m convattn.checks``), for the
Faithfulness and Sanity check pages.

A file is read once per process and used only where it matches what the page asks for:
the same network and weights (``checkpoint_digest``; other entries such as ``ood`` do
not count), the same settings, methods it holds, and the same images (by name, in the
set's balanced order). Anything else is computed live by the page; a missing, unreadable
or stale file is never an error, the page says which it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st

from appkit import markdown
from appkit.loaded_model import Loaded
from convattn.explain.attribution import AttributionConfig
from convattn.explain.checks import Checks, ChecksError, checks_path, load_checks, pixels_digest
from convattn.explain.faithfulness import Curves, FaithfulnessConfig, FaithfulnessResult
from convattn.explain.sanity import SanityResult, SanitySummary, similarities
from convattn.explain.verdict import RANDOM
from convattn.files.checkpoint import checkpoint_digest
from convattn.files.data import ImageSet
from convattn.jobs.checks import attribution_config, faithfulness_config


@dataclass(frozen=True)
class Found:
    checks: Checks | None
    why: str  # Markdown: why there is no usable file ("" when there is one)


@st.cache_resource(show_spinner=False, max_entries=16)
def _digest(path: str, mtime: float) -> str:
    return checkpoint_digest(path)


@st.cache_resource(show_spinner=False, max_entries=8)
def _read(path: str, mtime: float) -> Checks | str:
    try:
        return load_checks(path)
    except ChecksError as e:
        return str(e)


def find(loaded: Loaded) -> Found:
    """The checkpoint's checks file when it is there, readable and made from this very
    network and weights."""
    path = checks_path(loaded.path)
    if not path.is_file():
        return Found(None, f"no {markdown.literal(path.name)} beside the checkpoint")
    got = _read(str(path), path.stat().st_mtime)
    if isinstance(got, str):
        return Found(None, markdown.literal(got))
    p = Path(loaded.path)
    if got.digest != _digest(str(p), p.stat().st_mtime):
        return Found(None, f"{markdown.literal(path.name)} was made from another version of "
                           "this checkpoint")
    return Found(got, "")


def _balanced_names(images: ImageSet, indices: np.ndarray) -> list[str]:
    return [images.names[int(i)] for i in indices]


def faithfulness(found: Found, images: ImageSet, indices: np.ndarray, methods: list[str],
                 cfg: FaithfulnessConfig, attribution: AttributionConfig
                 ) -> FaithfulnessResult | None:
    """The stored result for the images at ``indices`` (the first of the balanced order)
    and these settings, or None when the file does not hold exactly that."""
    c = found.checks
    if c is None or c.classes != images.classes:
        return None
    s = c.settings
    if (faithfulness_config(s) != cfg or attribution_config(s) != attribution
            or not set(methods) <= set(s.methods) or len(indices) > len(c.faith_names)
            or c.faith_names[:len(indices)] != _balanced_names(images, indices)):
        return None
    return subset(c.faithfulness, len(indices), methods)


def subset(result: FaithfulnessResult, n: int, methods: list[str]) -> FaithfulnessResult:
    """The first ``n`` images and only ``methods`` (with attention and the random order)."""
    keep = list(methods) + [k for k in result.curves
                            if k.startswith("attention received") or k == RANDOM]
    return FaithfulnessResult(
        indices=result.indices[:n], labels=result.labels[:n], predicted=result.predicted[:n],
        maps={k: result.maps[k][:n] for k in keep},
        curves={k: Curves(result.curves[k].fractions, result.curves[k].deletion[:n],
                          result.curves[k].insertion[:n]) for k in keep},
        agreement={(m, a): {s: v[:n] for s, v in d.items()}
                   for (m, a), d in result.agreement.items() if a in methods})


def sanity_summary(found: Found, images: ImageSet, indices: np.ndarray, methods: list[str]
                   ) -> SanitySummary | None:
    """The stored randomisation over the images at ``indices``, for ``methods``."""
    c = found.checks
    if c is None or c.classes != images.classes:
        return None
    s = c.sanity
    if (not set(methods) <= set(s.similarity) or len(indices) > len(c.sanity_names)
            or c.sanity_names[:len(indices)] != _balanced_names(images, indices)):
        return None
    keep = list(methods) + [k for k in s.similarity if k.startswith("attention received")]
    n = len(indices)
    return SanitySummary(steps=s.steps, indices=s.indices[:n], probs=s.probs[:n],
                         similarity={k: {m: v[:n] for m, v in s.similarity[k].items()}
                                     for k in keep})


def sanity_example(found: Found, pixels: np.ndarray, methods: list[str],
                   queries: dict[str, int], attribution: AttributionConfig
                   ) -> SanityResult | None:
    """The stored randomisation of this image (the same pixels), when it was computed
    with these queries, methods and settings."""
    c = found.checks
    e = c.example if c is not None else None
    if (e is None or e.pixels != pixels_digest(pixels) or e.queries != queries
            or attribution_config(c.settings) != attribution or c.settings.seed != 0
            or not set(methods) <= set(e.maps)):
        return None
    import torch

    maps = {m: torch.from_numpy(e.maps[m]) for m in methods}
    rows = {n: torch.from_numpy(v) for n, v in e.rows.items()}
    return SanityResult(
        steps=list(e.steps), target=int(e.target), probs=np.asarray(e.probs),
        predicted=list(e.predicted), maps={m: v.numpy() for m, v in maps.items()},
        rows={n: v.numpy() for n, v in rows.items()},
        map_similarity={m: similarities(v[0], v) for m, v in maps.items()},
        row_similarity={n: similarities(v[0], v) for n, v in rows.items()})
