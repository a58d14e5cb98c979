"""``python -m convattn.ablation``: the command stays where users type it; it is
``convattn.cli.ablation``."""

import sys

from convattn.cli.ablation import main

if __name__ == "__main__":
    sys.exit(main())
