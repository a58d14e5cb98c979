"""Do the explanations hold up? The checks file, ``<name>.checks.npz``, which
``python -m convattn.checks`` writes (see ``convattn.cli.checks`` for what it runs) and
the Faithfulness and Sanity check pages read.

It holds deletion and insertion curves for each attribution method, attention received
and a random order, and the cascading randomisation's similarities, and records what it
was computed with: the checkpoint's digest (its network and weights,
``checkpoint_digest``), the settings and the images' names, so the app uses it only for
that checkpoint, those settings and those images, and computes anything else live.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from convattn.explain.faithfulness import Curves, FaithfulnessResult
from convattn.files.checkpoint import CheckpointError

VERSION = 1
QUERY_PIXEL = (16, 16)  # the pages' default query: the centre of the 32x32 image
METRICS = ("spearman", "ssim", "topk")


class ChecksError(CheckpointError):
    """A checks file that cannot be used; the message is one sentence."""


@dataclass(frozen=True)
class Settings:
    """Everything a checks result depends on besides the checkpoint and the images."""

    methods: tuple[str, ...] = ("integrated_gradients", "gradcam")
    steps: int = 8
    baseline: str = "mean"
    blur_sigma: float = 4.0
    ig_steps: int = 16
    gradcam_layer: str = ""
    sanity_methods: tuple[str, ...] = ("saliency", "guided_backprop", "gradcam")
    seed: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Settings:
        raw = json.loads(text)
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})


DEFAULT = Settings()  # what the shipped files and the pages' defaults use


def checks_path(checkpoint: str | Path) -> Path:
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + ".checks.npz")


def pixels_digest(pixels: np.ndarray) -> str:
    """SHA-256 of an image's uint8 pixels (H, W, 3)."""
    return hashlib.sha256(np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()).hexdigest()


@dataclass
class SanityExample:
    """The full randomisation of one image, as ``sanity.SanityResult`` without the
    similarities (recomputed from the maps on reading)."""

    name: str
    index: int
    pixels: str  # SHA-256 of the image's uint8 pixels
    queries: dict[str, int]  # module -> query cell
    steps: list[str]
    target: int
    probs: np.ndarray
    predicted: list[int]
    maps: dict[str, np.ndarray]
    rows: dict[str, np.ndarray]


@dataclass
class Checks:
    """What a checks file holds."""

    digest: str  # checkpoint_digest of the checkpoint
    settings: Settings
    source: str  # where the images came from
    classes: list[str]
    faith_names: list[str]  # (B,) the tested images' names, balanced order
    faithfulness: FaithfulnessResult  # maps only for the first images (see save_checks)
    sanity_names: list[str]
    sanity: object  # sanity.SanitySummary
    example: SanityExample | None = field(default=None)


def _strings(values) -> np.ndarray:
    return np.array([str(v) for v in values], dtype=str)


def save_checks(path: str | Path, checks: Checks, keep_maps: int = 16) -> Path:
    """Write ``checks`` as plain arrays (no pickles); maps of the first ``keep_maps``
    images only, in fp16 (the page shows them; the numbers come from the curves)."""
    from convattn.files.predictions import save_arrays

    f = checks.faithfulness
    names = list(f.curves)
    agreement = [(m, a, s) for (m, a), v in f.agreement.items() for s in v]
    s = checks.sanity
    explained = list(s.similarity)
    arrays: dict[str, np.ndarray] = {
        "version": np.array(VERSION), "digest": np.array(checks.digest),
        "settings": np.array(checks.settings.to_json()), "source": np.array(checks.source),
        "classes": _strings(checks.classes),
        "faith_names": _strings(checks.faith_names), "faith_indices": f.indices,
        "faith_labels": f.labels, "faith_predicted": f.predicted,
        "faith_rankings": _strings(names), "faith_fractions": f.curves[names[0]].fractions,
        "faith_deletion": np.stack([f.curves[n].deletion for n in names]).astype(np.float32),
        "faith_insertion": np.stack([f.curves[n].insertion for n in names]).astype(np.float32),
        "faith_maps": np.stack([f.maps[n][:keep_maps] for n in names]).astype(np.float16),
        "faith_agreement_keys": np.array(agreement, dtype=str).reshape(-1, 3),
        "faith_agreement": (np.stack([f.agreement[(m, a)][k] for m, a, k in agreement])
                            if agreement else np.zeros((0, len(f))))}
    arrays |= {
        "sanity_names": _strings(checks.sanity_names), "sanity_steps": _strings(s.steps),
        "sanity_indices": s.indices, "sanity_probs": s.probs.astype(np.float32),
        "sanity_explained": _strings(explained),
        "sanity_similarity": np.stack([[s.similarity[e][m] for m in METRICS]
                                       for e in explained]).astype(np.float32)}
    e = checks.example
    if e is not None:
        arrays |= {
            "example_meta": np.array(json.dumps({
                "name": e.name, "index": e.index, "pixels": e.pixels, "queries": e.queries,
                "steps": e.steps,
                "target": e.target, "predicted": e.predicted, "methods": list(e.maps),
                "modules": list(e.rows)})),
            "example_probs": e.probs}
        arrays |= {f"example_map_{i}": v for i, v in enumerate(e.maps.values())}
        arrays |= {f"example_row_{i}": v for i, v in enumerate(e.rows.values())}
    return save_arrays(path, **arrays)


