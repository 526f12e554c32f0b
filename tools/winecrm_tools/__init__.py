"""Development tools of the wine CRM, never deployed: the demo (``python -m winecrm_tools.demo``),
the backtest (``python -m winecrm_tools.evaluation``) and the sample estate
(``winecrm_tools.samples``, fixtures for the demo, the tests, the benchmarks and the backtest).

They use the domain package ``winecrm``; nothing in ``winecrm`` imports them
(tests/winecrm_tools/samples/test_production_imports.py).
"""
