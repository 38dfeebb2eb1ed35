"""Run the benchmark side by side and write docs/benchmarks.md from what it measured.

Every measurement runs in a fresh process (``scenario.py``) so that CPU time and
peak memory belong to one configuration. Rounds interleave the configurations
(baseline, built-in, HA Ingestor) so that machine noise hits them alike; ratios
are computed pair by pair within a round, and the table shows medians.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
import json
import os
from pathlib import Path
import platform
import statistics
import subprocess
import sys
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("baseline", "builtin", "ingestor")
LAG_KINDS = ("baseline", "listener", "builtin", "ingestor")


def scenario(mode: str, kind: str, *options: str) -> dict[str, Any]:
    """Run one measurement in a fresh process and return its JSON."""
    command = [sys.executable, str(ROOT / "benchmarks" / "scenario.py"), mode, kind]
    result = subprocess.run(
        [*command, *options],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=1200,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"{mode} {kind} failed:\n{result.stderr[-3000:]}")
    measured: dict[str, Any] = json.loads(lines[-1])
    print(json.dumps(measured), flush=True)
    return measured


def median(values: list[float]) -> float:
    return statistics.median(values)


def run(rounds: int, events: int, outage_seconds: float) -> dict[str, Any]:
    """All measurements; returns medians and per-round ratios."""
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
    }
    stored: dict[str, list[int]] = {"builtin": [], "ingestor": []}
    baselines: list[dict[str, Any]] = []
    for _ in range(rounds):
        runs = {
            kind: scenario("throughput", kind, f"--events={events}")
            for kind in ("baseline", "listener", "builtin", "ingestor")
        }
        baselines.append(runs["baseline"])
        for kind, measured in runs.items():
            gc_time[kind].append(measured["gc_s"] / events * 1e6)
            gc_full[kind].append(measured["gc_full_s"] / events * 1e6)
        base = runs["baseline"]["cpu_s"]
        per_event = {
            kind: (runs[kind]["cpu_s"] - base) / events * 1e6
            for kind in ("listener", "builtin", "ingestor")
        }
        for kind, value in per_event.items():
            cpu[kind].append(value)
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
    results["rounds"] = rounds
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

    lag: dict[str, list[float]] = {kind: [] for kind in LAG_KINDS}
    for _ in range(rounds):
        for kind in LAG_KINDS:
            lag[kind].append(
                scenario("lag", kind, "--rate=5000", "--seconds=10")["lag_p99_ms"]
            )
    results["lag_p99_ms"] = {k: median(v) for k, v in lag.items()}

    latency: dict[str, dict[str, list[float]]] = {
        kind: {"p50_ms": [], "p95_ms": [], "p99_ms": []}
        for kind in ("builtin", "ingestor")
    }
    for _ in range(rounds):
        for kind in ("builtin", "ingestor"):
            measured = scenario("latency", kind, "--rate=1000", "--seconds=10")
            for key, values in latency[kind].items():
                values.append(measured[key])
    results["latency"] = {
        kind: {key: median(values) for key, values in data.items()}
        for kind, data in latency.items()
    }

    memory: dict[str, list[float]] = {"listener": [], "builtin": [], "ingestor": []}
    for _ in range(rounds):
        runs = {
            kind: scenario("memory", kind, "--events=100000")
            for kind in ("baseline", "listener", "builtin", "ingestor")
        }
        for kind in ("listener", "builtin", "ingestor"):
            memory[kind].append(runs[kind]["rss_mb"] - runs["baseline"]["rss_mb"])
    results["memory_mb_100k"] = {k: median(v) for k, v in memory.items()}

    outage = {
        kind: scenario("outage", kind, "--rate=2000", f"--seconds={outage_seconds}")
        for kind in KINDS
    }
    results["outage"] = {
        kind: {
            "rss_above_baseline_mb": outage[kind]["rss_mb"]
            - outage["baseline"]["rss_mb"],
            "fired": outage[kind]["fired"],
            "stored": outage[kind]["stored"],
        }
        for kind in ("builtin", "ingestor")
    }
    results["outage_seconds"] = outage_seconds

    spool: dict[str, list[float]] = {"spool": [], "replay": [], "server": []}
    for _ in range(rounds):
        measured = scenario("spool", "ingestor", "--events=100000")
        spool["spool"].append(measured["spool_points_per_s"])
        spool["replay"].append(measured["replay_points_per_s"])
        server = scenario("ceiling", "ingestor", "--events=100000")
        spool["server"].append(server["points_per_s"])
    results["spool_points_per_s"] = median(spool["spool"])
    results["replay_points_per_s"] = median(spool["replay"])
    results["server_points_per_s"] = median(spool["server"])
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
    return {
        "python": platform.python_version(),
        "homeassistant": ha_version,
        "influxd": influxd,
        "cpu": f"{cpu}, {os.cpu_count()} cores",
        "os": platform.platform(),
    }


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _analysis(results: dict[str, Any]) -> list[str]:
    """One line per missed target, from the numbers measured."""
    cpu = results["cpu_us_per_event"]
    thr = results["throughput"]
    lines = []
    if cpu["ratio"] > 1 / 3:
        lines.append(
            f"CPU per event: {cpu['ratio']:.2f}x the built-in's, target 0.33x "
            f"(about {(cpu['ratio'] - 1 / 3) * cpu['builtin']:.1f} µs/event too "
            "many). "
            f"{cpu['listener']:.1f} µs of every figure is Home Assistant's own work "
            "once any `state_changed` listener exists (an `Event` per change, tied "
            "to its `Context` in a reference cycle left to the garbage collector); a "
            "real install pays it anyway for the recorder and automations. Without "
            f"it, HA Ingestor's own work is {cpu['own_ratio']:.2f}x the built-in's."
            + _gc_sentence(results)
        )
    if thr["ingestor"] < 50_000 or thr["ratio"] < 3:
        lines.append(
            f"Throughput: {thr['ingestor']:,.0f} events/s, {thr['ratio']:.2f}x the "
            f"built-in's; target 50,000 events/s and 3x. Home Assistant itself, "
            "with one listener that does nothing, fires at most "
            f"{thr['listener']:,.0f} state changes/s on this machine (InfluxDB "
            "shares its 2 cores), so 50,000 is out of reach here whatever listens; "
            "the rest of the gap is HA Ingestor's own work on the event loop (the "
            "CPU line above) and InfluxDB's ingest rate (the replay line below)."
        )
    latency = results["latency"]["ingestor"]["p99_ms"]
    if latency > 1050:
        lines.append(f"Latency p99: {latency:.0f} ms, target 1,050 ms.")
    lag = results["lag_p99_ms"]
    if lag["ingestor"] >= 5:
        lines.append(
            f"Event-loop lag p99: {lag['ingestor']:.1f} ms, target < 5 ms. Home "
            f"Assistant with one no-op listener shows {lag['listener']:.1f} ms "
            f"(with none, {lag['baseline']:.1f} ms): the collector's passes over "
            "the `Event`/`Context` cycles stall the loop, whoever listens."
        )
    memory = results["memory_mb_100k"]["ingestor"]
    if memory >= 50:
        lines.append(
            f"Memory: {memory:.0f} MB above baseline for 100,000 points held in "
            f"memory, target < 50 MB. {results['memory_mb_100k']['listener']:.0f} MB "
            "of it is Home Assistant's own garbage once any listener exists (the "
            "`Event`/`Context` cycles above, freed only by the collector); each "
            "held point costs its own fields as one string (its series key is "
            "shared with its entity's), about 250 bytes."
        )
    if results["replay_points_per_s"] < 100_000:
        lines.append(
            f"Replay: {results['replay_points_per_s']:,.0f} points/s, target "
            "100,000. InfluxDB 1.6.7 itself, on the same 2 cores, ingests "
            f"{results['server_points_per_s']:,.0f} points/s of the same shape "
            "from a bare client writing as HA Ingestor does (5,000 points a "
            "request, two in flight): the server is the bound."
        )
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
        f"({sum(r <= 1 / 3 for r in cpu)} of {len(cpu)} within 0.33x); "
        f"throughput {', '.join(f'{r:.2f}x' for r in throughput)} "
        f"({sum(r >= 3 for r in throughput)} of {len(throughput)} at 3x or more).\n"
    )


def render(
    results: dict[str, Any], info: dict[str, str], args: argparse.Namespace
) -> str:
    cpu = results["cpu_us_per_event"]
    thr = results["throughput"]
    lat = results["latency"]
    lag = results["lag_p99_ms"]
    mem = results["memory_mb_100k"]
    out = results["outage"]
    p99_target = 1000 + 50
    rows = [
        (
            "CPU per event above HA's own (µs)",
            f"{cpu['builtin']:.1f}",
            f"{cpu['ingestor']:.1f}",
            f"{cpu['ratio']:.2f}x",
            "≤ 0.33x",
            _verdict(cpu["ratio"] <= 1 / 3),
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
            f"{thr['ratio']:.2f}x",
            "≥ 50,000 and ≥ 3x",
            _verdict(thr["ingestor"] >= 50_000 and thr["ratio"] >= 3),
        ),
        (
            "HA alone with one no-op listener: events/s it can fire",
            f"{thr['listener']:,.0f}",
            f"{thr['listener']:,.0f}",
            "",
            "(ceiling)",
            "",
        ),
        (
            "Latency p50 / p95 / p99 at 1,000 events/s (ms)",
            " / ".join(
                f"{lat['builtin'][k]:.0f}" for k in ("p50_ms", "p95_ms", "p99_ms")
            ),
            " / ".join(
                f"{lat['ingestor'][k]:.0f}" for k in ("p50_ms", "p95_ms", "p99_ms")
            ),
            "",
            f"p99 ≤ {p99_target}",
            _verdict(lat["ingestor"]["p99_ms"] <= p99_target),
        ),
        (
            "Event-loop lag p99 at 5,000 events/s (ms)",
            f"{lag['builtin']:.1f}",
            f"{lag['ingestor']:.1f}",
            f"HA: {lag['baseline']:.1f}; + no-op listener: {lag['listener']:.1f}",
            "< 5",
            _verdict(lag["ingestor"] < 5),
        ),
        (
            "Peak RSS above baseline, 100,000 points held in memory (MB)",
            f"{mem['builtin']:.1f}",
            f"{mem['ingestor']:.1f}",
            "",
            "< 50",
            _verdict(mem["ingestor"] < 50),
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
            _verdict(out["ingestor"]["stored"] == out["ingestor"]["fired"]),
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
            f"InfluxDB alone: {results['server_points_per_s']:,.0f}",
            "≥ 100,000",
            _verdict(results["replay_points_per_s"] >= 100_000),
        ),
    ]
    table = "\n".join("| " + " | ".join(row) + " |" for row in rows)
    analysis = "\n".join(f"- {line}" for line in _analysis(results)) or "- none"
    return f"""# Benchmarks

