"""``python -m dyna``: the same as the ``dyna`` command."""

import sys

from dyna.cli import main

if __name__ == "__main__":
    sys.exit(main())
