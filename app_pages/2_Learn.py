"""Learn: one query through a self-attention module, step by step, with real numbers.

Widgets -> convattn.readout.stepthrough (through appkit.teaching_work) -> charts and pictures.
Scores and weights lie on the module's key grid (``s.key_grid``, coarser than the query
grid when keys are pooled). The steps need the queries, keys and values of convattn's own
modules: a foreign network's attention is shown on Inspect and Compare, and here one
sentence says why it cannot be stepped through.
"""

from __future__ import annotations

import math

import numpy as np
import streamlit as st

from appkit import choose, loaded_model, markdown, pictures, plots, session, teaching_work
from appkit.loaded_model import Loaded
from convattn.readout import analysis
from convattn.readout.grid import Grid
from convattn.readout.stepthrough import StepThrough, entropy, softmax

CLICK = 288  # px side of the clickable image: 9 screen pixels per input pixel
MAP = 224
TEMPERATURES = [0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0]
CHART = {"displayModeBar": False}


FOREIGN = ("The step-through follows one query through the queries, keys and values of "
           "convattn's own attention modules, and {name} computes its attention in its own "
           "code, where only the weights can be read: Inspect and Compare show them.")


def where(index: int, grid: tuple[int, int], image: tuple[int, int] = (32, 32)) -> str:
    """A position in words: a pixel at full resolution, else a cell of the module's grid."""
    r, c = divmod(int(index), grid[1])
    return f"row {r}, column {c}" if tuple(grid) == tuple(image) else f"cell ({r}, {c})"


def marked(picture: np.ndarray, s: StepThrough, pixel: tuple[int, int],
           image: tuple[int, int] = (32, 32)):
    """A map with the query outlined, so the bright key beside it is not taken for it."""
    return pictures.mark_query(picture, pixel, divmod(s.query, s.grid[1]), s.grid, image)


def attention_picture(pixels: np.ndarray, s: StepThrough, weights: np.ndarray,
                      pixel: tuple[int, int]) -> None:
    hi = float(weights.max())
    st.image(marked(pictures.overlay(pixels, weights.reshape(s.key_grid), 0.0, hi,
                                     pictures.ATTENTION_CMAP, 0.7, MAP), s, pixel,
                    pixels.shape[:2]), width=MAP)
    st.image(pictures.colorbar(0.0, hi, pictures.ATTENTION_CMAP, MAP, "attention weight"),
             width=MAP)


def intro(loaded: Loaded, s: StepThrough, name: str, pixel: tuple[int, int],
          cell: tuple[int, int], pixels: np.ndarray) -> None:
    h, w = s.grid
    st.markdown(
        "A convolution only looks at a small neighbourhood. A **self-attention** module "
        "lets every position of a feature map look at **every** position and decide how "
        "much each one matters to it. Here one position, the **query** (outlined in cyan), "
        "goes through the module one step at a time, with this network's real numbers. "
        "**Hover the image** to see where any position looks, **click** to follow it "
        "(the arrow keys move it).")
    facts = (f"Module `{name}` works on a {h}x{w} grid: N = {h * w:,} positions, each "
             f"described by C = {len(s.x)} numbers (the features x). Queries and keys have "
             f"C' = {len(s.q)} numbers; the learned γ is {s.gamma:.3f}.")
    if s.heads > 1:
        facts += (f" The module has {s.heads} heads that attend independently; this is head "
                  f"{s.head + 1}, with its own C'/h = {len(s.q)} query and key numbers and "
                  f"C/h = {len(s.values[0])} value numbers (so C' below means C'/h).")
    cells = Grid.of((h, w), pixels.shape[:2])
    if not cells.is_input():
        facts += (f" Each position covers {cells.height // h}x{cells.width // w} input "
                  f"pixels: pixel "
                  f"({pixel[0]}, {pixel[1]}) is in cell ({cell[0]}, {cell[1]}), outlined in "
                  "white.")
    st.caption(facts)


