"""The server-start preload (appkit.preload): it fills the very caches Inspect's first run
reads, a preload that fails leaves the page its own sentence, and Inspect's first run
keeps the heavy libraries it does not need out."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pagedata
import pytest
import streamlit as st
from apprun import APP, ROOT, open_page
from streamlit.testing.v1 import AppTest

from appkit import loaded_model, preload, sources
from convattn.readout import analysis
from convattn.readout import lens as lens_lib

# The caches are the process's: each test starts them empty.
pytestmark = pytest.mark.usefixtures("empty_caches")


@pytest.fixture
def empty_caches():
    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


def _count_calls(monkeypatch, module, name: str) -> list[int]:
    calls = [0]
    real = getattr(module, name)

    def counted(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def test_preload_fills_the_caches_inspect_reads(tmp_path, monkeypatch):
    path = pagedata.checkpoint(tmp_path / "tiny.pt", "seed")
    monkeypatch.setenv("CONVATTN_CHECKPOINT", str(path))
    monkeypatch.setenv("CONVATTN_DATA", "")
    assert preload.warm() == ["imports", "model", "analysis", "lens", "attributions"]

    # The preload's answer is the library's for the sidebar's first image.
    loaded = loaded_model.load(str(path))
    pixels = sources.load_sample(None, loaded.info.image_size).images[0]
    expected = analysis.analyse(loaded.model, pixels, loaded.info.mean, loaded.info.std)
    np.testing.assert_allclose(loaded_model.analyse(loaded, pixels).probs, expected.probs,
                               rtol=1e-5, atol=1e-7)

    # Inspect's first run then computes none of it again.
    analysed = _count_calls(monkeypatch, analysis, "analyse")
    attributed = _count_calls(monkeypatch, analysis, "attribution_map")
    projected = _count_calls(monkeypatch, lens_lib, "qk_space")  # the lens's heavy data
    at = open_page()
    assert not at.exception
    assert [e.value for e in at.error] == []
    assert analysed[0] == 0 and attributed[0] == 0 and projected[0] == 0
    top = loaded.classes[int(expected.probs.argmax())]  # drawn from the cached analysis
    assert any(f"**{top}**" in m.value for m in at.markdown)


def test_a_failing_preload_leaves_the_page_its_own_sentence(tmp_path, monkeypatch):
    broken = tmp_path / "broken.pt"
    broken.write_text("not a checkpoint")
    monkeypatch.setenv("CONVATTN_CHECKPOINT", str(broken))
    monkeypatch.setenv("CONVATTN_DATA", "")
    without = [e.value for e in open_page().error]
    st.cache_data.clear()
    st.cache_resource.clear()
    assert preload.warm() == ["imports"]  # stops at the model, says nothing
    at = open_page()
    assert not at.exception
    said = [e.value for e in at.error]
    assert said == without and any("broken" in s for s in said)


def test_the_first_page_computes_its_attributions_once_the_browser_has_drawn_it(
        tmp_path, monkeypatch):
    path = pagedata.checkpoint(tmp_path / "tiny.pt", "seed")
    monkeypatch.setenv("CONVATTN_CHECKPOINT", str(path))
    monkeypatch.setenv("CONVATTN_DATA", "")
    # A server whose first browser came before the preload's imports were done.
    for name, done in (("STARTED", True), ("IMPORTED", True), ("RAN_FIRST", True),
                       ("DRAWN", False)):
        event = __import__("threading").Event()
        if done:
            event.set()
        monkeypatch.setattr(preload, name, event)
    attributed = _count_calls(monkeypatch, analysis, "attribution_map")
    at = open_page()
    assert not at.exception and preload.first_page_drawing()
    assert attributed[0] == 0  # the first run leaves the cores to the browser
    assert "Computing the attributions once the page is drawn…" in [c.value for c in at.caption]
    assert not any(m.value.startswith("Explaining the score") for m in at.markdown)

    at.run()  # the next run (the fragment's timer, once the browser is idle) computes them
    assert not at.exception and not preload.first_page_drawing()
    assert attributed[0] == len(preload.METHODS)
    assert any(m.value.startswith("Explaining the score") for m in at.markdown)
    assert "Computing the attributions once the page is drawn…" not in [
        c.value for c in at.caption]

    st.cache_data.clear()  # a later session computes its attributions in its first run
    again = open_page()
    assert attributed[0] == 2 * len(preload.METHODS)
    assert any(m.value.startswith("Explaining the score") for m in again.markdown)


def test_preload_follows_the_inspect_page():
    names = preload.page_imports()
    assert {"appkit.lens", "appkit.loaded_model", "convattn.readout.analysis"} <= set(names)
    page = ast.parse(Path(preload.INSPECT).read_text())
    defaults = next(ast.literal_eval(n.value) for n in page.body if isinstance(n, ast.Assign)
                    and getattr(n.targets[0], "id", "") == "DEFAULT_METHODS")
    assert list(preload.METHODS) == defaults


def test_app_py_serves_with_the_preload_and_routes_as_a_script():
    source = Path(APP).read_text()
    namespace: dict = {"__name__": "app"}  # what `streamlit run` imports to find the server
    exec(compile(source, APP, "exec"), namespace)
    assert type(namespace["app"]).__name__ == "App"
    assert "page" not in namespace  # the router ran only as Streamlit's script
    assert AppTest.from_file(APP).run().title  # as __main__, it routes to Inspect


HEAVY = ("torch", "matplotlib", "captum", "pandas", "pyarrow", "plotly", "cleanlab",
         "sklearn", "scipy")


def _first_run_imports(warm: bool) -> tuple[list[str], list[str]]:
    """In a fresh process: the heavy packages (``HEAVY``) the preload imported, and those
    that Inspect's first run imported first after it (or without it). (A few small
    modules of a package already there, such as a plotly chart's parts, may follow.)"""
    script = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'tests')!r}]
        from appkit import preload
        from apprun import open_page
        heavy = lambda: sorted({{m for m in sys.modules if m.split(".")[0] in {HEAVY!r}}})
        before = heavy()
        {"preload.warm()" if warm else ""}
        warmed = heavy()
        at = open_page()
        assert not at.exception, at.exception
        print(sorted({{m.split(".")[0] for m in set(warmed) - set(before)}}))
        tops = lambda names: {{m.split(".")[0] for m in names}}
        print(sorted(tops(heavy()) - tops(warmed)))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=ROOT, env={"CONVATTN_DATA": "", "PATH": "/usr/bin:/bin"},
                         check=True, timeout=300)
    preloaded, run = out.stdout.strip().splitlines()[-2:]
    return ast.literal_eval(preloaded), ast.literal_eval(run)


