"""convattn.files.history: curves, the ablation table and mean curves, against hand computations."""

from __future__ import annotations

import json
import math
import statistics

import numpy as np
import pytest

from convattn.files.history import (
    HistoryError,
    by_arch,
    curves,
    difference,
    gamma_names,
    last_epochs_mean,
    load_runs,
    mean_curve,
    mean_std,
    summary_table,
)


def history(accuracies: list[float], gammas: dict[str, list[float]] | None = None
            ) -> list[dict]:
    out = []
    for i, acc in enumerate(accuracies):
        epoch = {"epoch": i + 1, "train_loss": 2.0 / (i + 1), "train_accuracy": acc + 5,
                 "test_accuracy": acc, "lr": 0.1}
        if gammas:
            epoch["gammas"] = {n: g[i] for n, g in gammas.items()}
        out.append(epoch)
    return out


def run(arch: str, seed: int, accuracies: list[float], seconds: float = 100.0,
        gammas: dict[str, list[float]] | None = None) -> dict:
    return {"arch": arch, "seed": seed, "epochs": len(accuracies),
            "test_accuracy": accuracies[-1], "best_test_accuracy": max(accuracies),
            "train_seconds": seconds, "parameters": 1000 if "noattn" in arch else 1100,
            "device": "GPU", "history": history(accuracies, gammas)}


def test_curves_from_one_history():
    h = history([50, 60, 70], gammas={"attn1": [0.1, 0.2, 0.3]})
    del h[1]["lr"]
    h[2]["gammas"]["attn2"] = 0.5  # a module that shows up late
    c = curves(h)
    assert c["epoch"].tolist() == [1, 2, 3]
    assert c["test_accuracy"].tolist() == [50, 60, 70]
    assert c["train_loss"].tolist() == pytest.approx([2.0, 1.0, 2 / 3])
    assert c["lr"][0] == 0.1 and math.isnan(c["lr"][1])
    assert gamma_names(h) == ["attn1", "attn2"]
    assert c["gamma:attn1"].tolist() == pytest.approx([0.1, 0.2, 0.3])
    assert np.isnan(c["gamma:attn2"][:2]).all() and c["gamma:attn2"][2] == 0.5
    assert curves([])["epoch"].size == 0


def test_mean_std_and_last_epochs():
    assert mean_std([1.0, 2.0, 4.0]) == pytest.approx(
        (7 / 3, statistics.stdev([1.0, 2.0, 4.0])))
    mean, std = mean_std([5.0])
    assert mean == 5.0 and math.isnan(std)
    h = history(list(range(1, 21)))  # accuracies 1..20
    assert last_epochs_mean(h, last=10) == pytest.approx(15.5)  # mean of 11..20
    assert last_epochs_mean(h, last=3) == pytest.approx(19.0)


def test_summary_table_has_mean_and_spread_per_architecture():
    runs = [run("seed-noattn", 0, [70, 74, 76], 90), run("seed", 1, [70, 75, 79], 300),
            run("seed", 0, [71, 77, 78], 100), run("seed-noattn", 1, [72, 75, 77], 95),
            run("resnet9", 0, [80, 90, 91])]
    assert list(by_arch(runs)) == ["seed", "seed-noattn", "resnet9"]  # registry order
    rows = {r["arch"]: r for r in summary_table(runs, last=2)}
    seed = rows["seed"]
    assert seed["runs"] == 2 and seed["seeds"] == [0, 1] and seed["epochs"] == 3
    assert seed["final_mean"] == pytest.approx(78.5)
    assert seed["final_std"] == pytest.approx(statistics.stdev([79, 78]))
    assert seed["best_mean"] == pytest.approx(78.5)
    # Last two epochs: run 1 (75 + 79) / 2 = 77, run 0 (77 + 78) / 2 = 77.5.
    assert seed["last_mean"] == pytest.approx(77.25)
    assert seed["last_std"] == pytest.approx(statistics.stdev([77, 77.5]))
    assert seed["seconds"] == [300, 100] and seed["parameters"] == 1100
    assert rows["seed-noattn"]["final_mean"] == pytest.approx(76.5)
    single = rows["resnet9"]
    assert single["final_mean"] == 91 and math.isnan(single["final_std"])


def test_difference_and_its_standard_error():
    d, se = difference([79.0, 78.0, 80.0], [77.0, 76.0])
    assert d == pytest.approx(79.0 - 76.5)
    expected = math.sqrt(statistics.variance([79, 78, 80]) / 3
                         + statistics.variance([77, 76]) / 2)
    assert se == pytest.approx(expected)
    assert math.isnan(difference([1.0], [2.0])[1])


def test_mean_curve_over_seeds_on_common_epochs():
    runs = [run("seed", 0, [10, 20, 30], gammas={"attention": [0.1, 0.2, 0.3]}),
            run("seed", 1, [20, 40], gammas={"attention": [0.3, 0.4]})]
    epochs, mean, std = mean_curve(runs, "test_accuracy")
    assert epochs.tolist() == [1, 2]
    assert mean.tolist() == [15, 30]
    assert std.tolist() == pytest.approx([statistics.stdev([10, 20]),
                                          statistics.stdev([20, 40])])
    epochs, mean, _ = mean_curve(runs, "gamma:attention")
    assert mean.tolist() == pytest.approx([0.2, 0.3])
    epochs, mean, std = mean_curve(runs[:1], "test_accuracy")
    assert mean.tolist() == [10, 20, 30] and np.isnan(std).all()
    assert mean_curve(runs, "gamma:nowhere")[0].size == 0


def test_results_files_that_cannot_be_used(tmp_path):
    with pytest.raises(HistoryError, match="does not exist"):
        load_runs(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(HistoryError, match="cannot be read as JSON"):
        load_runs(bad)
    bad.write_text(json.dumps({"arch": "seed"}))
    with pytest.raises(HistoryError, match="not a list of training runs"):
        load_runs(bad)
    good = tmp_path / "runs.json"
    good.write_text(json.dumps([run("seed", 0, [1, 2])]))
    assert load_runs(good)[0]["arch"] == "seed"
