"""``python -m convattn.checks``: the command stays where users type it; it is
``convattn.cli.checks``."""

import sys

from convattn.cli.checks import main

if __name__ == "__main__":
    sys.exit(main())
