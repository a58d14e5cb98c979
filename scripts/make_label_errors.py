"""Derive ``convattn/resources/cifar10_label_errors.json`` from cleanlab/label-errors, once.

    python -m scripts.make_label_errors [--source ../shared/data/label-errors]

Reads ``cifar10_mturk.json`` (the 275 CIFAR-10 test images that confident learning
flagged, with 5 crowd workers' votes) and ``cifar10_test_set_original_labels.npy`` (the
10,000 canonical test labels), and writes one compact row per flagged image: canonical
index, the JPEG copy's file name, given and suggested class (indices into ``classes``) and
the votes. The LICENSE (Apache-2.0) is copied beside it, since the facts derive from
cleanlab/label-errors (Northcutt, Athalye and Mueller 2021).

The file name follows the rule of the source README: index ``i`` with label ``l`` is
``test/<class l>/NNNN.jpg``, NNNN being how many indices before ``i`` have label ``l``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

PACKAGE_DATA = Path(__file__).resolve().parents[1] / "convattn" / "resources"
OUT = PACKAGE_DATA / "cifar10_label_errors.json"
LICENSE_OUT = PACKAGE_DATA / "LICENSE-label-errors"
CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
           "dog", "frog", "horse", "ship", "truck"]
ATTRIBUTION = (
    "Derived from cleanlab/label-errors (commit 6d5d6b3; Apache License 2.0, see "
    "LICENSE-label-errors): Northcutt, Athalye and Mueller (2021), 'Pervasive Label Errors "
    "in Test Sets Destabilize Machine Learning Benchmarks', NeurIPS Datasets and Benchmarks."
)
COLUMNS = ["index", "name", "given", "suggested", "votes_given", "votes_guessed",
           "votes_both", "votes_neither"]


def jpeg_names(labels: np.ndarray) -> list[str]:
    """The JPEG copy's file name of every canonical test index."""
    seen = [0] * len(CLASSES)
    names = []
    for label in labels.tolist():
        names.append(f"test/{CLASSES[label]}/{seen[label]:04d}.jpg")
        seen[label] += 1
    return names


def make_rows(mturk: list[dict], labels: np.ndarray) -> list[list]:
    names = jpeg_names(labels)
    rows = []
    for e in sorted(mturk, key=lambda e: e["id"]):
        i, given, guessed = e["id"], e["given_original_label"], e["our_guessed_label"]
        # Both files come from the same release; a disagreement means a wrong input.
        if labels[i] != given or CLASSES[given] != e["given_original_label_name"] \
                or CLASSES[guessed] != e["our_guessed_label_name"]:
            raise SystemExit(f"error: entry {i} disagrees with the canonical labels.")
        v = e["mturk"]
        rows.append([i, names[i], given, guessed, v["given"], v["guessed"], v["both"],
                     v["neither"]])
    return rows


def write_json(rows: list[list], out: Path) -> None:
    # One row a line: small, and a diff of it stays readable.
    head = {"attribution": ATTRIBUTION,
            "rule": "validated label error: fewer than 3 of the 5 workers chose the given "
                    "label (votes_given < 3)",
            "classes": CLASSES, "columns": COLUMNS}
    lines = ["{"] + [f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()]
    lines.append('  "rows": [')
    lines += [f"    {json.dumps(r)}{',' if n < len(rows) - 1 else ''}"
              for n, r in enumerate(rows)]
    lines += ["  ]", "}", ""]
    out.write_text("\n".join(lines))
    json.loads(out.read_text())  # the hand-made layout must still be JSON


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", type=Path, default=Path("../shared/data/label-errors"))
    args = p.parse_args(argv)
    try:
        mturk = json.loads((args.source / "cifar10_mturk.json").read_text())
        labels = np.load(args.source / "cifar10_test_set_original_labels.npy").astype(np.int64)
    except (OSError, ValueError) as e:
        print(f"error: cannot read {args.source} ({e}).", file=sys.stderr)
        return 2
    PACKAGE_DATA.mkdir(exist_ok=True)
    write_json(make_rows(mturk, labels), OUT)
    shutil.copyfile(args.source / "LICENSE", LICENSE_OUT)
    print(f"wrote {OUT} ({len(mturk)} entries) and {LICENSE_OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
