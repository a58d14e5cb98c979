"""Inspect's first run, done while the first browser is still loading the page.

``streamlit run app.py`` starts the server at once, but Streamlit runs app.py only when a
browser's websocket arrives, a second or more later; a cold Inspect then spent about two
seconds importing torch and the page's modules, loading the model and computing the
default image's analysis and attributions. ``lifespan`` (app.py hands it to ``st.App``)
starts ``warm`` on a thread of its own when the server starts: it imports what the
Inspect page imports and fills the very caches the sidebar and the page read
(``loaded_model.load``, ``sources``, ``loaded_model.analyse`` and ``attribution``), with
the same arguments, so the first run finds them there. Streamlit's caches take a lock per
key, so a run that asks for a value the preload is computing waits for it rather than
computing it twice; a run also waits until the preload's imports are done
(``wait_for_imports``: no module is seen half imported).

A preload that fails says nothing: it only skips what is left, and the page, computing
the same thing itself, says what is wrong in its own sentence.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.util
import logging
import threading
from collections.abc import AsyncIterator
from pathlib import Path

from appkit import allocator

_LOG = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]
INSPECT = ROOT / "app_pages" / "0_Inspect.py"
# Inspect's first run, as app_pages/0_Inspect.py draws it (its DEFAULT_METHODS): a method
# missing here is only computed by the page itself, a little later.
METHODS = ("saliency", "integrated_gradients", "gradcam")
STARTED = threading.Event()  # a preload thread was started in this process
IMPORTED = threading.Event()  # and it has imported what it imports (or failed to)
RAN_FIRST = threading.Event()  # a script run had to wait for those imports
DRAWN = threading.Event()  # and a browser has since drawn that first page


def page_imports(page: Path = INSPECT) -> list[str]:
    """The modules a page file imports at its top level (``from appkit import lens`` gives
    ``appkit.lens``)."""
    names: list[str] = []
    for node in ast.parse(page.read_text()).body:
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                full = f"{node.module}.{a.name}"
                names.append(full if _is_module(full) else node.module)
    return list(dict.fromkeys(names))


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def warm() -> list[str]:
    """Do Inspect's first run's work into the shared caches; returns the steps done (for
    the log and the tests). Never raises: a failed step ends the preload there."""
    done: list[str] = []
    try:
        try:
            _import_all()
            done.append("imports")
        finally:
            IMPORTED.set()
        from appkit import loaded_model

        options = loaded_model.checkpoint_options()
        if not options:
            return done
        loaded = loaded_model.load(options[0])
        done.append("model")
        pixels = _default_images(loaded).images[0]
        result = loaded_model.analyse(loaded, pixels)
        done.append("analysis")
        if result.modules:  # the lens's data for the module and view Inspect opens on
            from appkit import lens

            lens.heavy_data(pixels, result.view(next(iter(result.modules))), True)
            done.append("lens")
        if RAN_FIRST.is_set():  # a browser came before the imports were done: its page
            return done         # computes its own attributions, after its lens is sent
        importlib.import_module("captum.attr")
        from convattn.explain.attribution import AttributionConfig, gradcam_layers

        target = int(result.probs.argmax())
        cfg = AttributionConfig(gradcam_layer=list(gradcam_layers(loaded.model))[-1])
        for method in METHODS:
            loaded_model.attribution(loaded, pixels, target, method, cfg)
        done.append("attributions")
    except Exception as e:  # noqa: BLE001  (the page computes it again and says why)
        _LOG.debug("preload stopped after %s: %s", done, e)
    return done


def _import_all() -> None:
    # Inspect's first screen draws no plotly chart (appkit.bars), so plotly is left out.
    # The page's own imports, read from its file, and nothing else: no run waits for
    # Captum (with matplotlib's pyplot, a second here), imported with the attributions.
    # Neither matplotlib (appkit.pictures keeps its colour tables) nor pandas (the lens
    # sends bytes, appkit.lens.wire.pack) is imported on the way.
    for name in page_imports():
        importlib.import_module(name)


def wait_for_imports(timeout: float = 120.0) -> None:
    """Hold a script run until a running preload has imported its modules. Some libraries
    look a module up in ``sys.modules`` without importing it (plotly and Streamlit look
    for pandas so), and one that another thread is importing is there half made: the
    first run drew Inspect with an AttributeError from plotly until it waited here. No
    wait where no preload runs (AppTest, a bare run). A run that had to wait leaves the
    attributions to its page, which computes them once its browser has drawn it
    (``first_page_drawing``): computed by the preload at once, they would take the cores
    from the browser drawing that page's lens."""
    if STARTED.is_set() and not IMPORTED.is_set():
        RAN_FIRST.set()
        IMPORTED.wait(timeout)


def first_page_drawing() -> bool:
    """Whether a browser is drawing the server's first page, which came before the
    preload could compute its attributions. That page computes them only on its next run
    (``browser_drawn`` after its timer, in Inspect): computed at once, they took the cores
    from the browser drawing the lens, about a second later on screen."""
    return STARTED.is_set() and RAN_FIRST.is_set() and not DRAWN.is_set()


def browser_drawn() -> None:
    """A browser has drawn the first page (its timer ran): no later run waits."""
    DRAWN.set()


def _default_images(loaded):
    """The image set the sidebar starts on, from the cache it reads it from."""
    from appkit import serving, sources

    size, grey = loaded.info.image_size, loaded.info.channels == 1
    folder = sources.default_data_folder()
    if folder:
        real = serving.roots().check(folder)
        if not sources.is_new_folder(str(real)):
            return sources.load_test_set(str(real), size, grey).onto(loaded.classes)
    return sources.load_sample(None, size, grey).onto(loaded.classes)


THREAD = "convattn-preload"


class _QuietPreload(logging.Filter):
    """Streamlit warns of a "missing ScriptRunContext" whenever a thread outside a
    session touches its caches: the preload does so by design, and the operator's log
    should not tell them to ignore a warning."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.threadName == THREAD and "ScriptRunContext" in record.getMessage())


def start() -> threading.Thread:
    """``warm`` on a daemon thread, started now."""
    STARTED.set()
    logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").addFilter(
        _QuietPreload())
    thread = threading.Thread(target=warm, name=THREAD, daemon=True)
    thread.start()
    return thread


@contextlib.asynccontextmanager
async def lifespan(_app: object) -> AsyncIterator[None]:
    """``st.App``'s start and stop: freed arrays go back to the system
    (``appkit.allocator``), and the preload starts with the server, which does not wait
    for it."""
    allocator.return_big_blocks()
    start()
    yield
