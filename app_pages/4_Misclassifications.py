"""Misclassifications: what the model gets wrong over the whole test set, and as what.

A confusion matrix (click a cell to see its images), accuracy per class, and a gallery
of the chosen images sorted by confidence or loss; any image opens on the Inspect page.
Known CIFAR-10 label errors are badged, can be hidden, and give accuracy two more ways;
a reliability diagram says whether the model's confidence can be taken at its word.
Predictions come from the checkpoint's predictions file, or are computed once.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from appkit import (
    gallery,
    label_doubts,
    loaded_model,
    markdown,
    plots,
    session,
    set_results,
    sources,
    temperature,
)
from convattn.trust.label_errors import ATTRIBUTION

ANY = "any class"


def _on_cell() -> None:
    """A confusion-matrix cell was clicked: show its images (runs before the rerun)."""
    point = gallery.clicked_point(st.session_state.get("confusion"))
    if point and "x" in point and "y" in point:
        st.session_state.update(mis_true=point["y"], mis_pred=point["x"],
                                mis_wrong=point["x"] != point["y"])
        st.session_state.pop("mis_page", None)


def _on_class() -> None:
    """A per-class accuracy bar was clicked: show that class's mistakes."""
    point = gallery.clicked_point(st.session_state.get("per_class"))
    if point and "y" in point:
        st.session_state.update(mis_true=point["y"], mis_pred=ANY, mis_wrong=True)
        st.session_state.pop("mis_page", None)


def matrix_section(probs: np.ndarray, labels: np.ndarray, classes: list[str]) -> None:
    pred = probs.argmax(axis=1)
    counts = gallery.confusion(labels, pred, len(classes))
    present = counts.sum(axis=1) > 0
    per_class = 100 * np.diag(counts) / np.maximum(counts.sum(axis=1), 1)
    overall = 100 * float(np.trace(counts)) / max(int(counts.sum()), 1)
    shown = gallery.focus(counts)  # every class up to 20, else the most confused
    sub = [classes[i] for i in shown]
    true, predicted = st.session_state.get("mis_true"), st.session_state.get("mis_pred")
    selected = ((sub.index(true), sub.index(predicted))
                if true in sub and predicted in sub else None)
    left, right = st.columns([1.4, 1])
    with left:
        st.subheader("Confusion matrix")
        st.plotly_chart(plots.confusion_figure(counts[np.ix_(shown, shown)], sub, selected),
                        key="confusion", on_select=_on_cell, selection_mode="points",
                        config={"displayModeBar": False})
        part = ("" if len(shown) == len(classes) else
                f" Of the {len(classes):,} classes, the {len(shown)} most confused are shown.")
        st.caption(f"{int(counts.sum()):,} images: rows are the true class, columns the "
                   f"predicted one, so the diagonal holds the {int(np.trace(counts)):,} "
                   "correct answers. The colours stop at the largest off-diagonal count, so "
                   f"the confusions stand out.{part} **Click a cell** to see its images below.")
    with right:
        st.subheader("Accuracy per class")
        bars = gallery.worst(per_class, present)
        st.plotly_chart(plots.per_class_figure(per_class[bars], [classes[i] for i in bars],
                                               overall),
                        key="per_class", on_select=_on_class, selection_mode="points",
                        config={"displayModeBar": False})
        hardest = int(bars[np.argmin(per_class[bars])]) if len(bars) else 0
        off = counts.copy()
        np.fill_diagonal(off, -1)
        r, c = np.unravel_index(int(off.argmax()), off.shape)
        names = [markdown.literal(n) for n in classes]
        some = ("" if len(bars) == int(present.sum()) else
                f" The {len(bars)} least accurate of the {int(present.sum()):,} classes with "
                "images are shown.")
        confusion = (f"Most frequent confusion: **{names[r]}** taken for **{names[c]}** "
                     f"({int(counts[r, c])} images). " if counts[r, c] > 0 else
                     "No image is taken for another class. ")
        st.caption(f"{overall:.2f}% correct over these {int(counts.sum()):,} images; green "
                   f"bars are at or above that, red ones below.{some} Hardest class: "
                   f"**{names[hardest]}** ({per_class[hardest]:.1f}%). {confusion}"
                   "Click a bar to see that class's mistakes.")


