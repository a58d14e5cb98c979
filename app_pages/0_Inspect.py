"""Inspect, the app's first page: one image through the network.

Pick a checkpoint and an image in the sidebar; the page shows the prediction (calibrated
if asked), where any clicked position attends, how much attention changes the features
(gamma), which pixels the prediction depends on (Captum attributions), and the nearest
training images. Any network whose attention ``convattn.readout.analysis`` reads works,
at any image size and key grid; a module without a gate says "no γ". The query points
figure (``convattn.readout.figures``) downloads as PNG, SVG or PDF. Widgets -> convattn ->
appkit.pictures and appkit.plots.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from appkit import (
    bars,
    choose,
    downloads,
    label_doubts,
    lens,
    loaded_model,
    markdown,
    ood_notice,
    pictures,
    pinned_query,
    preload,
    session,
    similar_images,
    temperature,
)
from appkit.lens import wire
from appkit.sidebar.choices import Selection
from convattn.explain.attribution import EXPLAIN, METHODS, AttributionConfig, gradcam_layers
from convattn.readout import analysis, figures

CLICK = 320  # px, the clickable image's longer side: 10 screen pixels per pixel at 32x32
MAP = 224  # px side of the other maps
UPLOADED = 160  # px: the box an uploaded file is shown in, as it came
DEFAULT_METHODS = ["saliency", "integrated_gradients", "gradcam"]
POINTS = "figure_points"  # session state: the extra query points of the figure
WAITED = "attributions_waited"  # session state: this session's first page was drawn first
LARGE = 64 * 64  # pixels: above, no attribution method is chosen by default


def image_panel(sel: Selection, classes: list[str]) -> None:
    st.subheader("What the model sees")
    st.image(pictures.enlarge(sel.pixels, 256), width=256, output_format="PNG")
    st.caption(sel.caption)
    known = label_doubts.entry_for(sel.name, None if sel.label is None else classes[sel.label])
    if known is not None:
        (st.warning if known["validated"] else st.caption)(label_doubts.sentence(known))
    if sel.original is not None:
        shown, stretched = pictures.fit_box(sel.original, UPLOADED)
        st.image(shown, width=shown.shape[1], caption="the file as uploaded" + (
            ", drawn thicker than it is so that it can be seen" if stretched else ""))


def prediction_panel(loaded: loaded_model.Loaded, probs: np.ndarray, sel: Selection) -> None:
    st.subheader("Prediction")
    classes, label, store = loaded.classes, sel.label, temperature.stored(loaded)
    scaled = st.toggle("Calibrated probabilities", key="calibrated", disabled=store is None,
                       help=temperature.missing_help(loaded) if store is None else
                       "Temperature scaling: the logits divided by one number T fitted on "
                       "test images, so that confidence matches accuracy. The predicted "
                       "class never changes.")
    if scaled and store is not None:
        probs, which = temperature.image_probs(store, probs, sel.name)
        st.caption(which)
    top = int(np.argmax(probs))
    names = [markdown.literal(c) for c in classes]  # class names come from the checkpoint
    if label is None:
        st.markdown(f"Predicted **{names[top]}** ({probs[top]:.1%}). True class unknown.")
    elif top == label:
        st.markdown(f":green[**✓ Correct:**] **{names[top]}** with {probs[top]:.1%}.")
    else:
        rank = int((probs > probs[label]).sum()) + 1
        st.markdown(f":red[**✗ Wrong:**] predicted **{names[top]}** ({probs[top]:.1%}); "
                    f"the true class **{names[label]}** gets {probs[label]:.1%} "
                    f"(rank {rank}).")
    k = st.slider("Classes shown", 1, len(classes), min(5, len(classes)), key="topk")
    st.html(bars.topk_html(probs, classes, k, label))


def gamma_panel(result: analysis.ImageAnalysis, info: dict) -> None:
    st.subheader("γ: how much attention is mixed in")
    if not result.modules:
        st.caption(f"{info.arch} has no self-attention module, so there is no γ "
                   "(see the attention section below).")
        return
    views = list(result.modules.values())
    st.markdown(markdown.table({
        "module": [markdown.literal(n) for n in result.modules],
        "positions": [_positions(v) for v in views],
        "γ": [f"{v.gamma:.3f}" if v.has_gamma() else "no γ" for v in views],
        "‖γZ‖ / ‖X‖ here": ["–" if v.ratio is None else f"{v.ratio:.3f}" for v in views],
    }))
    if any(v.has_gamma() for v in views):
        st.caption("Each module outputs LayerNorm(γ·Z + X), adding what attention gathered "
                   "(Z) to the features (X); the ratio ‖γZ‖ / ‖X‖ says how much attention "
                   "changes this image's features: 0 not at all, 1 as much as the features "
                   "themselves.")
    if not all(v.has_gamma() for v in views):
        st.caption("No γ: the module mixes what attention gathered into the features in "
                   "its own code, with no single learned gate that convattn can read.")
    history = info.get("history", [])
    if any(h.get("gammas") for h in history):
        # drawn only once opened: plotly's script would hold up the page's first screen
        box = st.expander("γ during training", key="gamma_open", on_change="rerun")
        if box.open:
            from appkit import plots

            box.plotly_chart(plots.gamma_history_figure(history, list(result.modules)),
                             key="gamma_chart", config={"displayModeBar": False})


def _positions(view: analysis.ModuleView) -> str:
    """A module's grid in words: its queries, and its keys when they lie elsewhere."""
    (h, w), (kh, kw) = view.grid, view.key_grid
    return f"{h}x{w}" if (h, w) == (kh, kw) else f"{h}x{w} (keys {kh}x{kw})"


