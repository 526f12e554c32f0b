"""``python -m winecrm.demo`` (``make demo``)."""

import sys

from winecrm.demo.run import main

sys.exit(main())
