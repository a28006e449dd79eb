"""Monitoring: hop timing aggregates, SLA windows, alerts, and the metrics they feed."""