def attention_section(loaded: loaded_model.Loaded, result: analysis.ImageAnalysis,
                      pixels: np.ndarray) -> None:
    st.header("Attention: where does each position look?")
    if not result.modules:
        st.info(f"{analysis.no_attention_map(loaded.model)} Choose seed.pt or "
                "resnet9-attn.pt in the sidebar to see self-attention; the attributions "
                "below work for every model.")
        return
    names = list(result.modules)
    c1, c2, c3 = st.columns([1.2, 1, 1])
    name = c1.selectbox("Attention module", names, key="module", format_func=lambda n: (
        f"{n} ({_positions(result.modules[n])} positions)"))
    chosen = choose.head(result.modules[name].num_heads, f"head_{name}", c1)
    opacity = c2.slider("Overlay opacity", 0.0, 1.0, 0.65, 0.05, key="attention_opacity")
    space = c2.toggle("Query/key space", True, key="qk_space", help=lens.SPACE_HELP)
    scale = c3.radio("Colour scale", ["per map", "shared"], horizontal=True,
                     key="attention_scale",
                     help="Per map: each map stretched from its smallest to its largest "
                          "value, which shows structure even in nearly uniform attention "
                          "(read the numbers on the colour bar). Shared: 0 to the largest "
                          "attention weight in this image, for every query and both maps, so "
                          "equal colours mean equal weights.")
    outlines = c3.toggle("Outline 50% and 90% of the attention", False,
                         key="attention_outlines", help=lens.OUTLINES_HELP)
    attention_panel(pixels, result.view(name, chosen), opacity, scale == "shared", space,
                    lens.OUTLINES if outlines else ())


def _faint_note(part: float, what: str) -> None:
    """Under a map drawn on a shared scale (attention's shared bar ends at the largest
    weight of any query in the image)."""
    if note := analysis.faint_note(part, what):
        st.caption(f":orange[{note}]")


