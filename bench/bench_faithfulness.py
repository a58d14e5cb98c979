"""Speed of deletion + insertion per ranking method, in images per second.

    python -m bench.bench_faithfulness [--checkpoints seed,resnet9-attn] [--images 32]
                                       [--chunk 0] [--repo PATH] [--full] [--device cuda]
    python -m bench.bench_faithfulness --floor 128 [--checkpoints seed]
    python -m bench.bench_faithfulness --live 200,1000 --before /tmp/convattn-base
                                       [--checkpoints seed] [--repeats 1]

``--floor N``: what the live run on N images (where it stops) cannot do without: for
each checkpoint, the seconds of IG-16 alone on N images (16 forward and backward passes
per image) and of the deletion and insertion curves of its four rankings (56 forward
passes per image at 8 steps), on the runner's private channels_last copy, beside the
model's forward and forward+backward images per second.

``--live``: the Faithfulness page's live run (IG-16, Grad-CAM, attention, random; 8
steps; chunks of 8 images) on the first N images of the bundled sample's balanced order,
this checkout (sequential stop, channels_last copy) against ``--before`` (a checkout
without them), each in a fresh process, alternating, with wall and CPU seconds, the
images each tested and whether their verdicts against the random order agree.

For each checkpoint and each ranking (Integrated Gradients, Grad-CAM, the attention each
position receives, a random order): the time to make the ranking for ``--images`` images
of the bundled sample and to run its deletion and insertion curves (default steps), in
chunks of ``--chunk`` images (0: the library's batched runner when it has one, else 4,
the chunk the Faithfulness page used before it was batched). ``--repo`` imports convattn
from another checkout (``git worktree add /tmp/before HEAD``), so the figures from before
a change can be rerun. ``--full`` also times the whole job the issue sets: 1,000 images x
(IG, Grad-CAM, attention) + random, deletion and insertion, through the runner.
The load average is printed: the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_FILE = ROOT / "convattn" / "resources" / "cifar10-test-sample.npz"  # this checkout's


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoints", default="seed,resnet9-attn")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--chunk", type=int, default=0)
    parser.add_argument("--repo", default=str(ROOT))
    parser.add_argument("--ig-steps", type=int, default=0, help="0: the library's default")
    parser.add_argument("--methods", default="integrated_gradients,gradcam,attention,random")
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--live", default="", help="image counts, e.g. 200,1000")
    parser.add_argument("--before", default="", help="the checkout to compare --live with")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--sides", default="before,now",
                        help="which of --live's sides to run (now alone for long runs)")
    parser.add_argument("--floor", type=int, default=0, help="images, e.g. 128")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return live_child(args)
    missing = [n for n in args.checkpoints.split(",")
               if not (ROOT / "checkpoints" / f"{n}.pt").is_file()]
    if missing or args.floor < 0:
        print(f"error: no shipped checkpoint named {', '.join(missing)} in "
              f"{ROOT / 'checkpoints'}." if missing else "error: --floor takes a number of "
              "images above 0.", file=sys.stderr)
        return 2
    if args.floor:
        return floor(args)
    if args.live:
        return live(args)
    repo = Path(args.repo).resolve()
    sys.path.insert(0, str(repo))
    import numpy as np
    import torch

    from convattn.device import pick_device
    from convattn.errors import DataError
    from convattn.explain import faithfulness as fa
    from convattn.explain.attribution import AttributionConfig, attribute, to_map
    from convattn.files.checkpoint import load_checkpoint
    from convattn.readout.stats import balanced_order
    faithrun = None
    if (repo / "convattn" / "explain" / "faithfulness_batched.py").exists():
        from convattn.explain import faithfulness_batched as faithrun

    try:
        pick_device(args.device)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    where = (torch.cuda.get_device_name() if args.device == "cuda"
             else f"CPU, {torch.get_num_threads()} threads")
    runner = "batched" if faithrun and not args.chunk else "chunks"
    print(f"convattn from {repo} · torch {torch.__version__} · {where} · runner: {runner} · "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    with np.load(SAMPLE_FILE) as f:
        images, labels = f["images"], f["labels"]
    acfg = AttributionConfig(**({"ig_steps": args.ig_steps} if args.ig_steps else {}))
    cfg = fa.FaithfulnessConfig()
    for name in args.checkpoints.split(","):
        model, info = load_checkpoint(ROOT / "checkpoints" / f"{name}.pt", args.device)
        idx = balanced_order(labels)[:args.images]
        x = torch.from_numpy(images[idx]).permute(0, 3, 1, 2).float() / 255
        x = (x - torch.tensor(info["mean"]).view(1, 3, 1, 1)) / torch.tensor(
            info["std"]).view(1, 3, 1, 1)
        with torch.no_grad():
            x = x.to(args.device)
            target = model(x).argmax(1)
        methods = args.methods.split(",")
        print(f"{name}: {args.images} images, {cfg.steps} steps, IG {acfg.ig_steps} steps")
        for method in methods:
            t0 = time.perf_counter()
            if faithrun is not None and not args.chunk:
                got = faithrun.run(model, x, torch.from_numpy(labels[idx]),
                                   [] if method in ("attention", "random") else [method],
                                   idx, cfg, acfg, attention=method == "attention",
                                   random=method == "random")
                if method == "attention" and not any(k.startswith("attention")
                                                     for k in got.curves):
                    print(f"  {method:22s} (no attention module)")
                    continue
            else:
                chunk = args.chunk or 4
                for s in range(0, len(x), chunk):
                    xc, tc = x[s:s + chunk], target[s:s + chunk]
                    if method == "attention":
                        ranks = fa.attention_ranking(model, xc)
                        if not ranks:
                            break
                    elif method == "random":
                        ranks = {"random": torch.stack([fa.random_ranking((32, 32), int(i))
                                                        for i in idx[s:s + chunk]])}
                    else:
                        ranks = {method: to_map(attribute(model, xc, tc, method, acfg))}
                    fa.perturbation_curves(model, xc, tc, ranks, cfg)
                else:
                    pass
                if method == "attention" and not fa.attention_ranking(model, x[:1]):
                    print(f"  {method:22s} (no attention module)")
                    continue
            dt = time.perf_counter() - t0
            print(f"  {method:22s} {args.images / dt:7.2f} images/s ({dt:6.1f} s)", flush=True)
        if args.full and faithrun is not None:
            idx = balanced_order(labels)[:1000]
            x = torch.from_numpy(images[idx]).permute(0, 3, 1, 2).float() / 255
            x = (x - torch.tensor(info["mean"]).view(1, 3, 1, 1)) / torch.tensor(
                info["std"]).view(1, 3, 1, 1)
            t0 = time.perf_counter()
            faithrun.run(model, x.to(args.device), torch.from_numpy(labels[idx]),
                         ["integrated_gradients", "gradcam"], idx, cfg, acfg)
            print(f"  1,000 images x (IG, Grad-CAM, attention, random): "
                  f"{time.perf_counter() - t0:6.1f} s", flush=True)
    print(f"load average at the end {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


def floor(args: argparse.Namespace) -> int:
    """The least the live run on ``--floor`` images does, part by part, timed."""
    import numpy as np
    import torch

    from convattn.explain import faithfulness_batched as faithrun
    from convattn.explain.attribution import AttributionConfig
    from convattn.explain.faithfulness import FaithfulnessConfig, perturbation_curves
    from convattn.files.checkpoint import load_checkpoint
    from convattn.readout.stats import balanced_order

    n = args.floor
    print(f"the live run's floor on {n} images; CPU, {torch.get_num_threads()} threads; "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    with np.load(SAMPLE_FILE) as f:
        images, labels = f["images"], f["labels"]
    for name in args.checkpoints.split(","):
        model, info = load_checkpoint(ROOT / "checkpoints" / f"{name}.pt")
        idx = balanced_order(labels)[:n]
        private = faithrun.inference_copy(model)
        x = faithrun._layout(private, info.normalise(images[idx]))
        batch = x[:64]
        with torch.inference_mode():
            private(batch)
            t0 = time.perf_counter()
            predicted = private(x).argmax(1)
            forward = n / (time.perf_counter() - t0)
        predicted = predicted.clone()  # out of inference mode, for the passes with gradients
        xg = batch.clone().requires_grad_(True)
        t0 = time.perf_counter()
        torch.autograd.grad(private(xg).gather(1, predicted[:64, None]).sum(), xg)
        backward = len(batch) / (time.perf_counter() - t0)
        rankers = faithrun.Rankers(private, ["integrated_gradients"], AttributionConfig(
            ig_steps=16, ig_batch=faithrun.IG_BATCH), attention=False, random=False)
        t0 = time.perf_counter()
        ig = torch.cat([rankers(x[s:s + faithrun.CHUNK], predicted[s:s + faithrun.CHUNK],
                                idx[s:s + faithrun.CHUNK])["integrated_gradients"]
                        for s in range(0, n, faithrun.CHUNK)])  # the runner's chunks
        ig_s = time.perf_counter() - t0
        rankings = {f"ranking {i}": ig + i * 1e-3 * torch.rand_like(ig) for i in range(4)}
        t0 = time.perf_counter()
        perturbation_curves(private, x, predicted, rankings, FaithfulnessConfig())
        curves_s = time.perf_counter() - t0
        print(f"  {name}: forward {forward:.0f} images/s, forward+backward {backward:.0f} "
              f"images/s; IG-16 alone {ig_s:.1f} s, 4 rankings' curves {curves_s:.1f} s: "
              f"at least {ig_s + curves_s:.1f} s (load {os.getloadavg()[0]:.2f})", flush=True)
    return 0


def live_child(args: argparse.Namespace) -> int:
    """One live run in this process (convattn from PYTHONPATH): prints one JSON line."""
    import json

    import numpy as np
    import torch

    from convattn.explain import faithfulness_batched as faithrun
    from convattn.explain.attribution import AttributionConfig
    from convattn.explain.faithfulness import FaithfulnessConfig
    from convattn.explain.verdict import against_random
    from convattn.files.checkpoint import load_checkpoint
    from convattn.readout.stats import balanced_order

    n, name = (int(v) if i == 0 else v for i, v in enumerate(args.child.split(":")))
    model, info = load_checkpoint(ROOT / "checkpoints" / f"{name}.pt")
    with np.load(SAMPLE_FILE) as f:
        images, labels = f["images"], f["labels"]
    idx = balanced_order(labels)[:n]
    x = info.normalise(images[idx])
    kwargs = {}
    alpha = 0.05
    try:
        from convattn.explain.sequential import Plan

        kwargs["plan"] = plan = Plan(n)
    except ImportError:  # the checkout before the sequential stop
        plan = None
    t0, c0 = time.perf_counter(), time.process_time()
    got = faithrun.run(model, x, torch.from_numpy(labels[idx]),
                       ["integrated_gradients", "gradcam"], idx, FaithfulnessConfig(),
                       AttributionConfig(ig_steps=16), chunk=8, **kwargs)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if plan is not None:
        alpha = plan.level(len(got))
    verdicts = {f"{r['ranking']}/{t}": r[t]["verdict"]
                for r in against_random(got, alpha=alpha) for t in ("deletion", "insertion")}
    print(json.dumps({"wall": wall, "cpu": cpu, "tested": len(got), "verdicts": verdicts,
                      "load": os.getloadavg()[0]}))
    return 0


def live(args: argparse.Namespace) -> int:
    """This checkout's live runs against ``--before``'s, alternating, fresh processes."""
    from bench.sides import checkouts, run_child  # the parent only: children run as files

    try:
        sides = checkouts(args.before, args.sides, "convattn")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"live Faithfulness runs (IG-16, Grad-CAM, attention, random; 8 steps): before = "
          f"{sides.get('before', '-')}, now = {ROOT}; load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    for name in args.checkpoints.split(","):
        for n in (int(v) for v in args.live.split(",")):
            got: dict[str, list[dict]] = {"before": [], "now": []}  # by side
            for _ in range(args.repeats):
                for side, repo in sides.items():
                    try:
                        t = run_child([sys.executable, str(Path(__file__).resolve()),
                                       "--child", f"{n}:{name}"], repo,
                                      dict(os.environ, PYTHONPATH=str(repo)), 3600)
                    except RuntimeError as e:
                        print(f"  {side}: failed: {e}")
                        return 1
                    got[side].append(t)
                    print(f"  {name} {n:5d} images, {side:6s}: {t['wall']:7.1f} s wall, "
                          f"{t['cpu']:7.1f} s CPU, {t['tested']:4d} images tested, "
                          f"load {t['load']:.2f}", flush=True)
            if not (got["before"] and got["now"]):
                continue
            same = got["before"][-1]["verdicts"] == got["now"][-1]["verdicts"]
            b = min(t["wall"] for t in got["before"])
            w = min(t["wall"] for t in got["now"])
            print(f"  {name} {n} images: {b / w:.1f}x faster (best wall of each), verdicts "
                  f"{'the same' if same else 'DIFFERENT: ' + str(got)}", flush=True)
    print(f"load average at the end {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
