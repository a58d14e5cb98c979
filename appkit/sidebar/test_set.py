"""The sidebar's Test images section: the full test set from a folder the operator allows
(``appkit.roots``), or the bundled sample, and the checkpoint's accuracy on the set in use
from its predictions file.

The images are read at the model's input size (a model card's ``image_size``) and their
class folders mapped by name onto the model's classes (``ImageSet.onto``): a folder may
hold only some of them, but not a class the model lacks.
"""

from __future__ import annotations

import streamlit as st

from appkit import markdown, serving, sources
from appkit.loaded_model import Loaded
from appkit.roots import Refused, Roots
from appkit.set_results import rows_for
from appkit.sidebar import fetch_cifar10
from appkit.sidebar.choices import Missing
from convattn.errors import DataError
from convattn.files.data import ImageSet

FOLDER = "data_folder"  # session state: the folder chosen or typed ("" is the sample)


def _choose(allowed: Roots) -> str:
    """The folder box: a free path inside the allowed roots when the operator named some,
    else a choice between the bundled sample and the download folder."""
    label = "Full test set (folder)"
    if allowed.named:
        return st.text_input(
            label, key=FOLDER, persist_state="session",
            placeholder=f"e.g. {allowed.allowed[-1]}",
            help="An ImageFolder root holding test/<class>/*.jpg (or just <class>/*.jpg), "
                 "of any image size, a .npz pack made by "
                 "`python -m convattn.data pack`, or a folder for torchvision's CIFAR-10, "
                 "inside a folder this server shares. Empty: the bundled sample.").strip()
    options = allowed.offered()
    if st.session_state.get(FOLDER) not in options:
        st.session_state[FOLDER] = ""
    return st.selectbox(
        label, options, key=FOLDER, persist_state="session",
        format_func=lambda f: f or "the bundled sample",
        help="The folders this server shares (its operator names more with --data-root).")


def _accuracy_line(loaded: Loaded, images: ImageSet) -> dict | None:
    """The checkpoint's accuracy on the image set in use, from its predictions file when
    that file holds every image of the set; the file, or None without one."""
    found = sources.predictions_for_checkpoint(loaded.path)
    if not found:
        return None
    preds, path = found
    rows = rows_for(preds["names"], images)
    if rows is None or [str(c) for c in preds["classes"]] != images.classes:
        st.caption(f"{markdown.literal(path.name)} holds other images than these "
                   f"{len(images):,}, so no accuracy is shown for them here.")
        return preds
    summary = sources.set_summary({**preds, "labels": preds["labels"][rows],
                                   "probs": preds["probs"][rows]})
    st.caption(f"On the {markdown.literal(images.title)} (from "
               f"{markdown.literal(path.name)}): **{summary['accuracy']:.2f}%** correct.")
    with st.expander("Accuracy per class"):
        st.markdown(markdown.table({
            "class": list(summary["per_class"]),
            "accuracy %": [f"{v:.1f}" for v in summary["per_class"].values()]}))
    return preds


def _labelled(images: ImageSet, loaded: Loaded) -> ImageSet:
    """The set labelled by the model's classes; a class folder the model lacks is said
    here in one sentence, and the set is kept as it is (its images can still be looked
    at, with their true class unknown to the model)."""
    images, problem = sources.with_classes(images, loaded.classes)
    if problem:
        st.warning(f"{markdown.literal(problem)} Their true classes mean nothing to this "
                   "model.")
    return images


def section(loaded: Loaded) -> tuple[ImageSet, dict | None]:
    """The section, drawn; the image set (at the model's size, labelled by its classes)
    and the checkpoint's predictions file (None without one), or ``Missing`` when not even
    the bundled sample can be used."""
    st.header("Test images")
    size, grey = loaded.info.image_size, loaded.info.channels == 1  # shown as it is seen
    allowed = serving.roots()
    downloaded = st.session_state.pop(fetch_cifar10.DOWNLOADED, None)
    if downloaded:  # set before the box is drawn: Streamlit allows no later change
        st.session_state[FOLDER] = downloaded
    st.session_state.setdefault(FOLDER, sources.default_data_folder())
    folder = _choose(allowed)
    images = None
    if folder:
        try:
            real = allowed.check(folder)
        except Refused as e:
            st.error(f"{markdown.literal(e)} Using the bundled sample instead.")
        else:
            if sources.is_new_folder(str(real)):
                if real == allowed.downloads:
                    st.info(f"{markdown.literal(folder)} does not exist yet: download "
                            f"CIFAR-10 ({sources.DOWNLOAD_SIZE}) into it?")
                else:
                    st.error(f"{markdown.literal(folder)} does not exist. Using the bundled "
                             "sample instead.")
            else:
                try:
                    images = _labelled(sources.load_test_set(str(real), size, grey), loaded)
                except DataError as e:
                    st.error(f"{markdown.literal(e)} Using the bundled sample instead.")
    if downloaded and images is not None:
        st.success(f"CIFAR-10 is downloaded: {len(images):,} test images.")
    sample = images is None
    if sample:
        try:
            images = _labelled(sources.load_sample(None, size, grey), loaded)
        except DataError as e:
            raise Missing(markdown.literal(e)) from None
    st.caption(f"Using the {markdown.literal(images.title)}.")
    if sample:
        fetch_cifar10.button(allowed.downloads)
    return images, _accuracy_line(loaded, images)
