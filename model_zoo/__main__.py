"""Entry point: ``python -m model_zoo``."""

import sys

from model_zoo.cli import main

sys.exit(main())
