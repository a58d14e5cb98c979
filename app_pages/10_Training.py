"""Training history and γ: how the checkpoints learned, and what the zoo's runs say.

Per-epoch curves and every γ's trajectory from the checkpoints' own histories (one or
several overlaid); the ablation table over all training runs in zoo-results.json (mean
and spread over seeds); and why γ starts at 0.
"""

from __future__ import annotations

import math
from pathlib import Path

import streamlit as st

from appkit import loaded_model, markdown, plots
from convattn.files import history, shipped
from convattn.files.checkpoint import CheckpointError, read_checkpoint

CHART = {"displayModeBar": False}
RESULTS = "zoo-results.json"


@st.cache_data(show_spinner=False, max_entries=32)
def _history(path: str, mtime: float) -> tuple[list[dict], int | None]:
    """The checkpoint's per-epoch history and the training seed it was made with."""
    ckpt = read_checkpoint(path)
    return list(ckpt.get("history") or []), (ckpt.get("train_config") or {}).get("seed")


@st.cache_data(show_spinner=False, max_entries=4)
def _runs(path: str, mtime: float) -> list[dict]:
    return history.load_runs(path)


def results_path() -> Path:
    directory = shipped.checkpoints_dir()
    return Path(directory) / RESULTS


def _pm(mean: float, std: float, digits: int = 2) -> str:
    if math.isnan(mean):
        return "–"
    return f"{mean:.{digits}f}" if math.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _signed(mean: float, se: float) -> str:
    return f"{mean:+.2f} ± {se:.2f}"


def curves_section() -> None:
    st.header("Curves of the checkpoints")
    every = loaded_model.checkpoint_options()
    cards = [o for o in every if loaded_model.is_card(o)]
    if cards:  # a card's network was trained elsewhere: it recorded no curves here
        st.info(f"{markdown.literal(Path(cards[0]).name)} is a model card: this page shows "
                "the training of convattn's own networks only (`python -m convattn.train`), "
                "and your network's training was not recorded by convattn.")
    options = [o for o in every if not loaded_model.is_card(o)]
    if not options:
        st.info(f"No checkpoint found: train one with `{loaded_model.TRAIN_HINT}`.")
        return
    current = st.session_state.get("checkpoint")
    current = current if current in options else options[0]
    twin = loaded_model.twin_checkpoint(current, options)
    st.session_state.setdefault("train_checkpoints", [current] + ([twin] if twin else []))
    chosen = st.multiselect("Checkpoints to overlay", options, key="train_checkpoints",
                            format_func=loaded_model.checkpoint_label, persist_state="session")
    curves = {}
    for path in chosen:
        try:
            found, seed = _history(path, Path(path).stat().st_mtime)
        except (CheckpointError, OSError) as e:
            st.error(markdown.literal(e if isinstance(e, CheckpointError)
                                      else f"{path} cannot be read."))
            continue
        if not found:
            st.caption(f"{markdown.literal(Path(path).name)} records no per-epoch history.")
            continue
        # The seed tells which run of the table below this checkpoint is.
        name = Path(path).name + (f" (training seed {seed})" if seed is not None else "")
        curves[name] = history.curves(found)
    if not curves:
        st.info("Choose one or more checkpoints with a training history above.")
        return
    keys = ["test_accuracy", "train_accuracy", "train_loss", "lr"]
    tabs = st.tabs([history.METRICS[k][0].upper() + history.METRICS[k][1:] for k in keys])
    for tab, key in zip(tabs, keys):
        with tab:
            st.plotly_chart(plots.history_figure(curves, key), key=f"curve_{key}",
                            config=CHART)
    st.subheader("γ during training")
    if any(k.startswith("gamma:") for c in curves.values() for k in c):
        st.plotly_chart(plots.gamma_figure(curves), key="gamma_curves", config=CHART)
        last = [f"{markdown.literal(name)} `{k[6:]}` {c[k][-1]:.3f}" for name, c in curves.items()
                for k in c if k.startswith("gamma:")]
        st.caption("Every γ is 0 when training starts (not plotted: histories record the end "
                   "of each epoch). Final γ: " + ", ".join(last) + ".")
    else:
        st.caption("None of these checkpoints has a convolutional self-attention module, "
                   "so there is no γ to follow.")


