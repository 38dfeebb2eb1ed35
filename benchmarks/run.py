"""Run the benchmark side by side and write docs/benchmarks.md from what it measured.

Every measurement runs in a fresh process (``scenario.py``) so that CPU time and
peak memory belong to one configuration. Rounds interleave the configurations
(baseline, built-in, HA Ingestor) so that machine noise hits them alike; ratios
are computed pair by pair within a round, and the table shows medians. The soak
runs once, HA Ingestor alone, after the rounds.

``--only cpu`` (or any of SECTIONS) measures those sections alone and keeps the
document's other figures, saying so at its top; ``--before COMMIT`` adds HA
Ingestor from an older commit (a temporary ``git worktree``) to the CPU rounds, and
``--after COMMIT`` loads HA Ingestor there from a commit instead of the working
tree (which may be changing while the benchmark runs).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
import contextlib
from datetime import UTC, datetime
import json
import os
from pathlib import Path
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("baseline", "builtin", "ingestor")
LAG_KINDS = ("baseline", "listener", "builtin", "ingestor")
LATENCY_RATES = (100, 1000, 5000)
V2_EVENTS = 100_000
# The backfill section's history: states the recorder holds (200 entities, 7
# days), enough that a backfill outlasts its live window.
BACKFILL_STATES = 300_000
BACKFILL_RATES = (100, 1000)
# What ``--only`` can pick, in the order a full run measures them.
SECTIONS = (
    "cpu",
    "lag",
    "latency",
    "memory",
    "outage",
    "spool",
    "v2",
    "backfill",
    "soak",
)

# Targets (issue 13, "Measure what a user sees").
CPU_RATIO = 0.30
THROUGHPUT_RATIO = 3.5
THROUGHPUT_OF_LISTENER = 0.75
LATENCY_P50_MS = 30
LATENCY_P99_MS = 100
WRITES_PER_S = 20
LAG_OVER_LISTENER_MS = 2
MEMORY_MB = 50
REPLAY_OF_SERVER = 0.90


def scenario(
    mode: str, kind: str, *options: str, timeout: float = 1200
) -> dict[str, Any]:
    """Run one measurement in a fresh process and return its JSON."""
    command = [sys.executable, str(ROOT / "benchmarks" / "scenario.py"), mode, kind]
    result = subprocess.run(
        [*command, *options],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=timeout,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"{mode} {kind} failed:\n{result.stderr[-3000:]}")
    measured: dict[str, Any] = json.loads(lines[-1])
    print(json.dumps(measured), flush=True)
    return measured


def median(values: list[float]) -> float:
    return statistics.median(values)


class Checkout:
    """A commit checked out in a temporary ``git worktree``, whose
    ``custom_components`` the scenario loads (``--components``); removed on exit."""

    def __init__(self, ref: str) -> None:
        self.ref = ref
        self.sha = git("rev-parse", "--short", f"{ref}^{{commit}}")
        self._parent = Path(tempfile.mkdtemp(prefix="ha_ingestor_checkout_"))
        self.path = self._parent / "checkout"

    def __enter__(self) -> Checkout:
        git("worktree", "add", "--detach", str(self.path), self.sha)
        return self

    @property
    def label(self) -> str:
        return self.sha if self.ref == self.sha else f"{self.ref} ({self.sha})"

    def __exit__(self, *exc: object) -> None:
        git("worktree", "remove", "--force", str(self.path))
        shutil.rmtree(self._parent, ignore_errors=True)


def git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.strip()


def head() -> str:
    """This checkout's commit, marked when its integration has local changes."""
    sha = git("rev-parse", "--short", "HEAD")
    dirty = git("status", "--porcelain", "--", "custom_components")
    return f"{sha} (with uncommitted changes)" if dirty else sha


def run_cpu(
    rounds: int, events: int, before: Checkout | None, after: Checkout | None
) -> dict[str, Any]:
    """CPU per event and throughput, in interleaved rounds of fresh processes:
    HA alone, with a no-op listener, the built-in, HA Ingestor, HA Ingestor with
    its webhook sink on (the JSON sinks section) and, with ``before``, HA
    Ingestor from an older commit (its place alternating with this one's). HA
    Ingestor is the working tree's, or with ``after`` that commit's."""
    results: dict[str, Any] = {}
    cpu: dict[str, list[float]] = {
        key: [] for key in ("listener", "builtin", "ingestor", "ratio", "own_ratio")
    }
    gc_time: dict[str, list[float]] = {
        kind: [] for kind in ("baseline", "listener", "builtin", "ingestor")
    }
    gc_full: dict[str, list[float]] = {kind: [] for kind in gc_time}
    throughput: dict[str, list[float]] = {
        "listener": [],
        "builtin": [],
        "ingestor": [],
        "ratio": [],
        "of_listener": [],
    }
    stored: dict[str, list[int]] = {"builtin": [], "ingestor": []}
    baselines: list[dict[str, Any]] = []
    sinks: dict[str, list[Any]] = {
        key: []
        for key in (
            "builtin",
            "ingestor",
            "ingestor_webhook",
            "difference",
            "ratio_ingestor",
            "ratio_webhook",
            "received",
            "stored",
            "requests",
            "mb",
            "bad_signatures",
            "events_per_s",
        )
    }
    compared: dict[str, list[float]] = {"before": [], "after": [], "difference": []}
    label = after.label if after is not None else head()
    components = [f"--components={after.path}"] if after is not None else []
    for number in range(rounds):
        order = ["baseline", "listener", "builtin", "ingestor", "ingestor_webhook"]
        if before is not None:
            # Alternate which of the two comes first.
            order.insert(3 if number % 2 else 5, "before")
        runs: dict[str, dict[str, Any]] = {}
        for kind in order:
            if kind == "before":
                assert before is not None
                runs[kind] = scenario(
                    "throughput",
                    "ingestor",
                    f"--events={events}",
                    f"--components={before.path}",
                )
            elif kind.startswith("ingestor"):
                runs[kind] = scenario(
                    "throughput", kind, f"--events={events}", *components
                )
            else:
                runs[kind] = scenario("throughput", kind, f"--events={events}")
        baselines.append(runs["baseline"])
        for kind, times in gc_time.items():
            times.append(runs[kind]["gc_s"] / events * 1e6)
            gc_full[kind].append(runs[kind]["gc_full_s"] / events * 1e6)
        base = runs["baseline"]["cpu_s"]
        per_event = {
            kind: (measured["cpu_s"] - base) / events * 1e6
            for kind, measured in runs.items()
            if kind != "baseline"
        }
        for kind in ("listener", "builtin", "ingestor"):
            cpu[kind].append(per_event[kind])
        cpu["ratio"].append(per_event["ingestor"] / per_event["builtin"])
        # The integrations' own share, above what HA pays once anything listens.
        cpu["own_ratio"].append(
            (per_event["ingestor"] - per_event["listener"])
            / (per_event["builtin"] - per_event["listener"])
        )
        throughput["listener"].append(runs["listener"]["events_per_s"])
        for kind in ("builtin", "ingestor"):
            throughput[kind].append(runs[kind]["events_per_s"])
            stored[kind].append(runs[kind]["stored"])
        throughput["ratio"].append(
            runs["ingestor"]["events_per_s"] / runs["builtin"]["events_per_s"]
        )
        throughput["of_listener"].append(
            runs["ingestor"]["events_per_s"] / runs["listener"]["events_per_s"]
        )
        webhook = runs["ingestor_webhook"]
        for kind in ("builtin", "ingestor", "ingestor_webhook"):
            sinks[kind].append(per_event[kind])
        sinks["difference"].append(
            per_event["ingestor_webhook"] - per_event["ingestor"]
        )
        sinks["ratio_ingestor"].append(per_event["ingestor"] / per_event["builtin"])
        sinks["ratio_webhook"].append(
            per_event["ingestor_webhook"] / per_event["builtin"]
        )
        sinks["received"].append(webhook["received"])
        sinks["stored"].append(webhook["stored_influxdb"])
        sinks["requests"].append(webhook["webhook_requests"])
        sinks["mb"].append(webhook["webhook_mb"])
        sinks["bad_signatures"].append(webhook["bad_signatures"])
        sinks["events_per_s"].append(webhook["events_per_s"])
        if before is not None:
            compared["before"].append(per_event["before"])
            compared["after"].append(per_event["ingestor"])
            compared["difference"].append(per_event["ingestor"] - per_event["before"])
    results["cpu_rounds"] = rounds
    results["gc_us_per_event"] = {k: median(v) for k, v in gc_time.items()}
    results["gc_full_us_per_event"] = {k: median(v) for k, v in gc_full.items()}
    results["cpu_us_per_event"] = {k: median(v) for k, v in cpu.items()}
    # The ratios of every round too: a median near a target says little alone.
    results["ratio_per_round"] = {
        "cpu": cpu["ratio"],
        "throughput": throughput["ratio"],
    }
    results["baseline_cpu_us_per_event"] = median(
        [run["cpu_s"] / events * 1e6 for run in baselines]
    )
    results["throughput"] = {k: median(v) for k, v in throughput.items()}
    results["stored"] = stored
    medians = ("builtin", "ingestor", "ingestor_webhook", "difference")
    results["sinks"] = {
        "rounds": rounds,
        "events": events,
        "cpu_us_per_event": {k: median(sinks[k]) for k in medians},
        "ratio_to_builtin": {
            "ingestor": median(sinks["ratio_ingestor"]),
            "ingestor_webhook": median(sinks["ratio_webhook"]),
        },
        "events_per_s": median(sinks["events_per_s"]),
        "per_round": sinks,
    }
    if before is not None:
        results["before_after"] = {
            "before": before.label,
            "after": label,
            "rounds": rounds,
            "cpu_us_per_event": {k: median(v) for k, v in compared.items()},
            "per_round": compared,
        }
    return results


