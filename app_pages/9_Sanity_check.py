"""Sanity check: re-initialise the network from the top layer down and watch whether the
explanations change (Adebayo et al. 2018, model randomisation).

Widgets -> the checkpoint's checks file when it holds this image, query and methods
(appkit.checkfiles), else convattn.explain.sanity live (through appkit.teaching_work) -> a
grid of maps and a chart; then the same check over many images of the set (stored or live, batched).
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from appkit import (
    checkfiles,
    choose,
    loaded_model,
    markdown,
    pictures,
    plots,
    session,
    teaching_work,
    work_speed,
)
from convattn.explain.attribution import METHODS
from convattn.explain.checks import DEFAULT
from convattn.explain.sanity import (
    SanityResult,
    SanitySummary,
    first_steps,
    randomisation_steps,
)
from convattn.jobs.checks import attribution_config
from convattn.readout.grid import Grid

DEFAULT_METHODS = list(DEFAULT.sanity_methods)  # saliency, guided backprop, Grad-CAM
ATTRIBUTION = attribution_config(DEFAULT)
SUMMARY_SIZES = [0, 16, 32, 100]
METRICS = {"spearman": "rank correlation (Spearman)", "ssim": "SSIM",
           "topk": "top-10% overlap"}
CLICK = 224
CHART = {"displayModeBar": False}
ASK_AFTER = 3.0  # seconds: live work estimated to take longer starts on a click


def controls(stored: int) -> tuple[list[str], str, int]:
    st.header("Sanity check")
    methods = st.multiselect("Attribution methods", list(METHODS), default=DEFAULT_METHODS,
                             format_func=METHODS.get, key="sanity_methods")
    metric = st.radio("Similarity to the trained model's map", list(METRICS),
                      format_func=METRICS.get, key="sanity_metric")
    sizes = sorted(set(SUMMARY_SIZES) | ({stored} if stored else set()))
    n = st.select_slider("Images for the summary", sizes, value=stored, key="sanity_images",
                         help="The same check over the first images of the set (every class "
                              "in turn). The checkpoint's checks file holds it for the "
                              "default methods; anything else is computed here, batched.")
    return methods, metric, int(n)


def picture(values: np.ndarray, side: int, cmap: str) -> np.ndarray:
    """|values| on their own colour range (up to the 99th percentile), enlarged."""
    v = np.abs(values)
    hi = max(float(np.percentile(v, 99)), 1e-12)
    return pictures.enlarge(pictures.colorize(v, 0.0, hi, cmap), side)


def short(step: str) -> str:
    """A step's first module, short enough for a narrow column (full names are listed
    below the grid)."""
    first = step.split(", ")[0]
    return first.removesuffix(".0").replace(".", ".\u200b")  # may wrap after a dot


def grid(result: SanityResult, metric: str, classes: list[str]) -> None:
    n = len(result.steps)
    side = 96 if n <= 8 else 64
    widths = [1.6] + [1] * n
    header = st.columns(widths)
    classes = [markdown.literal(c) for c in classes]  # class names come from the checkpoint
    header[0].caption(f"probability of **{classes[result.target]}**, and the class "
                      "predicted")
    for i, column in enumerate(header[1:]):
        column.markdown(f"**{i}** {'trained' if i == 0 else short(result.steps[i])}")
        column.caption(f"{result.probs[i]:.1%} · {classes[result.predicted[i]]}")
    rows = [(METHODS[m], result.maps[m], result.map_similarity[m][metric])
            for m in result.maps]
    rows += [(f"attention row ({name})", result.rows[name], result.row_similarity[name][metric])
             for name in result.rows]
    for label, maps, similarity in rows:
        columns = st.columns(widths)
        columns[0].markdown(f"**{label}**")
        for i, column in enumerate(columns[1:]):
            if not result.is_explained(i):
                column.caption("on request")
                continue
            column.image(picture(maps[i], side, pictures.ATTENTION_CMAP), width=side)
            column.caption("empty" if np.isnan(similarity[i]) else f"{similarity[i]:.2f}")
    with st.expander("What each step re-initialises (cumulative: every step keeps the "
                     "earlier ones random)"):
        st.dataframe({"step": list(range(n)), "modules re-initialised": result.steps},
                     hide_index=True)


def _value(v: float) -> str:
    return "undefined (an all-zero map)" if np.isnan(v) else f"{v:.2f}"


def verdicts(result: SanityResult) -> None:
    """One sentence per explanation, from its rank correlation with the trained model's
    map after the top layer alone and after every layer is re-initialised."""
    for m, sims in result.map_similarity.items():
        top, end = float(sims["spearman"][1]), float(sims["spearman"][-1])
        name = f"**{METHODS[m]}**"
        if np.isnan(top) or np.isnan(end):
            when = "once the classifier is re-initialised" if np.isnan(top) else "at the end"
            st.success(f"{name} becomes an all-zero map {when}, so no rank correlation is "
                       "defined there: it changes completely with the model's weights.")
        elif end >= 0.5:
            st.warning(f"{name} still resembles its map for the trained model after every "
                       f"layer is random, with a rank correlation of {end:.2f}: it shows the "
                       "image (its edges and colours) more than what the model computes.")
        elif top >= 0.8:
            st.warning(f"{name} hardly changes when the classifier is re-initialised, with a "
                       f"rank correlation of {top:.2f}, so it says little about the class; it "
                       f"changes only as lower layers go, to {end:.2f} at the end.")
        else:
            st.success(f"{name} changes as the model is destroyed: its rank correlation with "
                       f"the trained model's map is {top:.2f} after the top layer and "
                       f"{end:.2f} at the end, so it depends on the model's weights.")
    for name, sims in result.row_similarity.items():
        if name not in result.steps:
            continue
        own = result.steps.index(name)
        before = float(np.nanmin(sims["spearman"][:own]))
        st.info(f"**Attention row of {name}**: similarity {_value(before)} until step {own}, "
                f"where `{name}` itself is re-initialised, then "
                f"{_value(float(sims['spearman'][own]))}. The layers above a module cannot "
                "change where it looks: attention weights are computed before those layers "
                "run, so they say where information is gathered, not how the rest of the "
                "network uses it.")


def summary_section(summary: SanitySummary, metric: str) -> None:
    n = len(summary.indices)
    st.subheader(f"Over {n} images of the set")

    def name(k: str) -> str:
        return METHODS.get(k, k)

    series = {name(k): np.nanmean(v[metric], axis=0) for k, v in summary.similarity.items()}
    labels = ["trained"] + [f"{i}: {summary.steps[i].split(', ')[0]}"
                            for i in range(1, len(summary.steps))]
    st.plotly_chart(plots.steps(labels, series, f"mean {METRICS[metric]}"), config=CHART,
                    key="sanity_summary_chart")
    lines = []
    for k, v in summary.similarity.items():
        sims = v["spearman"]
        top, end = sims[:, 1], sims[:, -1]
        defined = np.isfinite(end)

        def mean_se(x: np.ndarray) -> str:
            x = x[np.isfinite(x)]
            if len(x) < 2:
                return "undefined"
            return f"{x.mean():.2f} ± {2 * x.std(ddof=1) / np.sqrt(len(x)):.2f}"

        lines.append(f"- **{name(k)}**: rank correlation with the trained model's map "
                     f"{mean_se(top)} after the top layer, {mean_se(end)} with every layer "
                     f"random; still ≥ 0.5 at the end on "
                     f"{int((end[defined] >= 0.5).sum())} of {int(defined.sum())} images")
    st.markdown("Mean ± 2 standard errors over the images (all-zero maps left out):\n"
                + "\n".join(lines))
    st.caption("An explanation that depends on the model falls towards 0 as the layers are "
               "re-initialised; one that stays high shows the image. Attention received "
               "cannot change until its own module (or a layer below it) is re-initialised.")


def ask(key: tuple, what: str, seconds: float, button: str, widget: str) -> bool:
    """Whether live work estimated at ``seconds`` may run: at once when it is quick or
    this session asked for it already, else after the button (then remembered)."""
    asked = st.session_state.setdefault("sanity_asked", set())
    if seconds <= ASK_AFTER or key in asked:
        return True
    st.info(f"{what} takes **{work_speed.duration(seconds)}** here; results are kept for "
            "every session.")
    if st.button(f"{button} ({work_speed.duration(seconds)})", key=widget):
        asked.add(key)
        return True
    return False


def live_example(loaded, pixels: np.ndarray, methods: list[str], queries: dict[str, int]
                 ) -> SanityResult | None:
    """The randomisation of this image computed here, or None until asked for when it
    takes more than a few seconds."""
    steps = len(randomisation_steps(loaded.model)) + 1
    key = (loaded.key, pixels.tobytes(), tuple(methods), tuple(sorted(queries.items())))
    every = st.session_state.setdefault("sanity_every", set())
    full = work_speed.sanity_estimate(loaded, 1, methods, steps, bool(queries))
    # Slow: first the steps the verdicts read, the others on request.
    at = None if key in every or full.seconds <= ASK_AFTER else first_steps(
        loaded.model, queries)
    est = full if at is None else work_speed.sanity_estimate(loaded, 1, methods, len(at),
                                                             bool(queries))
    if not ask((*key, at is None), "The checks file does not hold this image, so "
               f"re-initialising the {steps - 1} layers one by one and recomputing the maps",
               est.seconds, "Randomise the layers", "sanity_go_example"):
        return None
    with st.spinner("Re-initialising the layers one by one and recomputing…"):
        result = teaching_work.sanity_run(loaded, pixels, methods, queries, ATTRIBUTION, at)
    if at is not None:
        rest = steps - len(at)
        st.caption(f"Maps after {len(at)} of the {steps} steps (the ones the verdicts "
                   f"read); the other {rest} take about "
                   f"{work_speed.duration(full.seconds - est.seconds)} more.")
        if st.button(f"Compute the other {rest} steps", key="sanity_all_steps"):
            every.add(key)
            st.session_state["sanity_asked"].add((*key, True))  # this click asked
            st.rerun()
    return result


def live_summary(loaded, images, n: int, methods: list[str]) -> SanitySummary | None:
    """The randomisation over ``n`` images computed here, after the button when slow."""
    steps = len(randomisation_steps(loaded.model)) + 1
    est = work_speed.sanity_estimate(loaded, n, methods, steps, True)
    if not ask((loaded.key, images.key, n, tuple(methods)),
               f"The randomisation over {n} images", est.seconds,
               f"Randomise the layers for {n} images", "sanity_go_summary"):
        return None
    bar = st.progress(0.0, text=f"Randomising the layers for {n} images…")
    summary = teaching_work.sanity_summary(
        loaded, images, n, methods, ATTRIBUTION,
        lambda d, t: bar.progress(d / t, text=f"step {d} of {t} on {n} images"))
    bar.empty()
    return summary


def main() -> None:
    st.title("Sanity check: does the explanation change when the model is destroyed?")
    shared = session.current()
    loaded, picked = shared.loaded, shared.image()
    images = shared.images
    found = checkfiles.find(loaded)
    stored = len(found.checks.sanity_names) if found.checks else 0
    if stored and (images is None or checkfiles.sanity_summary(
            found, images, teaching_work.sample(images, stored), DEFAULT_METHODS) is None):
        stored = 0  # the file's images are not this set's: nothing is free to show
    with st.sidebar:
        methods, metric, n = controls(stored)
    grids = teaching_work.grids(loaded, picked.pixels)
    left, right = st.columns([1, 2.5])
    with right:
        st.markdown(
            "An explanation should explain **the model**. So re-initialise the network's "
            "layers with random weights, one at a time from the top (the classifier) down, "
            "on a private copy, and recompute the explanation after each step (Adebayo et "
            "al. 2018). A map that stays the same while the model turns into noise is "
            "showing the image, not the model.")
        st.caption("The number under each map is its similarity to the trained model's map "
                   "(the first column): 1 the same, 0 unrelated. Maps are shown as |value|, "
                   "each on its own colour range. The class explained is the trained model's "
                   "prediction throughout.")
    queries: dict[str, int] = {}
    with left:
        if grids:
            first = next(iter(grids))
            # Hovering shows any query's row in the browser; a click pins the query whose
            # row is checked below.
            view = loaded_model.analyse(loaded, picked.pixels).view(first)
            pixel, cell, _ = choose.lens_query("sanity_lens", picked.pixels, view, CLICK,
                                               picked.caption)
            queries = {n: Grid.of(grid).index_of(pixel) for n, grid in grids.items()}
        else:
            st.image(pictures.enlarge(picked.pixels, CLICK), width=CLICK)
            st.caption(picked.caption)
            if teaching_work.attention_names(loaded, picked.pixels):
                st.caption("This network's attention modules are not convattn's own "
                           "attention layers, so only attributions are checked: following "
                           "one query's row while the layers are re-initialised needs "
                           "convattn's attention interface.")
            else:
                st.caption("This model has no self-attention module: only attributions "
                           "are checked.")
    if not methods and not queries:
        st.info("Choose one or more attribution methods in the sidebar.")
        st.stop()
    result = checkfiles.sanity_example(found, picked.pixels, methods, queries, ATTRIBUTION)
    if result is None:
        result = live_example(loaded, picked.pixels, methods, queries)
    if result is None:
        return
    st.subheader("The maps, step by step")
    grid(result, metric, loaded.classes)
    st.subheader("How similar each explanation stays")
    series = {METHODS[m]: v[metric] for m, v in result.map_similarity.items()}
    series.update({f"attention row ({n})": v[metric] for n, v in result.row_similarity.items()})
    labels = ["trained"] + [f"{i}: {result.steps[i].split(', ')[0]}"
                            for i in range(1, len(result.steps))]
    st.plotly_chart(plots.steps(labels, series, METRICS[metric]), config=CHART,
                    key="sanity_chart")
    verdicts(result)
    if n and images is not None:
        idx = teaching_work.sample(images, n)
        summary = checkfiles.sanity_summary(found, images, idx, methods)
        if summary is None:
            summary = live_summary(loaded, images, n, methods)
        if summary is not None:
            summary_section(summary, metric)


main()
