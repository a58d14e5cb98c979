"""One query's attention row vs every row: what a click in the app costs.

    python bench/bench_row.py [--arch seed] [--batch 1] [--device cpu|cuda]

'full' runs the model with attention capture (attention_maps, all N rows of every
module); 'row' reuses cached queries/keys of the module's input and forms one row
(attention_row). Median of 20 runs.
"""

from __future__ import annotations

import argparse
import time

import torch

from convattn.nn.models import create_model
from convattn.nn.self_attention import attention_row
from convattn.readout.attention import attention_maps, attention_modules, module_inputs


def median_ms(fn, device: str, repeats: int = 20) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return 1e3 * sorted(times)[len(times) // 2]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="seed")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    model = create_model(args.arch).eval().to(args.device)
    images = torch.randn(args.batch, 3, 32, 32, device=args.device)
    name, module = next(iter(attention_modules(model).items()))
    x = module_inputs(model, images)[name]
    q, k = module.queries_keys(x)
    query = q.shape[-2] // 2
    full = median_ms(lambda: attention_maps(model, images), args.device)
    inputs = median_ms(lambda: module_inputs(model, images), args.device)
    all_rows = median_ms(lambda: module.attention_weights(q, k), args.device)
    row = median_ms(lambda: attention_row(q, k, query), args.device)
    dev = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    print(f"{args.arch}, batch {args.batch}, module {name} (N = {q.shape[-2]}), {dev}")
    print(f"  attention_maps (model forward, every row of every module): {full:8.2f} ms")
    print(f"  module_inputs (fused forward, once per image):             {inputs:8.2f} ms")
    print(f"  all N rows from cached q, K (attention_weights):           {all_rows:8.3f} ms")
    print(f"  one row from cached q, K (attention_row):                  {row:8.3f} ms "
          f"({all_rows / row:.0f}x less than all rows)")

if __name__ == "__main__":
    main()
