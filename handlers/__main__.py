"""``python -m handlers``: the ``lingma-gateway`` command without an installed script."""

import sys

from handlers.cli import main

sys.exit(main())
