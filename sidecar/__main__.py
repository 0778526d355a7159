"""``python -m sidecar``: the same as ``lingma-gateway sidecar``."""

from common.log import exit_now
from sidecar.main import main

exit_now(main())
