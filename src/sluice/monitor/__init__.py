"""Monitoring: hop timing aggregates, SLA windows, the signals they yield, and /metrics names.

Alerting on those signals (rules, lifecycle, channels) lives in :mod:`sluice.alerts`.
"""
