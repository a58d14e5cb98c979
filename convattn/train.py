"""``python -m convattn.train``: the command stays where users type it; it is
``convattn.cli.train``."""

import sys

from convattn.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
