"""Deadlines from what was promised: Chatwoot SLA policies (with business hours), the
customer's first unanswered message as the clock start, and priority rules from a YAML
file (docs/priorities.md). :func:`sluice.deadlines.decide.decide` is the one decision."""