Generated by `scripts/bench` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — do not edit by
hand; run it again.

HA Ingestor (full enrichment: 1,000 sensors with devices behind a hub, 20 areas
on 3 floors, 5 labels) side by side with Home Assistant's built-in `influxdb`
integration (API v1, `influxdb==5.3.2`), both writing to the same real InfluxDB
1.x on 127.0.0.1, each measurement in a fresh process running Home Assistant's
core (the test harness's `hass`). Medians of {results.get("rounds", args.rounds)} interleaved rounds;
ratios are computed pair by pair within a round. CPU is the Home Assistant
process's own CPU time (all its threads) from the first event until every point
is confirmed in InfluxDB (read back with `/query`), minus the same run without
either integration; {args.events:,} `state_changed` events over 1,000 entities.
InfluxDB runs on the same 2 cores, so it competes with what it measures.

| measurement | built-in influxdb | HA Ingestor | ratio | target | |
|---|---|---|---|---|---|
{table}

Points stored of the {args.events:,} fired, per throughput round: built-in
{", ".join(f"{n:,}" for n in results["stored"]["builtin"])}; HA Ingestor
{", ".join(f"{n:,}" for n in results["stored"]["ingestor"])}. Home Assistant alone
costs {results["baseline_cpu_us_per_event"]:.1f} µs of CPU per state change here.
{_per_round(results)}

## Targets missed, by how much, and why

{analysis}

Machine: {info["cpu"]}; {info["os"]}. Python {info["python"]}, Home Assistant
{info["homeassistant"]}, {info["influxd"]}.

Reproduce: `scripts/bench` (sets up `.venv-bench` with the test toolchain plus
`influxdb==5.3.2`, starts its own InfluxDB, takes about 25 minutes).

Raw results (medians, and the ratios of each round):

```json
{json.dumps(results, indent=2)}
```
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--outage-seconds", type=float, default=60)
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmarks.md"))
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="measure nothing: rewrite the document from the raw medians it holds",
    )
    args = parser.parse_args()
    if args.render_only:
        text = Path(args.output).read_text()
        raw = text.split("```json\n", 1)[1].split("\n```", 1)[0]
        results = json.loads(raw)
    else:
        results = run(args.rounds, args.events, args.outage_seconds)
    Path(args.output).parent.mkdir(exist_ok=True)
    Path(args.output).write_text(render(results, versions(), args))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
