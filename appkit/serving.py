"""What the operator allowed the browsers: the data roots (``appkit.roots``), the private
folder uploaded checkpoints are kept in, the upload size cap, and the address the server
listens on, said once in the server's log when the app starts.

``make app`` listens on 127.0.0.1 only (``.streamlit/config.toml``); ``make serve`` adds
``--server.address 0.0.0.0`` to serve the network, with the same rules.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import streamlit as st

from appkit.roots import Roots, named_model

UPLOADS_ENV = "CONVATTN_UPLOADS"  # a private folder for uploaded checkpoints (tests, ops)


def roots() -> Roots:
    """The allowed roots, from the script's arguments (``streamlit run app.py --
    --data-root DIR``) and the environment; cheap, so read on every run."""
    return Roots.from_environment(sys.argv[1:], os.environ)


def model_file() -> Path | None:
    """The model card (or checkpoint) the operator named: ``streamlit run app.py --
    --model card.toml`` or ``$CONVATTN_MODEL`` (``appkit.roots.named_model``)."""
    return named_model(sys.argv[1:], os.environ)


@st.cache_resource(show_spinner=False)
def _private_folder() -> str:
    # mkdtemp makes the folder readable by this user only (mode 0700), fresh per process.
    return tempfile.mkdtemp(prefix="convattn-uploads-")


def upload_dir() -> Path:
    """Where uploaded checkpoints are kept once they load: a folder of this server process
    that only its user can read (``$CONVATTN_UPLOADS`` names another). A session lists only
    its own uploads; the same bytes uploaded twice share one file."""
    return Path(os.environ.get(UPLOADS_ENV) or _private_folder())


def upload_cap_mb() -> int:
    """Streamlit's cap on one upload, in MB (``--server.maxUploadSize`` changes it)."""
    return int(st.get_option("server.maxUploadSize"))


def rules(allowed: Roots) -> str:
    address = st.get_option("server.address") or "every interface"
    where = ("this machine only (127.0.0.1)" if address in ("127.0.0.1", "localhost")
             else f"{address}: other machines can open it")
    named = "" if allowed.named else " (offered in a list: no --data-root was named)"
    model = model_file()
    return ((f"convattn opens the operator's model {model} first. " if model else "") +
            f"convattn serves {where}. Browsers may read data only in: {allowed.describe()}"
            f"{named}; the download button writes only to {allowed.downloads}; uploads are "
            f"capped at {upload_cap_mb()} MB, images kept in memory and checkpoints in "
            "a private folder.")


@st.cache_resource(show_spinner=False)
def _announced(text: str) -> bool:
    print(text, file=sys.stderr, flush=True)
    return True


def announce() -> None:
    """Say the rules in the server's log, once per process (and again if they change)."""
    _announced(rules(roots()))