def run_lag(rounds: int, seconds: float) -> dict[str, Any]:
    lag: dict[str, list[float]] = {kind: [] for kind in (*LAG_KINDS, "over")}
    for _ in range(rounds):
        measured = {
            kind: scenario("lag", kind, "--rate=5000", f"--seconds={seconds}")[
                "lag_p99_ms"
            ]
            for kind in LAG_KINDS
        }
        for kind, value in measured.items():
            lag[kind].append(value)
        # HA Ingestor's own share, pair by pair like the ratios.
        lag["over"].append(measured["ingestor"] - measured["listener"])
    return {"lag_p99_ms": {k: median(v) for k, v in lag.items()}, "seconds": seconds}


def run_latency(rounds: int, seconds: float) -> dict[str, Any]:
    keys = ("p50_ms", "p95_ms", "p99_ms", "writes_per_s", "points_per_write")
    latency: dict[int, dict[str, dict[str, list[float]]]] = {
        rate: {kind: {key: [] for key in keys} for kind in ("builtin", "ingestor")}
        for rate in LATENCY_RATES
    }
    for _ in range(rounds):
        for rate in LATENCY_RATES:
            for kind in ("builtin", "ingestor"):
                measured = scenario(
                    "latency", kind, f"--rate={rate}", f"--seconds={seconds}"
                )
                for key, values in latency[rate][kind].items():
                    values.append(measured[key])
    # JSON keys are strings: the rate as text.
    return {
        "latency": {
            str(rate): {
                kind: {key: median(values) for key, values in data.items()}
                for kind, data in kinds.items()
            }
            for rate, kinds in latency.items()
        },
        "seconds": seconds,
    }


def run_memory(rounds: int) -> dict[str, Any]:
    memory: dict[str, list[float]] = {"listener": [], "builtin": [], "ingestor": []}
    for _ in range(rounds):
        runs = {
            kind: scenario("memory", kind, "--events=100000")
            for kind in ("baseline", "listener", "builtin", "ingestor")
        }
        for kind in ("listener", "builtin", "ingestor"):
            memory[kind].append(runs[kind]["rss_mb"] - runs["baseline"]["rss_mb"])
    return {"memory_mb_100k": {k: median(v) for k, v in memory.items()}}


def run_outage(outage_seconds: float) -> dict[str, Any]:
    outage = {
        kind: scenario("outage", kind, "--rate=2000", f"--seconds={outage_seconds}")
        for kind in KINDS
    }
    return {
        "outage": {
            kind: {
                "rss_above_baseline_mb": outage[kind]["rss_mb"]
                - outage["baseline"]["rss_mb"],
                "fired": outage[kind]["fired"],
                "stored": outage[kind]["stored"],
            }
            for kind in ("builtin", "ingestor")
        },
        "outage_seconds": outage_seconds,
    }


def run_spool(rounds: int) -> dict[str, Any]:
    spool: dict[str, list[float]] = {
        "spool": [],
        "replay": [],
        "server": [],
        "ratio": [],
    }
    for _ in range(rounds):
        measured = scenario("spool", "ingestor", "--events=100000")
        spool["spool"].append(measured["spool_points_per_s"])
        spool["replay"].append(measured["replay_points_per_s"])
        server = scenario("ceiling", "ingestor", "--events=100000")
        spool["server"].append(server["points_per_s"])
        spool["ratio"].append(measured["replay_points_per_s"] / server["points_per_s"])
    return {
        "spool_points_per_s": median(spool["spool"]),
        "replay_points_per_s": median(spool["replay"]),
        "server_points_per_s": median(spool["server"]),
        "replay_of_server": median(spool["ratio"]),
    }


def run_v2(rounds: int) -> dict[str, Any]:
    v2: dict[str, list[float]] = {"cpu_us": [], "rss_mb": [], "setup_rss_mb": []}
    for _ in range(rounds):
        runs = {
            kind: scenario("v2", kind, f"--events={V2_EVENTS}")
            for kind in ("baseline", "ingestor")
        }
        base, entry = runs["baseline"], runs["ingestor"]
        v2["cpu_us"].append((entry["cpu_s"] - base["cpu_s"]) / V2_EVENTS * 1e6)
        v2["rss_mb"].append(entry["rss_mb"] - base["rss_mb"])
        v2["setup_rss_mb"].append(entry["rss_setup_mb"] - base["rss_setup_mb"])
    results: dict[str, Any] = {k: median(v) for k, v in v2.items()}
    results["events"] = V2_EVENTS
    return {"v2": results}


def run_backfill(rounds: int, seconds: float) -> dict[str, Any]:
    """Live latency without and with a backfill running, one process a round."""
    keys = (
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "max_ms",
        "backfilled_points",
        "backfill_points_per_s",
    )
    runs = [
        scenario(
            "backfill_latency",
            "ingestor",
            f"--events={BACKFILL_STATES}",
            f"--seconds={seconds}",
        )
        for _ in range(rounds)
    ]
    windows: dict[str, dict[str, Any]] = {
        key: {
            name: median([run["windows"][key][name] for run in runs]) for name in keys
        }
        for key in runs[0]["windows"]
    }
    for rate in BACKFILL_RATES:
        during = [run["windows"][f"{rate}_backfill"] for run in runs]
        # Rounds in which the backfill was running from the window's start to its
        # end (cancelled then), not finished inside it.
        windows[f"{rate}_backfill"]["backfill_whole_window"] = sum(
            window["backfill_running_at_start"]
            and window["backfill_ended_after_s"] is None
            for window in during
        )
        for key in (f"{rate}_alone", f"{rate}_backfill"):
            windows[key]["stored_all"] = all(
                run["windows"][key]["stored_all"] for run in runs
            )
            windows[key]["p99_per_round"] = [
                run["windows"][key]["p99_ms"] for run in runs
            ]
    return {
        "backfill": {
            "rounds": rounds,
            "seconds": seconds,
            "history_states": median([run["history_states"] for run in runs]),
            "windows": windows,
            "alone_points": median([run["backfill_alone"]["points"] for run in runs]),
            "alone_points_per_s": median(
                [run["backfill_alone"]["points_per_s"] for run in runs]
            ),
        }
    }


