"""`python -m sofamesh.intercept`: the same as `sofamesh-init`."""

import sys

from sofamesh.intercept.init import main

sys.exit(main())
