"""The cascading model-randomisation check on tiny models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from concurrency import run_together

from convattn.explain.sanity import cascading_randomisation, randomisation_steps, ssim
from convattn.nn.models import create_model
from convattn.readout.attention import query_row


def _seed_model():
    model = create_model("seed").eval()
    with torch.no_grad():
        model.attention.gamma.fill_(0.5)
    return model


def test_steps_go_from_the_top_layer_down_with_their_norms():
    assert randomisation_steps(_seed_model()) == [
        ["fc"], ["conv3", "bn3"], ["conv2", "bn2"], ["attention"], ["conv1", "bn1"]]
    steps = randomisation_steps(create_model("resnet9-attn", width=8))
    assert steps[0] == ["fc"] and steps[-1] == ["prep.0", "prep.1"]
    assert ["attn2"] in steps and ["attn1"] in steps
    assert steps.index(["attn2"]) < steps.index(["attn1"])
    assert ["layer3.1.body.1.0", "layer3.1.body.1.1"] == steps[1]  # last residual conv + BN


def test_randomisation_changes_attributions_and_rows_only_below_them():
    model = _seed_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    image = torch.randn(1, 3, 32, 32)
    calls = []
    result = cascading_randomisation(model, image, ["saliency", "gradcam"],
                                     queries={"attention": 100},
                                     progress=lambda d, t: calls.append((d, t)))
    # The shared model is untouched.
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert calls[-1] == (6, 6) and len(calls) == 6
    assert result.steps == ["trained model", "fc", "conv3, bn3", "conv2, bn2", "attention",
                            "conv1, bn1"]
    with torch.no_grad():
        p = model(image).softmax(1)[0]
    assert result.target == int(p.argmax())
    assert result.probs[0] == pytest.approx(float(p.max()), rel=1e-5)
    assert result.maps["saliency"].shape == (6, 32, 32)
    # Step 0 is the trained model's own row and its similarity with itself is 1.
    row = query_row(model, image, "attention", 100)[0].view(32, 32)
    np.testing.assert_allclose(result.rows["attention"][0], row, atol=1e-6)
    for metric in ("spearman", "ssim", "topk"):
        assert result.map_similarity["saliency"][metric][0] == pytest.approx(1.0)
    # Layers above the attention module cannot change its rows: exactly the same
    # until the module itself is re-initialised (step 4), different after.
    rows = result.rows["attention"]
    for step in (1, 2, 3):
        np.testing.assert_array_equal(rows[step], rows[0])
    assert result.row_similarity["attention"]["spearman"][1:4].tolist() == [1.0, 1.0, 1.0]
    assert result.row_similarity["attention"]["spearman"][4] < 0.9
    # Saliency depends on every layer: it changes at the first step already.
    assert not np.allclose(result.maps["saliency"][1], result.maps["saliency"][0])
    assert result.map_similarity["saliency"]["spearman"][-1] < 0.9


def test_the_same_seed_gives_the_same_randomisation():
    model = _seed_model()
    image = torch.randn(1, 3, 32, 32)
    a, b, c = (cascading_randomisation(model, image, [], {"attention": 5}, seed=s)
               for s in (3, 3, 4))
    np.testing.assert_array_equal(a.rows["attention"], b.rows["attention"])
    np.testing.assert_array_equal(a.probs, b.probs)
    assert not np.array_equal(a.rows["attention"][4:], c.rows["attention"][4:])
    assert not np.array_equal(a.probs[1:], c.probs[1:])


def test_ssim_is_one_for_equal_maps_and_low_for_unrelated_ones():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(4, 32, 32, generator=g)
    np.testing.assert_allclose(ssim(a, a), 1.0, atol=1e-6)
    np.testing.assert_allclose(ssim(a, 3 * a + 2), 1.0, atol=1e-6)  # scaled to [0, 1] first
    assert ssim(a, torch.rand(4, 32, 32, generator=g)).max() < 0.3
    small = torch.rand(2, 4, 4, generator=g)  # maps smaller than the window
    np.testing.assert_allclose(ssim(small, small), 1.0, atol=1e-6)


def test_a_shared_model_serves_threads_at_once_unchanged():
    """Two sessions checking one cached model at the same moment get their own answers."""
    from concurrent.futures import ThreadPoolExecutor

    from convattn.explain.faithfulness import FaithfulnessConfig, evaluate
    from convattn.readout.stepthrough import predict_with_gamma

    model = _seed_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images = torch.randn(2, 3, 32, 32)
    labels = torch.tensor([0, 1])

    def sanity_job():
        return cascading_randomisation(model, images[:1], ["guided_backprop"],
                                       {"attention": 7}).maps["guided_backprop"]

    def faith_job():
        return evaluate(model, images, labels, ["gradcam"],
                        cfg=FaithfulnessConfig(steps=2)).curves["gradcam"].deletion

    def gamma_job():
        return predict_with_gamma(model, images, {"attention": 0.0}).numpy()

    jobs = [sanity_job, faith_job, gamma_job]
    alone = [job() for job in jobs]
    with ThreadPoolExecutor(3) as pool:
        together = [f.result() for f in [pool.submit(job) for job in jobs * 2]]
    for i, got in enumerate(together):
        np.testing.assert_allclose(got, alone[i % 3], rtol=1e-5, atol=1e-6)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not any(m._forward_hooks or m._backward_hooks for m in model.modules())


def test_tracing_a_hookable_copy_leaves_other_threads_forward_passes_alone():
    """torch.fx patches nn.Module for the whole process while it traces; another thread's
    forward pass during a trace must still run normally (it used to raise NameError)."""
    import threading

    from convattn.explain.attribution import hookable_copy

    traced, other = _seed_model(), _seed_model()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expect = other(x)
    done, errors, outputs = threading.Event(), [], []

    def trace() -> None:
        for _ in range(20):
            hookable_copy(traced)
        done.set()

    def forward() -> None:
        while True:
            try:
                with torch.no_grad():
                    outputs.append(other(x))
            except Exception as e:  # noqa: BLE001 (any failure is the bug)
                errors.append(repr(e))
            if done.is_set():
                return

    run_together(trace, forward)
    assert errors == []
    for y in outputs:
        torch.testing.assert_close(y, expect)


def test_randomisation_over_many_images_equals_one_image_at_a_time():
    from convattn.explain.sanity import randomisation_summary

    model = _seed_model()
    images = torch.randn(3, 3, 32, 32)
    calls = []
    summary = randomisation_summary(model, images, ["saliency", "gradcam"], np.arange(7, 10),
                                    chunk=2, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (6, 6)
    assert summary.steps[1] == "fc" and summary.indices.tolist() == [7, 8, 9]
    assert set(summary.similarity) == {"saliency", "gradcam", "attention received (attention)"}
    for i in range(3):
        one = cascading_randomisation(model, images[i:i + 1], ["saliency", "gradcam"])
        np.testing.assert_allclose(summary.probs[i], one.probs, rtol=1e-5)
        for method in ("saliency", "gradcam"):
            for metric in ("spearman", "ssim", "topk"):
                np.testing.assert_allclose(summary.similarity[method][metric][i],
                                           one.map_similarity[method][metric], atol=1e-5)
    # Attention received is the same until its module is re-initialised (step 4).
    received = summary.similarity["attention received (attention)"]["spearman"]
    np.testing.assert_allclose(received[:, :4], 1.0)
    assert (received[:, 4] < 0.9).all()


def test_the_first_steps_are_the_full_runs_at_those_steps():
    from convattn.explain.sanity import first_steps

    model = _seed_model()
    image = torch.randn(1, 3, 32, 32)
    queries = {"attention": 100}
    # Trained, fc alone, the attention module's own step (4) and the last (5).
    assert first_steps(model, queries) == [0, 1, 4, 5]
    assert first_steps(model) == [0, 1, 5]
    full = cascading_randomisation(model, image, ["saliency", "gradcam"], queries)
    part = cascading_randomisation(model, image, ["saliency", "gradcam"], queries,
                                   at=first_steps(model, queries))
    assert part.steps == full.steps and part.predicted == full.predicted
    np.testing.assert_allclose(part.probs, full.probs, rtol=1e-6)  # every step's
    assert [part.is_explained(i) for i in range(6)] == [True, True, False, False, True, True]
    for got, want in ((part.maps, full.maps), (part.rows, full.rows)):
        for k in want:
            np.testing.assert_allclose(got[k][[0, 1, 4, 5]], want[k][[0, 1, 4, 5]], atol=1e-6)
            assert np.isnan(got[k][[2, 3]]).all()
    for got, want in ((part.map_similarity, full.map_similarity),
                      (part.row_similarity, full.row_similarity)):
        for k in want:
            for metric, v in want[k].items():
                np.testing.assert_allclose(got[k][metric][[0, 1, 4, 5]], v[[0, 1, 4, 5]],
                                           atol=1e-6)
                assert np.isnan(got[k][metric][[2, 3]]).all()
    assert full.is_explained(3)
