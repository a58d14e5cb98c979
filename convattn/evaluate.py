"""``python -m convattn.evaluate``: the command stays where users type it; it is
``convattn.cli.evaluate``."""

import sys

from convattn.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
