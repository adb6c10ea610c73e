"""Probabilistic time-series forecasting on the M1, M3 and Tourism competitions or a user's series
(``python -m problems time-series``; docs/tour/time-series.md): window models trained with interp, forecasts by
self-guidance, Feynman–Kac-corrected guidance, refinement and a conditional model, beside statistical baselines,
scored by WQL, MASE and CRPS."""
