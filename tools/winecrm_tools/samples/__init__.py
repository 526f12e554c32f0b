"""Sample iSaVigne exports for the demo, the tests, the benchmarks and the backtest: a fixtures
library, apart from the demo that drives Airflow with them and from what runs in production."""
