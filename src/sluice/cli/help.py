"""How ``sluice … --help`` shows options: the Typer command and group classes of every command.

Typer's rich help prints a value type beside each option (``--port <int>``), and beside flags
too (``--json <bool>``, even ``--help <bool>``), although a flag takes no value: ``--json`` is
the whole of it, and ``<bool>`` reads as if it wanted ``--json true``. These classes give
every flag (``--help`` included) an empty metavar, so the type column stays blank for flags;
options that take a value keep their type. A flag with a metavar of its own keeps it.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperCommand, TyperGroup, TyperOption

__all__ = ["SluiceCommand", "SluiceGroup"]


def _flags_without_type(params: list[Any]) -> list[Any]:
    # Typer's own option class: recent Typer versions carry their own copy of Click, so
    # its options are not click.Option instances.
    for param in params:
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""
    return params


class SluiceCommand(TyperCommand):
    """A command whose flags show no value type in its help."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _flags_without_type(super().get_params(ctx))


class SluiceGroup(TyperGroup):
    """A command group whose flags (``--help``) show no value type in its help."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _flags_without_type(super().get_params(ctx))