def test_inspect_first_run_after_the_preload_imports_nothing_heavy():
    preloaded, run = _first_run_imports(warm=True)
    # pandas stays out: the lens sends bytes, which Streamlit does not search for frames.
    assert {"torch", "captum"} <= set(preloaded) and "pandas" not in preloaded
    assert run == []


def test_what_the_first_run_waits_for_is_torch_alone():
    # The router waits for the preload's imports (preload.wait_for_imports): neither
    # matplotlib (appkit.pictures' stored colour tables) nor pandas nor captum is there.
    script = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(ROOT)!r}]
        import streamlit
        before = {{m.split(".")[0] for m in sys.modules}}
        from appkit import preload
        preload._import_all()
        print(sorted({{m.split(".")[0] for m in sys.modules}} - before & set({HEAVY!r})))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=ROOT, env={"PATH": "/usr/bin:/bin"}, check=True, timeout=300)
    assert ast.literal_eval(out.stdout.strip().splitlines()[-1]) == ["torch"]


def test_inspect_first_run_leaves_label_libraries_out():
    _, run = _first_run_imports(warm=False)
    # captum imports matplotlib's pyplot (its visualisation); label issues are another page's.
    assert "torch" in run and not {"cleanlab", "sklearn", "scipy"} & set(run)


def test_the_operators_log_is_spared_streamlits_warning_about_the_preload_thread():
    import logging

    def record(thread: str, message: str) -> logging.LogRecord:
        r = logging.LogRecord("streamlit", logging.WARNING, __file__, 1, message, (), None)
        r.threadName = thread
        return r

    quiet = preload._QuietPreload()
    said = "Thread '%s': missing ScriptRunContext! This warning can be ignored"
    assert not quiet.filter(record(preload.THREAD, said))
    assert quiet.filter(record("ScriptRunner.scriptThread", said))  # a session's: kept
    assert quiet.filter(record(preload.THREAD, "something else went wrong"))
