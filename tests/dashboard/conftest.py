"""The dashboard tests' shared fixture: ``dash``, the real app on a loopback port with a
browser-like client (defined beside the API tests that use it most)."""

from .test_dashboard_api import dash  # noqa: F401