def attention_panel(pixels: np.ndarray, view: analysis.ModuleView, opacity: float,
                    shared: bool, space: bool = True, outlines: tuple[float, ...] = ()
                    ) -> None:
    """The lens with its query (``outlines``: the shares of its row outlined); what each
    position receives; how widely each query looks."""
    kh, kw = view.key_grid
    left, middle, right = st.columns([1.35, 1, 1])
    # The lens's queries and keys are sent once per image and view in an invisible store
    # outside the query's fragment, so a click does not send them again.
    ref = lens.store("attention_lens_store", pixels, view, space)
    with left:
        st.markdown(lens.HOW)
        query_panel(pixels, view, opacity, shared, space, ref, outlines)
    with middle:
        st.markdown("**Attention received**")
        lo_in, hi_in = analysis.attention_range(view.received, view.max_weight, shared,
                                                1 / (kh * kw))
        st.image(pictures.overlay(pixels, view.received, lo_in, hi_in, pictures.ATTENTION_CMAP,
                                  opacity, MAP), width=MAP)
        st.image(pictures.colorbar(lo_in, hi_in, pictures.ATTENTION_CMAP, MAP), width=MAP)
        st.caption("How much attention each position gets, averaged over all queries "
                   "(the column means of the attention matrix)"
                   + (f", on the {kh}x{kw} grid of the keys." if view.key_grid != view.grid
                      else "."))
        if shared:
            _faint_note(float(view.received.max()) / view.max_weight,
                        "the averages over all queries")
    with right:
        st.markdown("**Spread of each query**")
        lo_s, hi_s = analysis.attention_range(view.spread, 1.0, shared, 0.5)
        st.image(pictures.overlay(pixels, view.spread, lo_s, hi_s, pictures.SPREAD_CMAP, opacity,
                                  MAP), width=MAP)
        st.image(pictures.colorbar(lo_s, hi_s, pictures.SPREAD_CMAP, MAP), width=MAP)
        st.caption("Entropy of each position's attention row, divided by its maximum: "
                   "0 = looks at one spot, 1 = looks everywhere equally.")
        if float(view.spread.min()) > 0.99:
            st.caption(":orange[Every query here spreads its attention almost evenly (every "
                       "spread is above 0.99, and 1 is perfectly even): this module mixes in "
                       "close to the image's average feature.]")


@st.fragment
def query_panel(pixels: np.ndarray, view: analysis.ModuleView, opacity: float,
                shared: bool, space: bool, ref: str, outlines: tuple[float, ...] = ()
                ) -> None:
    """Reruns alone when a query is pinned. Hovering is painted in the browser, and so is
    the caption of a clicked query (the lens writes it at once, then shows this run's);
    the inputs and downloads follow with the rerun."""
    kh, kw = view.key_grid
    picture = st.container()
    row, col = pinned_query.inputs(view.image)
    query = analysis.query_view(view, (row, col))
    lo, hi = analysis.attention_range(query.row, view.max_weight, shared, 1 / (kh * kw))
    caption = lens.describe(query, view.grid, view.max_weight, shared, image=view.image)
    with picture:
        lens.view_lens("attention_lens", pixels, view, (row, col), opacity, shared, CLICK,
                       space and view.has_qk(), ref=ref, caption=caption, outlines=outlines)
        if said := wire.where_rows_come_from(wire.kind(view)):
            st.caption(said)
    received = analysis.attention_range(view.received, view.max_weight, shared, 1 / (kh * kw))
    title = f"{view.name}, query row {row}, column {col}"
    stem = f"attention-{view.name}-r{row}c{col}"
    if view.num_heads > 1:
        title += f", {analysis.head_label(view.head, view.num_heads)}"
        stem += "-mean" if view.head is None else f"-head{view.head + 1}"
    a, b, _ = st.columns([1, 1, 1])
    a.download_button("Figure (PNG)", key="attention_png", mime="image/png",
                      file_name=f"{stem}.png",
                      data=lambda: downloads.attention_png(
                          pixels, view, query, (lo, hi), received, opacity, title))
    b.download_button("Arrays (.npz)", key="attention_npz", mime="application/octet-stream",
                      file_name=f"{stem}.npz",
                      data=lambda: downloads.attention_npz(pixels, view, query))
    points_figure(pixels, view, (row, col), stem)


