"""Old module paths that still import, for code written against an earlier layout.

The package was reorganised so that its folders read as the architecture (see
docs/architecture.md). Code outside this repository may still say ``from sluice.config
import load_settings``; the finder below answers such an import with the module at its
new place (the same module object, so ``mock.patch("sluice.config.x")`` patches the real
one; where an old module was split, its path names a module that re-exports its names, and
patching there patches only that re-export). Only this table names old paths; nothing
inside the package uses them.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType

# old dotted path -> new dotted path
MOVED: dict[str, str] = {
    # settings/: every variable, its defaults and checks
    "sluice.config": "sluice.settings.config",
    "sluice.settings_env": "sluice.settings.env",
    "sluice.profiles": "sluice.service.profiles",
    "sluice.validate": "sluice.service.validate",
    "sluice.settings.profiles": "sluice.service.profiles",
    "sluice.settings.validate": "sluice.service.validate",
    # service/: the Chatwoot service, webhook to reply
    "sluice.intake": "sluice.service.intake",
    "sluice.spool": "sluice.service.spool",
    "sluice.conversations": "sluice.service.conversations",
    "sluice.pipeline": "sluice.service.pipeline",
    "sluice.app": "sluice.service.wiring",
    "sluice.system": "sluice.service.wiring",
    # beside the engine
    "sluice.retention": "sluice.monitor.retention",
    "sluice.timing": "sluice.queue.hops",
    "sluice.queue.keys": "sluice.keys",  # now every key family, not only the queue's
    # alerts/: alerting left monitor/ for a package of its own
    "sluice.monitor.alert_config": "sluice.alerts.config",
    "sluice.monitor.alert_store": "sluice.alerts.store",
    "sluice.monitor.alerts": "sluice.alerts",  # split; the package re-exports its names
    "sluice.monitor.channels": "sluice.alerts.channels",  # split; the package re-exports them
    "sluice.monitor.evaluator": "sluice.alerts.evaluator",
    "sluice.monitor.rules": "sluice.alerts.rules",
    "sluice.monitor.service": "sluice.alerts.service",
    # the dashboard became a sub-package of the API, which mounts it
    "sluice.dashboard": "sluice.api.dashboard",
    "sluice.dashboard.routes": "sluice.api.dashboard.routes",
    # the module that assembles the API, named for what it does (one app.py fewer)
    "sluice.api.app": "sluice.api.factory",
}


class _Alias(importlib.abc.Loader):
    """Loads an old path by importing the new one and returning that module object."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._spec: importlib.machinery.ModuleSpec | None = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.target)
        self._spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run (the module ran when it was imported at its new place); the import
        system has just stamped the old spec on it, so give it its own back."""
        module.__spec__ = self._spec


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _Alias(new))


def install() -> None:
    """Put the finder in front of the path finders (once)."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedFinder())
