"""Does attention change the answer? Predictions with attention switched off.

``python -m convattn.ablation CHECKPOINT --data ROOT`` writes ``<name>.ablation.npz``
beside the checkpoint (``runs/<name>.ablation.npz`` for a shipped checkpoint, unless
``--overwrite-shipped``): the class probabilities of every test image from the real model
and from each ablation of every attention module: gamma = 0 (attention switched off) and
uniform attention (every position weighted 1/N), and how many images attention fixes and
breaks.
"""

from __future__ import annotations

import sys

from convattn.cli.flags import run_on_checkpoint
from convattn.explain.ablation import ABLATIONS
from convattn.jobs.ablation import AblationConfig, ablate_checkpoint


def format_report(result: dict) -> str:
    acc = result["accuracy"]
    lines = [f"{result['count']:,} images: accuracy real {acc['real']:.2f}%, "
             + ", ".join(f"{ABLATIONS[k]} {acc[k]:.2f}%" for k in ABLATIONS)]
    for kind in ABLATIONS:
        c = result[kind]
        lines.append(f"vs {ABLATIONS[kind]}: attention fixes {c['fixed']}, breaks "
                     f"{c['broken']}, right either way {c['both_right']}, wrong either way "
                     f"{c['same_wrong'] + c['other_wrong']}")
    lines.append(f"written to {result['path']}")
    if result.get("note"):
        lines.append(str(result["note"]))
    return "\n".join(lines)



def main(argv: list[str] | None = None) -> int:
    return run_on_checkpoint(argv, "python -m convattn.ablation", __doc__, AblationConfig(),
                             "a convattn checkpoint (.pt) with attention", ablate_checkpoint,
                             format_report)



if __name__ == "__main__":
    sys.exit(main())
