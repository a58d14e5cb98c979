"""``python -m convattn.data pack | unpack | download``: dataset files from the command
line (the library side is ``convattn.files.data``)."""

from __future__ import annotations

import argparse
import sys

from convattn.errors import DataError
from convattn.files.data import (
    DEFAULT_DATA_HELP,
    SPLITS,
    load_split,
    pack_folder,
    resolve_data,
    unpack,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m convattn.data")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="store an ImageFolder root (train/, test/) in one .npz")
    p.add_argument("root")
    p.add_argument("out")
    u = sub.add_parser("unpack", help="write a .npz pack back out as an ImageFolder root")
    u.add_argument("pack")
    u.add_argument("root")
    d = sub.add_parser("download", help="fetch CIFAR-10 (torchvision, 170 MB) into ROOT")
    d.add_argument("root", nargs="?", default="", help=f"default: {DEFAULT_DATA_HELP}, "
                                                      "where the CLIs look without --data")
    args = parser.parse_args(argv)
    try:
        if args.command == "pack":
            out = pack_folder(args.root, args.out)
            print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB)")
        elif args.command == "unpack":
            print(f"wrote {unpack(args.pack, args.root)}")
        else:
            root = resolve_data(args.root, download=True)
            counts = [len(load_split(root, split, download=True)) for split in SPLITS]
            print(f"CIFAR-10 is in {root} ({counts[0]:,} train, {counts[1]:,} test images)")
    except (DataError, OSError, KeyError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0



if __name__ == "__main__":
    sys.exit(main())
