"""Expected calibration error, reliability diagrams and (cross-fitted) temperature scaling."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from convattn.trust.calibration import (
    apply_temperature,
    calibrated,
    cross_fit_temperature,
    expected_calibration_error,
    fit_temperature,
    logits_from_probs,
    nll,
    reliability,
    reliability_figure,
    two_folds,
)

# Six images, two classes: (probabilities, label). Top-class confidences 0.9 (right),
# 0.95 (wrong), 0.7 (right), 0.62 (right), 0.55 (wrong), 0.65 (wrong).
HAND_PROBS = np.array([[0.9, 0.1], [0.95, 0.05], [0.3, 0.7], [0.62, 0.38], [0.55, 0.45],
                       [0.35, 0.65]])
HAND_LABELS = np.array([0, 1, 1, 0, 1, 0])


def test_ece_of_a_hand_made_example():
    # 15 bins of width 1/15, (lo, hi]: 0.55 -> bin 8; 0.62, 0.65 -> bin 9; 0.7 -> 10;
    # 0.9 -> 13; 0.95 -> 14. Gaps: |0 - .55|, |.5 - .635|, |1 - .7|, |1 - .9|, |0 - .95|.
    expected = (0.55 + 2 * 0.135 + 0.3 + 0.1 + 0.95) / 6
    assert expected_calibration_error(HAND_LABELS, HAND_PROBS) == pytest.approx(expected)
    rel = reliability(HAND_LABELS, HAND_PROBS)
    full = np.flatnonzero(rel.count)
    np.testing.assert_array_equal(full, [8, 9, 10, 13, 14])
    np.testing.assert_array_equal(rel.count[full], [1, 2, 1, 1, 1])
    np.testing.assert_allclose(rel.accuracy[full], [0, 0.5, 1, 1, 0])
    np.testing.assert_allclose(rel.confidence[full], [0.55, 0.635, 0.7, 0.9, 0.95])
    assert np.isnan(rel.accuracy[0]) and rel.edges[0] == 0 and rel.edges[-1] == 1


def test_a_confidence_on_an_edge_falls_in_the_lower_bin():
    rel = reliability(np.array([0]), np.array([[0.5, 0.5]]), bins=10)
    assert rel.count[4] == 1  # (0.4, 0.5]
    assert rel.ece == pytest.approx(0.5)


def test_perfect_calibration_has_ece_near_zero():
    rng = np.random.default_rng(0)
    n = 200_000
    confidence = rng.uniform(0.5, 1.0, n)
    top = rng.integers(0, 2, n)
    probs = np.where(top[:, None] == 0, np.c_[confidence, 1 - confidence],
                     np.c_[1 - confidence, confidence])
    right = rng.random(n) < confidence  # right exactly as often as the model says
    labels = np.where(right, top, 1 - top)
    assert expected_calibration_error(labels, probs) < 0.01
    # The same probabilities with every label right: ECE is the mean distance to 1.
    assert expected_calibration_error(top, probs) == pytest.approx(
        (1 - confidence).mean(), abs=1e-9)


def overconfident(n: int = 20_000, k: int = 10, sharpen: float = 3.0, seed: int = 0):
    """Labels drawn from softmax(z), and a model that reports softmax(sharpen * z)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, (n, k))
    p = apply_temperature(z, 1.0)
    labels = (rng.random((n, 1)) > p.cumsum(1)).sum(1)
    return labels, sharpen * z


def test_overconfident_logits_get_t_above_one_and_lower_ece():
    labels, logits = overconfident()
    t = fit_temperature(labels, logits)
    assert t == pytest.approx(3.0, rel=0.05)
    few, few_logits = labels[:3000], logits[:3000]
    grid = np.linspace(1.5, 6.0, 451)  # steps of 0.01
    best = grid[np.argmin([nll(few, few_logits, g) for g in grid])]
    assert fit_temperature(few, few_logits) == pytest.approx(best, abs=0.006)
    probs = apply_temperature(logits, 1.0).astype(np.float32)
    assert fit_temperature(labels, logits_from_probs(probs)) == pytest.approx(t, rel=1e-3)
    calibrated, temps = cross_fit_temperature(labels, probs)
    assert (temps > 2.7).all() and (temps < 3.3).all()
    before = expected_calibration_error(labels, probs)
    after = expected_calibration_error(labels, calibrated)
    assert before > 0.1 and after < before / 4
    np.testing.assert_array_equal(calibrated.argmax(1), probs.argmax(1))


