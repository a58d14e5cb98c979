"""Predict, then reveal: the student clicks where they think a query will look; the real
attention row is revealed with a score, over a short series of images, with a tally.

Widgets -> appkit.guess (convattn.readout.lens scores) -> the lens in guess mode and a table.
"""

from __future__ import annotations

from functools import partial

import streamlit as st

from appkit import choose, guess, lens, markdown, session
from convattn.nn.interface import NotSupported
from convattn.readout import analysis

LENS = 320  # px: 10 screen pixels per CIFAR-10 input pixel


def verdict(s, radius: int) -> str:
    """One score in words: the mass near the guess against what chance would put there."""
    if s.ratio >= 2:
        how = f"**{s.ratio:.1f}x** what uniform attention would put there: a good guess."
    elif s.ratio >= 1:
        how = f"{s.ratio:.1f}x what uniform attention would put there: about chance."
    else:
        how = f"only {s.ratio:.2f}x what uniform attention would put there: it looks elsewhere."
    return (f"**{s.mass:.1%}** of this query's attention lies within {radius} pixels of your "
            f"guess; uniform attention would put {s.uniform:.1%} there. That is {how}")


def tally(g: guess.Game, scores: dict) -> None:
    st.subheader("Tally")
    if not scores:
        st.caption("No guesses yet.")
        return
    ratios = [s.ratio for s in scores.values()]
    better = sum(r > 1 for r in ratios)
    mean = sum(ratios) / len(ratios)
    st.markdown(f"**{len(scores)} of {len(g.series)}** guessed · mean **{mean:.1f}x** chance "
                f"· better than chance on **{better}**.")
    st.markdown(markdown.table({
        "image": [str(step + 1) for step in scores],
        "attention near the guess": [f"{s.mass:.1%}" for s in scores.values()],
        "uniform would give": [f"{s.uniform:.1%}" for s in scores.values()],
        "x chance": [f"{s.ratio:.2f}" for s in scores.values()]}))


def main() -> None:
    st.title("Predict, then reveal: where will this position look?")
    shared = session.current()
    loaded, images = shared.loaded, shared.images
    try:
        grids = guess.modules(loaded, images.images[0])
    except NotSupported as e:
        shared.notice.info(markdown.literal(e))
        st.stop()
    if not grids:
        shared.notice.info(f"{analysis.no_attention_map(loaded.model)} Choose seed.pt or "
                           "resnet9-attn.pt in the sidebar to guess where attention looks.")
        st.stop()
    st.markdown("The **cyan square** is a query: the position whose attention is the most "
                "focused in this image. **Click where you think it looks.** Then its real "
                "attention row is revealed, scored by how much of it falls near your guess "
                "against what attention spread evenly would put there.")
    c1, c2, c3 = st.columns(3)
    name = choose.module(grids, c1)
    head = choose.head(guess.head_count(loaded, images.images[0], name), f"guess_head_{name}",
                       c2)
    side = max(images.images.shape[1:3])  # 32 for CIFAR-10; a card's images may be larger
    top = max(8, side // 4)
    radius = c3.slider("Radius counted (input pixels)", 1, top, max(4, side // 8),
                       key="guess_radius",
                       help="The disc around a guess whose attention is counted; a larger "
                            "disc is easier to hit, and chance (its share of the image) "
                            "grows with it, so the score stays fair.")
    t1, t2, _ = st.columns(3)
    outlined = t1.toggle("Outline 50% and 90% of the attention", True, key="guess_outlines",
                         help=lens.OUTLINES_HELP)
    log = t2.toggle("Log colour scale", False, key="guess_log", help=lens.LOG_HELP)
    g = guess.game(len(images))
    pixels = images.images[g.series[g.step]]
    ch = guess.challenge(loaded, pixels, name, head)
    left, right = st.columns([1.1, 1])
    with left:
        where = markdown.literal(images.names[g.series[g.step]])
        st.markdown(f"**Image {g.step + 1} of {len(g.series)}** · {where}")
        key = guess.lens_key(g)
        lens.show(key, lens.payload(pixels, ch.view, pinned=ch.pixel, mode="guess",
                                    guess=g.guesses.get(g.step), radius=radius, display=LENS,
                                    outlines=lens.OUTLINES if outlined else (), log=log),
                  on_query=lambda: None, on_guess=partial(guess.record, key, g.step))
    scores = guess.scores(loaded, images.images, g, name, head, radius)
    with right:
        if g.step in scores:
            st.markdown(verdict(scores[g.step], radius))
            view = analysis.query_view(ch.view, ch.pixel)
            (r, c), weight = view.strongest()
            st.caption(f"It looks most at cell row {r}, column {c} of the {ch.view.grid[0]}x"
                       f"{ch.view.grid[1]} grid (weight {weight:.4f}). The green circle is "
                       "your guess; the number on it is the share of the attention inside "
                       "it, the score above.")
            if g.step + 1 < len(g.series):
                st.button("Next image", key="guess_next", on_click=guess.next_image,
                          type="primary")
        else:
            st.caption("The attention stays hidden until you click.")
        tally(g, scores)
        st.button("New series", key="guess_new", on_click=partial(guess.new_series, len(images)))


main()
