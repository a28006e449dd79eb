"""The Chatwoot service: a webhook in (:mod:`~sluice.service.intake`), a reply out
(:mod:`~sluice.service.pipeline`), and what connects them to the engine
(:mod:`~sluice.service.wiring`). docs/architecture.md follows one message through it."""
