"""Fused vs explicit ConvAttentionModule: forward + backward time and peak memory.

    python bench/bench_attention.py [--batch 256] [--device cpu|cuda] [--repeats 5] [--heads 4]

Input (B, 64, 32, 32), C' = 64, N = 1024, one head unless --heads says otherwise. The
explicit path materialises the (B, h, N, N) attention matrices; the fused one goes through
scaled_dot_product_attention.
On the GPU peak memory is torch.cuda.max_memory_allocated; on the CPU each path runs in a
fresh subprocess and the peak is the growth of its maximum resident set.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

from convattn.nn.self_attention import ConvAttentionModule


def run_path(explicit: bool, batch: int, device: str, repeats: int, dtype: str,
             heads: int = 1) -> dict:
    torch.manual_seed(0)
    module = ConvAttentionModule(64, 64, heads).to(device)
    module.set_gate_(0.5)
    x = torch.randn(batch, 64, 32, 32, device=device, requires_grad=True)
    amp = dtype == "bf16" and device == "cuda"

    def step() -> None:
        with torch.autocast(device, dtype=torch.bfloat16, enabled=amp):
            y = module(x, explicit=explicit)
        y.float().square().mean().backward()

    step()  # warm-up: kernels chosen, allocator primed
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:  # the warm-up already reached the peak; measure it in a fresh process instead
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) * 1024
    return {"seconds": sorted(times)[len(times) // 2], "peak_bytes": peak}


def cpu_peak(explicit: bool, batch: int, heads: int = 1) -> int:
    """Peak resident growth of one forward+backward in a fresh process (bytes)."""
    code = (
        "import resource, torch\n"
        "from convattn.nn.self_attention import ConvAttentionModule\n"
        f"m = ConvAttentionModule(64, 64, {heads})\n"
        f"x = torch.randn({batch}, 64, 32, 32, requires_grad=True)\n"
        "r0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        f"m(x, explicit={explicit}).square().mean().backward()\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - r0) * 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return int(out.stdout.strip())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--heads", type=int, default=1, choices=[1, 2, 4, 8, 16])
    args = p.parse_args()
    name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    print(f"ConvAttentionModule(64, 64, num_heads={args.heads}), input ({args.batch}, 64, "
          f"32, 32), {args.dtype}, {name}, torch {torch.__version__}")
    # Peaks first: a child started by a process that already peaked inherits its
    # ru_maxrss through exec on Linux.
    peaks = ({e: cpu_peak(e, args.batch, args.heads) for e in (False, True)}
             if args.device == "cpu" else {})
    res = {}
    for explicit in (False, True):
        r = run_path(explicit, args.batch, args.device, args.repeats, args.dtype, args.heads)
        if args.device == "cpu":
            r["peak_bytes"] = peaks[explicit]
        res["explicit" if explicit else "fused"] = r
        print(f"  {'explicit' if explicit else 'fused':8s}  fwd+bwd {r['seconds'] * 1e3:9.1f} ms"
              f"   peak {r['peak_bytes'] / 2**20:9.1f} MiB")
    f, e = res["fused"], res["explicit"]
    print(f"  fused is {e['seconds'] / f['seconds']:.1f}x faster and uses "
          f"{e['peak_bytes'] / max(f['peak_bytes'], 1):.1f}x less peak memory")
    print(json.dumps({"device": name, "batch": args.batch, "dtype": args.dtype,
                      "heads": args.heads, **res}))


if __name__ == "__main__":
    main()