def run_soak(soak_minutes: float) -> dict[str, Any]:
    if soak_minutes <= 0:
        return {}
    soak = scenario(
        "soak",
        "ingestor",
        f"--minutes={soak_minutes}",
        "--rate=1000",
        timeout=soak_minutes * 60 + 1200,
    )
    # The 5-second samples stay in the run's output; the document keeps the
    # summary and its 15-step series.
    soak.pop("samples")
    return {"soak": soak}


def run(
    args: argparse.Namespace,
    sections: tuple[str, ...],
    before: Checkout | None,
    after: Checkout | None,
) -> dict[str, Any]:
    """The measurements of ``sections``, in the order of SECTIONS."""
    results: dict[str, Any] = {"rounds": args.rounds}
    steps: dict[str, Callable[[], dict[str, Any]]] = {
        "cpu": lambda: run_cpu(args.rounds, args.events, before, after),
        "lag": lambda: run_lag(args.rounds, args.seconds),
        "latency": lambda: run_latency(args.rounds, args.seconds),
        "memory": lambda: run_memory(args.rounds),
        "outage": lambda: run_outage(args.outage_seconds),
        "spool": lambda: run_spool(args.rounds),
        "v2": lambda: run_v2(args.rounds),
        "backfill": lambda: run_backfill(args.rounds, args.seconds),
        "soak": lambda: run_soak(args.soak_minutes),
    }
    for section in sections:
        results.update(steps[section]())
    return results


