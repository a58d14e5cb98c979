"""Computing a checks file: the job behind ``python -m convattn.checks`` (see
``convattn.checks`` for what it holds and how it is matched)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from convattn.device import pick_device
from convattn.errors import DataError, FlagError
from convattn.explain import checks as ck
from convattn.explain.attribution import METHODS, AttributionConfig
from convattn.explain.faithfulness import BASELINES, FaithfulnessConfig
from convattn.files.checkpoint import check_writable, checkpoint_digest, load_checkpoint
from convattn.files.data import ImageSet, load_split
from convattn.files.shipped import load_sample, output_path
from convattn.jobs.options import (
    data_option,
    device_option,
    out_option,
    overwrite_shipped_option,
)
from convattn.readout.attention import attention_modules, module_inputs
from convattn.readout.grid import Grid
from convattn.readout.stats import balanced_order


@dataclass
class ChecksConfig:
    data: str = data_option("the bundled sample", split_used=" (its test split is used)")
    images: int = field(default=200, metadata={
        "help": "images for deletion / insertion, the first of the balanced order",
        "min": 2})
    sanity_images: int = field(default=100, metadata={
        "help": "images for the randomisation check", "min": 2})
    methods: str = field(default="integrated_gradients,gradcam", metadata={
        "help": "attribution methods for deletion / insertion, comma-separated"})
    sanity_methods: str = field(default="saliency,guided_backprop,gradcam", metadata={
        "help": "attribution methods for the randomisation check, comma-separated"})
    steps: int = field(default=8, metadata={"help": "points per curve minus one",
                                            "min": 1, "max": 64})
    baseline: str = field(default="mean", metadata={"help": "what a removed pixel becomes",
                                                    "choices": list(BASELINES)})
    ig_steps: int = field(default=16, metadata={"help": "Integrated Gradients' steps",
                                                "min": 2})
    seed: int = field(default=0, metadata={"help": "seed of the randomised networks"})
    device: str = device_option()
    progress: bool = field(default=True, metadata={"help": "show progress bars"})
    out: str = out_option("checks file")
    overwrite_shipped: bool = overwrite_shipped_option("checks file")

    def settings(self) -> ck.Settings:
        def names(text: str, flag: str) -> tuple[str, ...]:
            found = tuple(m.strip() for m in text.split(",") if m.strip())
            bad = [m for m in found if m not in METHODS]
            if bad:
                raise FlagError(f"{flag} names {', '.join(bad)}, not one of "
                                f"{', '.join(METHODS)}.")
            return found

        return ck.Settings(methods=names(self.methods, "--methods"), steps=self.steps,
                           baseline=self.baseline, ig_steps=self.ig_steps,
                           sanity_methods=names(self.sanity_methods, "--sanity-methods"),
                           seed=self.seed)


def attribution_config(settings: ck.Settings) -> AttributionConfig:
    return AttributionConfig(ig_steps=settings.ig_steps, gradcam_layer=settings.gradcam_layer)


def faithfulness_config(settings: ck.Settings) -> FaithfulnessConfig:
    return FaithfulnessConfig(steps=settings.steps, baseline=settings.baseline,
                              blur_sigma=settings.blur_sigma)


def read_images(data: str) -> tuple[ImageSet, str]:
    if data:
        return load_split(data, "test"), f"{data}:test"
    return load_sample(), "bundled sample"


def _bar(total: int, desc: str, enabled: bool):  # noqa: ANN202 (tqdm's type)
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="img" if "images" in desc else "step",
               disable=not enabled, file=sys.stderr)

    def update(done: int, _: int) -> None:
        bar.update(done - bar.n)

    return bar, update


def compute(model: torch.nn.Module, info, images: ImageSet, source: str,  # noqa: ANN001
            digest: str, settings: ck.Settings, n: int, n_sanity: int,
            progress: bool = False) -> ck.Checks:
    """Everything a checks file holds, for ``model`` on the first ``n`` (``n_sanity``)
    images of ``images``' balanced order."""
    from convattn.explain.faithfulness_batched import run
    from convattn.explain.sanity import (
        cascading_randomisation,
        randomisation_steps,
        randomisation_summary,
    )

    if images.classes != list(info.classes):
        raise DataError(f"the images have classes {images.classes}, but the checkpoint "
                        f"was trained on {list(info.classes)}.")
    order = balanced_order(images.labels)
    idx = order[:n]
    device = next(model.parameters()).device
    x = info.normalise(images.images[idx], device)
    labels = torch.from_numpy(images.labels[idx])
    acfg = attribution_config(settings)
    bar, update = _bar(len(idx), "deletion / insertion, images", progress)
    faith = run(model, x, labels, list(settings.methods), idx, faithfulness_config(settings),
                acfg, progress=update)
    bar.close()
    sidx = order[:n_sanity]
    steps = len(randomisation_steps(model)) + 1
    bar, update = _bar(steps, "randomisation, steps", progress)
    summary = randomisation_summary(model, info.normalise(images.images[sidx], device),
                                    list(settings.sanity_methods), sidx, acfg,
                                    settings.seed, progress=update)
    bar.close()
    first = info.normalise(images.images[:1], device)
    grids = {k: tuple(v.shape[2:]) for k, v in module_inputs(model, first).items()}
    r, c = ck.QUERY_PIXEL
    queries = {k: Grid.of(grid).index_of((r, c)) for k, grid in grids.items()}
    full = cascading_randomisation(model, first, list(settings.sanity_methods), queries, acfg,
                                   settings.seed)
    example = ck.SanityExample(name=images.names[0], index=0,
                               pixels=ck.pixels_digest(images.images[0]), queries=queries,
                               steps=full.steps, target=full.target, probs=full.probs,
                               predicted=full.predicted, maps=full.maps, rows=full.rows)
    return ck.Checks(digest=digest, settings=settings, source=source,
                     classes=list(images.classes),
                     faith_names=[images.names[i] for i in idx], faithfulness=faith,
                     sanity_names=[images.names[i] for i in sidx], sanity=summary,
                     example=example)


def checks_checkpoint(checkpoint: str | Path, cfg: ChecksConfig) -> dict[str, object]:
    from convattn.explain.verdict import against_random

    settings = cfg.settings()
    out, note = output_path(checkpoint, cfg.out, ck.checks_path(checkpoint),
                            cfg.overwrite_shipped)
    check_writable(out)
    model, info = load_checkpoint(checkpoint, pick_device(cfg.device))
    images, source = read_images(cfg.data)
    n, n_sanity = min(cfg.images, len(images)), min(cfg.sanity_images, len(images))
    result = compute(model, info, images, source, checkpoint_digest(checkpoint), settings, n,
                     n_sanity, cfg.progress)
    ck.save_checks(out, result)
    return {"path": str(out), "note": note, "images": n, "sanity_images": n_sanity,
            "attention": bool(attention_modules(model)),
            "verdicts": against_random(result.faithfulness)}