def points_figure(pixels: np.ndarray, view: analysis.ModuleView, pinned: tuple[int, int],
                  stem: str) -> None:
    """The query points figure of the papers: the pinned query and the points added to it,
    marked on the image, each with its attention map; downloaded as PNG, SVG or PDF."""
    st.markdown("**Query points figure** (as in the SAGAN and non-local papers)")
    points = [p for p in st.session_state.get(POINTS, []) if p != pinned
              and 0 <= p[0] < view.image[0] and 0 <= p[1] < view.image[1]][:7]
    a, b, c = st.columns([1.2, 1, 1])
    if a.button("Add this query as a point", key="figure_add",
                help="Keeps the pinned query in the figure; pin another query (click the "
                     "lens) and add it too. At most 8 points."):
        points = [*points, pinned][-7:]
    if b.button("Clear the points", key="figure_clear", disabled=not points):
        points = []
    st.session_state[POINTS] = points
    shown = [pinned, *points]
    fmt = c.radio("Format", list(figures.FORMATS), horizontal=True, key="figure_format",
                  format_func=str.upper)
    st.caption("Points: " + "; ".join(f"{i}: row {r}, column {q}" for i, (r, q)
                                       in enumerate(shown, start=1))
               + " (1 is the pinned query).")
    st.download_button(f"Query points figure ({fmt.upper()})", key="figure_download",
                       mime=figures.FORMATS[fmt], file_name=f"{stem}-points.{fmt}",
                       data=lambda: downloads.query_points(pixels, view, shown, fmt))


@st.fragment(run_every=0.25)
def attributions_after_drawing() -> None:
    """On a server's first page (``preload.first_page_drawing``): the attributions'
    header, and a note, until the browser has drawn the page. This fragment's timer runs
    in the browser once it is idle, that is once the page is drawn; its run then reruns
    the page, which computes them."""
    if st.session_state.get(WAITED):  # the timer's run: the browser has drawn the page
        preload.browser_drawn()
        st.rerun()
    st.session_state[WAITED] = True
    st.header("Attributions: which pixels does the prediction depend on?")
    st.caption("Computing the attributions once the page is drawn…")


