"""Training histories as tables and curves: one checkpoint's epochs, or many runs.

A history is the list of per-epoch dicts a checkpoint stores (epoch, train_loss,
train_accuracy, test_accuracy, lr, gammas {module: value}, train_seconds,
elapsed_seconds). A run is one entry of ``checkpoints/zoo-results.json``: arch, seed,
epochs, test_accuracy, best_test_accuracy, train_seconds, parameters, device,
train_config and its history. Several seeds of one architecture give a mean and a spread.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from convattn.nn.models import comparisons, list_models

METRICS = {
    "train_loss": "training loss",
    "train_accuracy": "training accuracy (%)",
    "test_accuracy": "test accuracy (%)",
    "lr": "learning rate",
}


class HistoryError(Exception):
    """A results file that cannot be used; the message is one sentence for the user."""


# The comparisons the zoo is trained for: (attention network, the network it is compared
# with), from the model registry; the first is the tutorial's claim.
COMPARISONS = comparisons()

def load_runs(path: str | Path) -> list[dict[str, Any]]:
    """The runs listed in a results file such as ``checkpoints/zoo-results.json``."""
    path = Path(path)
    try:
        runs = json.loads(path.read_text())
    except FileNotFoundError:
        raise HistoryError(f"{path} does not exist.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HistoryError(f"{path} cannot be read as JSON ({type(e).__name__}).") from None
    if not isinstance(runs, list) or not all(isinstance(r, dict) and "arch" in r
                                             for r in runs):
        raise HistoryError(f"{path} is not a list of training runs with an 'arch' each.")
    return runs


def gamma_names(history: Sequence[dict[str, Any]]) -> list[str]:
    """The attention modules whose gamma a history records, in order of appearance."""
    names: dict[str, None] = {}
    for epoch in history:
        names.update(dict.fromkeys(epoch.get("gammas") or {}))
    return list(names)


def curves(history: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Per-epoch arrays: "epoch", each of ``METRICS`` and "gamma:<module>"; NaN where an
    epoch lacks a value."""
    out = {"epoch": np.array([e.get("epoch", i + 1) for i, e in enumerate(history)],
                             dtype=np.int64)}
    for key in METRICS:
        out[key] = np.array([_number(e.get(key)) for e in history], dtype=np.float64)
    for name in gamma_names(history):
        out[f"gamma:{name}"] = np.array([_number((e.get("gammas") or {}).get(name))
                                         for e in history], dtype=np.float64)
    return out


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) else math.nan


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; NaN for fewer than two values)."""
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return math.nan, math.nan
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else math.nan


def last_epochs_mean(history: Sequence[dict[str, Any]], key: str = "test_accuracy",
                     last: int = 10) -> float:
    """Mean of ``key`` over the last ``last`` epochs: steadier than the final epoch alone."""
    values = curves(history)[key][-last:]
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else math.nan


def by_arch(runs: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Runs grouped by architecture, in the model registry's order, then any others."""
    order = {name: i for i, name in enumerate(list_models())}
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(run["arch"], []).append(run)
    return dict(sorted(groups.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))


def summary_table(runs: Sequence[dict[str, Any]], last: int = 10) -> list[dict[str, Any]]:
    """One row per architecture: how many runs, test accuracy (final epoch, best epoch
    and mean of the last ``last`` epochs) as mean and std over runs, parameters and
    each run's training time in seconds."""
    rows = []
    for arch, group in by_arch(runs).items():
        final = mean_std([r["test_accuracy"] for r in group])
        best = mean_std([r.get("best_test_accuracy", math.nan) for r in group])
        steady = mean_std([last_epochs_mean(r.get("history") or [], last=last)
                           for r in group])
        seconds = [r["train_seconds"] for r in group if r.get("train_seconds") is not None]
        rows.append({
            "arch": arch,
            "runs": len(group),
            "seeds": sorted(r.get("seed") for r in group if r.get("seed") is not None),
            "epochs": max(int(r.get("epochs") or 0) for r in group),
            "final_mean": final[0], "final_std": final[1],
            "best_mean": best[0], "best_std": best[1],
            "last_mean": steady[0], "last_std": steady[1],
            "parameters": group[0].get("parameters"),
            "seconds": seconds,
            "device": ", ".join(sorted({str(r.get("device", "?")) for r in group})),
        })
    return rows


def difference(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """mean(a) - mean(b) and its standard error sqrt(s_a^2 / n_a + s_b^2 / n_b) (NaN
    when either side has fewer than two values)."""
    (ma, sa), (mb, sb) = mean_std(a), mean_std(b)
    return ma - mb, math.sqrt(sa**2 / len(a) + sb**2 / len(b))


def mean_curve(runs: Sequence[dict[str, Any]], key: str
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(epochs, mean, std) of ``key`` (a ``curves`` key) over runs, on the epochs every
    run has; std is NaN with a single run."""
    per_run = [curves(r.get("history") or []) for r in runs]
    per_run = [c for c in per_run if key in c and len(c["epoch"])]
    if not per_run:
        empty = np.zeros(0)
        return empty.astype(np.int64), empty, empty
    common = sorted(set.intersection(*(set(c["epoch"].tolist()) for c in per_run)))
    stacked = np.stack([[dict(zip(c["epoch"].tolist(), c[key]))[e] for e in common]
                        for c in per_run])  # (runs, epochs)
    std = stacked.std(axis=0, ddof=1) if len(per_run) > 1 else np.full(len(common), np.nan)
    return np.array(common, dtype=np.int64), stacked.mean(axis=0), std
