"""`python -m trio_ws`: see trio_ws.cli."""

import sys

from .cli import main

sys.exit(main())
