"""Compare models: two checkpoints side by side on the same image.

Their predictions, where the same clicked query looks in each, and the same attribution
method for each on one colour scale. The first checkpoint and the image are the ones
every page shares; the second is chosen here. Either may be a foreign network (its
attention found by ``convattn.readout.foreign``), at any image size and key grid.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import streamlit as st

from appkit import choose, lens, loaded_model, markdown, pictures, pinned_query, plots, session
from convattn.explain.attribution import EXPLAIN, METHODS, AttributionConfig
from convattn.files.checkpoint import CheckpointError
from convattn.readout import analysis

MAP = 256  # px: 8 screen pixels per input pixel
CHART = {"displayModeBar": False}
# Low-noise and fast enough (two models) for the page's 2 s budget on a CPU; Integrated
# Gradients and the others are one click away.
DEFAULT_METHOD = "smoothgrad"


def second_model(first: loaded_model.Loaded, notice) -> loaded_model.Loaded:
    """The checkpoint to compare with; by default another with attention when the first
    one has it (seed beside seed-mh4: two lenses that move together), else its twin with
    attention (``loaded_model.partner_checkpoint``)."""
    options = loaded_model.checkpoint_options()
    others = [o for o in options if Path(o).resolve() != Path(first.path)] or options
    default = loaded_model.partner_checkpoint(first.path, others) or others[0]
    if st.session_state.get("compare_checkpoint") not in options:
        st.session_state["compare_checkpoint"] = default
    path = st.selectbox("Compare with", options, key="compare_checkpoint",
                        format_func=loaded_model.checkpoint_label, persist_state="session")
    try:
        return loaded_model.load(path)
    except CheckpointError as e:
        notice.error(f"{markdown.literal(e)} Choose another checkpoint to compare with.")
        st.stop()


def predictions(loaded: loaded_model.Loaded, probs: np.ndarray, label: int | None, side: str
                ) -> None:
    classes = [markdown.literal(c) for c in loaded.classes]  # they come from the checkpoint
    top = int(probs.argmax())
    if label is None:
        verdict = f"predicts **{classes[top]}** ({probs[top]:.1%})"
    elif top == label:
        verdict = f":green[**✓ right:**] **{classes[top]}** ({probs[top]:.1%})"
    else:
        verdict = (f":red[**✗ wrong:**] **{classes[top]}** ({probs[top]:.1%}); "
                   f"**{classes[label]}** gets {probs[label]:.1%}")
    st.markdown(f"**{markdown.literal(loaded.name)}** ({loaded.info.arch}) {verdict}")
    st.plotly_chart(plots.topk_figure(probs, loaded.classes, 5, label), config=CHART,
                    key=f"compare_topk_{side}")


def chosen_view(loaded: loaded_model.Loaded, result: analysis.ImageAnalysis, side: str,
                shared: float | None) -> analysis.ModuleView | None:
    """One model's module and head; ``shared``: the top of a colour scale common to both
    lenses. Chosen outside the query's fragment: another view means another store."""
    st.markdown(f"**{markdown.literal(loaded.name)}**")
    if not result.modules:
        st.info(analysis.no_attention_map(loaded.model))
        return None
    names = list(result.modules)
    name = names[0]
    if len(names) > 1:
        name = st.selectbox("Module", names, key=f"compare_module_{side}",
                            format_func=lambda n: f"{n} ({result.modules[n].grid[0]}x"
                                                  f"{result.modules[n].grid[1]})")
    if said := lens.wire.where_rows_come_from(lens.wire.kind(result.modules[name])):
        st.caption(said)
    view = result.view(name, choose.head(result.modules[name].num_heads,
                                         f"compare_head_{side}_{name}"))
    return view if shared is None else replace(view, max_weight=shared)


def attention_section(pair: list[tuple[loaded_model.Loaded, analysis.ImageAnalysis]],
                      pixels: np.ndarray) -> None:
    st.header("Attention of the same query")
    left, a, b = st.columns([1, 1, 1])
    with left:
        st.markdown(lens.HOW + ", in either map: both follow")
        scale = st.radio("Colour scale", ["per map", "shared"], horizontal=True,
                         key="compare_attention_scale",
                         help="Shared: 0 to the largest weight of any query in either "
                              "model's attention on this image, so equal colours mean equal "
                              "weights (a coarser grid has fewer, larger weights). Per map: "
                              "each row from its own smallest to largest.")
    shared = None
    if scale == "shared":
        tops = [v.max_weight for _, result in pair for name in result.modules
                for v in [result.view(name), *result.heads.get(name, [])]]
        shared = float(max(tops)) if tops else None
    lenses = []
    for column, side, (loaded, result) in zip((a, b), "ab", pair):
        with column:
            view = chosen_view(loaded, result, side, shared)
            # Each view's queries and keys go once, here, not with every click.
            ref = None if view is None else lens.store(f"compare_lens_{side}_store", pixels,
                                                       view)
            lenses.append((side, view, ref))
    query_lenses(pixels, lenses, shared is not None)


