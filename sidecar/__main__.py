"""``python -m sidecar``: the same as ``lingma-gateway sidecar``."""

import sys

from sidecar.main import main

sys.exit(main())
