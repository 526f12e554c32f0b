"""``python -m winecrm_tools.evaluation`` = ``python -m winecrm_tools.evaluation.backtest``."""

import sys

from winecrm_tools.evaluation.backtest import main

sys.exit(main())
