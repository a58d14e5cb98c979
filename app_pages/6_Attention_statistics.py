"""Attention statistics over test images: how widely, how far and how differently the
positions of each attention module look, split by class and by correct vs misclassified.

Widgets -> convattn.readout.stats (through appkit.teaching_work, in cached chunks) -> maps
and charts.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from appkit import choose, markdown, pictures, plots, session, teaching_work
from convattn.readout.stats import AttentionStats, ModuleStats, summary

SIZES = [25, 50, 100, 200, 500, 1000, 2000, 5000, 10000]
DEFAULT_SIZE = 50  # the first render: about 1 s of work here; more on request
MAP = 224
CHART = {"displayModeBar": False}


def sample_size(total: int) -> int:
    options = [n for n in SIZES if n < total] + [total]
    default = min(DEFAULT_SIZE, total)
    n = st.select_slider("Images to analyse", options, value=default, key="stats_images",
                         help="A balanced sample: the same number of images from every "
                              "class. Larger samples take longer the first time; results "
                              "are kept for every session.")
    st.caption("Each image's attention matrices are computed once per checkpoint and kept, "
               "so a larger sample reuses the smaller one's work.")
    return int(n)


def similarity_verdict(value: float, entropy_fraction: float) -> str:
    if entropy_fraction >= 0.97:
        return (f"**Almost uniform** (entropy {100 * entropy_fraction:.0f}% of the maximum, "
                f"row similarity {value:.2f}): every position spreads its attention nearly "
                "evenly over all positions, so what it gathers is close to the average of "
                "the whole feature map, the same for every position. The module then acts "
                "like a global average pooling mixed into the features, not like a "
                "selective lookup.")
    if value >= 0.9:
        return (f"**Nearly query-independent** (row similarity {value:.2f}): every position "
                "looks at almost the same places, so this module behaves like one shared "
                "map of where to look rather than a different look from each position (as "
                "Cao et al. 2019 found for non-local blocks in GCNet).")
    if value >= 0.5:
        return (f"**Partly query-dependent** (row similarity {value:.2f}): positions share "
                "much of where they look, but not all of it.")
    return (f"**Query-dependent** (row similarity {value:.2f}): different positions look at "
            "clearly different places.")


def headline(m: ModuleStats) -> None:
    s = summary(m)
    uniform = float(m.uniform_distance.mean())
    a, b, c = st.columns(3)
    a.metric("Entropy per query", f"{s['entropy']:.2f} nats",
             f"{100 * s['entropy_fraction']:.0f}% of uniform (log N = {m.max_entropy:.2f})",
             delta_color="off", delta_arrow="off")
    b.metric("Mean attention distance", f"{s['distance']:.1f} px",
             f"uniform attention: {uniform:.1f} px", delta_color="off", delta_arrow="off")
    c.metric("Row similarity", f"{s['similarity']:.3f}", "1 = every query looks alike",
             delta_color="off", delta_arrow="off")
    st.markdown(similarity_verdict(s["similarity"], s["entropy_fraction"]))


def groups(stats: AttentionStats, classes: list[str]) -> dict[str, np.ndarray]:
    """Image masks by correctness and by true class."""
    out = {"all images": np.ones(len(stats), dtype=bool), "correct": stats.correct,
           "misclassified": ~stats.correct}
    out.update({f"class {c}": stats.labels == i for i, c in enumerate(classes)})
    return out


def _map(values: np.ndarray, cmap: str, unit: str) -> tuple[float, float]:
    """A per-position map stretched from its smallest to its largest value, with its
    colour bar; returns that range."""
    lo = float(values.min())
    hi = max(float(values.max()), lo + 1e-6)
    st.image(pictures.enlarge(pictures.colorize(values, lo, hi, cmap), MAP), width=MAP)
    st.image(pictures.colorbar(lo, hi, cmap, MAP, unit), width=MAP)
    return lo, hi


def maps(m: ModuleStats, masks: dict[str, np.ndarray]) -> None:
    present = [g for g, mask in masks.items() if mask.any()]
    group = st.columns(3)[0].selectbox("Images", present, key="stats_map_group")
    m = m.select(masks[group])
    st.caption(f"Maps over {len(m.similarity)} images ({markdown.literal(group)}).")
    left, middle, right = st.columns(3)
    entropy = m.entropy.mean(axis=0)
    distance = m.distance.mean(axis=0)
    with left:
        st.markdown("**Entropy of each query position** (mean over images)")
        lo, hi = _map(entropy, pictures.SPREAD_CMAP, "nats")
        st.caption(f"Bright positions spread their attention widely; dark ones focus. "
                   f"Uniform attention has {m.max_entropy:.2f} nats."
                   + (" The differences here are tiny (under 1% of that): read the colour "
                      "bar." if hi - lo < 0.01 * m.max_entropy else ""))
    with middle:
        st.markdown("**How far each query position looks** (mean over images)")
        _map(distance, pictures.ATTENTION_CMAP, "pixels")
        st.caption("Attention-weighted distance from the position to where it looks, in "
                   f"pixels of the {m.image[0]}x{m.image[1]} image.")
    with right:
        st.markdown("**Compared with uniform attention**")
        excess = distance - m.uniform_distance
        lim = max(float(np.abs(excess).max()), 1e-6)
        st.image(pictures.enlarge(pictures.colorize(excess, -lim, lim, pictures.ATTRIBUTION_CMAP),
                                  MAP), width=MAP)
        st.image(pictures.colorbar(-lim, lim, pictures.ATTRIBUTION_CMAP, MAP,
                                   "pixels farther (red) or nearer (blue)"), width=MAP)
        st.caption("Even uniform attention reaches farther from corners than from the centre; "
                   "this map removes that: blue positions look nearer than uniform attention "
                   "would, red ones farther."
                   + (" Here every position is within half a pixel of uniform attention."
                      if lim < 0.5 else ""))


def histograms(m: ModuleStats, stats: AttentionStats) -> None:
    correct = stats.correct
    groups_e = {"correct": m.entropy[correct], "misclassified": m.entropy[~correct]}
    groups_d = {"correct": m.distance[correct], "misclassified": m.distance[~correct]}
    left, right = st.columns(2)
    left.plotly_chart(plots.histograms(groups_e, "entropy of a query's attention (nats)",
                                        {"uniform": m.max_entropy}), config=CHART,
                      key="hist_entropy")
    right.plotly_chart(plots.histograms(
        groups_d, "mean attention distance (pixels)",
        {"uniform (mean)": float(m.uniform_distance.mean())}), config=CHART,
        key="hist_distance")
    st.caption("Every query position of every image is one count; each group adds up to "
               "100%. If misclassified images looked differently, their histogram would "
               "sit apart from the correct ones'.")


def groups_table(m: ModuleStats, stats: AttentionStats, masks: dict[str, np.ndarray]
                 ) -> None:
    rows = []
    for label, mask in masks.items():
        if not mask.any():
            continue
        s = summary(m.select(mask))
        rows.append({"group": label, "images": s["images"],
                     "accuracy %": round(100 * float(stats.correct[mask].mean()), 1),
                     "entropy (nats)": round(s["entropy"], 3),
                     "entropy % of uniform": round(100 * s["entropy_fraction"], 1),
                     "distance (px)": round(s["distance"], 2),
                     "row similarity": round(s["similarity"], 3)})
    st.dataframe(rows, hide_index=True, height=35 * (len(rows) + 1) + 3)
    st.caption("Entropy in nats: log N means a query spreads its attention evenly over all N "
               "positions; e to the power of the entropy is about how many positions it "
               "really uses. Row similarity: mean cosine similarity between the attention "
               "rows of different queries of one image.")


def main() -> None:
    st.title("Attention statistics: how does each module look, over many images?")
    shared = session.current()
    loaded, images, notice = shared.loaded, shared.images, shared.notice
    with st.sidebar:
        n = sample_size(len(images))
    st.markdown(
        "Three numbers per query position, averaged over test images: **entropy** (does "
        "the position look at a few places or everywhere?), **mean attention distance** "
        "(how far away does it look, in pixels?) and **row similarity** (do all "
        "positions look at the same places?).")
    bar = st.progress(0.0, text=f"Computing attention over {n} images…")
    stats = teaching_work.attention_stats(
        loaded, images, n,
        lambda done, total: bar.progress(done / total, text=f"{done} of {total} images"))
    bar.empty()
    if not stats.modules:
        notice.info(f"This {loaded.info.arch} model has no convolutional self-attention "
                    "module, so there are no attention statistics. Choose an attention "
                    "checkpoint (for example seed.pt) in the sidebar.")
        st.stop()
    grids = {k: v.grid for k, v in stats.modules.items()}
    name = choose.module(grids)
    m = stats.modules[name]
    wrong = int((~stats.correct).sum())
    st.caption(f"{len(stats)} test images ({len(stats) // len(images.classes)} or so per "
               f"class), {wrong} of them misclassified; {m.grid[0] * m.grid[1]:,} query "
               f"positions each.")
    masks = groups(stats, loaded.classes)
    headline(m)
    st.subheader("Where on the image")
    maps(m, masks)
    st.subheader("Correct vs misclassified")
    histograms(m, stats)
    st.subheader("By group")
    groups_table(m, stats, masks)


main()