def zoo_section() -> None:
    st.header("The ablation table: every training run")
    path = results_path()
    try:
        runs = _runs(str(path), path.stat().st_mtime)
    except (history.HistoryError, OSError) as e:
        problem = e if isinstance(e, history.HistoryError) else f"{path} does not exist."
        st.info(f"{markdown.literal(problem)} The table needs the zoo's results file.")
        return
    rows = history.summary_table(runs)
    devices = {r["device"] for r in rows}
    # st.table, not st.dataframe: its cells wrap, so no column (the GPU's long name) is
    # clipped at the page's width.
    st.table({
        "architecture": [r["arch"] for r in rows],
        "runs (seeds)": [f"{r['runs']} ({', '.join(map(str, r['seeds']))})" for r in rows],
        "epochs": [r["epochs"] for r in rows],
        "test acc. % (final)": [_pm(r["final_mean"], r["final_std"]) for r in rows],
        "mean of last 10 epochs %": [_pm(r["last_mean"], r["last_std"]) for r in rows],
        "best epoch %": [_pm(r["best_mean"], r["best_std"]) for r in rows],
        "parameters": [f"{r['parameters']:,}" if r["parameters"] else "–" for r in rows],
        "training time per run (s)": [" / ".join(f"{t:,.0f}" for t in r["seconds"])
                                      for r in rows],
    } | ({} if len(devices) == 1 else {"GPU": [r["device"] for r in rows]}), hide_index=True,
             border="horizontal")
    st.caption("Mean ± standard deviation over seeds (a single run has no spread). The mean "
               "of the last 10 epochs is steadier than the final epoch alone. Training times "
               "depend on how many runs shared the GPU at once, so they compare only runs "
               "made in the same conditions (see checkpoints/README.md)."
               + (f" Every run trained on one {next(iter(devices))}." if len(devices) == 1 else ""))
    groups = history.by_arch(runs)
    lines = []
    for a, b in history.COMPARISONS:
        if a not in groups or b not in groups:
            continue
        final = history.difference([r["test_accuracy"] for r in groups[a]],
                                   [r["test_accuracy"] for r in groups[b]])
        steady = history.difference(
            [history.last_epochs_mean(r.get("history") or []) for r in groups[a]],
            [history.last_epochs_mean(r.get("history") or []) for r in groups[b]])
        if math.isnan(final[1]):
            lines.append(f"- **{a}** − **{b}**: {final[0]:+.2f} points at the final epoch, "
                         f"{steady[0]:+.2f} over the last 10 epochs; with {len(groups[a])} "
                         f"and {len(groups[b])} run(s), there is no spread to judge it "
                         "against.")
            continue
        lines.append(f"- **{a}** − **{b}**: {_signed(*final)} points at the final epoch, "
                     f"{_signed(*steady)} over the last 10 epochs "
                     f"({abs(steady[0]) / max(steady[1], 1e-12):.1f} standard errors).")
    if lines:
        st.markdown("Differences of the mean test accuracy, ± one standard error:\n"
                    + "\n".join(lines))
        st.caption("Three seeds give only a rough standard error: treat a difference of "
                   "less than about 2 to 3 standard errors as unresolved.")
    st.subheader("Curves over seeds")
    archs = list(groups)
    a, b = st.columns([2, 1])
    default = [x for x in archs if x.startswith("seed")] or archs
    st.session_state.setdefault("zoo_archs", default)
    picked = a.multiselect("Architectures", archs, key="zoo_archs", persist_state="session")
    st.session_state.setdefault("zoo_metric", "test_accuracy")
    metric = b.selectbox("Curve", [*history.METRICS, "gamma"], key="zoo_metric",
                         persist_state="session",
                         format_func=lambda k: history.METRICS.get(k, "γ (every module)"))
    if metric == "gamma":
        series = {f"{arch} · {name}": (groups[arch], f"gamma:{name}") for arch in picked
                  for name in history.gamma_names(groups[arch][0].get("history") or [])}
        fig = plots.runs_figure(series, "γ")
    else:
        series = {arch: (groups[arch], metric) for arch in picked}
        fig = plots.runs_figure(series, history.METRICS[metric])
    st.plotly_chart(fig, key="zoo_curves", config=CHART)
    st.caption("Lines: mean over the seeds of each architecture; bands: ± one standard "
               "deviation.")


def gamma_explained() -> None:
    st.header("Why γ starts at 0")
    st.markdown(
        "Each attention module outputs **LayerNorm(γ·Z + X)**: the features X plus γ times "
        "what attention gathered from the other positions (Z).\n\n"
        "- With **γ = 0** a freshly built module is just LayerNorm(X), so the new network "
        "starts as the same network without attention. Attention that has learned nothing "
        "yet (random queries and keys mix features from everywhere) cannot disturb the "
        "convolutions while they learn.\n"
        "- γ still learns from the first step: the loss's gradient with respect to γ is "
        "Z · (the gradient at the output), which is not zero. So γ grows only as far as "
        "mixing in attention lowers the loss.\n"
        "- Its value after training says how much the network chose to use attention; the "
        "Ablation page shows what setting it back to 0 does to the answers.\n\n"
        "This is the residual gate of SAGAN (Zhang et al. 2019, *Self-Attention Generative "
        "Adversarial Networks*).")


def main() -> None:
    st.title("Training history and γ")
    curves_section()
    zoo_section()
    gamma_explained()


main()
