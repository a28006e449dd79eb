"""The `sluice` command line: run the system, run workers, operate a queue.

One module per command or command group, so each reads on its own; this module only puts
them together, in the order ``sluice --help`` lists them. :data:`app` is the console
script's entry point (``sluice = "sluice.cli:app"``) and what ``python -m sluice`` runs.

* running: :mod:`~sluice.cli.worker`, :mod:`~sluice.cli.serve`, :mod:`~sluice.cli.up`
  (with :mod:`~sluice.cli.demo`)
* operating a running queue: :mod:`~sluice.cli.queue` (status, pause, resume, drain,
  partitions),
  :mod:`~sluice.cli.dlq`
* trying and checking: :mod:`~sluice.cli.simulate`, :mod:`~sluice.cli.loadtest`,
  :mod:`~sluice.cli.validate`, :mod:`~sluice.cli.chatwoot` (setup)
* shared by all: :mod:`~sluice.cli.common` (settings, Redis, event loop, consoles) and
  :mod:`~sluice.cli.help` (how ``--help`` shows options)
"""

from __future__ import annotations

import logging

import typer

from sluice.cli import chatwoot, dlq, loadtest, queue, serve, simulate, up, validate, worker
from sluice.cli.help import SluiceCommand, SluiceGroup

app = typer.Typer(
    cls=SluiceGroup,
    help="Sluice: every customer chat message answered within its SLA.",
    no_args_is_help=True,
    add_completion=False,
)

for command in (
    worker.worker,
    serve.serve,
    up.up,
    queue.status,
    queue.pause,
    queue.resume,
    queue.drain,
    queue.partitions,
    simulate.simulate,
    loadtest.loadtest,
    validate.validate,
):
    app.command(cls=SluiceCommand)(command)
app.add_typer(chatwoot.group, name="chatwoot")
app.add_typer(dlq.group, name="dlq")


def main() -> None:  # pragma: no cover - console script entry
    logging.captureWarnings(True)
    app()
