"""What ``sluice chatwoot setup`` prints: each step, warnings, the values to copy, errors.

Names and URLs come from Chatwoot, so they are never read as Rich markup; values meant to be
copied into Sluice's environment are never wrapped.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape

from sluice.chatwoot.setup_errors import SetupError


class Printer:
    """The command's readable output (Rich). Texts are printed as they are (never read as
    markup: they carry names and URLs from Chatwoot); values meant to be copied are never
    wrapped."""

    def __init__(self, console: Console, errors: Console | None = None) -> None:
        self.console = console
        self.errors = errors or console

    def title(self, text: str) -> None:
        self.console.print(f"[bold]{escape(text)}[/bold]", highlight=False)

    def ok(self, text: str) -> None:
        self.console.print(f"[green]✔[/green] {escape(text)}", highlight=False)

    def warn(self, text: str) -> None:
        self.console.print(f"[yellow]![/yellow] {escape(text)}", highlight=False)

    def info(self, text: str) -> None:
        self.console.print(f"  {escape(text)}", highlight=False)

    def value(self, text: str) -> None:
        self.console.print(f"    {escape(text)}", soft_wrap=True, highlight=False)

    def error(self, exc: SetupError) -> None:
        self.errors.print(f"[red]✘ {escape(exc.problem)}[/red]", highlight=False)
        self.errors.print(f"  [bold]what to do:[/bold] {escape(exc.fix)}", highlight=False)


def named(item: dict[str, Any]) -> str:
    name = item.get("name")
    return f"{item.get('id')} ({name})" if name else str(item.get("id"))


def next_steps(out: Printer, settings: list[str], notes: list[str]) -> None:
    """The variables to set in Sluice's environment (unwrapped, to copy), then why."""
    out.title("Next, set in Sluice's environment:")
    for line in settings:
        out.value(line)
    for note in notes:
        out.info(note)
