"""Every ```python block of README.md runs as written: from a folder outside the repository,
with the shipped checkpoints named by $CONVATTN_CHECKPOINTS (as a user of an installed
convattn would have them), in this venv's Python."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

# What a block prints, where that is worth checking: a pattern per block, by a line of it.
EXPECTED = {
    "convattn.attention_maps(model, x)": [
        r"\{'attention': \(4, 1024, 1024\)\}",  # the seed network: one module at 32x32
        r"\['airplane', 'bird', 'dog', 'horse'\] for \['airplane', 'bird', 'dog', 'horse'\]",
    ],
}


def python_blocks(text: str) -> list[str]:
    """The contents of every ```python fenced block, in order."""
    return re.findall(r"^```python[ \t]*\n(.*?)^```[ \t]*$", text, flags=re.M | re.S)


def run_block(code: str, cwd: Path, python: str = sys.executable,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``code`` as a script in ``cwd`` (not the repository), the shipped checkpoints
    named by $CONVATTN_CHECKPOINTS."""
    script = cwd / "readme_example.py"
    script.write_text(code)
    env = dict(os.environ if env is None else env)
    env["CONVATTN_CHECKPOINTS"] = str(REPO / "checkpoints")
    env.pop("PYTHONPATH", None)  # the example must find convattn as installed
    return subprocess.run([python, str(script)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


def test_the_readme_has_a_python_example():
    assert BLOCKS, "README.md has no ```python block"
    assert any(key in block for block in BLOCKS for key in EXPECTED), (
        "the README's library example changed: update EXPECTED in tests/test_readme.py")


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_a_readme_python_block_runs_as_written(code, tmp_path):
    done = run_block(code, tmp_path)
    assert done.returncode == 0, (
        f"README.md's python block\n{code}\nfailed from {tmp_path}:\n{done.stderr[-3000:]}")
    for key, patterns in EXPECTED.items():
        if key in code:
            for pattern in patterns:
                assert re.search(pattern, done.stdout), (
                    f"README.md's python block printed\n{done.stdout}\nnot /{pattern}/")