def step_query(s: StepThrough) -> None:
    st.subheader("1 · The query: what is this position looking for?")
    st.latex(r"q_i = W_Q\,x_i + b_Q \qquad k_j = W_K\,x_j + b_K \qquad "
             r"v_j = W_V\,x_j + b_V")
    st.plotly_chart(plots.vectors({"query q_i": s.q}, height=200), config=CHART,
                    key="chart_q")
    st.caption(f"W_Q is a 1x1 convolution: the same small matrix at every position. It turns "
               f"the {len(s.x)} features x_i at the query position into {len(s.q)} numbers, "
               "the query q_i. In the same way every position j gets a key k_j (what it "
               "offers) and a value v_j (what it passes on).")


def step_scores(pixels: np.ndarray, s: StepThrough, pixel: tuple[int, int]) -> None:
    st.subheader("2 · Scores: how well does each key match the query?")
    st.latex(r"s_{ij} = q_i \cdot k_j = \sum_{c=1}^{C'} q_{ic}\, k_{jc}")
    left, right = st.columns([1, 2])
    with left:
        lo, hi = float(s.scores.min()), float(s.scores.max())
        hi = max(hi, lo + 1e-9)
        st.image(marked(pictures.overlay(pictures.grayscale(pixels),
                                         s.scores.reshape(s.key_grid), lo, hi,
                                         pictures.ATTENTION_CMAP, 0.8, MAP), s, pixel,
                        pixels.shape[:2]), width=MAP)
        st.image(pictures.colorbar(lo, hi, pictures.ATTENTION_CMAP, MAP, "score q·k"), width=MAP)
    with right:
        best = int(np.argmax(s.scores))
        k = s.keys[best]
        terms = " + ".join(f"({a:.2f})({b:.2f})" for a, b in zip(s.q[:3], k[:3]))
        if np.ptp(s.scores) < 1e-3:  # no key stands out; a "best match" would be noise
            st.markdown(f"Every key gets the same score here ({s.scores.max():.2g}, give or "
                        "take rounding): this query matches all keys alike, so its attention "
                        "will be uniform. The colours show only rounding noise.")
            return
        st.markdown(f"Bright keys match the query best, dark ones least. The best match "
                    f"is the key at {where(best, s.key_grid, pixels.shape[:2])}:")
        st.latex(rf"q_i \cdot k_j = {terms} + \dots = {s.scores[best]:.2f}")
        st.caption(f"That is {len(s.q)} products added up. Scores here run from "
                   f"{s.scores.min():.2f} to {s.scores.max():.2f}.")


def step_scale(s: StepThrough, image: tuple[int, int]) -> None:
    st.subheader("3 · Scale: divide by √C'")
    st.latex(rf"\tilde s_{{ij}} = \frac{{s_{{ij}}}}{{\sqrt{{C'}}}} = "
             rf"\frac{{s_{{ij}}}}{{{s.scale:g}}}")
    top = np.argsort(-s.scores)[:5]
    st.dataframe({"key position": [where(j, s.key_grid, image) for j in top],
                  "score s": np.round(s.scores[top], 3),
                  "scaled s / √C'": np.round(s.scaled[top], 3),
                  "weight A (next step)": np.round(s.attention[top], 5)}, hide_index=True)
    st.caption(f"A score is a sum of C' = {len(s.q)} products, so it grows with C'. Dividing "
               "by √C' keeps the numbers about the same size whatever C' is, so that the "
               "softmax in the next step still compares positions instead of giving all the "
               f"weight to one. Scaled scores here run from {s.scaled.min():.2f} to "
               f"{s.scaled.max():.2f}.")


