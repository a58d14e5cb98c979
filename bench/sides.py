"""What the before/after benchmarks share: the checkouts they compare (this one and
``--before``, a worktree of an older commit) and one measurement run in a fresh process
of either, which prints its figures as its last JSON line."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def checkouts(before: str, which: str, marker: str) -> dict[str, Path]:
    """{"before": the ``--before`` checkout, "now": this one}, those named in ``which``
    ("before,now"); ValueError (one sentence) when ``before`` lacks ``marker``, a file or
    folder every convattn checkout has."""
    sides = {"before": Path(before).resolve(), "now": ROOT}
    sides = {k: v for k, v in sides.items() if k in which.split(",")}
    if "before" in sides and not (sides["before"] / marker).exists():
        raise ValueError(f"--before {before} is not a convattn checkout")
    return sides


def run_child(argv: list[str], repo: Path, env: dict[str, str], timeout: float) -> dict:
    """The last JSON line ``argv`` prints, run in ``repo``; RuntimeError with the end of
    its stderr when it fails or prints none."""
    out = subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True,
                         timeout=timeout)
    lines = [x for x in out.stdout.splitlines() if x.startswith("{")]
    if out.returncode or not lines:
        raise RuntimeError(out.stderr.strip()[-400:])
    return json.loads(lines[-1])
