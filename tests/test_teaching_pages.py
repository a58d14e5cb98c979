"""The Learn, Attention statistics, Faithfulness and Sanity check pages through AppTest,
on checkpoints made here; the numbers shown are checked against the library."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from apprun import open_page
from streamlit.testing.v1 import AppTest

from convattn.explain.faithfulness import FaithfulnessConfig, auc_table, evaluate
from convattn.explain.verdict import against_random, paired
from convattn.files.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from convattn.files.data import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD
from convattn.files.shipped import sample_path
from convattn.nn.models import create_model
from convattn.readout import analysis
from convattn.readout.attention import module_inputs
from convattn.readout.stats import attention_statistics, balanced_order, summary
from convattn.readout.stepthrough import predict_with_gamma, step_through

LEARN = "2_Learn.py"
STATS = "6_Attention_statistics.py"
FAITH = "8_Faithfulness.py"
SANITY = "9_Sanity_check.py"


def _checkpoint(path: Path, arch: str = "seed", **config) -> Path:
    torch.manual_seed(0)
    model = create_model(arch, **config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.fill_(0.5)
    ckpt = make_checkpoint(model, arch, config, list(CIFAR10_CLASSES), CIFAR10_MEAN,
                           CIFAR10_STD, metrics={"test_accuracy": 12.5})
    return save_checkpoint(ckpt, path)


def _use(path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("CONVATTN_CHECKPOINT", str(path))
    monkeypatch.setenv("CONVATTN_CHECKPOINTS", str(path.parent / "none"))
    monkeypatch.delenv("CONVATTN_DATA", raising=False)
    return path


@pytest.fixture
def seed_ckpt(tmp_path, monkeypatch) -> Path:
    return _use(_checkpoint(tmp_path / "tiny-seed.pt"), monkeypatch)


def _run(page: str, **state) -> AppTest:
    at = open_page(page, timeout=180, **state)
    assert not at.exception, [e.message for e in at.exception]
    return at


def _text(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [e.value for e in (*at.success, *at.info, *at.warning)]
    return "\n".join(parts)


def _number(at: AppTest, label: str):
    (widget,) = [n for n in at.number_input if n.label.startswith(label)]
    return widget


def _sample(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with np.load(sample_path()) as f:
        images, labels = f["images"], f["labels"]
    idx = balanced_order(labels)[:n]
    return idx, images[idx], labels[idx]


def _inputs(images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    return (x - torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)) / torch.tensor(
        CIFAR10_STD).view(1, 3, 1, 1)


def test_learn_steps_through_the_clicked_query_with_the_modules_numbers(seed_ckpt):
    at = _run(LEARN)
    assert not at.error
    text = _text(at)
    model, info = load_checkpoint(seed_ckpt)
    pixels = np.load(sample_path())["images"][0]
    x = module_inputs(model, analysis.normalise(pixels, info["mean"], info["std"]))
    s = step_through(model.attention, x["attention"], 16 * 32 + 16)
    best = divmod(int(np.argmax(s.scores)), 32)
    assert f"The best match is the key at row {best[0]}, column {best[1]}" in text
    assert f"= {s.scores.max():.2f}" in " ".join(e.value for e in at.get("latex"))
    diff = float(re.search(r"largest difference from the network's forward pass is "
                           r"([0-9.e+-]+)", text).group(1))
    assert diff < 1e-4
    assert len(at.get("latex")) >= 6  # a formula for every step
    # A new query is a new step-through.
    _number(at, "Query row").set_value(3)
    _number(at, "Query column").set_value(30)
    at.run()
    s2 = step_through(model.attention, x["attention"], 3 * 32 + 30)
    best2 = divmod(int(np.argmax(s2.scores)), 32)
    assert f"The best match is the key at row {best2[0]}, column {best2[1]}" in _text(at)
    # Temperature: T = 0.1 concentrates the weights on fewer positions.
    at.select_slider(key="temperature").set_value(0.1).run()
    weights = re.search(r"At T = 0.1 the largest weight is \*\*([0-9.]+)\*\*", _text(at))
    assert float(weights.group(1)) > s2.attention.max()
    # What if gamma = 0: the prediction shown is the library's rerun on a copy.
    at.slider(key="what_if_gamma_attention_0").set_value(0.0).run()
    assert not at.exception
    probs = predict_with_gamma(model, analysis.normalise(pixels, info["mean"], info["std"]),
                               {"attention": 0.0})[0]
    top = int(probs.argmax())
    assert "With γ = 0.000 the network" in _text(at)
    assert f"**{CIFAR10_CLASSES[top]}** ({float(probs[top]):.1%}" in _text(at)
    at.button(key="reset_what_if_attention").click().run()
    # A new slider (new key), so the browser's slider moves back too.
    assert at.slider(key="what_if_gamma_attention_1").value == pytest.approx(0.5)  # learned
    assert "With γ = 0.500 the network still predicts" in _text(at)


def test_learn_on_a_two_module_model_and_on_one_without_attention(tmp_path, monkeypatch):
    _use(_checkpoint(tmp_path / "r9.pt", "resnet9-attn", width=8), monkeypatch)
    at = _run(LEARN, teaching_module="attn2")
    assert at.selectbox(key="teaching_module__widget").options == [
        "attn1 (16x16 positions)", "attn2 (8x8 positions)"]
    assert "works on a 8x8 grid: N = 64 positions" in _text(at)
    assert "pixel (16, 16) is in cell (4, 4)" in _text(at)
    _use(_checkpoint(tmp_path / "se.pt", "seed-se"), monkeypatch)
    at = _run(LEARN)
    assert any(i.value.startswith("Squeeze-and-excitation re-weights whole channels")
               for i in at.info)


SHIPPED_R9 = Path(__file__).resolve().parents[1] / "checkpoints" / "resnet9-attn.pt"


@pytest.mark.skipif(not SHIPPED_R9.exists(), reason="checkpoints/resnet9-attn.pt is not here")
def test_learn_says_when_every_key_scores_the_same(monkeypatch):
    _use(SHIPPED_R9, monkeypatch)
    at = _run(LEARN, teaching_module="attn2")
    model, info = load_checkpoint(SHIPPED_R9)
    pixels = np.load(sample_path())["images"][0]
    x = module_inputs(model, analysis.normalise(pixels, info["mean"], info["std"]))
    s = step_through(model.attn2, x["attn2"], 4 * 8 + 4)  # pixel (16, 16) is cell (4, 4)
    assert np.ptp(s.scores) < 1e-3  # the shipped attn2 scores every key alike
    assert "Every key gets the same score here" in _text(at)
    assert "The best match is the key" not in _text(at)


def test_statistics_page_shows_the_librarys_numbers_per_group(seed_ckpt):
    at = _run(STATS, stats_images=25)
    assert not at.error
    model, _ = load_checkpoint(seed_ckpt)
    idx, images, labels = _sample(25)
    stats = attention_statistics(model, _inputs(images), torch.from_numpy(labels))
    m = summary(stats.modules["attention"])
    values = {metric.label: metric.value for metric in at.metric}
    assert values["Entropy per query"] == f"{m['entropy']:.2f} nats"
    assert values["Mean attention distance"] == f"{m['distance']:.1f} px"
    assert values["Row similarity"] == f"{m['similarity']:.3f}"
    table = at.dataframe[0].value
    wrong = int((~stats.correct).sum())
    groups = ["all images"] + (["correct"] if wrong < 25 else []) + (
        ["misclassified"] if wrong else [])
    assert table["group"].tolist()[:len(groups)] == groups
    assert "25 test images" in _text(at) and f"{wrong} of them misclassified" in _text(at)
    row = table[table["group"] == "class cat"].iloc[0]
    cat = stats.select(stats.labels == 3).modules["attention"]
    assert row["images"] == 3 and row["distance (px)"] == round(float(cat.distance.mean()), 2)
    # The maps follow the group chosen.
    at.selectbox(key="stats_map_group").set_value("class cat").run()
    assert "Maps over 3 images (class cat)" in _text(at)


def test_statistics_without_attention_says_so(tmp_path, monkeypatch):
    _use(_checkpoint(tmp_path / "noattn.pt", "seed-noattn"), monkeypatch)
    at = _run(STATS, stats_images=25)
    assert any("no convolutional self-attention module" in i.value for i in at.info)


def test_faithfulness_page_tables_match_the_library(seed_ckpt):
    at = _run(FAITH, faith_images=4, faith_steps=4, faith_methods=["saliency", "gradcam"])
    # No checks file: the page says what a live run costs and waits for the button.
    assert not at.dataframe and "4 images to test live" in _text(at)
    at.button(key="faith_run").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error
    model, _ = load_checkpoint(seed_ckpt)
    idx, images, labels = _sample(4)
    result = evaluate(model, _inputs(images), torch.from_numpy(labels),
                      ["saliency", "gradcam"], idx, FaithfulnessConfig(steps=4))
    expect = {r["ranking"]: r for r in auc_table(result)}
    table = at.dataframe[0].value.set_index("ranking")
    assert list(table.index) == ["Saliency", "Grad-CAM", "attention received (attention)",
                                 "random order"]
    for shown, name in [("Saliency", "saliency"), ("random order", "random order"),
                        ("attention received (attention)", "attention received (attention)")]:
        assert table.loc[shown, "deletion AUC ↓"] == round(expect[name]["deletion_auc"], 3)
        assert table.loc[shown, "insertion AUC ↑"] == round(expect[name]["insertion_auc"], 3)
    (verdict,) = [m.value for m in at.markdown if m.value.startswith("**Verdict on these 4")]
    # Every verdict names both of its sides: the ranking and what it is measured against.
    said = {"better": "beats", "worse": "does **worse** than",
            "undecided": "cannot be told from"}
    names = {"saliency": "Saliency", "gradcam": "Grad-CAM"}

    def part(test: str, r: dict, said: dict) -> str:
        v = r[test]
        more = (f", about {v['needed']:,.0f} images would tell"
                if v["verdict"] == "undecided" and np.isfinite(v["needed"]) else "")
        return (f"on {test}, **{names.get(r['ranking'], r['ranking'])}** {said[v['verdict']]} "
                f"**{names.get(r['reference'], r['reference'])}** "
                f"({v['margin']:+.3f} ± {v['half_width']:.3f}{more})")

    for r in against_random(result):
        assert (f"- {part('deletion', r, said)}; {part('insertion', r, said)}") in verdict
    # Attention is scored like an attribution, against each method, both sides named.
    (versus,) = [m.value for m in at.markdown if m.value.startswith("**Does attention")]
    versus_said = {"better": "explains it better than", "worse": "explains it **worse** than",
                   "undecided": "cannot be told from"}
    for m in ("saliency", "gradcam"):
        (r,) = paired(result, m, ["attention received (attention)"], tests=4)
        assert (f"- {part('deletion', r, versus_said)}; "
                f"{part('insertion', r, versus_said)}") in versus
    assert "computed here (no tiny-seed.checks.npz beside" in _text(at).replace("\\", "")
    agreement = at.dataframe[1].value
    first = agreement[(agreement["attribution"] == "Saliency")
                      & (agreement["images"] == "all images")].iloc[0]
    spearman = result.agreement[("attention", "saliency")]["spearman"]
    assert first["rank correlation"] == round(float(np.nanmean(spearman)), 3)
    # The misclassified view of the AUC table only counts those images.
    at.radio(key="faith_group").set_value("misclassified").run()
    wrong = int((~result.correct).sum())
    if wrong:
        assert at.dataframe[0].value["images"].tolist()[0] == wrong
    else:
        assert any("No misclassified image" in i.value for i in at.info)


def _quick(path: Path) -> None:
    """Record a fast server, so that live work starts without its button however busy
    the machine running the tests is (the button has its own test)."""
    from appkit import loaded_model, work_speed

    work_speed.record(loaded_model.load(str(path)), seconds=1e-6, passes=1000)


def test_faithfulness_page_stops_once_every_verdict_is_settled(seed_ckpt, monkeypatch):
    from convattn.explain import sequential

    # A tiny random network settles nothing; pretend every look settles, as a clear
    # effect does (the stop rule itself is tested in test_sequential.py).
    levels = []
    monkeypatch.setattr(sequential, "settled", lambda r, level: levels.append(level) or True)
    at = _run(FAITH, faith_images=64, faith_steps=4, faith_methods=["saliency"])
    at.button(key="faith_run").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert "Every verdict was settled after 32 of the 64 images" in _text(at)
    assert levels == [pytest.approx(0.005)]  # one interim look, the whole interim level
    (verdict,) = [m.value for m in at.markdown if m.value.startswith("**Verdict on these")]
    assert verdict.startswith("**Verdict on these 32 images**") and "99.5%" in verdict
    table = at.dataframe[0].value
    assert table["images"].tolist()[0] == 32
    # The rest on request, in one click; its verdicts at what the plan leaves for the end.
    at.button(key="faith_all").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.dataframe[0].value["images"].tolist()[0] == 64
    (verdict,) = [m.value for m in at.markdown if m.value.startswith("**Verdict on these")]
    assert verdict.startswith("**Verdict on these 64 images**") and "95.5%" in verdict
    assert "Every verdict was settled" not in _text(at)


def test_sanity_page_randomises_from_the_top_and_explains_attention(seed_ckpt):
    _quick(seed_ckpt)
    at = _run(SANITY, sanity_methods=["saliency", "gradcam"])
    assert not at.error
    text = _text(at)
    steps = ["trained model", "fc", "conv3, bn3", "conv2, bn2", "attention", "conv1, bn1"]
    assert at.dataframe[0].value["modules re-initialised"].tolist() == steps
    for i, step in enumerate(["trained", "fc", "conv3", "conv2", "attention", "conv1"]):
        assert f"**{i}** {step}" in text
    assert "**attention row (attention)**" in text
    (row_note,) = [i.value for i in at.info if "Attention row of attention" in i.value]
    assert "similarity 1.00 until step 4" in row_note
    assert any("Saliency" in e.value for e in (*at.success, *at.warning))
    at.radio(key="sanity_metric").set_value("ssim").run()
    assert not at.exception


def test_sanity_page_without_attention_checks_attributions_only(tmp_path, monkeypatch):
    _quick(_use(_checkpoint(tmp_path / "se.pt", "seed-se"), monkeypatch))
    at = _run(SANITY, sanity_methods=["saliency"])
    assert not at.error
    assert any("only attributions are checked" in c.value for c in at.caption)
    assert "**1** fc" in _text(at) and "attention row" not in _text(at)


def test_faithfulness_and_sanity_read_a_matching_checks_file(seed_ckpt):
    from convattn.cli.checks import main as checks_main
    from convattn.explain.checks import checks_path, load_checks

    assert checks_main([str(seed_ckpt), "--images", "4", "--sanity-images", "2",
                        "--no-progress"]) == 0
    stored = load_checks(checks_path(seed_ckpt))
    at = _run(FAITH)  # the defaults: the file's settings and its 4 images
    assert "Results read from tiny-seed.checks.npz" in _text(at).replace("\\", "")
    table = at.dataframe[0].value.set_index("ranking")
    expect = {r["ranking"]: r for r in auc_table(stored.faithfulness)}
    assert list(table.index) == ["Integrated Gradients", "Grad-CAM",
                                 "attention received (attention)", "random order"]
    assert table.loc["Grad-CAM", "deletion AUC ↓"] == round(expect["gradcam"]["deletion_auc"], 3)
    # Settings the file does not hold are computed live, once asked: the page first says
    # how long that takes, from a speed measured on this server, and starts nothing.
    at.radio(key="faith_baseline").set_value("blur").run()
    text = _text(at)
    assert "4 images to test live" in text and "the checks file holds other settings" in text
    assert re.search(r"take up to \*\*(a few seconds|about \d+ (s|min))\*\* here", text)
    assert "computed here" not in text and not at.dataframe
    (button,) = [b for b in at.button if b.key == "faith_run"]
    assert button.label.startswith("Test 4 images (")
    button.click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert "computed here (the checks file holds other settings" in _text(at)
    # Kept for every session: the same settings again need no button.
    again = _run(FAITH, faith_baseline="blur")
    assert "computed here" in _text(again) and "to test live" not in _text(again)
    at = _run(SANITY)
    assert "Over 2 images of the set" in [h.value for h in at.subheader]
    assert "Mean ± 2 standard errors over the images" in _text(at)
    got = [i.value for i in at.info if "Attention row of attention" in i.value]
    assert got and "similarity 1.00 until step 4" in got[0]
    spearman = stored.example.maps["saliency"]
    assert spearman.shape == (6, 32, 32)


def test_a_live_runs_time_is_estimated_from_the_speed_measured_here(seed_ckpt):
    from appkit import loaded_model, work_speed
    from convattn.explain.attribution import AttributionConfig

    cfg, ig16 = FaithfulnessConfig(), AttributionConfig(ig_steps=16)
    # Passes per image, by hand: the prediction, which is also the curves' first point,
    # and the emptied image (2); 4 rankings (IG, Grad-CAM, attention, random) x 2 curves
    # x 7 inner steps (56); the captured forward for attention (2); IG 16 x 3 (48);
    # Grad-CAM 3.
    assert work_speed.faithfulness_passes(["integrated_gradients", "gradcam"], cfg, ig16,
                                          1) == 2 + 56 + 2 + 48 + 3
    assert work_speed.faithfulness_passes(["saliency"], FaithfulnessConfig(steps=4), ig16,
                                          0) == 2 + 2 * 2 * 3 + 3
    assert work_speed.faithfulness_passes(["occlusion"], FaithfulnessConfig(steps=1), ig16,
                                          0) == 2 + 15 * 15 + 1  # 4 px windows, stride 2
    assert [work_speed.duration(s) for s in (5, 42, 119, 7200)] == [
        "a few seconds", "about 40 s", "about 2 min", "about 2.0 h"]
    loaded = loaded_model.load(str(seed_ckpt))
    methods = ["integrated_gradients", "gradcam"]
    first = work_speed.faithfulness_estimate(loaded, 4, methods, cfg, ig16)
    assert first.measured.startswith("from the timing of a batch") and first.seconds > 0
    # Once a run has been timed here, its seconds per pass make the estimate.
    work_speed.record(loaded, seconds=10.0, passes=1000)
    est = work_speed.faithfulness_estimate(loaded, 4, methods, cfg, ig16)
    assert est.measured == "measured by the earlier runs on this server"
    assert est.seconds == pytest.approx(4 * 111 * 0.01)
    assert est.per_second == pytest.approx(4 / 4.44)
    # The sanity check: 6 models (trained, 5 randomised) x (prediction, attention, 2
    # methods x 3), one image at a quarter of the batched speed.
    est = work_speed.sanity_estimate(loaded, 1, ["saliency", "gradcam"], 6, True)
    assert est.seconds == pytest.approx(6 * 8 * 0.01 * 4)
    assert work_speed.sanity_estimate(loaded, 10, ["saliency"], 6, False).seconds == (
        pytest.approx(10 * 6 * 4 * 0.01))


def test_sanity_page_first_shows_the_steps_its_verdicts_read(seed_ckpt):
    from appkit import loaded_model, work_speed

    # 0.03 s a pass: all 6 steps take 3.6 s (over the 3 s that need a click), the 4 the
    # verdicts read (trained, fc, attention, conv1) 2.4 s: those come at once.
    work_speed.record(loaded_model.load(str(seed_ckpt)), seconds=30.0, passes=1000)
    at = _run(SANITY, sanity_methods=["saliency"])
    assert not [b for b in at.button if b.key == "sanity_go_example"]
    assert "Maps after 4 of the 6 steps" in _text(at)
    assert [c.value for c in at.caption].count("on request") == 4  # 2 steps x 2 rows
    (row_note,) = [i.value for i in at.info if "Attention row of attention" in i.value]
    assert "similarity 1.00 until step 4" in row_note
    at.button(key="sanity_all_steps").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert "on request" not in [c.value for c in at.caption]
    assert not [b for b in at.button if b.key == "sanity_go_example"]
    assert "Maps after" not in _text(at)


def test_sanity_page_asks_before_slow_live_work_and_computes_on_the_click(seed_ckpt):
    from appkit import loaded_model, work_speed

    # A server where one pass takes a second: one image's randomisation is minutes.
    work_speed.record(loaded_model.load(str(seed_ckpt)), seconds=1000.0, passes=1000)
    at = _run(SANITY, sanity_methods=["saliency"], sanity_images=16)
    assert not at.dataframe and "The maps, step by step" not in [h.value for h in
                                                                  at.subheader]
    assert any("takes **about" in i.value for i in at.info)
    (button,) = [b for b in at.button if b.key == "sanity_go_example"]
    assert button.label.startswith("Randomise the layers (about ")
    button.click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.dataframe[0].value["modules re-initialised"].tolist()[0] == "trained model"
    # The 16 images' summary waits for its own button below the example.
    assert "Over 16 images of the set" not in [h.value for h in at.subheader]
    (button,) = [b for b in at.button if b.key == "sanity_go_summary"]
    button.click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert "Over 16 images of the set" in [h.value for h in at.subheader]
