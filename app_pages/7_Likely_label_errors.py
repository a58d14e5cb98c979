"""Likely label errors: which labels of the image set does the model doubt?

Confident learning (cleanlab) scores every image's label from the model's predicted
probabilities, for any image set, the user's own too; the gallery shows the most doubtful
labels first, with the known CIFAR-10 label errors badged, and any image opens on Inspect.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import streamlit as st

from appkit import gallery, label_doubts, markdown, session, set_results
from convattn.files.data import ImageSet

if TYPE_CHECKING:  # not at run time: cleanlab takes seconds to import (see label_doubts)
    from convattn.trust.label_issues import LabelIssues

ANY = "any class"
SHOW = {"flagged": "flagged by confident learning", "all": "every image"}


def summary(issues: LabelIssues, known: dict[int, dict[str, Any]], n: int) -> None:
    flagged = int(issues.flagged.sum())
    st.markdown(f"Confident learning flags **{flagged:,} of the {n:,} images** "
                f"({100 * flagged / n:.1f}%) as likely mislabelled.")
    errors = [i for i, e in known.items() if e["validated"]]
    if errors:
        found = int(issues.flagged[errors].sum())
        median = int(np.median(issues.rank[errors])) + 1
        st.caption(f"{found} of the {len(errors)} known label errors among these images "
                   f"(Northcutt et al. 2021) are flagged; their median place in the ranking "
                   f"is {median:,} of {n:,}.")
    st.caption("Each image's label quality is the probability the model gives its label "
               "(cleanlab's self-confidence score): the lowest come first. Flagged are as "
               "many images per pair of classes as the estimated noise rate implies "
               "(cleanlab's find_label_issues). This needs probabilities from a model that "
               "did not train on these images, or it will have learnt their wrong labels.")


def gallery_section(images: ImageSet, probs: np.ndarray, issues: LabelIssues) -> None:
    classes, labels = images.classes, images.labels
    c1, c2 = st.columns([1, 2])
    # Kept while the user looks at an image in Inspect, so that Back finds them again.
    given = c1.selectbox("Given label", [ANY, *classes], key="lie_class",
                         persist_state="session")
    show = c2.radio("Show", list(SHOW), format_func=SHOW.get, horizontal=True,
                    key="lie_show", persist_state="session")
    chosen = issues.order
    if show == "flagged":
        chosen = chosen[issues.flagged[chosen]]
    if given != ANY:
        chosen = chosen[labels[chosen] == classes.index(given)]
    st.markdown(f"**{len(chosen):,} images**, least likely label first.")
    if not len(chosen):
        st.info("No image matches: choose *every image* or another class above.")
        return
    with st.columns([1, 3])[0]:
        shown = gallery.page_of(chosen, "lie_page")
    pred = probs.argmax(axis=1)
    names = [markdown.literal(c) for c in classes]
    # Short captions keep the Inspect buttons of a row level.
    captions = [f"#{i} {names[labels[i]]} → **{names[pred[i]]}** {probs[i, pred[i]]:.0%}  \n"
                f"quality {issues.scores[i]:.1e}" for i in shown]
    badges = (" A badge marks the known CIFAR-10 label errors (*label error*) and the "
              "images whose label the crowd workers kept (*label upheld*)."
              if label_doubts.known(images) else "")
    st.caption("Each caption: image number, given label → the model's answer and its "
               "confidence, then the label's quality score." + badges + " **Inspect** opens "
               "the image on the Inspect page.")
    gallery.inspectable(images, shown, captions, key="lie")


def main() -> None:
    st.title("Likely label errors: which labels does the model doubt?")
    shared = session.current()
    loaded, images = shared.loaded, shared.labelled_images()
    found = set_results.set_probs(loaded, images)
    st.caption(f"Labels of the {markdown.literal(images.title)}, judged by "
               f"{markdown.literal(loaded.name)} (predictions {found.source}).")
    try:
        issues = label_doubts.ranking(loaded, images, found.probs)
    except ValueError as e:
        shared.notice.error(f"The labels cannot be ranked: {markdown.literal(e)}")
        st.stop()
    summary(issues, label_doubts.known(images), len(images))
    gallery_section(images, found.probs, issues)


main()