def step_softmax(pixels: np.ndarray, s: StepThrough, pixel: tuple[int, int]) -> None:
    st.subheader("4 · Softmax: scores become weights that add up to 1")
    st.latex(r"A_{ij} = \frac{\exp(\tilde s_{ij} / T)}{\sum_{j'} \exp(\tilde s_{ij'} / T)}"
             r"\qquad \sum_j A_{ij} = 1")
    t = st.select_slider("Temperature T (the network uses T = 1)", TEMPERATURES, value=1.0,
                         key="temperature")
    tempered = softmax(s.scaled, t)
    n = len(s.scaled)
    left, middle, right = st.columns([1, 1, 1.2])
    with left:
        st.markdown(f"**At T = {t:g}**")
        attention_picture(pixels, s, tempered, pixel)
    with middle:
        st.markdown("**What the network uses (T = 1)**")
        attention_picture(pixels, s, s.attention, pixel)
        st.caption("Each map on its own colour scale, from 0 to its largest weight: "
                   "compare the numbers on the bars.")
    with right:
        h_t = entropy(tempered)
        st.markdown(
            f"At T = {t:g} the largest weight is **{tempered.max():.4f}** (at "
            f"{where(int(tempered.argmax()), s.key_grid, pixels.shape[:2])}); if every "
            "position got the same, each "
            f"would get 1/N = {1 / n:.5f}.  \n"
            f"The weights are spread over about **{math.exp(h_t):,.0f} of {n:,}** positions "
            f"(e to the power of their entropy, {h_t:.2f} nats, at most log N = "
            f"{math.log(n):.2f}).")
        st.caption("The exponential makes every weight positive and the big scores much "
                   "bigger; dividing by the sum makes the weights add up to 1. A small T "
                   "sharpens them (a few positions take almost all the weight), a large T "
                   "flattens them (every position gets almost the same). The network always "
                   "uses T = 1; the steps below use its weights.")


def step_sum(s: StepThrough) -> None:
    st.subheader("5 · Weighted sum: gather what the attended positions offer")
    st.latex(r"z_i = \sum_{j=1}^{N} A_{ij}\, v_j")
    st.plotly_chart(plots.vectors({"features x_i": s.x, "attention output z_i": s.z},
                                  height=220), config=CHART, key="chart_z")
    st.caption(f"Every position j offers a value v_j ({len(s.values[0])} numbers). z_i mixes "
               "them, each in proportion to its weight: it is mostly made of the values of "
               "the positions the query attends to."
               + (f" This head's z_i is {len(s.z_head)} numbers; the {s.heads} heads' z_i side "
                  f"by side make the {len(s.z)} shown." if s.heads > 1 else ""))


def step_residual(s: StepThrough) -> None:
    st.subheader("6 · Add to the features and normalise")
    st.latex(r"r_i = \gamma\, z_i + x_i \qquad "
             r"y_i = \frac{r_i - \mu_i}{\sqrt{\sigma_i^2 + \epsilon}} \odot w + b")
    gz = s.gamma * s.z
    ratio = float(np.linalg.norm(gz) / max(np.linalg.norm(s.x), 1e-12))
    st.plotly_chart(plots.vectors({"x_i": s.x, "γ z_i": gz, "output y_i": s.output},
                                  height=220), config=CHART, key="chart_y")
    st.markdown(f"γ = **{s.gamma:.3f}**, so what attention adds, γ z_i, is "
                f"**{ratio:.2f}** times as large as the features x_i here (‖γ z_i‖ / ‖x_i‖). "
                f"LayerNorm then subtracts the mean μ = {s.mean:.3f} of r_i and divides by "
                f"its spread σ = {s.std:.3f}, then scales and shifts each channel by learned "
                "w and b.")
    st.success(f"✓ y_i is the module's own output at this position: the largest difference "
               f"from the network's forward pass is {s.max_difference:.1e} (rounding).")
    st.caption("The network starts training with γ = 0, so a new module changes nothing, and "
               "learns how much attention to mix in.")


