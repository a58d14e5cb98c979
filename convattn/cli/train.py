"""Training: ``python -m convattn.train --arch seed --preset tutorial --out runs/seed.pt``.

Runs on the GPU when there is one (bf16 autocast, channels_last, data kept on the GPU)
and on the CPU otherwise; ``torchrun --nproc_per_node K -m convattn.train ...`` trains
with DistributedDataParallel. A checkpoint is written atomically after every epoch, and
``--resume`` continues from it to the same final weights as an uninterrupted run, or
extends a run to more epochs (``--resume --epochs N``).

With no dataset and no network, ``--data sample`` trains on the bundled 2,000 training
images and tests on the bundled 1,000: ``python -m convattn.train --arch seed --data
sample --epochs 1 --out runs/first.pt``.
"""

from __future__ import annotations

import argparse
import sys

import torch.distributed as dist

from convattn.cli.flags import USER_ERRORS, add_config_flags, config_from_args
from convattn.jobs.training import PRESET_HELP, PRESETS, TrainConfig, train


def parse_config(argv: list[str] | None = None) -> TrainConfig:
    parser = argparse.ArgumentParser(prog="python -m convattn.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    presets = "; ".join(f"{name}: {text}" for name, text in PRESET_HELP.items())
    parser.add_argument("--preset", choices=list(PRESETS), default="tutorial",
                        help=f"recipe to start from, other flags override it ({presets}) "
                             "(default: tutorial)")
    add_config_flags(parser, TrainConfig)
    args = parser.parse_args(argv)
    return config_from_args(PRESETS[args.preset], args)



def main(argv: list[str] | None = None) -> int:
    try:
        cfg = parse_config(argv)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        train(cfg)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted; the last finished epoch is in {cfg.out} (use --resume).",
              file=sys.stderr)
        return 130
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0



if __name__ == "__main__":
    sys.exit(main())