@st.fragment
def attribution_section(loaded: loaded_model.Loaded, pixels: np.ndarray, probs: np.ndarray) -> None:
    """Reruns alone when its controls change; each map is cached per image and target."""
    st.header("Attributions: which pixels does the prediction depend on?")
    classes = loaded.classes
    top = int(np.argmax(probs))
    # Each method runs the network backwards (Integrated Gradients 50 times): on a large
    # image none runs until asked, so that the page's first render stays quick.
    large = pixels.shape[0] * pixels.shape[1] > LARGE
    methods = st.multiselect("Methods (Captum)", list(METHODS),
                             default=[] if large else DEFAULT_METHODS,
                             format_func=METHODS.get, key="methods")
    c1, c2, c3, c4 = st.columns(4)
    choice = c1.selectbox("Explain the score of", ["predicted", *classes], key="target",
                          format_func=lambda c: "the predicted class" if c == "predicted" else c)
    target = top if choice == "predicted" else classes.index(choice)
    scale = c3.radio("Colour scale", ["per map", "shared"], horizontal=True,
                     key="attribution_scale",
                     help="Shared: every map shown as percent of its own total |attribution| "
                          "on one colour bar, so methods in different units compare; focused "
                          "maps look strong, diffuse ones faint. Per map: each map's own values "
                          "and range (up to its 99th percentile of |value|).")
    opacity = c4.slider("Overlay opacity", 0.0, 1.0, 0.85, 0.05, key="attribution_opacity")
    layers = list(gradcam_layers(loaded.model))
    layer = c2.selectbox("Grad-CAM layer", layers, index=len(layers) - 1, key="gradcam_layer",
                         disabled="gradcam" not in methods or len(layers) == 1,
                         help="The layer whose feature maps Grad-CAM weighs: later layers "
                              "know more about the class, earlier ones are finer. "
                              + ("This model offers one." if len(layers) == 1 else ""))
    if not methods:
        st.caption("Choose one or more methods above." + (
            f" On a {pixels.shape[0]}x{pixels.shape[1]} image none is chosen for you: each "
            "runs the network backwards, Integrated Gradients 50 times." if large else ""))
        return
    which = "the predicted class" if target == top else f"{probs[target]:.1%} probability"
    st.markdown(f"Explaining the score of **{markdown.literal(classes[target])}** ({which}).")
    cfg = AttributionConfig(gradcam_layer=layer)
    maps = {}
    for m in methods:
        with st.spinner(f"Computing {METHODS[m]}…"):
            maps[METHODS[m]] = loaded_model.attribution(loaded, pixels, target, m, cfg)
    shown, limits = analysis.colour_limits(maps, scale == "shared")
    gray = pictures.grayscale(pixels)
    signed = {label: bool((values < 0).any()) for label, values in shown.items()}
    for i, (m, (label, values)) in enumerate(zip(methods, shown.items())):
        if i % 4 == 0:
            columns = st.columns(4)  # a new row of four, aligned
        with columns[i % 4]:
            lim = limits[label]
            st.markdown(f"**{label}**" + (f" on `{layer}`" if m == "gradcam" else ""))
            st.image(pictures.overlay(gray, values, -lim, lim, pictures.ATTRIBUTION_CMAP, opacity,
                                      MAP, weight_by_value=True), width=MAP)
            if scale == "per map":
                st.image(pictures.attribution_bar(lim, signed[label], MAP), width=MAP)
            else:
                _faint_note(analysis.reach(values, lim), "its strongest pixels")
            st.caption(EXPLAIN[m])
    if scale == "shared":
        lim = next(iter(limits.values()))
        st.image(pictures.attribution_bar(lim, any(signed.values()), 2 * MAP,
                                          "% of each map's total |attribution|"), width=2 * MAP)
        st.caption("One colour scale: each map in percent of its own total |attribution|, so "
                   "focused maps look strong and spread-out ones faint. Red pixels raise the "
                   "score, blue ones lower it.")
    else:
        st.caption("Each map on its own colour scale (up to its 99th percentile). Red pixels "
                   "raise the score, blue ones lower it; a bar that starts at 0 belongs to a "
                   "map with no negative values (Saliency and SmoothGrad measure only how "
                   "much a pixel matters, not in which direction).")
    title = f"attributions for class {classes[target]}"
    a, b, _ = st.columns([1, 1, 4])
    a.download_button("Figure (PNG)", key="attribution_png", mime="image/png",
                      file_name=f"attributions-{classes[target]}.png",
                      data=lambda: downloads.attributions_png(pixels, shown, limits, title))
    b.download_button("Arrays (.npz)", key="attribution_npz",
                      mime="application/octet-stream",
                      file_name=f"attributions-{classes[target]}.npz",
                      data=lambda: downloads.attributions_npz(pixels, target, maps))


def main() -> None:
    st.title("Inspect: what does the network look at?")
    session.back_link()
    shared = session.current()
    loaded, sel = shared.loaded, shared.image()
    result = loaded_model.analyse(loaded, sel.pixels)
    c1, c2, c3 = st.columns([1, 1.25, 1.35])
    with c1:
        image_panel(sel, loaded.classes)
    with c2:
        prediction_panel(loaded, result.probs, sel)
        ood_notice.show(loaded, sel.pixels)
    with c3:
        gamma_panel(result, loaded.info)
    attention_section(loaded, result, sel.pixels)
    if preload.first_page_drawing():
        attributions_after_drawing()
    else:
        attribution_section(loaded, sel.pixels, result.probs)
    similar_images.section(loaded, shared.images, sel.pixels)


main()
