"""Benchmark entry point: ``.venv/bin/python -m bench.run [--quick] [--scenario NAME ...] [--json PATH]``.

This process is the load client; every server it measures runs as a separate child process
(``bench.layout``), started here and killed on the way out, whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import math
import os
import platform
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import client
from bench.layout import ROOT, CpuMeter, Distributed, DistributedConfig, Embedded

SCENARIOS = ("sessions", "throughput", "echo", "embedded")

#: Full and ``--quick`` parameters of each scenario.
FULL = {"sessions_s": 60.0, "closed_s": 30.0, "warmup_s": 3.0, "embedded_n": 200}
QUICK = {"sessions_s": 10.0, "closed_s": 8.0, "warmup_s": 2.0, "embedded_n": 200}

AIMS = {
    "sessions": "every message answered, p99 < 300 ms",
    "throughput": ">= 200 msg/s",
    "embedded": "p50 < 20 ms",
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(levelname)s %(message)s"
    )
    selected = [s for s in SCENARIOS if s in (args.scenario or SCENARIOS)]
    if "echo" in selected and "throughput" not in selected:
        # The echo figures are only meaningful beside the pipeline's, measured in the same run.
        selected.insert(selected.index("echo"), "throughput")
    if not (args.project_root / "assistant" / "cli.py").is_file():
        print(f"--project-root {args.project_root}: no assistant/cli.py there", file=sys.stderr)
        return 2
    params = QUICK if args.quick else FULL
    # SIGTERM is handled like Ctrl-C, so the layouts' teardown runs exactly as on an error.
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    report: dict[str, Any] = {"meta": _meta(args, params), "scenarios": {}}
    results: dict[str, dict[str, Any]] = report["scenarios"]
    failed = False
    try:
        if any(s in selected for s in ("sessions", "throughput", "echo")):
            _distributed(selected, params, args, results)
        if "embedded" in selected:
            _embedded(params, args, results)
    except KeyboardInterrupt:
        failed = True
        print("interrupted: servers stopped, partial figures follow", file=sys.stderr)
        report["error"] = "interrupted"
    except Exception as exc:
        failed = True
        logging.exception("benchmark aborted")
        report["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        _print_tables(results)
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n")
            print(f"\nfigures written to {args.json}")
    return 1 if failed else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short durations (sessions 10 s, closed loops 8 s)")
    parser.add_argument("--scenario", action="append", choices=SCENARIOS, help="run only these (repeatable)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON to PATH")
    parser.add_argument("--sessions", type=int, default=1000, help="open sessions in 'sessions' (default 1000)")
    parser.add_argument("--rate", type=float, default=100.0, help="messages/s in 'sessions' (default 100)")
    parser.add_argument("--clients", type=int, default=40, help="concurrent clients in the closed loops (40)")
    parser.add_argument("--concurrency", type=int, default=4, help="threads per Celery worker (default 4, as compose)")
    parser.add_argument("--log-level", default="INFO", help="LOG_LEVEL of the servers (default INFO, as shipped)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the servers' logs (path printed at the end)")
    parser.add_argument(
        "--diag", action="store_true", help="servers log GC pauses and gevent hub blocking (perturbs the figures)"
    )
    parser.add_argument(
        "--project-root", type=Path, default=ROOT,
        help="run the servers from this copy of the project (to try a change without touching the tree)",
    )  # fmt: skip
    parser.add_argument("--pause", action="store_true", help="wait for Enter after start-up (to attach a profiler)")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


def _distributed(selected: list[str], params: dict[str, float], args: argparse.Namespace, results: dict) -> None:
    config = DistributedConfig(concurrency=args.concurrency, log_level=args.log_level, diag=args.diag)
    with Distributed(config, keep_logs=args.keep_logs or args.diag, root=args.project_root.resolve()) as layout:
        _step(f"starting the distributed layout on {layout.base_url} (database {layout.database})")
        layout.start()
        _pids(layout)
        token = layout.token("bench-user")
        if args.pause:
            input("servers ready; press Enter to start the load ")
        if "sessions" in selected:
            _step(f"sessions: {args.sessions} open sessions, {args.rate:g} msg/s for {params['sessions_s']:g} s")
            meter, marks = layout.cpu_meter(), layout.log_marks()

            def after_load() -> dict[str, Any]:
                return {"cpu_pct_of_one_core": meter.stop()} | layout.memory()

            results["sessions"] = _run_async(
                client.sessions_scenario(
                    layout.base_url, token, sessions=args.sessions, rate=args.rate,
                    duration=params["sessions_s"], before_load=meter.start, after_load=after_load,
                )
            )  # fmt: skip
            _finish(layout, results["sessions"], marks, args, meter)
        if "throughput" in selected:
            _step(f"throughput: {args.clients} clients, closed loop, {params['closed_s']:g} s")
            meter, marks = layout.cpu_meter(), layout.log_marks()
            results["throughput"] = _run_async(
                client.throughput_scenario(
                    layout.base_url, token, clients=args.clients, duration=params["closed_s"],
                    warmup=params["warmup_s"], window=(meter.start, meter.stop),
                )
            )  # fmt: skip
            results["throughput"]["cpu_pct_of_one_core"] = meter.result
            _finish(layout, results["throughput"], marks, args, meter)
        if "echo" in selected:
            _step("echo: starting the bare Celery echo worker (threads, concurrency 4)")
            layout.start_echo_worker(concurrency=4)
            _step(f"echo: {args.clients} clients, closed loop, {params['closed_s']:g} s")
            meter, marks = layout.cpu_meter(), layout.log_marks()
            results["echo"] = _run_async(
                client.echo_scenario(
                    layout.broker_url, layout.redis_url, clients=args.clients, duration=params["closed_s"],
                    warmup=params["warmup_s"], window=(meter.start, meter.stop),
                )
            )  # fmt: skip
            results["echo"]["cpu_pct_of_one_core"] = meter.result
            results["echo"] |= _ratios(results.get("throughput", {}), results["echo"])
            results["echo"]["worker_echo_rss_mib"] = layout.memory().get("worker_echo_rss_mib")
            _finish(layout, results["echo"], marks, args, meter)
        _step("stopping the distributed layout")


def _embedded(params: dict[str, float], args: argparse.Namespace, results: dict) -> None:
    with Embedded(keep_logs=args.keep_logs or args.diag, diag=args.diag, root=args.project_root.resolve()) as layout:
        _step(f"starting the embedded process on {layout.base_url}")
        layout.start()
        token = layout.token("bench-user")
        if args.pause:
            input(f"embedded pid {layout.proc.pid if layout.proc else '?'} ready; press Enter ")
        count = int(params["embedded_n"])
        _step(f"embedded: {count} sequential messages (pid {layout.proc.pid if layout.proc else '?'})")
        meter, marks = layout.cpu_meter(), layout.log_marks()
        meter.start()
        results["embedded"] = _run_async(client.sequential_scenario(layout.base_url, token, count=count))
        results["embedded"]["cpu_pct_of_one_core"] = meter.stop()
        results["embedded"] |= layout.memory()
        _finish(layout, results["embedded"], marks, args, meter)


def _finish(
    layout: Distributed | Embedded, figures: dict[str, Any], marks: dict[str, int], args: Any, meter: CpuMeter
) -> None:
    cpu = figures.get("cpu_pct_of_one_core") or {}
    rate = figures.get("msgs_per_s") or (
        figures.get("sent", 0) / figures.get("duration_s", 1) if "sent" in figures else 0
    )
    if cpu and rate:
        # CPU milliseconds per message: steadier than msg/s when other work shares the cores.
        per = {k: round(v * 10 / rate, 2) for k, v in cpu.items() if not k.startswith("machine_") and k != "others"}
        per["servers_total"] = round(
            sum(v for k, v in per.items() if k == "gateway" or k.startswith(("worker_", "embedded"))), 2
        )
        figures["cpu_ms_per_msg"] = per
        # Redis round trips per message (server-wide counts: others' tests on the same server add to them).
        calls = {k: round(v / (rate * figures.get("duration_s", 1)), 2) for k, v in meter.redis_calls.items()}
        figures["redis_calls_per_msg"] = dict(sorted(calls.items(), key=lambda kv: -kv[1])[:12])
    if args.diag:
        figures["diag"] = layout.diag_since(marks)
    layout.check_alive()


def _run_async(coro: Any) -> dict[str, Any]:
    # The client holds thousands of objects for the open streams: keep its own collector from pausing the
    # measurement (the same reason the gateway raises its threshold).
    gc.collect()
    gc.freeze()
    result: dict[str, Any] = asyncio.run(coro)
    gc.unfreeze()
    return result


def _ratios(pipeline: dict[str, Any], echo: dict[str, Any]) -> dict[str, Any]:
    def ratio(a: Any, b: Any) -> float:
        try:
            return round(float(a) / float(b), 2)
        except (TypeError, ValueError, ZeroDivisionError):
            return math.nan

    return {
        "pipeline_p50_over_echo_p50": ratio(pipeline.get("p50_ms"), echo.get("p50_ms")),
        "pipeline_p99_over_echo_p99": ratio(pipeline.get("p99_ms"), echo.get("p99_ms")),
        "echo_msgs_per_s_over_pipeline": ratio(echo.get("msgs_per_s"), pipeline.get("msgs_per_s")),
    }


def _pids(layout: Distributed) -> None:
    names = [f"gateway master {layout.gateway.pid if layout.gateway else '?'}"]
    names.append(f"gateway workers {layout.gateway_worker_pids()}")
    names += [f"{name} {proc.pid}" for name, proc in layout.workers.items()]
    _step("pids: " + ", ".join(names))


def _step(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


# -- output ---------------------------------------------------------------------------------------------------------

_SHOWN = {
    "sessions": [
        "sessions_created", "sse_open_after_load", "send_rate_achieved_per_s", "sent", "answered", "missing",
        "post_errors", "p50_ms", "p95_ms", "p99_ms", "max_ms", "sse_p50_ms", "sse_p99_ms", "longpoll_p50_ms",
        "longpoll_p99_ms", "post_202_p50_ms", "post_202_p99_ms", "post_to_reply_made_p50_ms",
        "post_to_reply_made_p99_ms", "dispatch_stage_p50_ms", "dispatch_stage_p99_ms", "reply_made_to_arrival_p50_ms",
        "reply_made_to_arrival_p99_ms", "scheduler_worst_lag_ms", "sse_reconnects",
        "longpoll_errors", "seconds_with_p99_over_300ms", "gateway_workers_rss_mib", "gateway_master_rss_mib",
        "worker_d1_rss_mib", "worker_d2_rss_mib", "worker_r_rss_mib",
    ],
    "throughput": [
        "clients", "duration_s", "completed", "msgs_per_s", "p50_ms", "p95_ms", "p99_ms", "max_ms", "errors",
        "dispatch_stage_p50_ms", "dispatch_stage_p99_ms",
    ],
    "echo": ["clients", "duration_s", "completed", "msgs_per_s", "p50_ms", "p95_ms", "p99_ms", "max_ms", "errors"],
    "embedded": ["messages", "answered", "errors", "p50_ms", "p95_ms", "p99_ms", "max_ms", "embedded_rss_mib"],
}  # fmt: skip


def _print_tables(results: dict[str, dict[str, Any]]) -> None:
    for name in SCENARIOS:
        figures = results.get(name)
        if not figures:
            continue
        print(f"\n== {name} ==")
        rows = [(key, figures[key]) for key in _SHOWN[name] if key in figures]
        _table(["figure", "value"], rows)
        if figures.get("cpu_pct_of_one_core"):
            cpu = figures["cpu_pct_of_one_core"]
            print("  CPU during the measured window, % of one core (2 cores = 200):")
            _table(list(cpu), [tuple(cpu.values())])
        if figures.get("cpu_ms_per_msg"):
            per = figures["cpu_ms_per_msg"]
            print("  CPU milliseconds per message:")
            _table(list(per), [tuple(per.values())])
        if figures.get("redis_calls_per_msg"):
            calls = figures["redis_calls_per_msg"]
            print("  Redis commands per message (server-wide):")
            _table(list(calls), [tuple(calls.values())])
        for proc, diag in (figures.get("diag") or {}).items():
            print(f"  diag {proc}: " + ", ".join(f"{k}={v}" for k, v in diag.items()))
        if figures.get("first_errors"):
            print("  first errors:", *figures["first_errors"], sep="\n    ")
    if "echo" in results and "throughput" in results:
        pipe, echo = results["throughput"], results["echo"]
        print("\n== pipeline (throughput) vs bare Celery echo, same closed loop ==")
        _table(
            ["figure", "pipeline", "echo", "ratio"],
            [
                ("msgs_per_s", pipe.get("msgs_per_s"), echo.get("msgs_per_s"),
                 f"echo/pipeline {echo.get('echo_msgs_per_s_over_pipeline')}"),
                ("p50_ms", pipe.get("p50_ms"), echo.get("p50_ms"),
                 f"pipeline/echo {echo.get('pipeline_p50_over_echo_p50')}"),
                ("p99_ms", pipe.get("p99_ms"), echo.get("p99_ms"),
                 f"pipeline/echo {echo.get('pipeline_p99_over_echo_p99')}"),
            ],
        )  # fmt: skip
    verdicts = _verdicts(results)
    if verdicts:
        print("\n== aims ==")
        _table(["scenario", "aim", "result"], verdicts)


def _verdicts(results: dict[str, dict[str, Any]]) -> list[tuple[str, str, str]]:
    rows = []
    if "sessions" in results:
        f = results["sessions"]
        ok = f.get("missing") == 0 and f.get("post_errors") == 0 and f.get("p99_ms", math.inf) < 300
        rows.append(("sessions", AIMS["sessions"], f"{'met' if ok else 'NOT met'} (missing {f.get('missing')}, "
                     f"p99 {f.get('p99_ms')} ms)"))  # fmt: skip
    if "throughput" in results:
        f = results["throughput"]
        ok = f.get("msgs_per_s", 0) >= 200 and f.get("errors") == 0
        rows.append(("throughput", AIMS["throughput"], f"{'met' if ok else 'NOT met'} ({f.get('msgs_per_s')} msg/s)"))
    if "embedded" in results:
        f = results["embedded"]
        ok = f.get("p50_ms", math.inf) < 20 and f.get("errors") == 0
        rows.append(("embedded", AIMS["embedded"], f"{'met' if ok else 'NOT met'} (p50 {f.get('p50_ms')} ms)"))
    return rows


def _table(header: list[str], rows: list[tuple[Any, ...]]) -> None:
    cells = [header, *[[_fmt(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for n, row in enumerate(cells):
        pairs = enumerate(zip(row, widths, strict=True))
        aligned = [cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in pairs]
        print("  " + "  ".join(aligned).rstrip())
        if n == 0:
            print("  " + "  ".join("-" * w for w in widths))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:g}"
    return str(value)


def _meta(args: argparse.Namespace, params: dict[str, float]) -> dict[str, Any]:
    def git(*cmd: str) -> str:
        try:
            return subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "argv": sys.argv,
        "quick": args.quick,
        "params": params,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "commit": git("rev-parse", "HEAD"),
        "dirty_files": git("status", "--porcelain").splitlines(),
        "server_log_level": args.log_level,
        "project_root": str(args.project_root.resolve()),
    }


if __name__ == "__main__":
    sys.exit(main())
