"""Start the app with its heaviest import warming up while Streamlit's server starts.

    python -m appkit.launch [streamlit run options]        (what `make app` runs)

``streamlit run app.py`` imports PyTorch only when the first browser session runs the
script, after the server has started and the browser has loaded the page: on a 2-core
laptop that is about 3 s spent one after the other. Here a thread imports PyTorch and the
library beside the server and the browser; the script's own imports then find them done
(Python makes a second importer wait for a module being imported, never import it twice).
``streamlit run app.py`` works as before, only slower to the first page.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

APP = Path(__file__).resolve().parents[1] / "app.py"


def _warm() -> None:
    import convattn.attention  # noqa: F401  (torch)
    import convattn.checkpoint  # noqa: F401


def main(argv: list[str] | None = None) -> None:
    from streamlit.web import cli

    threading.Thread(target=_warm, name="convattn-warm-imports", daemon=True).start()
    sys.argv = ["streamlit", "run", str(APP), *(sys.argv[1:] if argv is None else argv)]
    cli.main()


if __name__ == "__main__":
    main()
