"""Predict, then reveal: a short series of test images, one query each, and the student's
guesses of where each query looks, kept in session state.

Each image's query is the position whose attention is the most focused (lowest entropy of
its row in the view shown): there a good guess can be told from a lucky one. A guess is
scored by ``convattn.readout.lens.guess_score``: the attention within a disc around it against
what uniform attention would put there. Scores are recomputed from the guesses on every
run (each image's analysis is cached), so the tally always matches the settings shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import streamlit as st

from appkit import loaded_model
from convattn.readout import analysis
from convattn.readout import lens as core

SERIES = 5  # images per series
GAME = "guess_game"  # session state: the Game


@dataclass
class Game:
    series: list[int]  # indices into the image set, one per step
    round: int = 0  # how many series came before: part of each lens's key
    step: int = 0
    guesses: dict[int, tuple[int, int]] = field(default_factory=dict)  # step -> pixel

    @property
    def done(self) -> bool:
        return len(self.guesses) == len(self.series)


def _series(n_images: int, round_: int) -> list[int]:
    """SERIES different images, the same ones for the same round (a class can replay)."""
    rng = np.random.default_rng(round_)
    return [int(i) for i in rng.choice(n_images, size=min(SERIES, n_images), replace=False)]


def game(n_images: int) -> Game:
    """This session's game, started on first use (or when the image set shrank)."""
    g = st.session_state.get(GAME)
    if g is None or max(g.series) >= n_images:
        g = Game(series=_series(n_images, 0))
        st.session_state[GAME] = g
    return g


def new_series(n_images: int) -> None:
    """Callback: start the next series, with a fresh tally."""
    old = st.session_state.get(GAME)
    round_ = 0 if old is None else old.round + 1
    st.session_state[GAME] = Game(series=_series(n_images, round_), round=round_)


def next_image() -> None:
    """Callback: go on to the next image of the series."""
    g = st.session_state[GAME]
    g.step = min(g.step + 1, len(g.series) - 1)


def lens_key(g: Game) -> str:
    """A new lens per image: its state (the guess) starts empty."""
    return f"guess_lens_{g.round}_{g.step}"


def record(key: str, step: int) -> None:
    """Callback: the guess clicked in lens ``key`` for ``step``; the first one counts."""
    value = (st.session_state.get(key) or {}).get("guess")
    g = st.session_state[GAME]
    if isinstance(value, dict) and step not in g.guesses:
        g.guesses[step] = (int(value["row"]), int(value["col"]))


@dataclass(frozen=True)
class Challenge:
    view: analysis.ModuleView
    pixel: tuple[int, int]  # the query, at the centre of its cell
    row: np.ndarray  # (H', W') its attention row


def modules(loaded: loaded_model.Loaded, pixels: np.ndarray) -> dict[str, tuple[int, int]]:
    """The attention modules a guess can be made on, with their query grids (H', W'): those
    whose queries and keys are on one grid, as the lens shows them; convattn's own modules
    and those found in a model card's network alike."""
    found = loaded_model.analyse(loaded, pixels).modules
    return {n: v.grid for n, v in found.items() if tuple(v.key_grid) == tuple(v.grid)}


def head_count(loaded: loaded_model.Loaded, pixels: np.ndarray, name: str) -> int:
    return loaded_model.analyse(loaded, pixels).modules[name].num_heads


def challenge(loaded: loaded_model.Loaded, pixels: np.ndarray, name: str, head: int | None
              ) -> Challenge:
    """The query to guess for one image: the most focused position of the view."""
    view = loaded_model.analyse(loaded, pixels).view(name, head)
    pixel = view.query_grid().centre_pixel(int(np.argmin(view.spread)))
    return Challenge(view, pixel, analysis.query_view(view, pixel).row)


def scores(loaded: loaded_model.Loaded, images: np.ndarray, g: Game, name: str, head: int | None,
           radius: float) -> dict[int, core.GuessScore]:
    """Each guessed step's score, with the current module, head and radius."""
    out = {}
    for step, guessed in sorted(g.guesses.items()):
        pixels = images[g.series[step]]
        c = challenge(loaded, pixels, name, head)
        out[step] = core.guess_score(c.row, guessed, radius, pixels.shape[:2])
    return out
