"""Settings: every environment variable Sluice reads and its defaults, the one translation
of a bad value into a :class:`ConfigError`, and URL redaction. The lowest layer: it imports
nothing else of Sluice but the errors.

``from sluice.settings import Settings, load_settings, ConfigError`` is all most code needs.
"""

from sluice.errors import ConfigError
from sluice.settings.config import Settings, load_settings

__all__ = ["ConfigError", "Settings", "load_settings"]