def load_checks(path: str | Path) -> Checks:
    """Read a checks file; ChecksError (one sentence) when it is missing or unreadable."""
    from convattn.explain.sanity import SanitySummary

    try:
        with np.load(path, allow_pickle=False) as z:
            a = {k: z[k] for k in z.files}
        if int(a["version"]) != VERSION:
            raise ChecksError(f"{path} is a checks file of version {int(a['version'])}, "
                              f"not {VERSION}: run python -m convattn.checks again.")
        names = [str(n) for n in a["faith_rankings"]]
        fractions = a["faith_fractions"]
        curves = {n: Curves(fractions, a["faith_deletion"][i].astype(np.float64),
                            a["faith_insertion"][i].astype(np.float64))
                  for i, n in enumerate(names)}
        agreement: dict[tuple[str, str], dict[str, np.ndarray]] = {}
        for (m, meth, k), v in zip(a["faith_agreement_keys"], a["faith_agreement"]):
            agreement.setdefault((str(m), str(meth)), {})[str(k)] = v.astype(np.float64)
        faith = FaithfulnessResult(
            indices=a["faith_indices"], labels=a["faith_labels"],
            predicted=a["faith_predicted"],
            maps={n: a["faith_maps"][i].astype(np.float32) for i, n in enumerate(names)},
            curves=curves, agreement=agreement)
        explained = [str(e) for e in a["sanity_explained"]]
        summary = SanitySummary(
            steps=[str(s) for s in a["sanity_steps"]], indices=a["sanity_indices"],
            probs=a["sanity_probs"].astype(np.float64),
            similarity={e: {m: a["sanity_similarity"][i, j].astype(np.float64)
                            for j, m in enumerate(METRICS)} for i, e in enumerate(explained)})
        example = None
        if "example_meta" in a:
            meta = json.loads(str(a["example_meta"]))
            example = SanityExample(
                name=meta["name"], index=meta["index"], pixels=meta["pixels"],
                queries=meta["queries"],
                steps=meta["steps"], target=meta["target"], probs=a["example_probs"],
                predicted=meta["predicted"],
                maps={m: a[f"example_map_{i}"] for i, m in enumerate(meta["methods"])},
                rows={m: a[f"example_row_{i}"] for i, m in enumerate(meta["modules"])})
        return Checks(digest=str(a["digest"]), settings=Settings.from_json(str(a["settings"])),
                      source=str(a["source"]), classes=[str(c) for c in a["classes"]],
                      faith_names=[str(n) for n in a["faith_names"]], faithfulness=faith,
                      sanity_names=[str(n) for n in a["sanity_names"]], sanity=summary,
                      example=example)
    except ChecksError:
        raise
    except FileNotFoundError:
        raise ChecksError(f"{path} does not exist.") from None
    except (OSError, ValueError, KeyError, IndexError, TypeError, zipfile.BadZipFile) as e:
        raise ChecksError(f"{path} is not a readable checks file ({type(e).__name__}): "
                          "write it again with python -m convattn.checks.") from None




