"""Run the peer-queue benchmark: every library in its own environment, same machine, same run.

    python benchmarks/run_peers.py [--libs arq,saq,...] [--scenarios A,B,C,D] [--repeat 3]
                                   [--out benchmarks/results/peers.json] [--update-readme]
    python benchmarks/run_peers.py --libs sluice,sluice-otel --scenarios A   # tracing off/on

Stdlib only. Each (library, scenario) run is a separate adapter process
(``adapters/<lib>_bench.py`` in ``.venvs/<lib>``, ``adapters/bullmq_bench.mjs`` under node,
``adapters/sluice_bench.py`` in the project's ``.venv``) that prints one JSON line; see
README.md for the contract. Runs are strictly sequential (never two benchmarks at once) and
each is killed after ``--timeout``.

``sluice-otel`` is sluice with tracing on (docs/tracing.md): the same adapter, run with
OTEL_EXPORTER_OTLP_ENDPOINT pointing at a sink this runner serves on loopback, which accepts
every OTLP/HTTP export and discards it; each run records what the sink received
(``otlp_requests``, ``otlp_bytes``). Plain ``sluice`` runs without any OTEL_* variable.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT_DIR = BENCH_DIR.parent
ADAPTERS_DIR = BENCH_DIR / "adapters"
VENVS_DIR = BENCH_DIR / ".venvs"
REQUIREMENTS_DIR = BENCH_DIR / "requirements"
NODE_DIR = BENCH_DIR / "node"
README = BENCH_DIR / "README.md"
DEFAULT_OUT = BENCH_DIR / "results" / "peers.json"
SLUICE_PYTHON = ROOT_DIR / ".venv" / "bin" / "python"

sys.path.insert(0, str(ADAPTERS_DIR))
from _common import DEFAULT_JOBS, DEFAULT_REDIS_URL, Resp, redis_location  # noqa: E402

PYTHON_PEERS = ("celery", "dramatiq", "arq", "saq", "taskiq", "streaq", "rq")
PEERS = (*PYTHON_PEERS, "bullmq")
SLUICE_TRACED = "sluice-otel"  # sluice with tracing on, exporting to the runner's sink
ALL_LIBS = (*PEERS, "sluice", SLUICE_TRACED)
SCENARIOS = ("A", "B", "C", "D")

# Headline metrics per scenario: (JSON field, column title, number format).
METRICS: dict[str, list[tuple[str, str, str]]] = {
    "A": [
        ("throughput", "A throughput (jobs/s)", "{:,.0f}"),
        ("enqueue_rate", "A enqueue (jobs/s)", "{:,.0f}"),
    ],
    "B": [("efficiency", "B efficiency @{c}", "{:.2f}")],
    "C": [
        ("wait_p50_ms", "C p50 (ms)", "{:,.1f}"),
        ("wait_p95_ms", "C p95 (ms)", "{:,.1f}"),
        ("wait_p99_ms", "C p99 (ms)", "{:,.1f}"),
        ("wait_max_ms", "C max (ms)", "{:,.1f}"),
    ],
    "D": [("enqueue_rate", "D enqueue (jobs/s)", "{:,.0f}")],
}
QUIET_CPU_BUSY = 0.20  # both cores together; Redis runs on this machine, so it is included
README_START = "<!-- peer-run:start -->"
README_END = "<!-- peer-run:end -->"


@dataclass(frozen=True)
class Variant:
    """One scenario at one concurrency, e.g. B@50."""

    scenario: str
    concurrency: int

    @property
    def label(self) -> str:
        return f"B@{self.concurrency}" if self.scenario == "B" else self.scenario


class EnvError(RuntimeError):
    """A library's environment could not be prepared (reported, the run goes on)."""


# --------------------------------------------------------------------------- environments


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_checked(command: Sequence[str], cwd: Path | None = None, timeout_s: float = 900) -> None:
    proc = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if proc.returncode != 0:
        raise EnvError(f"{' '.join(command[:4])} failed: {(proc.stderr or proc.stdout)[-800:]}")


