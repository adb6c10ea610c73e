"""Probabilistic time-series forecasting on the M1, M3 and Tourism competitions (docs/tour, issue in progress):
the nine tasks with their official train/test splits, the scores of the forecasting benchmarks and the
seasonal-naive baseline."""
