"""``python -m convattn.data``: the command stays where users type it; it is
``convattn.cli.data``."""

import sys

from convattn.cli.data import main

if __name__ == "__main__":
    sys.exit(main())
