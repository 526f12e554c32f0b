"""``python -m winecrm.evaluation`` = ``python -m winecrm.evaluation.backtest``."""

import sys

from winecrm.evaluation.backtest import main

sys.exit(main())