@st.fragment
def query_lenses(pixels: np.ndarray,
                 lenses: list[tuple[str, analysis.ModuleView | None, str | None]],
                 shared: bool) -> None:
    """Reruns alone when a query is pinned; hovering is answered in the browser."""
    left, *columns = st.columns([1, 1, 1])
    with left:
        row, col = pinned_query.inputs(pixels.shape[:2])
    for column, (side, view, ref) in zip(columns, lenses):
        if view is None:
            continue
        with column:
            # Hovering either lens shows the same query in both (group "compare").
            # The caption below describes the pinned query: the lens's own line speaks
            # only for the position under the mouse.
            lens.view_lens(f"compare_lens_{side}", pixels, view, (row, col), 0.65, shared,
                           MAP, group="compare", ref=ref, pinned_said=True)
            (r, c), weight = analysis.query_view(view, (row, col)).strongest()
            h, w = view.grid
            kh, kw = view.key_grid
            gamma = f"γ = {view.gamma:.2f}" if view.has_gamma() else "no γ"
            keys = "its grid" if (kh, kw) == (h, w) else f"its {kh}x{kw} key grid"
            st.caption(f"`{view.name}` ({h}x{w} positions, {gamma}): looks most at row {r}, "
                       f"column {c} of {keys} (weight {weight:.4f}; uniform would be "
                       f"{1 / (kh * kw):.4f}).")


@st.fragment
def attribution_section(pair: list[tuple[loaded_model.Loaded, analysis.ImageAnalysis]],
                        pixels: np.ndarray) -> None:
    st.header("The same attribution in each")
    classes = pair[0][0].classes
    c1, c2, c3 = st.columns([1, 1, 1])
    method = c1.selectbox("Method (Captum)", list(METHODS), format_func=METHODS.get,
                          index=list(METHODS).index(DEFAULT_METHOD),
                          key="compare_method")
    choice = c2.selectbox("Explain the score of", ["predicted", *classes], key="compare_target",
                          format_func=lambda c: "each model's prediction" if c == "predicted"
                          else c)
    opacity = c3.slider("Overlay opacity", 0.0, 1.0, 0.85, 0.05, key="compare_opacity")
    maps, targets = {}, []
    for side, (loaded, result) in zip("ab", pair):
        target = int(result.probs.argmax()) if choice == "predicted" else classes.index(choice)
        with st.spinner(f"{METHODS[method]} for {markdown.literal(loaded.name)}…"):
            maps[side] = loaded_model.attribution(loaded, pixels, target, method,
                                                  AttributionConfig())
        targets.append((loaded.name, target))
    shown, limits = analysis.colour_limits(maps, shared=True)
    lim = next(iter(limits.values()))
    gray = pictures.grayscale(pixels)
    columns = st.columns(3)
    for column, (name, target), values in zip(columns[1:], targets, shown.values()):
        with column:
            st.markdown(f"**{markdown.literal(name)}**: score of "
                        f"**{markdown.literal(classes[target])}**")
            st.image(pictures.overlay(gray, values, -lim, lim, pictures.ATTRIBUTION_CMAP,
                                      opacity, MAP, weight_by_value=True), width=MAP)
    with columns[0]:
        signed = any(bool((v < 0).any()) for v in shown.values())
        st.image(pictures.attribution_bar(lim, signed, MAP, "% of each map's total |attribution|"),
                 width=MAP)
        st.caption(f"{METHODS[method]}: {EXPLAIN[method]}. One colour scale for both maps, "
                   "each in percent of its own total |attribution|. "
                   + analysis.colour_meaning(method))


def main() -> None:
    st.title("Compare models on the same image")
    shared = session.current()
    first, notice = shared.loaded, shared.notice
    with shared.after_model:
        second = second_model(first, notice)
    sel = shared.image()
    if second.classes != first.classes:
        notice.error(f"{markdown.literal(first.name)} and {markdown.literal(second.name)} were "
                     "trained on different classes, so their predictions cannot be compared.")
        st.stop()
    pair = [(m, loaded_model.analyse(m, sel.pixels)) for m in (first, second)]
    left, a, b = st.columns([1, 1, 1])
    with left:
        st.image(pictures.enlarge(sel.pixels, 192), width=192)
        st.caption(sel.caption)
    for column, side, (loaded, result) in zip((a, b), "ab", pair):
        with column:
            predictions(loaded, result.probs, sel.label, side)
    attention_section(pair, sel.pixels)
    attribution_section(pair, sel.pixels)


main()
