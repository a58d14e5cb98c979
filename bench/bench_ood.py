"""How well each out-of-distribution method (convattn.trust.ood) tells test images from the
generated out-of-distribution set (convattn.trust.ood_images), per checkpoint.

    python bench/bench_ood.py [CHECKPOINT ...] [--data ROOT] [--train-images 5000]
        [--per-family 250] [--choose-seed 0] [--report-seed 1] [--combos knn+pixels ...]
        [--bank-sizes 250 500 1000 2000 5000] [--cache runs/bench-ood]

For each checkpoint (default: checkpoints/seed.pt and checkpoints/resnet9-attn.pt) every
method of ``ood.REGISTRY`` and every extra ``--combos`` combination is fitted on the same
training subset as ``convattn.evaluate`` (its first ``--train-images`` of a seed-0
permutation) and scored on the 10,000 test images and on two generated sets: one made
with ``--choose-seed`` (to choose the method and the combination on) and one with
``--report-seed`` (the figures to report; nothing was chosen on it). Printed: AUROC on
both sets, AUROC per family on the report set, and the share of the report set and of the
test images flagged at the threshold that leaves 95 % of the test images unflagged; then
the checkpoint's stored flag at its stored threshold, and kNN's AUROC by bank size (on the
choosing set). Model outputs are cached in ``--cache`` (delete it after changing a model).

A glimpse of real photos without a CIFAR-10 class: scikit-learn's two sample photos
(china.jpg, a temple; flower.jpg), whole and as 3x3 crops, 20 images: the share each
method flags at its 95 % threshold. Far too few to rank methods by; only a sanity check.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from convattn.files.checkpoint import load_checkpoint
from convattn.files.data import load_split
from convattn.jobs.evaluation import OOD_TRAIN_IMAGES
from convattn.trust import ood
from convattn.trust.ood_images import generate

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"


def cached(cache: Path, name: str, make) -> ood.Evidence:
    path = cache / f"{name}.pt"
    if path.exists():
        d = torch.load(path, weights_only=True)
        return ood.Evidence(d["logits"], d["features"], d["pixel_stats"], d.get("labels"))
    t0 = time.perf_counter()
    e = make()
    print(f"  {name}: {len(e.logits)} images in {time.perf_counter() - t0:.0f} s", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v for k, v in vars(e).items() if v is not None}, path)
    return e


def photos() -> np.ndarray:
    """scikit-learn's two sample photos, whole and cut in 3x3 crops, as 32x32 uint8."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    out = []
    for photo in load_sample_images().images:
        image = Image.fromarray(photo)
        w, h = image.size
        out.append(image)
        out += [image.crop((i * w // 3, j * h // 3, (i + 1) * w // 3, (j + 1) * h // 3))
                for i in range(3) for j in range(3)]
    return np.stack([np.asarray(i.resize((32, 32), Image.LANCZOS)) for i in out])


def row(name: str, values: list[float], width: int = 8) -> str:
    return f"{name:>22s}" + "".join(f"{v:{width}.3f}" for v in values)


def bench(checkpoint: Path, args: argparse.Namespace) -> None:
    model, info = load_checkpoint(checkpoint)
    stem = f"{checkpoint.stem}-{args.train_images}"
    test = load_split(args.data, "test")
    cache = Path(args.cache)

    def train_evidence() -> ood.Evidence:
        train = load_split(args.data, "train")
        pick = np.sort(np.random.default_rng(0).permutation(len(train))[:args.train_images])
        return ood.evidence(model, info, train.images[pick], train.labels[pick])

    train = cached(cache, f"{stem}-train", train_evidence)
    inside = cached(cache, f"{checkpoint.stem}-test",
                    lambda: ood.evidence(model, info, test.images))
    sets = {}
    for seed in (args.choose_seed, args.report_seed):
        images, fam = generate(args.per_family, seed, test.images)
        sets[seed] = (cached(cache, f"{checkpoint.stem}-ood{seed}-{args.per_family}",
                             lambda images=images: ood.evidence(model, info, images)), fam)
    families = list(dict.fromkeys(sets[args.report_seed][1]))
    real = ood.evidence(model, info, photos())
    methods = [m.name for m in ood.REGISTRY]
    for combo in args.combos:
        if combo not in methods:
            ood.REGISTRY.add(ood.combination(combo, combo.split("+")))
            methods.append(combo)
    print(f"\n{checkpoint.name}: fitted on {len(train.logits)} training images; "
          f"{len(inside.logits)} test images against {args.per_family} generated images "
          f"per family")
    print(f"{'method':>22s}{'AUROC':>8s}{'AUROC':>8s}" + "".join(f"{f[:7]:>8s}" for f in
                                                             families) + "  flagged at 95 %:")
    print(f"{'':>22s}{f's={args.choose_seed}':>8s}{f's={args.report_seed}':>8s}"
          + f"{f'(AUROC per family, seed {args.report_seed})':^{8 * len(families)}s}"
          + "  OOD   test photos")
    for name in methods:
        fitted = ood.fit(train, name)
        s_in = fitted.score(inside).numpy()
        t = ood.threshold_for(s_in)
        aucs = [ood.auroc(s_in, fitted.score(sets[s][0]).numpy()) for s in sets]
        report, fam = sets[args.report_seed]
        s_out = fitted.score(report).numpy()
        per = [ood.auroc(s_in, s_out[fam == f]) for f in families]
        s_real = fitted.score(real).numpy()
        print(row(name, aucs + per) + f"  {np.mean(s_out > t):5.3f} {np.mean(s_in > t):5.3f} "
              f"{np.mean(s_real > t):5.2f}")
    stored = ood.stored_fit(info)
    if stored is not None:
        s_in = stored.score(inside).numpy()
        report, fam = sets[args.report_seed]
        s_out = stored.score(report).numpy()
        print(f"stored flag ({stored.method}, threshold {stored.threshold:.4g}): AUROC "
              f"{ood.auroc(s_in, s_out):.3f} on seed {args.report_seed}; flags "
              f"{np.mean(s_out > stored.threshold):.1%} of it and "
              f"{np.mean(s_in > stored.threshold):.1%} of the test images; per family: "
              + ", ".join(f"{f} {np.mean(s_out[fam == f] > stored.threshold):.0%}"
                          for f in families)
              + f"; photos {np.mean(stored.score(real).numpy() > stored.threshold):.0%}")
        size = sum(v.numel() * v.element_size() for part in stored.statistics.values()
                   if isinstance(part, dict) for v in part.values() if torch.is_tensor(v))
        print(f"  its statistics hold {size / 1024:.0f} KiB of tensors")
    choose = sets[args.choose_seed][0]
    sizes = []
    for m in args.bank_sizes:
        fitted = ood.OODFit("knn", ood.knn_statistics(train.features, m))
        sizes.append(ood.auroc(fitted.score(inside).numpy(), fitted.score(choose).numpy()))
    print(f"kNN AUROC by bank size (seed {args.choose_seed}): "
          + ", ".join(f"{m}: {a:.3f}" for m, a in zip(args.bank_sizes, sizes)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="*", type=Path,
                   default=[CHECKPOINTS / "seed.pt", CHECKPOINTS / "resnet9-attn.pt"])
    p.add_argument("--data", default="../shared/data/cifar10-jpeg")
    p.add_argument("--train-images", type=int, default=OOD_TRAIN_IMAGES)
    p.add_argument("--per-family", type=int, default=250)
    p.add_argument("--choose-seed", type=int, default=0)
    p.add_argument("--report-seed", type=int, default=1)
    p.add_argument("--combos", nargs="*", default=[])
    p.add_argument("--bank-sizes", nargs="*", type=int, default=[250, 500, 1000, 2000, 4000])
    p.add_argument("--cache", default="runs/bench-ood")
    args = p.parse_args()
    torch.manual_seed(0)
    for checkpoint in args.checkpoints:
        bench(checkpoint, args)


if __name__ == "__main__":
    main()
