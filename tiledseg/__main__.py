"""``python -m tiledseg``: the command line (see :mod:`tiledseg.cli`)."""

import sys

from tiledseg.cli import main

sys.exit(main())
