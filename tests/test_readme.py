"""Every ```python block of README.md and of docs/*.md runs as written: from a folder
outside the repository, with the shipped checkpoints named by $CONVATTN_CHECKPOINTS (as a
user of an installed convattn would have them), in this venv's Python."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))

# What a block prints, where that is worth checking: a pattern per block, by a line of it.
EXPECTED = {
    'convattn.open_model("examples/sagan_cifar/card.toml")': [
        r"\{'attn': \(2, 64, 64\)\}",  # the example's one SAGAN block, at 8x8
    ],
    "convattn.attention_maps(model, x)": [
        r"\{'attention': \(4, 1024, 1024\)\}",  # the seed network: one module at 32x32
        r"\['airplane', 'bird', 'dog', 'horse'\] for \['airplane', 'bird', 'dog', 'horse'\]",
    ],
}
# The same for the blocks of docs/*.md (kept apart: test_wheel runs the README's one).
DOCS_EXPECTED = {
    "convattn.out_of_distribution(model, info, [sample.images[0], grey])": [
        r"\(2, 3, 32, 32\) True \(1, 3, 32, 32\)",  # numpy, torch and PIL: one input
        r"refused: images must be uint8",
        r"\{'attention': \(2, 4, 1024, 1024\)\}",  # seed-mh4: 4 heads at 32x32
        r"\(2, 1024\) \{'attention': ",
        r"\[False, True\]",  # a test image passes, a flat grey square is flagged
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
DOC_BLOCKS = [(doc, code) for doc in DOCS
              for code in python_blocks(doc.read_text(encoding="utf-8"))]


def test_the_readme_has_a_python_example():
    assert BLOCKS, "README.md has no ```python block"
    assert any(key in block for block in BLOCKS for key in EXPECTED), (
        "the README's library example changed: update EXPECTED in tests/test_readme.py")


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_a_readme_python_block_runs_as_written(code, tmp_path):
    # A block that names examples/ runs "from the repository root": its examples/ folder is
    # linked into the temporary one, so nothing it writes lands in the repository.
    (tmp_path / "examples").symlink_to(REPO / "examples")
    done = run_block(code, tmp_path)
    assert done.returncode == 0, (
        f"README.md's python block\n{code}\nfailed from {tmp_path}:\n{done.stderr[-3000:]}")
    for key, patterns in EXPECTED.items():
        if key in code:
            for pattern in patterns:
                assert re.search(pattern, done.stdout), (
                    f"README.md's python block printed\n{done.stdout}\nnot /{pattern}/")


@pytest.mark.parametrize("doc,code", DOC_BLOCKS,
                         ids=[f"{doc.stem}-block{i}" for i, (doc, _) in enumerate(DOC_BLOCKS)])
def test_a_docs_python_block_runs_as_written(doc, code, tmp_path):
    done = run_block(code, tmp_path)
    assert done.returncode == 0, (
        f"docs/{doc.name}'s python block\n{code}\nfailed from {tmp_path}:\n{done.stderr[-3000:]}")
    for key, patterns in DOCS_EXPECTED.items():
        if key in code:
            for pattern in patterns:
                assert re.search(pattern, done.stdout), (
                    f"docs/{doc.name}'s python block printed\n{done.stdout}\nnot /{pattern}/")


def test_the_docs_library_example_is_checked():
    assert any(key in code for _, code in DOC_BLOCKS for key in DOCS_EXPECTED), (
        "docs/library.md's example changed: update DOCS_EXPECTED in tests/test_readme.py")


def test_the_readme_stays_short_and_its_links_resolve():
    """The README is the quick start (the details live in docs/), names no path of this
    project's own machines, and every relative link of it and of docs/ finds its file."""
    text = README.read_text(encoding="utf-8")
    assert len(text) <= 12_000, f"README.md is {len(text):,} characters: move detail to docs/"
    for page in [README, *DOCS]:
        body = page.read_text(encoding="utf-8")
        assert "../shared" not in body, f"{page.name} names ../shared: say 'your CIFAR-10 folder'"
        for target in re.findall(r"\]\(([^)\s]+)\)|src=\"([^\"]+)\"", body):
            target = "".join(target)
            if re.match(r"[a-z]+:|#", target):
                continue
            path = (page.parent / target.split("#")[0]).resolve()
            assert path.exists(), f"{page.relative_to(REPO)} links to {target}, which is missing"
