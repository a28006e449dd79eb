"""Predictive scaling: forecast arrivals from the minute roll-ups and recommend how many
worker processes to run (docs/scaling.md)."""
