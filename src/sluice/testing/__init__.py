"""Test tooling shipped with Sluice: fault injection for reliability scenarios."""

from sluice.testing.faultproxy import FaultProxy, ProxyStats

__all__ = ["FaultProxy", "ProxyStats"]
