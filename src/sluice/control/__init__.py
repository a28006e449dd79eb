"""Adaptive concurrency: one controller per queue sets the global slot count from what it
measures, every worker takes its share (docs/adaptive-concurrency.md)."""
