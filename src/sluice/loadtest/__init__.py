"""`sluice loadtest` and the demo's customers: many concurrent conversations against the
Chatwoot simulator, measured as the customer sees it.

Every customer opens a conversation, writes (sometimes a burst of lines), waits for the
reply, thinks, and writes again; all customers together keep to the offered rate. The SLA
of a line is the time from its creation in (fake) Chatwoot to the first reply the customer
receives after it — webhook, intake, queue, broker, Chatwoot API and all.
"""

from sluice.loadtest.config import ACCOUNT, LINES, LoadConfig, parse_mode
from sluice.loadtest.customers import Tally, TokenBucket, customer, start_customers
from sluice.loadtest.processes import PartFailed, run_loadtest_processes
from sluice.loadtest.report import report_table, write_json
from sluice.loadtest.run import run_loadtest
from sluice.loadtest.system import (
    AGENT_BOT_ID_VAR,
    run_system_with_simulator,
    simulator_config,
    system_env,
    wired_env,
)

__all__ = [
    "ACCOUNT",
    "AGENT_BOT_ID_VAR",
    "LINES",
    "LoadConfig",
    "PartFailed",
    "Tally",
    "TokenBucket",
    "customer",
    "parse_mode",
    "report_table",
    "run_loadtest",
    "run_loadtest_processes",
    "run_system_with_simulator",
    "simulator_config",
    "start_customers",
    "system_env",
    "wired_env",
    "write_json",
]
