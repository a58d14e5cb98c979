"""How long live work will take, said before it starts, from speeds measured on this
server.

The Faithfulness page computes what no checks file holds live, at one to a few seconds per
image on a CPU: it says how long before anything starts, and starts when asked. The
estimate counts the work in *passes*, forward passes of one image (the curves' perturbed
images, each model forward, and about three per forward-and-backward of an attribution),
and multiplies it by the seconds one pass takes on this checkpoint and device, as measured:
by the live runs on this checkpoint so far (their seconds over their passes), else by
timing one batch of forward passes (a fraction of a second, once per checkpoint).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

import streamlit as st
import torch

from appkit.loaded_model import HASH, Loaded
from convattn.device import model_device
from convattn.explain.attribution import AttributionConfig
from convattn.explain.faithfulness import FaithfulnessConfig
from convattn.readout.attention import attention_modules

PROBE = 16  # images in the timed batch of forward passes
BACKWARD = 3  # passes per forward-and-backward: a backward costs about two forwards
SIDE = 32  # input pixels a side where the checkpoint says nothing (CIFAR-10)


def faithfulness_passes(methods: list[str], cfg: FaithfulnessConfig,
                        attribution: AttributionConfig, attention: int,
                        size: tuple[int, int] = (SIDE, SIDE)) -> int:
    """Passes per image of a deletion and insertion run (``faithfulness_batched.run``):
    the prediction (which is also the curves' unperturbed end) and the fully removed
    end, every inner step of both curves for each ranking (the methods, ``attention``
    modules' attention received, the random order), a captured forward for the
    attention, and each method's own passes."""
    rankings = len(methods) + attention + 1
    passes = 2 + rankings * 2 * max(cfg.steps - 1, 0) + (2 if attention else 0)
    w, s = attribution.occlusion_window, attribution.occlusion_stride
    windows = ((size[0] - w) // s + 1) * ((size[1] - w) // s + 1)  # (H, W) of the input
    own = {"integrated_gradients": BACKWARD * attribution.ig_steps,
           "smoothgrad": BACKWARD * attribution.smoothgrad_samples,
           "occlusion": windows + 1, "deeplift": BACKWARD + 1}
    return passes + sum(own.get(m, BACKWARD) for m in methods)


@dataclass
class _Measured:
    lock: threading.Lock
    runs: dict[tuple, tuple[float, float]]  # checkpoint key -> (seconds, passes) so far


@st.cache_resource(show_spinner=False)
def _measured() -> _Measured:
    return _Measured(threading.Lock(), {})


def record(loaded: Loaded, seconds: float, passes: float) -> None:
    """A live run on ``loaded`` did ``passes`` passes in ``seconds``."""
    store = _measured()
    with store.lock:
        s, p = store.runs.get(loaded.key, (0.0, 0.0))
        store.runs[loaded.key] = (s + seconds, p + passes)


@st.cache_data(show_spinner="Timing the model…", max_entries=16, hash_funcs=HASH)
def _probe(loaded: Loaded) -> float:
    """Seconds per forward pass of one image, timed on a batch of ``PROBE`` (after one
    small batch that warms up the kernels)."""
    x = torch.zeros(PROBE, loaded.info.channels, *loaded.info.image_size,
                    device=model_device(loaded.model))
    with torch.inference_mode():
        loaded.model(x[:2])
        start = time.perf_counter()
        loaded.model(x)
        return (time.perf_counter() - start) / PROBE


@dataclass(frozen=True)
class Estimate:
    seconds: float
    images: int
    measured: str  # where the speed comes from, in words

    @property
    def per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else math.inf


def seconds_per_pass(loaded: Loaded) -> tuple[float, str]:
    """This checkpoint's seconds per pass on this server, and where that figure comes from."""
    store = _measured()
    with store.lock:
        seconds, passes = store.runs.get(loaded.key, (0.0, 0.0))
    if passes > 0 and seconds > 0:
        return seconds / passes, "measured by the earlier runs on this server"
    return _probe(loaded), "from the timing of a batch of forward passes on this server"


def faithfulness_estimate(loaded: Loaded, images: int, methods: list[str],
                          cfg: FaithfulnessConfig, attribution: AttributionConfig) -> Estimate:
    """How long deletion and insertion on ``images`` more images will take here."""
    passes = images * faithfulness_passes(methods, cfg, attribution,
                                          len(attention_modules(loaded.model)),
                                          tuple(loaded.info.image_size))
    per_pass, measured = seconds_per_pass(loaded)
    return Estimate(passes * per_pass, images, measured)


SINGLE = 4  # one image per pass runs at about a quarter of the batched speed per image


def sanity_estimate(loaded: Loaded, images: int, methods: list[str], steps: int,
                    attention: bool) -> Estimate:
    """How long the cascading randomisation of ``images`` images takes here: at each of
    ``steps`` models (the trained one and every randomised one), a forward pass for the
    prediction, one for the attention, and a forward-and-backward per method; one image
    alone counts ``SINGLE`` times."""
    passes = images * steps * (1 + attention + BACKWARD * len(methods))
    per_pass, measured = seconds_per_pass(loaded)
    return Estimate(passes * per_pass * (SINGLE if images == 1 else 1), images, measured)


def duration(seconds: float) -> str:
    """A rough duration in words: "about 40 s", "about 3 min", "about 1.5 h"."""
    if seconds < 10:
        return "a few seconds"
    if seconds < 90:
        return f"about {10 * round(seconds / 10):.0f} s"
    if seconds < 5400:
        return f"about {round(seconds / 60):.0f} min"
    return f"about {seconds / 3600:.1f} h"
