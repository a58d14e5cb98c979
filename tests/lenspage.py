"""The attention lens alone in Chromium: ``lens.js`` and ``lens.css`` in a static page,
mounted with a payload as Streamlit mounts it (``data``, ``parentElement``,
``setStateValue``), for the browser tests and ``bench/bench_scale.py``. No server: what
is measured is the lens itself."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LENS = ROOT / "appkit" / "lens"


def html() -> str:
    js, css = (LENS / "lens.js").read_text(), (LENS / "lens.css").read_text()
    return f"""<!doctype html><html><head><meta charset="utf-8"><style>{css}</style></head>
<body style="margin:0"><div id="host"></div><script type="module">
const url = URL.createObjectURL(new Blob([{json.dumps(js)}], {{type: "text/javascript"}}));
const mod = await import(url);
window.__state = [];
window.__mount = (data) => {{
  mod.default({{data, parentElement: document.getElementById("host"),
               setStateValue: (k, v) => window.__state.push([k, v])}});
  return true;
}};
window.__ready = true;
</script></body></html>"""


def open_lens(browser, data: dict | bytes, viewport: tuple[int, int] = (900, 900)):
    """A new page holding one lens mounted with ``data``; returns (page, canvas). Bytes
    (``wire.pack``) arrive as a Uint8Array, as Streamlit hands the component bytes."""
    page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
    page.set_content(html())
    page.wait_for_function("() => window.__ready === true", timeout=30_000)
    if isinstance(data, bytes):
        page.evaluate("b => window.__mount(new Uint8Array(b))", list(data))
    else:
        page.evaluate("d => window.__mount(d)", data)
    canvas = page.locator("canvas.lens-main")
    canvas.wait_for(timeout=30_000)
    return page, canvas


def point(canvas, row: int, col: int, image: tuple[int, int]) -> tuple[float, float]:
    """Screen (x, y) of the centre of input pixel (row, col) on the lens."""
    box = canvas.bounding_box()
    h, w = image
    return (box["x"] + (col + 0.5) * box["width"] / w,
            box["y"] + (row + 0.5) * box["height"] / h)


def hover(page, canvas, row: int, col: int, image: tuple[int, int]) -> None:
    page.mouse.move(*point(canvas, row, col, image))
    page.wait_for_function("([c, p]) => c.dataset.pixel === p",
                           arg=[canvas.element_handle(), f"{row},{col}"], timeout=10_000)
