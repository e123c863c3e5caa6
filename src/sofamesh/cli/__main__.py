"""`python -m sofamesh.cli` is the `sofamesh` console script."""

import sys

from sofamesh.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