def step_what_if(loaded: Loaded, pixels: np.ndarray, s: StepThrough, name: str,
                 label: int | None) -> None:
    st.subheader("7 · What if γ were different?")
    top = max(2.0, math.ceil(2 * abs(s.gamma) * 10) / 10)
    # A new key per reset: a slider drawn again under a new key starts at its default in
    # the browser too (dropping the old key's state would not move the browser's slider).
    resets = f"what_if_resets_{name}"
    slider, reset = st.columns([4, 1], vertical_alignment="bottom")
    reset.button("Back to the learned γ", key=f"reset_what_if_{name}",
                 on_click=lambda: st.session_state.update(
                     {resets: st.session_state.get(resets, 0) + 1}))
    gamma = slider.slider(f"γ of `{name}` (learned: {s.gamma:.3f})", -top, top,
                          round(s.gamma, 3), 0.01, format="%.3f",
                          key=f"what_if_gamma_{name}_{st.session_state.get(resets, 0)}")
    if round(gamma, 3) == round(s.gamma, 3):
        gamma = s.gamma  # the slider's rounding of the learned value is the learned value
    classes = loaded.classes
    learned = teaching_work.what_if(loaded, pixels, name, s.gamma)
    changed = teaching_work.what_if(loaded, pixels, name, gamma)
    shown = [int(i) for i in np.argsort(-np.maximum(learned, changed))[:5]]
    if label is not None and label not in shown:
        shown.append(label)
    st.plotly_chart(plots.grouped_bars(
        [classes[i] + (" (true)" if i == label else "") for i in shown],
        {f"learned γ = {s.gamma:.3f}": learned[shown], f"γ = {gamma:.3f}": changed[shown]},
        "probability", percent=True), config=CHART, key="chart_what_if")
    a, b = int(learned.argmax()), int(changed.argmax())
    names = [markdown.literal(c) for c in classes]  # class names come from the checkpoint
    verdict = (f"still predicts **{names[b]}** ({changed[b]:.1%}, was {learned[a]:.1%})"
               if a == b else f"now predicts **{names[b]}** ({changed[b]:.1%}) instead of "
               f"**{names[a]}** ({learned[a]:.1%})")
    st.markdown(f"With γ = {gamma:.3f} the network {verdict}.")
    st.caption("The network is rerun on a private copy with this γ (the shared model is not "
               "touched). γ = 0 switches attention off: the module then only normalises x. "
               "The network was trained with its learned γ, so other values ask it something "
               "it never practised: a changed answer shows that *this* network relies on "
               "attention, not that attention is worth having. Whether it is, is answered "
               "by networks trained with and without it (the Training page).")


def main() -> None:
    st.title("Learn: self-attention, one step at a time")
    shared = session.current()
    loaded, picked = shared.loaded, shared.image()
    grids = teaching_work.grids(loaded, picked.pixels)
    if not grids:
        if loaded_model.analyse(loaded, picked.pixels).modules:  # a foreign network's
            shared.notice.info(FOREIGN.format(name=markdown.literal(loaded.name)))
        else:
            shared.notice.info(f"{analysis.no_attention_map(loaded.model)} Choose seed.pt or "
                               "resnet9-attn.pt in the sidebar to step through "
                               "self-attention.")
        st.stop()
    left, right = st.columns([1, 2.2])
    with right:
        name = choose.module(grids)
        head = choose.head(teaching_work.heads(loaded)[name], f"learn_head_{name}", mean=False)
    with left:
        result = loaded_model.analyse(loaded, picked.pixels)  # its queries and keys, for the lens
        view = result.view(name, head if result.heads.get(name) else None)
        pixel, cell, index = choose.lens_query("learn_lens", picked.pixels, view, CLICK,
                                               picked.caption)
    s = teaching_work.step_through(loaded, picked.pixels, name, index, head)
    with right:
        intro(loaded, s, name, pixel, cell, picked.pixels)
    step_query(s)
    step_scores(picked.pixels, s, pixel)
    step_scale(s, picked.pixels.shape[:2])
    step_softmax(picked.pixels, s, pixel)
    step_sum(s)
    step_residual(s)
    step_what_if(loaded, picked.pixels, s, name, picked.label)


main()
