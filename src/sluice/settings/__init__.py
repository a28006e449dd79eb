"""Settings: every environment variable Sluice reads, its profile defaults, and the checks
`sluice validate` runs against them.

``from sluice.settings import Settings, load_settings, ConfigError`` is all most code needs.
"""

from sluice.errors import ConfigError
from sluice.settings.config import Settings, load_settings

__all__ = ["ConfigError", "Settings", "load_settings"]