def ensure_python_venv(lib: str) -> Path:
    """Create or refresh ``.venvs/<lib>`` from ``requirements/<lib>.txt`` (pinned)."""
    requirements = REQUIREMENTS_DIR / f"{lib}.txt"
    venv = VENVS_DIR / lib
    python = venv / "bin" / "python"
    stamp = venv / ".requirements.sha256"
    wanted = sha256_of(requirements)
    if python.exists() and stamp.exists() and stamp.read_text().strip() == wanted:
        return python
    log(f"preparing {venv.relative_to(BENCH_DIR)} from {requirements.name} ...")
    shutil.rmtree(venv, ignore_errors=True)
    run_checked([sys.executable, "-m", "venv", str(venv)])
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    run_checked([*pip, "-r", str(requirements)])
    stamp.write_text(wanted + "\n")
    return python


def ensure_node_modules() -> None:
    """``npm ci`` in benchmarks/node when package-lock.json changed (or was never installed)."""
    lock = NODE_DIR / "package-lock.json"
    stamp = NODE_DIR / "node_modules" / ".lock.sha256"
    wanted = sha256_of(lock)
    if stamp.exists() and stamp.read_text().strip() == wanted:
        return
    if shutil.which("npm") is None:
        raise EnvError("npm not found")
    log("installing benchmarks/node (npm ci) ...")
    run_checked(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR)
    stamp.write_text(wanted + "\n")


def adapter_command(lib: str) -> list[str]:
    """The command prefix that runs ``lib``'s adapter, preparing its environment if needed."""
    if lib == "bullmq":
        ensure_node_modules()
        return ["node", str(ADAPTERS_DIR / "bullmq_bench.mjs")]
    if lib in ("sluice", SLUICE_TRACED):
        adapter = ADAPTERS_DIR / "sluice_bench.py"
        if not adapter.exists():
            raise EnvError("adapters/sluice_bench.py does not exist yet")
        if not SLUICE_PYTHON.exists():
            raise EnvError(f"{SLUICE_PYTHON} not found (create the project venv first)")
        return [str(SLUICE_PYTHON), str(adapter)]
    return [str(ensure_python_venv(lib)), str(ADAPTERS_DIR / f"{lib}_bench.py")]


# --------------------------------------------------------------------------- quiet machine


def cpu_busy_fraction(sample_s: float = 1.0) -> float:
    """Share of all cores busy over ``sample_s`` (from /proc/stat)."""

    def snapshot() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]
        return idle, sum(fields)

    idle0, total0 = snapshot()
    time.sleep(sample_s)
    idle1, total1 = snapshot()
    total = max(1, total1 - total0)
    return 1.0 - (idle1 - idle0) / total


def redis_ops_per_sec(redis_url: str) -> int:
    resp = Resp(redis_url)
    try:
        info = resp.command("INFO", "stats").decode()
    finally:
        resp.close()
    for line in info.splitlines():
        if line.startswith("instantaneous_ops_per_sec:"):
            return int(line.split(":", 1)[1])
    return -1


def wait_for_quiet(redis_url: str, max_wait_s: float) -> dict[str, Any]:
    """Wait (bounded) until the machine and Redis look idle; report what was seen."""
    deadline = time.monotonic() + max_wait_s
    while True:
        busy = cpu_busy_fraction()
        ops = redis_ops_per_sec(redis_url)
        quiet = busy < QUIET_CPU_BUSY
        if quiet or time.monotonic() >= deadline:
            return {"ambient_cpu_busy": round(busy, 3), "ambient_redis_ops": ops, "quiet": quiet}
        log(f"  machine busy (cpu {busy:.0%}, redis {ops} ops/s), waiting ...")


# --------------------------------------------------------------------------- running


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def stop_group(proc: subprocess.Popen[str]) -> None:
    """SIGTERM the adapter's process group (it then stops its worker), SIGKILL after 10 s."""
    for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def parse_record(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.strip().splitlines()):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            return record
    return None


