"""``python -m bayescellseg.cli``."""

import sys

from bayescellseg.cli import main

sys.exit(main())
