"""Faithfulness: do attributions and attention rank pixels by what the prediction needs?

Deletion and insertion curves for every attribution method, the attention each position
receives and a random order; their areas in a table; agreement between attention and
each attribution, for correct and misclassified images.
Widgets -> the checkpoint's checks file when it holds these settings and images
(appkit.checkfiles), else convattn.explain.faithfulness_batched live (through
appkit.teaching_work, in cached chunks, with progress) -> charts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from appkit import checkfiles, markdown, pictures, plots, session, teaching_work, work_speed
from convattn.explain import sequential
from convattn.explain.attribution import EXPLAIN, METHODS
from convattn.explain.checks import DEFAULT, checks_path
from convattn.explain.faithfulness import (
    FaithfulnessConfig,
    FaithfulnessResult,
    auc_table,
    baseline_images,
)
from convattn.explain.verdict import RANDOM, against_random, paired
from convattn.jobs.checks import attribution_config
from convattn.readout.attention import attention_modules

SIZES = [4, 8, 16, 32, 64, 100, 200, 500, 1000]
LIVE_SIZE = 16  # the default when no checks file holds the result
DEFAULT_METHODS = list(DEFAULT.methods)  # Integrated Gradients and Grad-CAM
ATTRIBUTION = attribution_config(DEFAULT)  # Integrated Gradients with 16 steps
SLOW = {"integrated_gradients", "smoothgrad", "occlusion", "deeplift"}
BASELINE_LABELS = {"mean": "mean colour", "blur": "blurred image"}
THUMB = 96
CHART = {"displayModeBar": False}


def label(name: str) -> str:
    return METHODS.get(name, name)


def controls(total: int, stored: int) -> tuple[int, list[str], FaithfulnessConfig]:
    # At most 1,000: live, at about 1 s per image (two methods, CPU), more takes too long.
    options = sorted({n for n in SIZES if n < total} | ({total} if total <= SIZES[-1] else set())
                     | ({stored} if 0 < stored <= total else set()))
    default = stored if stored else min(LIVE_SIZE, total)
    n = st.select_slider("Images to test", options, value=default,
                         key="faith_images",
                         help="A balanced sample (every class in turn). Every image costs "
                              "one attribution per method and about 2 x steps forward "
                              "passes per ranking; results are kept for every session. "
                              "The checkpoint's checks file, when there is one, holds the "
                              "default settings' results for up to its number of images.")
    methods = st.multiselect("Attribution methods", list(METHODS), default=DEFAULT_METHODS,
                             format_func=METHODS.get, key="faith_methods")
    if n > max(stored, 100):
        st.caption(f"{n} images take minutes on a CPU (the progress bar shows how far it "
                   "is); results are kept, so raising the number later adds only the new "
                   "images.")
    if SLOW & set(methods):
        st.caption("Integrated Gradients, SmoothGrad, Occlusion and DeepLift run the network "
                   "dozens of times per image: start with a few images.")
    steps = st.select_slider("Points per curve", [4, 8, 16, 32], value=8, key="faith_steps",
                             help="The curves remove or add 1/steps of the pixels at a time.")
    baseline = st.radio("A removed pixel becomes", list(BASELINE_LABELS), horizontal=True,
                        format_func=BASELINE_LABELS.get, key="faith_baseline",
                        help="Mean colour: the baseline the attribution methods use. "
                             "Blurred: keeps the image's rough colours, so the model sees "
                             "fewer unnatural sharp holes.")
    return int(n), methods, FaithfulnessConfig(steps=steps, baseline=baseline)


SAID = {"better": "beats", "worse": "does **worse** than", "undecided": "cannot be told from"}
VERSUS = {"better": "explains it better than", "worse": "explains it **worse** than",
          "undecided": "cannot be told from"}


def _part(test: str, v: dict, said: dict[str, str], ranking: str, reference: str) -> str:
    """One verdict, naming both sides: "on deletion, **A** beats **B** (+0.12 ± 0.04)"."""
    more = (f", about {v['needed']:,.0f} images would tell" if v["verdict"] == "undecided"
            and np.isfinite(v["needed"]) else "")
    return (f"on {test}, **{label(ranking)}** {said[v['verdict']]} **{label(reference)}** "
            f"({v['margin']:+.3f} ± {v['half_width']:.3f}{more})")


def _line(r: dict, said: dict[str, str]) -> str:
    """Both tests of one pair of rankings (``convattn.explain.verdict.paired``'s row)."""
    return "- " + "; ".join(_part(t, r[t], said, r["ranking"], r["reference"])
                            for t in ("deletion", "insertion"))


def verdict_section(result: FaithfulnessResult, alpha: float = sequential.ALPHA) -> None:
    """The page's answer first: which rankings beat the random order beyond noise, on
    each test, read at level ``alpha``; then whether attention does as well as the
    attributions."""
    rows = against_random(result, alpha=alpha)
    if not rows:
        return
    lines = [_line(r, SAID) for r in rows]
    st.markdown(f"**Verdict on these {len(result)} images** (each map's AUC against the "
                "random order's, paired per image; ± the margin it must clear: Student's t "
                f"at {100 * (1 - alpha):.3g}%, corrected for every verdict listed; positive "
                "is better):\n" + "\n".join(lines))
    if any(r[t]["verdict"] == "undecided" for r in rows for t in ("deletion", "insertion")):
        st.caption("\"Cannot be told from random\" means the difference is within the "
                   "noise of this sample: test more images (sidebar) before drawing a "
                   "conclusion; the number given is how many would tell, if the spread "
                   "stays as it is.")
    attention = [k for k in result.curves if k.startswith("attention received")]
    methods = [k for k in result.curves if k != RANDOM and k not in attention]
    if not attention or not methods:
        return
    tests = 2 * len(attention) * len(methods)
    lines = [_line(r, VERSUS) for m in methods
             for r in paired(result, m, attention, alpha=alpha, tests=tests)]
    st.markdown("**Does attention explain the prediction as well as the attributions?** "
                "(the attention each position receives, scored like an attribution, "
                "against each method on the same images; positive: attention does "
                "better):\n" + "\n".join(lines))


CURVES = {  # (title, what a faithful map does)
    "deletion": ("**Deletion**: remove the most important pixels first",
                 "A faithful map makes the probability fall fast: small area under the curve."),
    "insertion": ("**Insertion**: start from nothing, add the most important pixels first",
                  "A faithful map makes the probability rise fast: large area under the "
                  "curve."),
}


def curves_section(result: FaithfulnessResult) -> None:
    names = list(result.curves)
    fractions = result.curves[names[0]].fractions
    for column, (kind, (title, faithful)) in zip(st.columns(2), CURVES.items()):
        with column:
            st.markdown(title)
            mean = {label(k): getattr(result.curves[k], kind).mean(0) for k in names}
            st.plotly_chart(plots.curves(fractions, mean, "probability of the predicted class"),
                            config=CHART, key=f"{kind}_chart")
            st.caption(faithful)


def auc_section(result: FaithfulnessResult) -> None:
    groups = {"all images": None, "correct": result.correct, "misclassified": ~result.correct}
    choice = st.radio("Images", list(groups), horizontal=True, key="faith_group")
    mask = groups[choice]
    if mask is not None and not mask.any():
        st.info(f"No {choice} image in this sample; try more images.")
        return
    rows = []
    for r in auc_table(result, mask):
        rows.append({
            "ranking": label(r["ranking"]), "images": r["images"],
            "deletion AUC ↓": round(r["deletion_auc"], 3),
            "insertion AUC ↑": round(r["insertion_auc"], 3),
            "insertion − deletion ↑": round(r["insertion_auc"] - r["deletion_auc"], 3),
            "beats random (deletion)": (f"{100 * r['beats_random_deletion']:.0f}%"
                                        if "beats_random_deletion" in r else "–"),
            "beats random (insertion)": (f"{100 * r['beats_random_insertion']:.0f}%"
                                         if "beats_random_insertion" in r else "–"),
        })
    st.dataframe(rows, hide_index=True)
    st.caption("AUC: the area under the curve, the average probability over all its points. "
               "A ranking is only worth showing if it beats the random order, that is if it "
               "knows which pixels matter; 'beats random' says for how many images it does. "
               "The bar is high: on small images, pixels removed at random all over the "
               "image already destroy much of it. Signed methods that measure the effect of "
               "removing pixels (Integrated Gradients, Occlusion, DeepLift) usually do best "
               "here; a few images give noisy numbers, so raise the sample size before "
               "drawing conclusions.")


def example_section(result: FaithfulnessResult, images, cfg: FaithfulnessConfig,
                    loaded) -> None:
    st.subheader("What the curves do to one image")
    shown = min(len(m) for m in result.maps.values())  # a checks file keeps a few maps
    i = st.slider("Image of the sample", 0, max(shown - 1, 1), 0, key="faith_example",
                  disabled=shown < 2)
    index = int(result.indices[i])
    pixels = images.images[index]
    x = teaching_work.batch(loaded, images, np.array([index]))
    base = baseline_images(x, cfg)[0].cpu()
    mean = np.array(loaded.info.mean).reshape(-1, 1, 1)
    std = np.array(loaded.info.std).reshape(-1, 1, 1)
    base_pixels = np.clip((base.numpy() * std + mean) * 255, 0, 255).round()
    base_pixels = base_pixels.astype(np.uint8).transpose(1, 2, 0)
    base_pixels = np.broadcast_to(base_pixels, (*base_pixels.shape[:2], 3))  # grey: RGB
    fraction = st.select_slider("Pixels removed", [0.1, 0.25, 0.5], value=0.25,
                                format_func=lambda f: f"{f:.0%}", key="faith_fraction")
    classes = [markdown.literal(c) for c in loaded.classes]  # names come from files
    st.caption(f"{markdown.literal(images.names[index])}: true class "
               f"**{classes[result.labels[i]]}**, "
               f"predicted **{classes[result.predicted[i]]}**. Top: each ranking (bright = "
               f"removed first). Bottom: the image with its top {fraction:.0%} removed.")
    names = list(result.maps)
    columns = st.columns(len(names) + 1)
    with columns[0]:
        st.image(pictures.enlarge(pixels, THUMB), width=THUMB)
        st.image(pictures.enlarge(base_pixels, THUMB), width=THUMB)
        st.caption("image, and all pixels removed")
    k = int(round(fraction * pixels.shape[0] * pixels.shape[1]))
    for column, name in zip(columns[1:], names):
        ranking = result.maps[name][i]
        order = np.argsort(-ranking, axis=None, kind="stable")
        removed = np.zeros(ranking.size, dtype=bool)
        removed[order[:k]] = True
        removed = removed.reshape(ranking.shape)
        shown = np.where(removed[..., None], base_pixels, pixels)
        lo, hi = float(ranking.min()), float(ranking.max())
        with column:
            coloured = pictures.colorize(ranking, lo, max(hi, lo + 1e-12),
                                         pictures.ATTENTION_CMAP)
            st.image(pictures.enlarge(coloured, THUMB), width=THUMB)
            st.image(pictures.enlarge(shown.astype(np.uint8), THUMB), width=THUMB)
            st.caption(label(name))


def agreement_section(result: FaithfulnessResult) -> None:
    st.subheader("Does attention agree with the attributions?")
    if not result.agreement:
        st.info("No agreement to measure: this needs a model with an attention module and "
                "at least one attribution method.")
        return
    groups = {"all images": np.ones(len(result), dtype=bool), "correct": result.correct,
              "misclassified": ~result.correct}
    rows = []
    for (module, method), metrics in result.agreement.items():
        for group, mask in groups.items():
            if not mask.any():
                continue
            spearman = metrics["spearman"][mask]  # NaN where a map is constant
            rows.append({"attention": module, "attribution": label(method), "images": group,
                         "count": int(mask.sum()),
                         "rank correlation": (round(float(np.nanmean(spearman)), 3)
                                              if np.isfinite(spearman).any() else None),
                         "top-10% overlap": f"{100 * float(metrics['topk'][mask].mean()):.0f}%"})
    st.dataframe(rows, hide_index=True, height=35 * (len(rows) + 1) + 3)
    st.caption("Rank correlation (Spearman): 1 = attention ranks the pixels exactly as the "
               "attribution does, 0 = unrelated, −1 = reversed. Top-10% overlap: how many of "
               "the 10% most important pixels of the attribution also get the most "
               "attention; two unrelated maps share 10% by chance. Attention says where the "
               "network gathers information from, attributions say what the prediction "
               "depends on: they need not agree.")


def ask_before_running(loaded, images, n: int, methods: list[str], cfg: FaithfulnessConfig,
                       why: str, plan: sequential.Plan | None) -> None:
    """Where these settings need images computed live, say how long that will take and
    stop the page until the button asks for it (a run is minutes on a CPU). Images kept
    from earlier runs cost nothing and need no button."""
    missing = teaching_work.faithfulness_missing(loaded, images, n, methods, cfg, ATTRIBUTION,
                                                 plan)
    if not missing:
        return
    est = work_speed.faithfulness_estimate(loaded, missing, methods, cfg, ATTRIBUTION)
    rankings = [*(label(m) for m in methods)]
    rankings += ["the attention"] * bool(attention_modules(loaded.model)) + ["a random order"]
    kept = f" ({n - missing} of the {n} are kept from earlier runs)" if missing < n else ""
    why = why or "the checks file holds other settings, methods or images"
    st.info(f"**{missing} images to test live**{kept}: {why}. Deletion and insertion for "
            f"{' and '.join(filter(None, [', '.join(rankings[:-1]), rankings[-1]]))} take "
            f"up to **{work_speed.duration(est.seconds)}** here (about {est.per_second:.2g} "
            f"images/s, {est.measured}), less when every verdict is settled before the "
            "last image. Results are kept for every session.")
    if not st.button(f"Test {missing} images ({work_speed.duration(est.seconds)})",
                     key="faith_run", type="primary"):
        st.stop()


def stopped(n: int, tested: int, methods: list[str], cfg: FaithfulnessConfig) -> None:
    """Say that a sequential run stopped early, and offer the rest."""
    st.info(f"**Every verdict was settled after {tested} of the {n} images**, so the test "
            f"stopped there. It looks after {', '.join(map(str, sequential.Plan(n).looks))} "
            "images and stops at the first look where every map is clearly better or worse "
            "than the random order, at a stricter bar than one test of all the images, so "
            "that the chance of any wrong verdict stays at most 5% (a group-sequential "
            "test). The other images would only narrow the margins.")
    if st.button(f"Test all {n} images", key="faith_all"):
        st.session_state["faith_every"] = (n, tuple(methods), cfg)
        st.session_state["faith_go"] = True  # this click was the asking
        st.rerun()


def main() -> None:
    st.title("Faithfulness: does a map point at what the prediction needs?")
    shared = session.current()
    loaded, images = shared.loaded, shared.images
    found = checkfiles.find(loaded)
    stored = len(found.checks.faith_names) if found.checks else 0
    with st.sidebar:
        st.header("Test")
        n, methods, cfg = controls(len(images), stored)
    st.markdown(
        "An explanation map ranks the pixels. If the ranking is faithful, **deleting** the "
        "top-ranked pixels should destroy the prediction quickly, and **inserting** them "
        "into an empty image should restore it quickly (Petsiuk et al. 2018, RISE). Each "
        "map is tested against a **random order** of the pixels.")
    result = checkfiles.faithfulness(found, images, teaching_work.sample(images, n), methods,
                                     cfg, ATTRIBUTION)
    alpha = sequential.ALPHA
    if result is not None:
        source = (f"read from {markdown.literal(Path(checks_path(loaded.path)).name)}"
                  " (`python -m convattn.checks`), made from this checkpoint")
    else:
        plan = sequential.Plan(n)
        every = st.session_state.get("faith_every") == (n, tuple(methods), cfg)
        if not st.session_state.pop("faith_go", False):
            ask_before_running(loaded, images, n, methods, cfg, found.why,
                               None if every else plan)
        bar = st.progress(0.0, text=f"Testing {n} images…")
        result = teaching_work.faithfulness_run(
            loaded, images, n, methods, cfg, ATTRIBUTION,
            lambda done, total: bar.progress(done / total, text=f"{done} of {total} images"),
            plan=None if every else plan)
        bar.empty()
        alpha = plan.level(len(result))
        if len(result) < n:
            stopped(n, len(result), methods, cfg)
        source = "computed here (" + (found.why or "the checks file holds other settings, "
                                      "methods or images") + ")"
    st.caption(f"{len(result)} test images, {int((~result.correct).sum())} of them "
               f"misclassified; the curves follow the probability of the class the model "
               f"predicts for the full image. Results {source}.")
    verdict_section(result, alpha)
    curves_section(result)
    auc_section(result)
    with st.expander("The rankings, in one line each"):
        for m in methods:
            st.markdown(f"- **{METHODS[m]}**: {EXPLAIN[m]}")
        for name in result.curves:
            if name.startswith("attention received"):
                st.markdown(f"- **{name}**: how much attention the position gets from all "
                            "queries (the column mean of the attention matrix), one value "
                            "per cell of the module's grid")
        st.markdown(f"- **{RANDOM}**: the pixels in a random order, the reference")
    example_section(result, images, cfg, loaded)
    agreement_section(result)
    if not any(k.startswith("attention received") for k in result.curves):
        st.caption(f"This {loaded.info.arch} model has no self-attention module: only the "
                   "attributions are tested.")


main()
