"""Evaluation: ``python -m convattn.evaluate CHECKPOINT --data ROOT``.

Prints accuracy, per-class accuracy and the confusion matrix, and writes a per-image
predictions file beside the checkpoint (``<name>.predictions.npz``: index, image name,
true label, class probabilities) that the app reads instead of re-running the model.
For a checkpoint shipped in the repository's checkpoints/ folder the file goes to
``runs/<name>.predictions.npz`` instead, unless ``--overwrite-shipped`` is given.

The checkpoint is only read. With ``--fit-ood`` (test split) it also fits the
out-of-distribution flag (``convattn.trust.ood``) on a fixed subset of the training split,
sets its threshold so that 95 % of the test images are not flagged, and writes both into
the checkpoint (weights untouched; a shipped checkpoint is written to ``runs/<name>.pt``
unless ``--overwrite-shipped``).

``--data sample`` evaluates on the bundled 1,000 test images, with no dataset or network.
"""

from __future__ import annotations

import sys
from typing import Any

from convattn.cli.flags import run_on_checkpoint
from convattn.jobs.evaluation import EvalConfig, evaluate_checkpoint


def format_report(result: dict[str, Any]) -> str:
    classes = result["classes"]
    tta = " with flip test-time augmentation" if result.get("tta") else ""
    lines = [f"accuracy {result['accuracy']:.2f}% on {result['count']} images{tta} "
             f"({result['images_per_second']:.0f} images/s)"]
    errors = result.get("label_errors")
    if errors and errors["known"]:
        lines.append(f"  {errors['accuracy_corrected']:.2f}% with the {errors['corrected']} "
                     f"correctable known label errors relabelled, "
                     f"{errors['accuracy_without_errors']:.2f}% without the "
                     f"{errors['validated']} validated ones (Northcutt et al. 2021, "
                     "cleanlab/label-errors)")
    if "ece" in result:
        t0, t1 = result["temperatures"]
        lines.append(f"calibration error (ECE, 15 bins) {100 * result['ece']:.2f}%, "
                     f"{100 * result['ece_calibrated']:.2f}% after temperature scaling "
                     f"(T = {t0:.3f} and {t1:.3f}, two-fold cross-fitted)")
    lines += ["", "per class:"]
    lines += [f"  {c:>12s} {a:6.2f}%" for c, a in zip(classes, result["per_class_accuracy"])]
    lines += ["", "confusion (rows: true, columns: predicted):",
              " " * 13 + "".join(f"{c[:5]:>6s}" for c in classes)]
    lines += [f"  {c:>10s} " + "".join(f"{n:6d}" for n in row)
              for c, row in zip(classes, result["confusion"])]
    o = result.get("ood")
    if o:
        lines += ["", f"out-of-distribution flag ({o['label']}, fitted on "
                      f"{o['train_images']} training images): threshold "
                      f"{o['threshold']:.4g} flags {100 * o['flagged']:.1f}% of the "
                      f"{o['test_images']} test images; the checkpoint with the flag "
                      f"written to {o['checkpoint']} (--fit-ood)"]
        if o.get("note"):
            lines.append(o["note"])
    elif result.get("split") == "test" and not result.get("tta"):
        lines += ["", "the checkpoint was left unchanged (--fit-ood also fits the "
                      "out-of-distribution flag into it)"]
    lines += ["", f"predictions written to {result['predictions']}"]
    if result.get("note"):
        lines.append(result["note"])
    return "\n".join(lines)



def main(argv: list[str] | None = None) -> int:
    return run_on_checkpoint(argv, "python -m convattn.evaluate", __doc__, EvalConfig(),
                             "a convattn checkpoint (.pt)", evaluate_checkpoint, format_report)



if __name__ == "__main__":
    sys.exit(main())