def versions() -> dict[str, str]:
    from homeassistant.const import __version__ as ha_version

    influxd = subprocess.run(
        ["influxd", "version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    # victoria-metrics has no version flag; Debian's package knows it.
    victoria_metrics = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "victoria-metrics"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "python": platform.python_version(),
        "homeassistant": ha_version,
        "influxd": influxd,
        "victoria_metrics": f"VictoriaMetrics {victoria_metrics or '(version unknown)'}",
        "cpu": f"{cpu}, {os.cpu_count()} cores",
        "os": platform.platform(),
    }


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _met(results: dict[str, Any]) -> dict[str, bool]:
    """Each target, met or not: the table and the analysis read the same verdicts."""
    cpu = results["cpu_us_per_event"]
    thr = results["throughput"]
    latency = results["latency"]["1000"]["ingestor"]
    outage = results["outage"]["ingestor"]
    return {
        "cpu": cpu["ratio"] <= CPU_RATIO,
        "throughput": thr["ratio"] >= THROUGHPUT_RATIO
        and thr["of_listener"] >= THROUGHPUT_OF_LISTENER,
        "latency": latency["p50_ms"] <= LATENCY_P50_MS
        and latency["p99_ms"] <= LATENCY_P99_MS,
        "writes": latency["writes_per_s"] <= WRITES_PER_S,
        "lag": results["lag_p99_ms"]["over"] <= LAG_OVER_LISTENER_MS,
        "memory": results["memory_mb_100k"]["ingestor"] < MEMORY_MB,
        "outage": outage["stored"] == outage["fired"],
        "replay": results["replay_of_server"] >= REPLAY_OF_SERVER,
    }


def _analysis(results: dict[str, Any]) -> list[str]:
    """One line per missed target, from the numbers measured."""
    met = _met(results)
    cpu = results["cpu_us_per_event"]
    thr = results["throughput"]
    latency = results["latency"]
    lag = results["lag_p99_ms"]
    own_us = cpu["ingestor"] - cpu["listener"]
    lines = []
    if not met["cpu"]:
        lines.append(
            f"CPU per event: {cpu['ratio']:.2f}x the built-in's, target "
            f"{CPU_RATIO:.2f}x (about {(cpu['ratio'] - CPU_RATIO) * cpu['builtin']:.1f}"
            " µs/event too many). "
            f"{cpu['listener']:.1f} µs of every figure is Home Assistant's own work "
            "once any `state_changed` listener exists (an `Event` per change, tied "
            "to its `Context` in a reference cycle left to the garbage collector); a "
            "real install pays it anyway for the recorder and automations. Without "
            f"it, HA Ingestor's own work is {cpu['own_ratio']:.2f}x the built-in's."
            + _gc_sentence(results)
        )
    if not met["throughput"]:
        per_event = results["baseline_cpu_us_per_event"] + cpu["ingestor"]
        wanted = THROUGHPUT_OF_LISTENER * thr["listener"]
        server = results["server_points_per_s"]
        lines.append(
            f"Throughput: {thr['ingestor']:,.0f} events/s, {thr['ratio']:.2f}x the "
            f"built-in's (target {THROUGHPUT_RATIO}x) and {thr['of_listener']:.0%} "
            f"of the {thr['listener']:,.0f} state changes/s Home Assistant fires "
            f"with one no-op listener (target {THROUGHPUT_OF_LISTENER:.0%}, "
            f"{wanted:,.0f} events/s). Firing an event costs HA "
            f"{results['baseline_cpu_us_per_event']:.1f} µs, and with HA "
            f"Ingestor's {cpu['ingestor']:.1f} µs above that, {per_event:.1f} µs "
            f"of CPU per event bounds the loop at {1e6 / per_event:,.0f} events/s "
            "if it all ran there."
            + (
                f" InfluxDB alone ingests {server:,.0f} points/s here (the replay "
                "line), below the target's rate: the server, on the same 2 cores, "
                "is a bound too."
                if server < wanted
                else ""
            )
        )
    if not met["latency"]:
        own = latency["1000"]["ingestor"]
        builtin = latency["1000"]["builtin"]
        over = [
            f"{name} {own[key]:.1f} ms (target ≤ {target}, {own[key] - target:.1f} "
            "ms over)"
            for name, key, target in (
                ("p50", "p50_ms", LATENCY_P50_MS),
                ("p99", "p99_ms", LATENCY_P99_MS),
            )
            if own[key] > target
        ]
        writes = own["writes_per_s"]
        lines.append(
            f"Latency at 1,000 events/s: {' and '.join(over)}. HA Ingestor wrote "
            f"{writes:.1f} requests/s of {own['points_per_write']:,.0f} points: "
            "with writes evenly spaced a point waits on average "
            f"{500 / writes:.0f} ms, at most {1000 / writes:.0f} ms, for the next "
            "one to start; the rest is the write's round trip and what queues "
            f"behind it. The built-in, {builtin['writes_per_s']:.1f} requests/s of "
            f"{builtin['points_per_write']:,.0f} points, shows p50 "
            f"{builtin['p50_ms']:.0f} ms and p99 {builtin['p99_ms']:.0f} ms."
        )
    if not met["writes"]:
        own = latency["1000"]["ingestor"]
        lines.append(
            f"Write requests at 1,000 events/s: {own['writes_per_s']:.1f}/s, target "
            f"≤ {WRITES_PER_S} ({own['writes_per_s'] - WRITES_PER_S:.1f} over), "
            f"batches of {own['points_per_write']:,.0f} points; at 5,000 events/s "
            f"{latency['5000']['ingestor']['writes_per_s']:.1f}/s of "
            f"{latency['5000']['ingestor']['points_per_write']:,.0f}; the built-in "
            f"makes {latency['1000']['builtin']['writes_per_s']:.1f}/s at 1,000."
        )
    if not met["lag"]:
        target = lag["listener"] + LAG_OVER_LISTENER_MS
        at_5000 = latency["5000"]["ingestor"]
        full = results.get("gc_full_us_per_event", {})
        lines.append(
            f"Event-loop lag p99 at 5,000 events/s: {lag['ingestor']:.1f} ms, target "
            f"≤ the no-op listener's {lag['listener']:.1f} + {LAG_OVER_LISTENER_MS} "
            f"= {target:.1f} ms; pair by pair HA Ingestor adds {lag['over']:.1f} ms "
            f"({lag['over'] - LAG_OVER_LISTENER_MS:.1f} ms too many). HA with no "
            f"listener shows {lag['baseline']:.1f} ms, the built-in "
            f"{lag['builtin']:.1f} ms. HA Ingestor's own CPU above the no-op "
            f"listener's, {own_us:.1f} µs per event, is {own_us * 5:.0f} ms of "
            f"every second at this rate, in {at_5000['writes_per_s']:.1f} writes/s "
            f"of {at_5000['points_per_write']:,.0f} points"
            + (
                f"; the collector's full passes (the longest stalls) cost "
                f"{full['ingestor']:.1f} µs per event with it and "
                f"{full['listener']:.1f} µs with the no-op listener."
                if full
                else "."
            )
        )
    if not met["memory"]:
        memory = results["memory_mb_100k"]
        own_mb = memory["ingestor"] - memory["listener"]
        lines.append(
            f"Memory: {memory['ingestor']:.1f} MB above baseline for 100,000 points "
            f"held in memory, target < {MEMORY_MB} MB. {memory['listener']:.1f} MB "
            "of it is Home Assistant's own garbage once any listener exists (the "
            "`Event`/`Context` cycles above, freed only by the collector); the rest "
            f"is about {own_mb * 1_048_576 / 100_000:.0f} bytes per held point."
        )
    if not met["outage"]:
        outage = results["outage"]["ingestor"]
        lines.append(
            f"Outage: {outage['stored']:,} of {outage['fired']:,} events stored "
            f"after recovery ({outage['fired'] - outage['stored']:,} lost), "
            "target all."
        )
    if not met["replay"]:
        lines.append(
            f"Replay: {results['replay_points_per_s']:,.0f} points/s, "
            f"{results['replay_of_server']:.0%} (pair by pair) of what InfluxDB "
            f"1.6.7 alone ingests on the same 2 cores, "
            f"{results['server_points_per_s']:,.0f} points/s of the same shape from "
            "a bare client writing as HA Ingestor does (5,000 points a request, two "
            f"in flight); target {REPLAY_OF_SERVER:.0%}. The rest is HA Ingestor's "
            "own part: reading the spool and handing its bodies over."
        )
    lines += _soak_misses(results)
    return lines


def _gc_row(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """The garbage collector's share of each configuration's CPU per event:
    young passes, then full passes (generation 2, the whole heap)."""
    gc_time = results.get("gc_us_per_event")
    if not gc_time:
        return []
    full = results.get("gc_full_us_per_event")

    def split(kind: str) -> str:
        if full is None:
            return f"{gc_time[kind]:.1f}"
        return f"{gc_time[kind] - full[kind]:.1f} + {full[kind]:.1f}"

    return [
        (
            "… garbage collection per event, event loop (µs)"
            + (": young passes + full passes" if full else ""),
            split("builtin"),
            split("ingestor"),
            f"HA: {split('baseline')}; + no-op listener: {split('listener')}",
            "",
            "",
        )
    ]


def _gc_sentence(results: dict[str, Any]) -> str:
    gc_time = results.get("gc_us_per_event")
    full = results.get("gc_full_us_per_event")
    if not gc_time or not full:
        return ""
    young = {kind: gc_time[kind] - full[kind] for kind in gc_time}
    return (
        f" The garbage collector alone takes {gc_time['listener']:.1f} µs of each "
        f"event once a no-op listener exists ({gc_time['baseline']:.1f} µs with "
        f"none) and {gc_time['ingestor']:.1f} µs with HA Ingestor, whose points "
        "are strings it does not track. Its full passes, which walk the whole "
        f"heap (HA Ingestor's modules and caches included), take "
        f"{full['ingestor']:.1f} µs with HA Ingestor and {full['listener']:.1f} µs "
        f"with the no-op listener; its young passes {young['ingestor']:.1f} and "
        f"{young['listener']:.1f} µs."
    )


def _per_round(results: dict[str, Any]) -> str:
    """The CPU and throughput ratios of each round, and how many met the target."""
    rounds = results.get("ratio_per_round")
    if not rounds:
        return ""
    cpu, throughput = rounds["cpu"], rounds["throughput"]
    return (
        "\nRatio to the built-in per round: CPU per event "
        f"{', '.join(f'{r:.2f}x' for r in cpu)} "
        f"({sum(r <= CPU_RATIO for r in cpu)} of {len(cpu)} within "
        f"{CPU_RATIO:.2f}x); throughput {', '.join(f'{r:.2f}x' for r in throughput)} "
        f"({sum(r >= THROUGHPUT_RATIO for r in throughput)} of {len(throughput)} at "
        f"{THROUGHPUT_RATIO}x or more).\n"
    )


def _previous_figures(path: Path) -> dict[str, Any] | None:
    """Memory, outage and replay from the document this run replaces: they
    must not get worse."""
    if not path.exists():
        return None
    text = path.read_text()
    try:
        raw = json.loads(text.split("```json\n", 1)[1].split("\n```", 1)[0])
        generated = text.split(" on ", 1)[1].split(" UTC", 1)[0]
        return {
            "generated": generated,
            "memory_mb_100k": raw["memory_mb_100k"]["ingestor"],
            "outage_stored": raw["outage"]["ingestor"]["stored"],
            "outage_fired": raw["outage"]["ingestor"]["fired"],
            "replay_points_per_s": raw["replay_points_per_s"],
        }
    except (IndexError, KeyError, ValueError):
        return None


def _against_previous(results: dict[str, Any]) -> str:
    previous = results.get("previous")
    if not previous:
        return ""
    memory = results["memory_mb_100k"]["ingestor"]
    outage = results["outage"]["ingestor"]
    replay = results["replay_points_per_s"]

    def worse(is_worse: bool) -> str:
        return " — **worse**" if is_worse else ""

    return (
        f"\nAgainst the previous document ({previous['generated']} UTC): memory "
        f"with 100,000 points held {memory:.1f} MB (then "
        f"{previous['memory_mb_100k']:.1f}){worse(memory > previous['memory_mb_100k'])}"
        f"; outage {outage['stored']:,} of {outage['fired']:,} stored (then "
        f"{previous['outage_stored']:,} of {previous['outage_fired']:,})"
        f"{worse(outage['stored'] < outage['fired'])}; replay {replay:,.0f} "
        f"points/s (then {previous['replay_points_per_s']:,.0f})"
        f"{worse(replay < previous['replay_points_per_s'])}.\n"
    )


def _soak_verdicts(soak: dict[str, Any]) -> tuple[bool, bool]:
    """(memory comes back to its pre-outage level, no growth after warm-up), each
    within the noise the soak measured."""
    before, after = soak["rss_before_outage_mb"], soak["rss_after_recovery_mb"]
    back = before is not None and after is not None
    back = back and after - before <= soak["noise_mb"]
    flat = soak["slope_mb_per_min"] * soak["fitted_minutes"] <= soak["noise_mb"]
    return back, flat


def _soak_misses(results: dict[str, Any]) -> list[str]:
    soak = results.get("soak")
    if not soak:
        return []
    back, flat = _soak_verdicts(soak)
    lines = []
    if soak["stored"] != soak["fired"]:
        lines.append(
            f"Soak: {soak['stored']:,} of {soak['fired']:,} events stored "
            f"({soak['fired'] - soak['stored']:,} lost), target all."
        )
    if not back:
        why = ""
        if (heap := soak.get("heap")) and "before_outage" in heap:
            before, end = heap["before_outage"], heap["end"]
            why = (
                " The step is one, at the outage, and flat after it. Across it, "
                "Python's live memory blocks went from "
                f"{before['python_blocks']:,} to {end['python_blocks']:,}, "
                "and "
                f"SQLite's memory from {before['sqlite_mb']:.1f} to "
                f"{end['sqlite_mb']:.1f} MB; the rest is memory the allocators "
                "keep once the outage's spooling and replay peaked (freed, not "
                "returned to the system)."
            )
        lines.append(f"Soak: {_soak_back_text(soak)}.{why}")
    if not flat:
        lines.append(f"Soak: {_soak_flat_text(soak)}.")
    return lines


def _soak_back_text(soak: dict[str, Any]) -> str:
    before, after = soak["rss_before_outage_mb"], soak["rss_after_recovery_mb"]
    if soak["recovered_at_s"] is None or after is None:
        return "delivery had not recovered from the outage by the end of the run"
    if before is None:
        return "no sample before the outage to compare with (a longer soak has one)"
    if after - before <= soak["noise_mb"]:
        return (
            "memory comes back to its pre-outage level "
            f"({after - before:+.1f} MB, within the noise of {soak['noise_mb']:.1f} MB)"
        )
    return (
        f"memory stays {after - before:.1f} MB above its pre-outage level after "
        f"recovery, beyond the noise of {soak['noise_mb']:.1f} MB"
    )


def _soak_flat_text(soak: dict[str, Any]) -> str:
    growth = soak["slope_mb_per_min"] * soak["fitted_minutes"]
    if growth <= soak["noise_mb"]:
        return (
            f"no growth after warm-up beyond noise ({soak['slope_mb_per_min']:+.2f} "
            f"MB/min over {soak['fitted_minutes']:.1f} minutes is {growth:+.1f} MB, "
            f"within {soak['noise_mb']:.1f} MB)"
        )
    return (
        f"RSS grows {soak['slope_mb_per_min']:.2f} MB/min after warm-up "
        f"({growth:.1f} MB over {soak['fitted_minutes']:.1f} minutes), beyond the "
        f"noise of {soak['noise_mb']:.1f} MB"
    )


def _soak(results: dict[str, Any]) -> str:
    """The soak's section: its figures, verdicts and RSS series."""
    soak = results.get("soak")
    if not soak:
        return "Not run this time (`--soak-minutes 0`).\n"
    before, after = soak["rss_before_outage_mb"], soak["rss_after_recovery_mb"]
    recovered = (
        f"delivery recovered (spool empty, no more points held than before the "
        f"outage) at minute {soak['recovered_at_s'] / 60:.1f}"
        if soak["recovered_at_s"] is not None
        else "delivery had not recovered by the end"
    )
    rows = [
        (
            f"RSS after a {soak['warm_up_s']:.0f} s warm-up",
            f"{soak['rss_start_mb']:.1f}",
        ),
        ("RSS peak", f"{soak['rss_peak_mb']:.1f}"),
        ("RSS at the end", f"{soak['rss_end_mb']:.1f}"),
        (
            "RSS before the outage (median of the minute before it)",
            "—" if before is None else f"{before:.1f}",
        ),
        (
            "RSS after recovery (median of the last 2 of 15 minutes)",
            "—" if after is None else f"{after:.1f}",
        ),
        (
            "Slope after warm-up, outage and recovery left out (MB/min; one slope, "
            "an intercept either side of the outage)",
            f"{soak['slope_mb_per_min']:+.3f}",
        ),
        (
            "Noise: twice the samples' standard deviation about that line, at least 1 MB",
            f"{soak['noise_mb']:.1f}",
        ),
        (
            "Most points held in memory / in the spool",
            f"{soak['held_max']:,} / {soak['spooled_max']:,}",
        ),
        ("Events fired / stored", f"{soak['fired']:,} / {soak['stored']:,}"),
    ]
    if heap := soak.get("heap"):
        before, end = heap.get("before_outage", {}), heap["end"]
        rows += [
            (
                "Python's live memory blocks, before the outage / at the end",
                f"{before.get('python_blocks', 0):,} / {end['python_blocks']:,}",
            ),
            (
                "SQLite's memory in use (the spool's page cache), before / end",
                f"{before.get('sqlite_mb', 0):.1f} / {end['sqlite_mb']:.1f}",
            ),
        ]
    table = "\n".join(f"| {name} | {value} |" for name, value in rows)
    low = min(point[1] for point in soak["series"])
    high = max(point[1] for point in soak["series"])
    series = "\n".join(
        f"| {start:g} | {rss:.1f} | {held:,} | {spooled:,} | "
        f"{'█' * (1 + round((rss - low) / max(high - low, 1e-9) * 20))} |"
        for start, rss, held, spooled in soak["series"]
    )
    return f"""HA Ingestor alone with default options, {soak["rate"]:,.0f} events/s for \
{soak["minutes"]:g} minutes, with a registry change every 10 s ({soak["registry_changes"]} in \
all: a device renamed, moved to another area or relabelled, an area renamed, an \
entity renamed, in turn; each clears the enrichment cache). InfluxDB was down \
from minute {soak["down_at_s"] / 60:.1f} to {soak["up_at_s"] / 60:.1f}; {recovered}. \
RSS is the process's current resident set (`VmRSS`), sampled every 5 s.\
{(" " + soak["separately"]) if soak.get("separately") else ""}

| soak | MB |
|---|---|
{table}

Verdict: {_soak_back_text(soak)}; {_soak_flat_text(soak)}.

| from minute | RSS (MB, median) | points held (most) | spooled (most) | |
|---|---|---|---|---|
{series}
"""


def _backfill_misses(backfill: dict[str, Any]) -> list[str]:
    """What keeps live points from keeping their latency while a backfill runs:
    at each rate, the latency targets, every live point stored, and the backfill
    running through the whole window."""
    misses = []
    for rate in BACKFILL_RATES:
        during = backfill["windows"][f"{rate}_backfill"]
        if during["p50_ms"] > LATENCY_P50_MS:
            misses.append(
                f"p50 {during['p50_ms']:.1f} ms at {rate:,}/s (target {LATENCY_P50_MS})"
            )
        if during["p99_ms"] > LATENCY_P99_MS:
            misses.append(
                f"p99 {during['p99_ms']:.1f} ms at {rate:,}/s (target {LATENCY_P99_MS})"
            )
        if not during["stored_all"]:
            misses.append(f"live points lost at {rate:,}/s")
        if during["backfill_whole_window"] != backfill["rounds"]:
            misses.append(
                f"the backfill ran through {during['backfill_whole_window']} of "
                f"{backfill['rounds']} windows at {rate:,}/s"
            )
    return misses


def _backfill(results: dict[str, Any]) -> str:
    """The backfill and live latency section, once measured."""
    backfill = results.get("backfill")
    if not backfill:
        return ""
    windows = backfill["windows"]

    def quantiles(key: str) -> str:
        return " / ".join(
            f"{windows[key][name]:.1f}" for name in ("p50_ms", "p95_ms", "p99_ms")
        )

    rows = []
    for rate in BACKFILL_RATES:
        during = windows[f"{rate}_backfill"]
        rows.append(
            f"| {rate:,} | {quantiles(f'{rate}_alone')} | "
            f"{quantiles(f'{rate}_backfill')} | "
            f"{during['backfilled_points']:,.0f} ({during['backfill_points_per_s']:,.0f}"
            f"/s) | {during['backfill_whole_window']} of {backfill['rounds']} |"
        )
    changes = ", ".join(
        f"{windows[f'{rate}_backfill']['p99_ms'] - windows[f'{rate}_alone']['p99_ms']:+.1f}"
        f" ms at {rate:,}/s"
        for rate in BACKFILL_RATES
    )
    per_round = "; ".join(
        f"{rate:,}/s: "
        + ", ".join(
            f"{alone:.1f} → {during:.1f}"
            for alone, during in zip(
                windows[f"{rate}_alone"]["p99_per_round"],
                windows[f"{rate}_backfill"]["p99_per_round"],
                strict=True,
            )
        )
        for rate in BACKFILL_RATES
    )
    misses = _backfill_misses(backfill)
    over = [
        f"{sum(p99 > LATENCY_P99_MS for p99 in windows[key]['p99_per_round'])} of "
        f"{backfill['rounds']} rounds at {rate:,}/s"
        for rate in BACKFILL_RATES
        for key in [f"{rate}_backfill"]
        if any(p99 > LATENCY_P99_MS for p99 in windows[key]["p99_per_round"])
    ]
    if over:
        changes += (
            f" (medians; the p99 with the backfill was over {LATENCY_P99_MS} ms in "
            f"{' and '.join(over)})"
        )
    verdict = (
        f"**missed** — with a backfill running: {'; '.join(misses)}; p99 moved "
        f"{changes} against the same process without it"
        if misses
        else "met — live points keep their latency while a backfill runs (p50 ≤ "
        f"{LATENCY_P50_MS} ms and p99 ≤ {LATENCY_P99_MS} ms at each rate, every "
        f"live point stored, the backfill running through every window); p99 "
        f"moved {changes}"
    )
    return f"""## Backfill and live latency

Does a backfill starve live capture? Home Assistant's recorder on a SQLite file
holds {backfill["history_states"]:,.0f} states of 200 other sensors, spread over
the 7 days before the run (written with `hass.states.async_set(...,
timestamp=...)` and committed before HA Ingestor is set up). Then, at each rate,
{backfill["seconds"]:g} s of live events without a backfill, and
{backfill["seconds"]:g} s with `ha_ingestor.backfill` over those 7 days running
(started without waiting for it, its first points written before the live events
start, cancelled when the window ends). The writer is wrapped as in the latency
rows; the live points are the meters' state changes (the backfilled ones are
days old). Default options; the recorder records the live events too, in both
windows. One process a round, medians of {backfill["rounds"]} rounds.

| live events/s | live p50 / p95 / p99 without backfill (ms) | with backfill (ms) | backfilled points written during the window (points/s) | backfill running the whole window |
|---|---|---|---|---|
{chr(10).join(rows)}

Live p99 per round, without → with the backfill: {per_round}. With a backfill
running, the live p50 falls: the backfill flushes the pipeline after each batch
it hands over, and the live points queued by then ride along instead of waiting
for the next batch. The backfill alone (no live events, to its end) wrote
{backfill["alone_points"]:,.0f} points in
{backfill["alone_points"] / backfill["alone_points_per_s"]:.1f} s, {backfill["alone_points_per_s"]:,.0f} points/s.

Verdict: {verdict}.

"""


def _rounds(values: list[float], spec: str = ".1f") -> str:
    return ", ".join(f"{value:{spec}}" for value in values)


def _sinks(results: dict[str, Any]) -> str:
    """The JSON sinks section: HA Ingestor with no sink and with the webhook on,
    in the same rounds as the CPU row."""
    sinks = results.get("sinks")
    if not sinks:
        return "Not measured in this run.\n"
    cpu, ratio, per = (
        sinks["cpu_us_per_event"],
        sinks["ratio_to_builtin"],
        sinks["per_round"],
    )
    relative = [
        difference / plain
        for difference, plain in zip(per["difference"], per["ingestor"], strict=True)
    ]
    rows = [
        ("built-in influxdb", cpu["builtin"], per["builtin"], "1.00x"),
        (
            "HA Ingestor, no JSON sink (the default)",
            cpu["ingestor"],
            per["ingestor"],
            f"{ratio['ingestor']:.2f}x ({_rounds(per['ratio_ingestor'], '.2f')})",
        ),
        (
            "HA Ingestor, webhook on",
            cpu["ingestor_webhook"],
            per["ingestor_webhook"],
            f"{ratio['ingestor_webhook']:.2f}x "
            f"({_rounds(per['ratio_webhook'], '.2f')})",
        ),
        (
            "the webhook's cost: webhook on minus no sink, pair by pair",
            cpu["difference"],
            per["difference"],
            f"+{median(relative):.0%} of no sink's",
        ),
    ]
    table = "\n".join(
        f"| {name} | {value:.1f} | {_rounds(values)} | {ratio_text} |"
        for name, value, values, ratio_text in rows
    )
    dropped = sum(n < sinks["events"] for n in results["stored"]["builtin"])
    noise = (
        f" In {dropped} of the {sinks['rounds']} rounds the built-in stored fewer "
        "than all points (it "
        "drops what waited over 30 s): its CPU there covers less work."
        if dropped
        else ""
    )
    received = ", ".join(f"{n:,}" for n in per["received"])
    stored = ", ".join(f"{n:,}" for n in per["stored"])
    return f"""With `webhook_url` and `webhook_secret` set, every recorded event is also
built as an enriched JSON event, encoded, queued to the webhook's own delivery
pipeline (batch size 5,000 like InfluxDB's here) and POSTed as a signed JSON array.
The webhook kind (`scenario.py throughput ingestor_webhook`) posts to a minimal
receiver on 127.0.0.1 (`benchmarks/receiver.py`, aiohttp) in a process of its
own, started and stopped by the scenario: it answers 204 at once and counts
the events (it checks each signature). Its CPU is not counted; Home Assistant's
is, from the first event until every point is confirmed in InfluxDB **and** the
receiver has every event. Same {sinks["events"]:,} events, in the same
{sinks["rounds"]} interleaved rounds as the CPU row above.

| CPU per event above HA's own (µs) | median | per round | ratio to the built-in: median (per round) |
|---|---|---|---|
{table}

Webhook runs: events received per round {received} (InfluxDB: {stored}),
in a median of {median(per["requests"]):.0f} requests, \
{median(per["mb"]):.0f} MB of JSON; {sum(per["bad_signatures"])} bad signatures;
{sinks["events_per_s"]:,.0f} events/s confirmed in both (median).

Noise: the 2 cores are shared with InfluxDB, the receiver and whatever else
runs on the machine at the time; CPU time suffers less from that than wall-clock
figures such as throughput, and the per-round values show the spread that
remains.{noise}
"""


def _before_after(results: dict[str, Any]) -> str:
    """The no-sink path before and after the JSON sinks, if measured."""
    compared = results.get("before_after")
    if not compared:
        return ""
    cpu, per = compared["cpu_us_per_event"], compared["per_round"]
    differences = per["difference"]
    relative = median([d / b for d, b in zip(differences, per["before"], strict=True)])
    slower = sum(d > 0 for d in differences)
    spread = max(per["before"]) - min(per["before"])
    if min(differences) <= 0 <= max(differences):
        verdict = (
            f"unchanged beyond noise: the differences change sign ({slower} of "
            f"{len(differences)} rounds slower after), and the median, "
            f"{cpu['difference']:+.1f} µs, is within the before runs' own spread "
            f"of {spread:.1f} µs"
            if abs(cpu["difference"]) <= spread
            else f"the differences change sign ({slower} of {len(differences)} "
            f"rounds slower after), but the median, {cpu['difference']:+.1f} µs, "
            f"exceeds the before runs' own spread of {spread:.1f} µs"
        )
    else:
        verdict = (
            f"**{'slower' if slower else 'faster'} in every round**, by a median "
            f"of {cpu['difference']:+.1f} µs ({relative:+.0%})"
        )
    return f"""
## No JSON sink: before and after

The default configuration (no JSON sink, InfluxDB only) at {compared["before"]}
(`--before`) and at {compared["after"]}, in the same
{compared["rounds"]} interleaved rounds as the CPU row (the two swap places every
other round). The older integration runs from a temporary `git worktree`, loaded
by `scenario.py --components`; the benchmark program is the same for both.
`scripts/bench --only cpu --before {compared["before"].split()[0]}` measures it
(`--after COMMIT` takes HA Ingestor from a commit rather than the working tree).

| CPU per event above HA's own (µs) | median | per round |
|---|---|---|
| before: {compared["before"]} | {cpu["before"]:.1f} | {_rounds(per["before"])} |
| after: {compared["after"]} | {cpu["after"]:.1f} | {_rounds(per["after"])} |
| after minus before, pair by pair | {cpu["difference"]:+.1f} ({relative:+.0%}) | \
{_rounds(differences, "+.1f")} |

Verdict: {verdict}.
"""


SECTION_NAMES = {
    "cpu": "CPU per event and throughput rows (with the garbage collection row, "
    "the per-round ratios, the JSON sinks section and the before/after comparison)",
    "lag": "event-loop lag row",
    "latency": "latency, write request and batch size rows",
    "memory": "memory row",
    "outage": "outage rows",
    "spool": "spool and replay rows",
    "v2": "2.x entry row",
    "backfill": "backfill and live latency section",
    "soak": "soak",
}


def _partial(results: dict[str, Any]) -> str:
    """Which parts a later run with ``--only`` measured again."""
    partial = results.get("partial")
    if not partial:
        return ""
    notes = []
    # Earlier ``--only`` runs whose sections this one did not measure again.
    for update in [*results.get("earlier_partials", []), partial]:
        names = [SECTION_NAMES[section] for section in update["sections"]]
        notes.append(
            f"Updated on {update['generated']} UTC by `{update['command']}`: the "
            f"{'; the '.join(names)} measured again in {update['rounds']} "
            f"interleaved rounds ({update['minutes']:.0f} minutes)"
        )
    return (
        "\n\n" + ".\n\n".join(notes) + "; everything else is from the full run above."
    )


def _machine(results: dict[str, Any], info: dict[str, str]) -> str:
    """After an ``--only`` run on another machine, the full run's."""
    machine = results.get("machine")
    if not machine or machine == info["cpu"]:
        return ""
    return f" (The full run's figures: {machine}.)"


def _now() -> str:
    return f"{datetime.now(UTC):%Y-%m-%d %H:%M}"


def _raw(path: Path) -> dict[str, Any]:
    """The raw results a document holds (its JSON block)."""
    text = path.read_text()
    raw = text.split("```json\n", 1)[1].split("\n```", 1)[0]
    results: dict[str, Any] = json.loads(raw)
    if "generated" not in results:
        results["generated"] = text.split(" on ", 1)[1].split(" UTC", 1)[0]
    if "machine" not in results and "\nMachine: " in text:
        results["machine"] = text.split("\nMachine: ", 1)[1].split(";", 1)[0]
    return results


def render(
    results: dict[str, Any], info: dict[str, str], args: argparse.Namespace
) -> str:
    cpu = results["cpu_us_per_event"]
    thr = results["throughput"]
    lat = results["latency"]
    lag = results["lag_p99_ms"]
    mem = results["memory_mb_100k"]
    out = results["outage"]
    v2 = results["v2"]
    met = _met(results)
    rates = [str(rate) for rate in LATENCY_RATES]
    generated = results.get("generated") or _now()

    def quantiles(rate: str, kind: str) -> str:
        return " / ".join(
            f"{lat[rate][kind][k]:.1f}" for k in ("p50_ms", "p95_ms", "p99_ms")
        )

    def per_rate(kind: str, key: str, spec: str) -> str:
        return " / ".join(f"{lat[rate][kind][key]:{spec}}" for rate in rates)

    rows = [
        (
            "CPU per event above HA's own (µs)",
            f"{cpu['builtin']:.1f}",
            f"{cpu['ingestor']:.1f}",
            f"{cpu['ratio']:.2f}x",
            f"≤ {CPU_RATIO:.2f}x",
            _verdict(met["cpu"]),
        ),
        (
            "… of which HA's own, once anything listens to `state_changed` (µs)",
            f"{cpu['listener']:.1f}",
            f"{cpu['listener']:.1f}",
            f"{cpu['own_ratio']:.2f}x without it",
            "",
            "",
        ),
        *_gc_row(results),
        (
            "Throughput: points confirmed in InfluxDB per second",
            f"{thr['builtin']:,.0f}",
            f"{thr['ingestor']:,.0f}",
            f"{thr['ratio']:.2f}x; {thr['of_listener']:.0%} of HA + no-op listener",
            f"≥ {THROUGHPUT_RATIO}x and ≥ {THROUGHPUT_OF_LISTENER:.0%} of HA + "
            "no-op listener",
            _verdict(met["throughput"]),
        ),
        (
            "HA alone with one no-op listener: events/s it can fire",
            f"{thr['listener']:,.0f}",
            f"{thr['listener']:,.0f}",
            "",
            "(ceiling)",
            "",
        ),
        *(
            (
                f"Latency p50 / p95 / p99 at {int(rate):,} events/s (ms)",
                quantiles(rate, "builtin"),
                quantiles(rate, "ingestor"),
                "",
                f"p50 ≤ {LATENCY_P50_MS}, p99 ≤ {LATENCY_P99_MS}"
                if rate == "1000"
                else "",
                _verdict(met["latency"]) if rate == "1000" else "",
            )
            for rate in rates
        ),
        (
            "Write requests per second at "
            + " / ".join(f"{int(rate):,}" for rate in rates)
            + " events/s",
            per_rate("builtin", "writes_per_s", ".1f"),
            per_rate("ingestor", "writes_per_s", ".1f"),
            "",
            f"≤ {WRITES_PER_S} at 1,000",
            _verdict(met["writes"]),
        ),
        (
            "… mean batch size at each rate (points per write)",
            per_rate("builtin", "points_per_write", ",.0f"),
            per_rate("ingestor", "points_per_write", ",.0f"),
            "",
            "",
            "",
        ),
        (
            "Event-loop lag p99 at 5,000 events/s (ms)",
            f"{lag['builtin']:.1f}",
            f"{lag['ingestor']:.1f}",
            f"HA: {lag['baseline']:.1f}; + no-op listener: {lag['listener']:.1f}",
            f"≤ no-op listener + {LAG_OVER_LISTENER_MS}",
            _verdict(met["lag"]),
        ),
        (
            "Peak RSS above baseline, 100,000 points held in memory (MB)",
            f"{mem['builtin']:.1f}",
            f"{mem['ingestor']:.1f}",
            "",
            f"< {MEMORY_MB}",
            _verdict(met["memory"]),
        ),
        (
            "… of which HA's own, once anything listens (MB)",
            f"{mem['listener']:.1f}",
            f"{mem['listener']:.1f}",
            "",
            "",
            "",
        ),
        (
            f"Server down {results['outage_seconds']:.0f} s at 2,000 events/s: RSS above baseline (MB)",
            f"{out['builtin']['rss_above_baseline_mb']:.1f}",
            f"{out['ingestor']['rss_above_baseline_mb']:.1f}",
            "",
            "bounded",
            "",
        ),
        (
            "… of those events, stored after recovery",
            f"{out['builtin']['stored']:,} of {out['builtin']['fired']:,}",
            f"{out['ingestor']['stored']:,} of {out['ingestor']['fired']:,}",
            "",
            "all",
            _verdict(met["outage"]),
        ),
        (
            "Into the spool, server down (points/s)",
            "—",
            f"{results['spool_points_per_s']:,.0f}",
            "",
            "",
            "",
        ),
        (
            "Replay from the spool (points/s)",
            "—",
            f"{results['replay_points_per_s']:,.0f}",
            f"InfluxDB alone: {results['server_points_per_s']:,.0f} "
            f"({results['replay_of_server']:.0%})",
            f"≥ {REPLAY_OF_SERVER:.0%} of InfluxDB alone",
            _verdict(met["replay"]),
        ),
        (
            "2.x entry (VictoriaMetrics): CPU per event above HA's own (µs) / "
            "peak RSS above baseline (MB)",
            "—",
            f"{v2['cpu_us']:.1f} / {v2['rss_mb']:.1f}",
            f"RSS after setup: {v2['setup_rss_mb']:.1f} MB",
            "before / after (below)",
            "",
        ),
    ]
    table = "\n".join("| " + " | ".join(row) + " |" for row in rows)
    analysis = "\n".join(f"- {line}" for line in _analysis(results)) or "- none"
    took = results.get("run_minutes")
    this_run = (
        f"; this run, {results['rounds']} rounds"
        + (
            f" and a {results['soak']['minutes']:g}-minute soak"
            if results.get("soak")
            else " without the soak"
        )
        + f", took {took:.0f} minutes"
        if took
        else ""
    )
    return f"""# Benchmarks

Generated by `scripts/bench` on {generated} UTC — do not edit by
hand; run it again.{_partial(results)}

HA Ingestor (full enrichment: 1,000 sensors with devices behind a hub, 20 areas
on 3 floors, 5 labels) side by side with Home Assistant's built-in `influxdb`
integration (API v1, `influxdb==5.3.2`), both writing to the same real InfluxDB
1.x on 127.0.0.1, each measurement in a fresh process running Home Assistant's
core (the test harness's `hass`). Medians of {results.get("rounds", args.rounds)} interleaved rounds;
ratios and differences are computed pair by pair within a round. CPU is the Home
Assistant process's own CPU time (all its threads) from the first event until
every point is confirmed in InfluxDB (read back with `/query`), minus the same
run without either integration; {args.events:,} `state_changed` events over 1,000
entities. InfluxDB runs on the same 2 cores, so it competes with what it measures.

Latency is what a user sees: each integration's writer is wrapped, and when a
write returns, every point in it is as old as now minus its timestamp (the
state's `last_updated`); {results["seconds"]:g} s of events at each rate, both
integrations with their default options. Write requests per second count the
writes that returned while events arrived; the batch size is points per write
over the run. Event-loop lag is how late a 5 ms sleep wakes while 5,000 events/s
arrive ({results["seconds"]:g} s); its target is relative to Home Assistant with
one no-op `state_changed` listener, which pays the same `Event`/`Context` garbage
any real install does. Throughput's target is relative to that too: what HA can
fire at all bounds any listener.

| measurement | built-in influxdb | HA Ingestor | ratio | target | |
|---|---|---|---|---|---|
{table}

Points stored of the {args.events:,} fired, per throughput round: built-in
{", ".join(f"{n:,}" for n in results["stored"]["builtin"])}; HA Ingestor
{", ".join(f"{n:,}" for n in results["stored"]["ingestor"])}. Home Assistant alone
costs {results["baseline_cpu_us_per_event"]:.1f} µs of CPU per state change here.
{_per_round(results)}{_against_previous(results)}
Replay's target is relative: at least {REPLAY_OF_SERVER:.0%} of what InfluxDB alone
ingests on the same machine from a bare client writing the same points the same
way (5,000 a request, two in flight). The fixed 100,000 points/s it replaces was
above what the server alone managed here (76,859 points/s when it was dropped),
so it measured the machine; the ratio measures what HA Ingestor adds on top
(reading the spool, handing its bodies over) and allows that a tenth.

## 2.x entry: before and after

The 2.x row sets HA Ingestor up with a 2.x entry (`api_version: "2"`, batch size
5,000) against VictoriaMetrics' InfluxDB v2 write API, fires {v2["events"]:,} events
as fast as the loop allows and waits until VictoriaMetrics holds them all
(`count_over_time` of `sensor_value` through its `/api/v1/query`). CPU per event
and peak RSS are above the same run without the entry; "RSS after setup" is
before any event, what loading the entry and its libraries costs. The same
program measures an older checkout, e.g. 07cf56d (today's batching, 2.x writer
still on influxdb-client), from the repository's root:

```sh
git worktree add /tmp/ha_before 07cf56d
cp benchmarks/scenario.py /tmp/ha_before/benchmarks/
for kind in baseline ingestor baseline ingestor baseline ingestor; do
  (cd /tmp/ha_before && "$OLDPWD/.venv-bench/bin/python" benchmarks/scenario.py v2 "$kind" --events 100000)
done
git worktree remove --force /tmp/ha_before
```

(CPU per event is `(ingestor cpu_s - baseline cpu_s) / 100,000`, RSS
`ingestor rss_mb - baseline rss_mb`, medians over the pairs.)

## JSON sinks

{_sinks(results)}{_before_after(results)}
{_backfill(results)}## Soak

{_soak(results)}
## Targets missed, by how much, and why

{analysis}

Machine: {info["cpu"]}; {info["os"]}.{_machine(results, info)} Python {info["python"]}, Home Assistant
{info["homeassistant"]}, {info["influxd"]}, {info["victoria_metrics"]}.

Reproduce: `scripts/bench` (sets up `.venv-bench` with the test toolchain plus
`influxdb==5.3.2`, starts its own InfluxDB and VictoriaMetrics; takes about 45
minutes with the defaults, 5 rounds and a 15-minute soak{this_run}).
`scripts/bench --soak-minutes 0` leaves the soak out; `scripts/bench --only cpu
--rounds 3` measures only the CPU rounds (CPU, throughput, JSON sinks) and keeps
the other figures, `--before COMMIT` adds an older commit's HA Ingestor to those
rounds; one measurement alone is
`.venv-bench/bin/python benchmarks/scenario.py MODE KIND`, e.g. `latency ingestor
--rate 1000 --seconds 10`, `soak ingestor --minutes 15 --rate 1000`, `v2 ingestor
--events 100000`, `throughput ingestor_webhook`, `backfill_latency ingestor
--events 300000` (`--only backfill` renders its section).

Raw results (medians, and the ratios of each round):

```json
{json.dumps(results, indent=2)}
```
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument(
        "--seconds", type=float, default=10, help="each lag and latency run"
    )
    parser.add_argument("--outage-seconds", type=float, default=60)
    parser.add_argument(
        "--soak-minutes",
        type=float,
        default=15,
        help="HA Ingestor alone at 1,000 events/s with an outage; 0 skips it",
    )
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmarks.md"))
    parser.add_argument(
        "--previous",
        default=str(ROOT / "docs" / "benchmarks.md"),
        help="the document whose memory, outage and replay figures to compare with",
    )
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="measure nothing: rewrite the document from the raw medians it holds",
    )
    parser.add_argument(
        "--only",
        type=lambda text: tuple(text.split(",")),
        default=SECTIONS,
        metavar=",".join(SECTIONS),
        help="measure only these sections (comma-separated) and keep the rest of "
        "the document's figures (e.g. --only cpu: CPU per event, throughput, "
        "the JSON sinks)",
    )
    parser.add_argument(
        "--before",
        metavar="COMMIT",
        help="also measure HA Ingestor (no JSON sink) from this commit's "
        "custom_components in the CPU rounds, from a temporary git worktree",
    )
    parser.add_argument(
        "--after",
        metavar="COMMIT",
        help="in the CPU rounds, load HA Ingestor from this commit's "
        "custom_components (a temporary git worktree) instead of the working tree",
    )
    args = parser.parse_args()
    if unknown := set(args.only) - set(SECTIONS):
        parser.error(f"unknown sections {sorted(unknown)}; pick from {SECTIONS}")
    sections = tuple(section for section in SECTIONS if section in args.only)
    if (args.before or args.after) and "cpu" not in sections:
        parser.error("--before and --after are for the cpu section")
    partial = sections != SECTIONS
    if args.render_only:
        results = _raw(Path(args.output))
        if "v2" not in results or "1000" not in results["latency"]:
            raise SystemExit(
                f"{args.output} predates the latency rates and the 2.x row: "
                "run the benchmark"
            )
    else:
        # Read before the run: the output may be the same file.
        previous = _previous_figures(Path(args.previous))
        earlier: dict[str, Any] = {}
        if partial:
            try:
                earlier = _raw(Path(args.output))
            except (OSError, IndexError, ValueError) as err:
                parser.error(f"--only keeps {args.output}'s other figures: {err}")
            if "cpu" in sections:
                # They belong to the CPU rounds: measured again or gone.
                earlier.pop("sinks", None)
                earlier.pop("before_after", None)
        began = time.monotonic()
        with contextlib.ExitStack() as stack:
            before, after = (
                stack.enter_context(Checkout(ref)) if ref else None
                for ref in (args.before, args.after)
            )
            measured = run(args, sections, before, after)
        minutes = (time.monotonic() - began) / 60
        if partial:
            measured.pop("rounds")
            results = {**earlier, **measured}
            # Earlier --only runs stay credited for what was not measured again.
            results["earlier_partials"] = [
                update
                for update in [
                    *earlier.get("earlier_partials", []),
                    *([earlier["partial"]] if "partial" in earlier else []),
                ]
                if not set(update["sections"]) <= set(sections)
            ]
            results["partial"] = {
                "sections": list(sections),
                "rounds": args.rounds,
                "generated": _now(),
                "minutes": minutes,
                "command": "scripts/bench " + " ".join(sys.argv[1:]),
            }
        else:
            results = measured
            results["generated"] = _now()
            results["machine"] = versions()["cpu"]
            results["run_minutes"] = minutes
            results["previous"] = previous
    Path(args.output).parent.mkdir(exist_ok=True)
    Path(args.output).write_text(render(results, versions(), args))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
