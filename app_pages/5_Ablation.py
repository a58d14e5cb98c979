"""Attention ablation: does attention change the answer?

The real model next to two ablations of its attention modules (each on a private copy;
the cached model is never changed): every gamma set to 0, and uniform attention. For the
sidebar's image, and over the whole test set: how many answers attention fixes and
breaks, per class, with the flipped images browsable.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from appkit import (
    gallery,
    loaded_model,
    markdown,
    plots,
    session,
    set_results,
    sources,
)
from appkit.sidebar.choices import Selection
from convattn.explain.ablation import ABLATIONS, OUTCOMES, ablate_images, flip_counts, outcomes
from convattn.nn.interface import NotSupported
from convattn.readout.attention import attention_modules

VARIANTS = {"real": "real model", **ABLATIONS}
CHART = {"displayModeBar": False}
ALL = "all modules"


@st.cache_data(show_spinner=False, max_entries=64, hash_funcs=loaded_model.HASH)
def _image_ablation(loaded: loaded_model.Loaded, pixels: np.ndarray, modules: tuple[str, ...],
                    kinds: tuple[str, ...]) -> dict[str, np.ndarray]:
    probs = ablate_images(loaded.model, pixels[None], loaded.info.mean, loaded.info.std,
                          kinds, modules=modules)
    return {k: v[0] for k, v in probs.items()}


def _verdict(probs: dict[str, np.ndarray], kind: str, classes: list[str],
             label: int | None) -> str:
    real, other = probs["real"], probs[kind]
    a, b = int(real.argmax()), int(other.argmax())
    classes = [markdown.literal(c) for c in classes]  # class names come from the checkpoint
    if a == b:
        change = real[a] - other[a]
        effect = (f"attention adds {100 * change:.1f} points of confidence" if change >= 0
                  else f"attention takes {100 * -change:.1f} points of confidence away")
        return (f"**{VARIANTS[kind]}**: still **{classes[a]}**, with {other[a]:.1%} instead "
                f"of {real[a]:.1%}: {effect}, but does not change the answer.")
    text = (f"**{VARIANTS[kind]}**: **{classes[b]}** ({other[b]:.1%}) instead of "
            f"**{classes[a]}** ({real[a]:.1%}). Attention changes the answer")
    if label is not None and a == label:
        return text + ": :green[it fixes it]."
    if label is not None and b == label:
        return text + ": :red[it breaks it]."
    return text + "."


def image_section(loaded: loaded_model.Loaded, sel: Selection, names: list[str],
                  kinds: tuple[str, ...]) -> None:
    st.header("This image")
    choice = ALL
    if len(names) > 1:
        choice = st.selectbox("Ablate", [ALL, *names], key="ablation_modules",
                              help="Switch off every attention module at once, or only one.")
    modules = tuple(names) if choice == ALL else (choice,)
    probs = _image_ablation(loaded, sel.pixels, modules, kinds)
    shown = {VARIANTS[k]: v for k, v in probs.items()}
    left, middle, right = st.columns([0.8, 1.6, 1.6])
    with left:
        st.image(gallery.thumbnail(sel.pixels, 192), width=192)
        st.caption(sel.caption)
    with middle:
        st.plotly_chart(plots.probability_bars(shown, loaded.classes, sel.label),
                        key="ablation_bars", config=CHART)
    with right:
        for kind in kinds:
            st.markdown(_verdict(probs, kind, loaded.classes, sel.label))
        try:
            views = loaded_model.analyse(loaded, sel.pixels).modules
        except NotSupported:  # no γ to quote: the page already said which module lacks it
            views = {}
        if views:
            st.markdown("Here attention changes the features by " + ", ".join(
                f"‖γZ‖/‖X‖ = {v.ratio:.2f} in `{n}` (γ = {v.gamma:.2f})"
                for n, v in views.items()) + ".")
        st.caption("γ = 0 removes what attention adds (each module outputs LayerNorm(X)); "
                   "uniform attention keeps γ but makes every position look everywhere "
                   "equally, so only *where* attention looks is taken away. Both run on a "
                   "private copy of the model.")


COLUMNS = {"fixed": "fixed", "broken": "broken", "both_right": "right",
           "same_wrong": "wrong, same", "other_wrong": "wrong, other"}


def _table(counts: dict[str, np.ndarray], classes: list[str]) -> dict[str, list]:
    """One row per class with images here (a card may have 1,000 classes and a folder of
    a few), then the total."""
    total = sum(counts.values())
    held = np.flatnonzero(total)
    rows = {"class": [*(classes[i] for i in held), "all classes"],
            "images": [*map(int, total[held]), int(total.sum())]}
    for o in OUTCOMES:
        rows[COLUMNS[o]] = [*map(int, counts[o][held]), int(counts[o].sum())]
    rows["net"] = [int(f - b) for f, b in zip(rows["fixed"], rows["broken"])]
    return rows


def set_section(loaded: loaded_model.Loaded, images: sources.ImageSet,
                kinds: tuple[str, ...]) -> None:
    st.header("The whole test set")
    found = set_results.set_ablation(loaded, images, kinds)
    labels, classes = images.labels, images.classes
    st.caption(f"On the {markdown.literal(images.title)}; predictions of "
               f"{markdown.literal(loaded.name)} {found.source}.")
    variants = {v: VARIANTS[v] for v in ("real", *kinds)}
    columns = st.columns(len(variants))
    real_acc = 100 * float((found.preds["real"] == labels).mean())
    for column, (v, label) in zip(columns, variants.items()):
        acc = 100 * float((found.preds[v] == labels).mean())
        column.metric(label, f"{acc:.2f}%",
                      None if v == "real" else f"{acc - real_acc:+.2f} points",
                      help="accuracy on these images")
    kind = st.radio("Compare the real model with", list(kinds), format_func=ABLATIONS.get,
                    horizontal=True, key="ablation_kind", persist_state="session")
    counts = flip_counts(labels, found.preds["real"], found.preds[kind], len(classes))
    fixed, broken = int(counts["fixed"].sum()), int(counts["broken"].sum())
    st.markdown(f"Against {ABLATIONS[kind]}, attention **fixes {fixed:,}** answers (wrong → "
                f"right) and **breaks {broken:,}** (right → wrong): net "
                f"{fixed - broken:+,} of {len(labels):,} images.")
    left, right = st.columns([1, 1.7])
    with left:
        if fixed or broken:
            moved = counts["fixed"] + counts["broken"]  # readable at 100 classes: the 20
            bars = np.sort(np.argsort(-moved, kind="stable")[:gallery.FOCUS])  # most moved
            st.plotly_chart(plots.flips_figure(counts["fixed"][bars], counts["broken"][bars],
                                               [classes[i] for i in bars]),
                            key="flips_chart", config=CHART)
        else:  # a chart of empty bars would look broken
            n = int(counts["other_wrong"].sum())
            changed = (f"; it only turns {n:,} wrong answer into another wrong one." if n == 1
                       else f"; it only turns {n:,} wrong answers into other wrong ones." if n
                       else ": every answer is the same.")
            st.info(f"Nothing to chart: against {ABLATIONS[kind]}, attention fixes no answer "
                    f"and breaks none of these {len(labels):,} images{changed}")
    with right:
        table = _table(counts, classes)
        rows = min(len(table["class"]), gallery.FOCUS + 1)  # more scroll in the table
        st.dataframe(table, hide_index=True, height=35 * (rows + 1) + 3, width="stretch")
        st.caption(f"Per true class: fixed (wrong under {ABLATIONS[kind]}, right with the "
                   "real model), broken (the reverse), right either way, wrong either way "
                   "with the same or another wrong class; the five add up to the class's "
                   "images.")
    if kind == "gamma0":
        st.info("A network trained with attention depends on it, so switching it off "
                "(γ = 0) measures how much *this* network relies on attention, not whether "
                "attention is worth having: for that, compare networks trained with and "
                "without it (seed and seed-noattn) on the Training page.")
    else:
        st.info("Uniform attention keeps γ but lets every position look everywhere "
                "equally: what changes is what the *pattern* of attention adds, beyond "
                "mixing in the image's average feature.")
    flipped_gallery(images, found, kind)


def flipped_gallery(images: sources.ImageSet, found: set_results.SetAblation, kind: str
                    ) -> None:
    st.subheader("The flipped images")
    classes, labels = images.classes, images.labels
    real, other = found.preds["real"], found.preds[kind]
    c1, c2 = st.columns([2, 1])
    # Kept, like the page number, while the user looks at an image in Inspect.
    which = c1.radio("Show", ["fixed", "broken", "changed"], horizontal=True,
                     key="flip_which", persist_state="session", format_func={
                         "fixed": "fixed by attention", "broken": "broken by attention",
                         "changed": "every changed answer"}.get)
    cls = c2.selectbox("True class", ["any class", *classes], key="flip_class",
                       persist_state="session")
    found_outcomes = outcomes(labels, real, other)
    keep = real != other if which == "changed" else found_outcomes == which
    if cls != "any class":
        keep &= labels == classes.index(cls)
    chosen = np.flatnonzero(keep)
    # Largest change in the true class's probability first.
    p_true = np.arange(len(labels)), labels
    delta = np.abs(found.probs["real"][p_true] - found.probs[kind][p_true])
    chosen = chosen[np.argsort(-delta[chosen], kind="stable")]
    st.markdown(f"**{len(chosen):,} images**, largest change in the true class's "
                "probability first.")
    if not len(chosen):
        st.info("No image here: attention changes none of these answers.")
        return
    with st.columns([1, 3])[0]:
        shown = gallery.page_of(chosen, "flip_page")
    pr, po = found.probs["real"], found.probs[kind]
    names = [markdown.literal(c) for c in classes]
    # Short captions keep the Inspect buttons of a row level.
    captions = [f"#{i} {names[labels[i]]}  \n{names[other[i]]} {po[i, other[i]]:.0%} → "
                f"**{names[real[i]]}** {pr[i, real[i]]:.0%}" for i in shown]
    st.caption(f"Each caption: image number and true class, then the answer under "
               f"{ABLATIONS[kind]} → the real model's answer (bold), each with its "
               "probability.")
    gallery.inspectable(images, shown, captions, key="flip")


def main() -> None:
    st.title("Attention ablation: does attention change the answer?")
    shared = session.current()
    loaded, images, notice = shared.loaded, shared.images, shared.notice
    top, bottom = st.container(), st.container()
    names = list(attention_modules(loaded.model))
    if not names:
        foreign = set_results.foreign_modules(loaded, images.images[0]) if loaded.is_card \
            else []
        if foreign:
            notice.info(f"Module {markdown.literal(foreign[0])} of "
                        f"{markdown.literal(loaded.name)} has no γ that convattn can set: its "
                        "attention is read from your code, not switched off in it, so "
                        "ablation works on convattn's own attention modules only.")
        else:
            notice.info(f"{markdown.literal(loaded.name)} ({markdown.literal(loaded.info.arch)})"
                        " has no convolutional self-attention module, so there is nothing to "
                        "switch off. Choose seed.pt or resnet9-attn.pt in the sidebar.")
        st.stop()
    images = shared.labelled_images()
    support = set_results.ablation_support(loaded)
    kinds = tuple(k for k, said in support.items() if said is None)
    for said in support.values():
        if said is not None:
            notice.info(markdown.literal(said))
    if not kinds:
        st.stop()
    with bottom:
        set_section(loaded, images, kinds)
    sel = shared.image()  # last: an upload still missing stops the page here
    with top:
        image_section(loaded, sel, names, kinds)


main()