def gallery_section(images: sources.ImageSet, probs: np.ndarray, keep: np.ndarray) -> None:
    classes, labels = images.classes, images.labels
    st.header("The images")
    st.session_state.setdefault("mis_wrong", True)
    c1, c2, c3, c4 = st.columns([1, 1, 0.8, 1.6])
    # Kept while the user looks at an image in Inspect, so that Back finds them again.
    true = c1.selectbox("True class", [ANY, *classes], key="mis_true", persist_state="session")
    predicted = c2.selectbox("Predicted class", [ANY, *classes], key="mis_pred",
                             persist_state="session")
    only_wrong = c3.checkbox("Only misclassified", key="mis_wrong", persist_state="session")
    order = c4.radio("Order", list(gallery.ORDERS), format_func=gallery.ORDERS.get,
                     horizontal=True, key="mis_order", persist_state="session")
    chosen = gallery.choose(probs, labels, None if true == ANY else classes.index(true),
                            None if predicted == ANY else classes.index(predicted),
                            only_wrong, order)
    chosen = chosen[keep[chosen]]
    what = f"true class **{markdown.literal(true)}**" if true != ANY else "any true class"
    what += (f", predicted **{markdown.literal(predicted)}**" if predicted != ANY
             else ", any prediction")
    if only_wrong:
        what += ", misclassified only"
    if not keep.all():
        what += ", known label errors hidden"
    st.markdown(f"**{len(chosen):,} images** with {what}.")
    if not len(chosen):
        st.info("No image matches. Click another cell of the confusion matrix, or widen the "
                "filters above.")
        return
    with st.columns([1, 3])[0]:
        shown = gallery.page_of(chosen, "mis_page")
    pred = probs.argmax(axis=1)
    names = [markdown.literal(n) for n in classes]
    captions = [f"#{i} {names[labels[i]]} → **{names[pred[i]]}** "
                f"{probs[i, pred[i]]:.0%}" for i in shown]
    badges = (" A badge marks an image of the known CIFAR-10 label errors: *label error* "
              "when most of the 5 workers asked saw another class, *label upheld* when they "
              "kept it." if label_doubts.known(images) else "")
    st.caption("Each caption: image number, true class → predicted class and the model's "
               "confidence in it. **Inspect** opens the image on the Inspect page." + badges)
    gallery.inspectable(images, shown, captions, key="mis")


def label_error_section(images: sources.ImageSet, probs: np.ndarray) -> np.ndarray:
    """Accuracy around the known label errors, and the switch that hides them; returns
    which images the confusion matrix and gallery keep."""
    errors = label_doubts.validated(images)
    if not errors.any():  # not CIFAR-10's test images, or none of its errors among them
        return np.ones(len(images), dtype=bool)
    hide = st.toggle(
        f"Hide known label errors ({int(errors.sum()):,} here)", key="mis_hide_errors",
        persist_state="session",
        help="Leave out of the confusion matrix and the gallery the images whose label most "
             "of 5 crowd workers rejected (Northcutt et al. 2021): no answer about them can "
             "be called right or wrong.")
    acc = label_doubts.accuracies(images, probs)
    if acc is not None:
        shown = {}
        if acc["corrected"]:  # none in the bundled sample: the figure would only repeat
            shown[f"With the {acc['corrected']} correctable labels fixed"] = \
                acc["accuracy_corrected"]
        shown[f"Without the {acc['validated']} validated errors"] = \
            acc["accuracy_without_errors"]
        first, *others = st.columns(3)
        first.metric("Accuracy as labelled", f"{acc['accuracy']:.2f}%")
        for column, (label, value) in zip(others, shown.items()):
            column.metric(label, f"{value:.2f}%", f"{value - acc['accuracy']:+.2f} points")
        st.caption(
            "Of CIFAR-10's 10,000 test images, 54 carry a label that most of 5 crowd workers "
            "rejected (*validated* errors), and 18 of those a label that most of them chose "
            f"instead (*correctable*). Among these {acc['count']:,} images: "
            f"{acc['validated']} validated, {acc['corrected']} correctable"
            + (f"; fixing those labels turns {acc['fixed']} answers right and "
               f"{acc['broken']} wrong. " if acc["corrected"] else ". ")
            + markdown.literal(ATTRIBUTION))
    return ~errors if hide else np.ones(len(images), dtype=bool)


def calibration_section(loaded: loaded_model.Loaded, images: sources.ImageSet, probs: np.ndarray
                        ) -> None:
    st.header("Calibration: does the confidence match the accuracy?")
    found = temperature.set_calibration(loaded, images, probs)
    if found is None:
        st.info("Calibration needs at least two images.")
        return
    left, right = st.columns(2)
    for column, rel, title in ((left, found.before, "As the model says"),
                               (right, found.after, "After temperature scaling")):
        column.plotly_chart(plots.reliability_figure(rel, title), key=f"rel_{title[:2]}",
                            config={"displayModeBar": False})
    before, after = 100 * found.before.ece, 100 * found.after.ece
    ts = " and ".join(f"{t:.3f}" for t in found.temperatures)
    st.caption(
        f"Expected calibration error (ECE) over these {len(images):,} images: "
        f"**{before:.2f}%** as the model says, **{after:.2f}%** after temperature scaling "
        f"(T = {ts}: {found.how}). The images fall into 15 bins by confidence; a "
        "calibrated model's bars reach the diagonal, and ECE is their average distance "
        "from it, weighted by the bins' image counts. T above 1 softens an over-confident "
        "model; the predicted class never changes.")


def main() -> None:
    st.title("Misclassifications: what does the model get wrong, and as what?")
    shared = session.current()
    loaded, images = shared.loaded, shared.labelled_images()
    found = set_results.set_probs(loaded, images)
    st.caption(f"Showing the {markdown.literal(images.title)}. Predictions of "
               f"{markdown.literal(loaded.name)} {found.source}."
               + (" Name the full test set's folder in the sidebar to see all of it."
                  if images.key == "sample" else ""))
    keep = label_error_section(images, found.probs)
    matrix_section(found.probs[keep], images.labels[keep], images.classes)
    gallery_section(images, found.probs, keep)
    calibration_section(loaded, images, found.probs)


main()
