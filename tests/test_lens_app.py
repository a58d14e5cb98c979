"""The attention lens on the pages, through AppTest (which runs no JavaScript): what the
pages send the component, and the predict-then-reveal page's scores and tally."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from apprun import lens_data, open_page

from appkit import guess
from convattn.files.checkpoint import load_checkpoint
from convattn.files.shipped import sample_path
from convattn.readout import analysis, lens
from convattn.readout.grid import Grid

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "checkpoints" / "seed.pt"
SAMPLE = sample_path()
PREDICT = "3_Predict_then_reveal.py"


@pytest.fixture
def seed(monkeypatch) -> Path:
    monkeypatch.setenv("CONVATTN_CHECKPOINT", str(SEED))
    monkeypatch.setenv("CONVATTN_CHECKPOINTS", str(ROOT / "none"))
    monkeypatch.setenv("CONVATTN_DATA", "")
    return SEED


def _view(index: int = 0) -> analysis.ModuleView:
    model, info = load_checkpoint(SEED)
    pixels = np.load(SAMPLE)["images"][index]
    return analysis.analyse(model.eval(), pixels, info.mean, info.std).modules["attention"]


def _lens_data(at) -> list[dict]:
    return lens_data(at)


def test_inspect_sends_queries_and_keys_once_and_the_pinned_query(seed):
    at = open_page(methods=[])
    assert not at.exception, [e.message for e in at.exception]
    stores = [d for d in _lens_data(at) if d.get("role") == "store"]
    (lens_data,) = [d for d in _lens_data(at) if "pinned" in d]
    (store,) = stores
    view = _view()
    q = np.frombuffer(base64.b64decode(store["q"]), "<f2").reshape(view.q.shape)
    np.testing.assert_array_equal(q, view.q.astype(np.float16))
    assert (store["grid"], store["heads"], store["dim"], store["head"]) == ([32, 32], 1, 64, -1)
    assert store["space"] is not None and lens_data["ref"] == store["ref"]
    assert lens_data["pinned"] == [16, 16] and lens_data["mode"] == "hover"
    # The per-click part is small; the queries and keys are in the store.
    assert len(json.dumps(lens_data)) < 500 < 250_000 < len(json.dumps(store))
    # The number inputs (the keyboard way) move the lens's pinned query too.
    (row,) = [n for n in at.number_input if n.label == "Query row"]
    row.set_value(3).run()
    (lens_data,) = [d for d in _lens_data(at) if "pinned" in d]
    assert lens_data["pinned"] == [3, 16]


def test_learn_and_compare_draw_the_lens(seed):
    for page in ("2_Learn.py", "1_Compare.py"):
        at = open_page(page, compare_method="saliency")
        assert not at.exception, (page, [e.message for e in at.exception])
        assert any("pinned" in d for d in _lens_data(at)), page
    # Compare's two lenses name stores drawn outside their fragment: a click sends neither
    # model's queries and keys again.
    stores = {d["ref"] for d in _lens_data(at) if d.get("role") == "store"}
    lenses = [d for d in _lens_data(at) if "pinned" in d]
    assert len(lenses) == 2 and {d["ref"] for d in lenses} <= stores
    assert all("q" not in d and len(json.dumps(d)) < 600 for d in lenses)


def test_predict_then_reveal_scores_a_guess_and_keeps_a_tally(seed):
    at = open_page(PREDICT)
    assert not at.exception, [e.message for e in at.exception]
    assert any("hidden until you click" in c.value for c in at.caption)
    (data,) = _lens_data(at)
    assert data["mode"] == "guess" and data["guess"] is None
    g = at.session_state[guess.GAME]
    assert len(g.series) == guess.SERIES and g.step == 0
    # A guess as the component reports it (AppTest runs no JavaScript).
    g.guesses[0] = (8, 9)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    (data,) = _lens_data(at)
    assert data["guess"] == [8, 9]
    # The score the page shows is the library's, by hand from the image's attention.
    view = _view(g.series[0])
    query = int(np.argmin(view.spread))
    assert data["pinned"] == list(Grid.of((32, 32)).centre_pixel(query))
    row = analysis.query_view(view, tuple(data["pinned"])).row
    score = lens.guess_score(row, (8, 9), 4)
    text = " ".join(m.value for m in at.markdown)
    assert f"**{score.mass:.1%}** of this query's attention lies within 4 pixels" in text
    assert "**1 of 5** guessed" in text
    assert f"| {score.ratio:.2f} |".replace(".", "\\.") in text  # the tally's table
    at.button(key="guess_next").click().run()
    assert at.session_state[guess.GAME].step == 1
    (data,) = _lens_data(at)
    assert data["guess"] is None  # a new lens, hidden again
    at.button(key="guess_new").click().run()
    g2 = at.session_state[guess.GAME]
    assert g2.round == 1 and not g2.guesses and g2.series != g.series


def test_predict_then_reveal_outlines_by_default_and_offers_a_log_scale(seed):
    at = open_page(PREDICT)
    assert not at.exception, [e.message for e in at.exception]
    (data,) = _lens_data(at)
    assert data["outlines"] == [0.5, 0.9] and data["log"] is False
    at.toggle(key="guess_log").set_value(True).run()
    at.toggle(key="guess_outlines").set_value(False).run()
    (data,) = _lens_data(at)
    assert data["outlines"] == [] and data["log"] is True
    # After the guess, the page says what the number on the circle is.
    at.session_state[guess.GAME].guesses[0] = (8, 9)
    at.run()
    assert any("the number on it is the share of the attention inside it" in c.value
               for c in at.caption)


def test_inspect_outlines_the_mass_when_asked_and_compare_leaves_the_pinned_query_to_its_caption(
        seed):
    at = open_page(methods=[])
    (data,) = [d for d in _lens_data(at) if "pinned" in d]
    assert data["outlines"] == [] and data["caption"]  # off by default; the caption says it
    at.toggle(key="attention_outlines").set_value(True).run()
    assert not at.exception, [e.message for e in at.exception]
    (data,) = [d for d in _lens_data(at) if "pinned" in d]
    assert data["outlines"] == [0.5, 0.9] and data["log"] is False
    at = open_page("1_Compare.py", compare_method="saliency")
    lenses = [d for d in _lens_data(at) if "pinned" in d]
    assert lenses and all(d["pinned_said"] for d in lenses)