def run_adapter(
    command: list[str], timeout_s: float, env: dict[str, str] | None = None
) -> dict[str, Any]:
    started = time.monotonic()
    proc = subprocess.Popen(
        command,
        cwd=BENCH_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        stop_group(proc)
        stdout, stderr = proc.communicate()
        return {"ok": False, "error": f"killed after {timeout_s:.0f} s timeout"}
    record = parse_record(stdout)
    if record is None:
        record = {"ok": False, "error": f"no JSON line (exit {proc.returncode}): {stderr[-800:]}"}
    record["runner_wall_s"] = time.monotonic() - started
    return record


class OtlpSink:
    """An OTLP/HTTP endpoint on loopback that accepts every export and discards it (an
    empty protobuf answer is a valid ExportTraceServiceResponse), counting requests and
    bytes: the collector of ``sluice-otel`` runs, as cheap as a collector can be. The
    answer follows the OTLP specification (opentelemetry-proto, docs/specification.md,
    "OTLP/HTTP Response": success is HTTP 200 with an ExportTraceServiceResponse in the
    request's encoding; every field of that message is optional)."""

    def __init__(self) -> None:
        self.requests = 0
        self.bytes = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real collector would

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                self.rfile.read(length)
                sink.requests += 1
                sink.bytes += length
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    @contextlib.contextmanager
    def serving(self) -> Iterator[OtlpSink]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()


@dataclass(frozen=True)
class Settings:
    redis_url: str
    timeout_s: float
    quiet_wait_s: float
    jobs_scale: float
    otlp_sink: OtlpSink | None = None


def adapter_env(lib: str, settings: Settings) -> dict[str, str]:
    """The adapter's environment: no OTEL_* variable from this shell, except for
    ``sluice-otel``, whose spans go to the sink and which keeps the shell's sampler
    (``OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=0.1`` measures
    sampled tracing)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    if lib == SLUICE_TRACED:
        assert settings.otlp_sink is not None
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = settings.otlp_sink.url
        for name in ("OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"):
            if name in os.environ:
                env[name] = os.environ[name]
    return env


def run_once(lib: str, prefix: list[str], variant: Variant, settings: Settings) -> dict[str, Any]:
    jobs = max(1, round(DEFAULT_JOBS[variant.scenario] * settings.jobs_scale))
    command = [
        *prefix,
        *("--scenario", variant.scenario, "--jobs", str(jobs)),
        *("--concurrency", str(variant.concurrency), "--redis-url", settings.redis_url),
        *("--results-key", f"bench:results:{lib}:{variant.label}:{uuid.uuid4().hex[:8]}"),
        *("--timeout", str(max(10.0, settings.timeout_s - 30.0))),
    ]
    ambient = wait_for_quiet(settings.redis_url, settings.quiet_wait_s)
    sink = settings.otlp_sink
    before = (sink.requests, sink.bytes) if sink is not None else (0, 0)
    record = run_adapter(command, settings.timeout_s, adapter_env(lib, settings))
    record.update(ambient)
    if lib == SLUICE_TRACED and sink is not None:
        record["otlp_requests"] = sink.requests - before[0]
        record["otlp_bytes"] = sink.bytes - before[1]
    if record.get("lib", lib) != lib:
        record["adapter_lib"] = record["lib"]
    record.update({"lib": lib, "variant": variant.label, "scenario": variant.scenario})
    record.setdefault("concurrency", variant.concurrency)
    record.setdefault("jobs", jobs)
    return record


def describe(record: dict[str, Any]) -> str:
    if not record.get("ok"):
        return f"FAILED: {str(record.get('error'))[:200]}"
    scenario = record["scenario"]
    parts = [f"{field}={record[field]:.3g}" for field, _, _ in METRICS[scenario] if field in record]
    if record.get("unexpected_results"):
        parts.append(f"unexpected_results={record['unexpected_results']}")
    return " ".join(parts)


# --------------------------------------------------------------------------- summary


def summarize(runs: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        grouped.setdefault((run["lib"], run["variant"]), []).append(run)
    summary: dict[str, dict[str, Any]] = {}
    for (lib, label), group in grouped.items():
        summary.setdefault(lib, {})[label] = summarize_group(group)
    return summary


def summarize_group(group: list[dict[str, Any]]) -> dict[str, Any]:
    ok_runs = [run for run in group if run.get("ok")]
    scenario = group[0]["scenario"]
    metrics: dict[str, dict[str, float]] = {}
    for field, _, _ in METRICS[scenario]:
        values = [float(run[field]) for run in ok_runs if field in run]
        if values:
            metrics[field] = {
                "median": statistics.median(values),
                "min": min(values),
                "max": max(values),
            }
    errors = [str(run.get("error"))[:300] for run in group if not run.get("ok")]
    return {"runs": len(group), "ok": len(ok_runs), "metrics": metrics, "errors": errors}


def lib_versions(runs: Iterable[dict[str, Any]]) -> dict[str, str]:
    versions: dict[str, str] = {}
    for run in runs:
        if run.get("lib_version"):
            versions[run["lib"]] = str(run["lib_version"])
    return versions


def format_cell(stats: dict[str, float] | None, fmt: str) -> str:
    if stats is None:
        return "—"
    median = fmt.format(stats["median"])
    if stats["min"] == stats["max"]:
        return median
    return f"{median} ({fmt.format(stats['min'])}–{fmt.format(stats['max'])})"


def table_columns(variants: Sequence[Variant]) -> list[tuple[str, str, str, str]]:
    """(variant label, field, title, format) for every column of the table."""
    columns = []
    for variant in variants:
        for field, title, fmt in METRICS[variant.scenario]:
            columns.append((variant.label, field, title.format(c=variant.concurrency), fmt))
    return columns


def markdown_table(
    summary: dict[str, dict[str, Any]],
    libs: Sequence[str],
    variants: Sequence[Variant],
    versions: dict[str, str],
) -> str:
    columns = table_columns(variants)
    header = ["library", "version", *(title for _, _, title, _ in columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for lib in libs:
        if lib not in summary:
            continue
        cells = [lib, versions.get(lib, "?")]
        for label, field, _, fmt in columns:
            group = summary[lib].get(label)
            if group is None:
                cells.append("—")
            elif group["ok"] == 0:
                cells.append("FAILED")
            else:
                cells.append(format_cell(group["metrics"].get(field), fmt))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def failures_text(summary: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for lib, groups in summary.items():
        for label, group in groups.items():
            for error in group["errors"]:
                lines.append(f"- {lib} {label}: {error}")
    return lines


# --------------------------------------------------------------------------- metadata


def machine_info(redis_url: str) -> dict[str, Any]:
    cpu_model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    return {
        "cores": os.cpu_count(),
        "cpu_model": cpu_model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "node": tool_version(["node", "--version"]),
        "redis": redis_version(redis_url),
    }


def tool_version(command: list[str]) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "missing"


def redis_version(redis_url: str) -> str:
    resp = Resp(redis_url)
    try:
        info = resp.command("INFO", "server").decode()
    finally:
        resp.close()
    for line in info.splitlines():
        if line.startswith("redis_version:"):
            return line.split(":", 1)[1].strip()
    return "?"


# --------------------------------------------------------------------------- output


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(path)


def readme_section(payload: dict[str, Any], table: str, command: str) -> str:
    meta = payload["meta"]
    machine = meta["machine"]
    versions = ", ".join(f"{lib} {ver}" for lib, ver in sorted(meta["versions"].items()))
    lines = [
        README_START,
        f"Date: {meta['finished_at']} · machine: {machine['cores']} cores "
        f"({machine['cpu_model']}), Redis {machine['redis']}, Python {machine['python']}, "
        f"Node {machine['node']} · repeats: {meta['repeat']} (median, spread min–max)",
        "",
        f"Versions: {versions}",
        "",
        table,
        "",
        f"Rerun: `{command}`",
    ]
    failures = failures_text(payload["summary"])
    if failures:
        lines += ["", "Failed runs:", "", *failures]
    lines.append(README_END)
    return "\n".join(lines)


def update_readme(section: str) -> None:
    text = README.read_text() if README.exists() else "# Benchmarks\n"
    if README_START in text and README_END in text:
        head, rest = text.split(README_START, 1)
        tail = rest.split(README_END, 1)[1]
        text = head + section + tail
    else:
        text = text.rstrip() + "\n\n## Last peer run\n\n" + section + "\n"
    README.write_text(text)


# --------------------------------------------------------------------------- main


def parse_list(text: str, allowed: Sequence[str], what: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [item for item in items if item not in allowed]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)} (choose from {', '.join(allowed)})")
    return items


def build_variants(scenarios: Sequence[str], b_concurrency: Sequence[int]) -> list[Variant]:
    variants = []
    for scenario in SCENARIOS:
        if scenario not in scenarios:
            continue
        levels = b_concurrency if scenario == "B" else [10]
        variants.extend(Variant(scenario, level) for level in levels)
    return variants


def parse_cli(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--libs", default=",".join(PEERS), help=f"from {','.join(ALL_LIBS)}")
    parser.add_argument("--scenarios", default="A,B,C,D")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--b-concurrency", default="10,50", help="concurrency levels for B")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per run")
    parser.add_argument("--quiet-wait", type=float, default=60.0, help="max s to wait for idle")
    parser.add_argument("--jobs-scale", type=float, default=1.0, help="scale job counts (smoke)")
    parser.add_argument("--update-readme", action="store_true", help="rewrite 'Last peer run'")
    args = parser.parse_args(argv)
    if redis_location(args.redis_url)[2] == 0:
        parser.error("refusing to use Redis db 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_cli(argv)
    libs = parse_list(args.libs, ALL_LIBS, "library")
    variants = build_variants(
        parse_list(args.scenarios, SCENARIOS, "scenario"),
        [int(x) for x in args.b_concurrency.split(",")],
    )
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(OtlpSink().serving()) if SLUICE_TRACED in libs else None
        settings = Settings(args.redis_url, args.timeout, args.quiet_wait, args.jobs_scale, sink)
        return run_all(args, argv, libs, variants, settings)


def run_all(
    args: argparse.Namespace,
    argv: Sequence[str] | None,
    libs: Sequence[str],
    variants: Sequence[Variant],
    settings: Settings,
) -> int:
    command = "python benchmarks/run_peers.py " + " ".join(
        arg for arg in (argv if argv is not None else sys.argv[1:])
    )
    payload: dict[str, Any] = {
        "meta": {
            "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": machine_info(args.redis_url),
            "repeat": args.repeat,
            "jobs_scale": args.jobs_scale,
            "command": command.strip(),
        },
        "runs": [],
    }
    prefixes = prepare_all(libs, payload)
    total = len(prefixes) * len(variants) * args.repeat
    done = 0
    for repeat in range(1, args.repeat + 1):
        for lib, prefix in prefixes.items():
            for variant in variants:
                done += 1
                log(f"[{done}/{total}] {lib} {variant.label} (repeat {repeat}/{args.repeat})")
                record = run_once(lib, prefix, variant, settings)
                record["repeat"] = repeat
                log(f"  {describe(record)}")
                payload["runs"].append(record)
                finish(payload, args.out)
    finish(payload, args.out)
    table = markdown_table(payload["summary"], libs, variants, payload["meta"]["versions"])
    print(table)
    if args.update_readme:
        update_readme(readme_section(payload, table, command.strip()))
    return 0


def prepare_all(libs: Sequence[str], payload: dict[str, Any]) -> dict[str, list[str]]:
    prefixes: dict[str, list[str]] = {}
    skipped = payload["meta"].setdefault("skipped", {})
    for lib in libs:
        try:
            prefixes[lib] = adapter_command(lib)
        except (EnvError, subprocess.TimeoutExpired) as exc:
            skipped[lib] = str(exc)
            log(f"skipping {lib}: {exc}")
    return prefixes


def finish(payload: dict[str, Any], out: Path) -> None:
    payload["summary"] = summarize(payload["runs"])
    payload["meta"]["versions"] = lib_versions(payload["runs"])
    payload["meta"]["finished_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    write_json(out, payload)


if __name__ == "__main__":
    sys.exit(main())
