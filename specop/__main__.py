"""``python -m specop`` runs the ``specop`` command."""

import sys

from specop.cli import main

sys.exit(main())
