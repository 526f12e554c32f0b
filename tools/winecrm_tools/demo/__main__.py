"""``python -m winecrm_tools.demo`` (``make demo``)."""

import sys

from winecrm_tools.demo.run import main

sys.exit(main())