def test_cross_fitting_never_uses_an_images_own_fold():
    labels, logits = overconfident(n=4_000, seed=1)
    probs = apply_temperature(logits, 1.0)
    fold = two_folds(len(labels), seed=5)
    assert abs((fold == 0).sum() - (fold == 1).sum()) <= 1
    calibrated, temps = cross_fit_temperature(labels, probs, seed=5)
    lp = logits_from_probs(probs)
    for f in (0, 1):
        t_other = fit_temperature(labels[fold != f], lp[fold != f])
        assert temps[1 - f] == pytest.approx(t_other)
        np.testing.assert_allclose(calibrated[fold == f],
                                   apply_temperature(lp[fold == f], t_other))
    # Changing fold 0's labels changes nothing calibrated in fold 0.
    scrambled = labels.copy()
    scrambled[fold == 0] = np.random.default_rng(2).integers(0, 10, (fold == 0).sum())
    again, temps_again = cross_fit_temperature(scrambled, probs, seed=5)
    np.testing.assert_array_equal(again[fold == 0], calibrated[fold == 0])
    assert temps_again[1] == temps[1] and temps_again[0] != temps[0]
    assert not np.allclose(again[fold == 1], calibrated[fold == 1])


def test_reliability_figure_draws_the_bins():
    rel = reliability(HAND_LABELS, HAND_PROBS)
    fig = reliability_figure(rel, "hand")
    assert isinstance(fig, Figure)
    top, bottom = fig.axes
    full = rel.count > 0
    heights = [p.get_height() for p in top.patches][: full.sum()]
    np.testing.assert_allclose(heights, rel.accuracy[full])
    np.testing.assert_allclose([p.get_height() for p in bottom.patches], rel.count)
    assert f"{100 * rel.ece:.2f}" in top.get_title()


def test_bad_input_is_one_sentence():
    with pytest.raises(ValueError, match="same N"):
        expected_calibration_error(HAND_LABELS[:-1], HAND_PROBS)
    with pytest.raises(ValueError, match="class indices"):
        fit_temperature(HAND_LABELS + 2, HAND_PROBS)
    with pytest.raises(ValueError, match="two images"):
        cross_fit_temperature(HAND_LABELS[:1], HAND_PROBS[:1])


def test_stored_temperatures_reproduce_the_cross_fitting():
    """What a predictions file keeps (calibration_arrays) calibrates each of its images with
    the other fold's T, exactly as cross_fit_temperature did, and an image from outside the
    file with the T of all of them."""
    from convattn.files.predictions import calibration_arrays

    labels, logits = overconfident(n=4000)
    probs = apply_temperature(logits, 1.0)
    stored = calibration_arrays(labels, probs)
    expected, temps = cross_fit_temperature(labels, probs)
    np.testing.assert_allclose(stored["temperatures"], temps)
    np.testing.assert_allclose(calibrated(probs, stored, np.arange(4000)), expected,
                               rtol=1e-9, atol=1e-12)
    outside = calibrated(probs[:5], stored)  # e.g. uploads: T fitted on every image
    t_all = fit_temperature(labels, logits_from_probs(probs))
    assert float(stored["temperature"]) == pytest.approx(t_all)
    np.testing.assert_allclose(outside, apply_temperature(logits_from_probs(probs[:5]), t_all),
                               rtol=1e-9)


def test_calibrating_a_file_that_is_not_predictions_is_one_sentence(tmp_path, capsys):
    from scripts.calibrate_predictions import main

    other = tmp_path / "other.npz"
    np.savez(other, something=np.arange(3))
    before = other.read_bytes()
    assert main([str(other)]) == 2
    assert capsys.readouterr().err == (f"error: {other} is not a predictions file written by "
                                       "convattn.evaluate (labels and probs); nothing was "
                                       "changed.\n")
    assert other.read_bytes() == before
