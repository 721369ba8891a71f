"""`python3 -m fleet_rollout`: see cli.py."""

import sys

from .cli import main

sys.exit(main())
