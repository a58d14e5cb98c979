"""Do the explanations hold up? Faithfulness and sanity checks over many images, once.

``python -m convattn.checks CHECKPOINT`` runs, over the first ``--images`` images of the
bundled sample (or ``--data``'s test split) in its balanced order (every class in turn):

- deletion and insertion (``convattn.explain.faithfulness_batched``) for each attribution
  method, the attention each position receives in every attention module, and a random order;
- the cascading model randomisation (``convattn.explain.sanity``) on ``--sanity-images`` of
  them, and in full on the first image for the page's default query,

and writes ``<name>.checks.npz`` beside the checkpoint (``runs/<name>.checks.npz`` for
a checkpoint shipped in the repository's checkpoints/ folder, unless
``--overwrite-shipped``). The file records what it was computed with: the checkpoint's
digest (its network and weights, ``checkpoint_digest``), the settings and the images'
names, so the app uses it only for that checkpoint, those settings and those images, and
computes anything else live.
"""

from __future__ import annotations

import sys

from convattn.cli.flags import run_on_checkpoint
from convattn.jobs.checks import ChecksConfig, checks_checkpoint


def format_report(result: dict) -> str:
    lines = [f"deletion / insertion on {result['images']} images, randomisation on "
             f"{result['sanity_images']}" + ("" if result["attention"] else
                                              " (no attention module: attributions only)")]
    for r in result["verdicts"]:
        parts = [f"{t} {r[t]['verdict']} ({r[t]['margin']:+.3f} ± {r[t]['half_width']:.3f})"
                 for t in ("deletion", "insertion")]
        lines.append(f"  {r['ranking']}: " + "; ".join(parts))
    lines.append(f"written to {result['path']}")
    if result.get("note"):
        lines.append(str(result["note"]))
    return "\n".join(lines)



def main(argv: list[str] | None = None) -> int:
    return run_on_checkpoint(argv, "python -m convattn.checks", __doc__, ChecksConfig(),
                             "a convattn checkpoint (.pt)", checks_checkpoint, format_report)


if __name__ == "__main__":
    sys.exit(main())
