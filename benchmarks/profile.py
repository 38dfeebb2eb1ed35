"""Where HA Ingestor's CPU per event goes, measured in situ: a real Home
Assistant core with the benchmark's home (1,000 enriched sensors), as
``scenario.py``'s throughput mode runs it. docs/profile.md holds the figures.

Each variant is one fresh process; the CPU the event loop spends *inside*
``hass.states.async_set`` (the capture callback runs there) is counted per
event, apart from what the consumer does between the bursts:

* ``listener``: Home Assistant with one no-op ``state_changed`` listener;
* ``builder``: HA Ingestor, but its points are not queued (the point builder,
  enrichment caches and line encoder only);
* ``ingestor``: HA Ingestor as it runs;
* ``callback``: the capture callback alone, called in a tight loop on 20,000
  prepared state changes (warm caches: a lower bound).

``python benchmarks/profile.py [--rounds N]`` prints one JSON line per run and
the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
from pathlib import Path
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any
from unittest.mock import patch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from homeassistant.core import Context, Event, State
from homeassistant.util.read_only_dict import ReadOnlyDict

from benchmarks import scenario

VARIANTS = ("listener", "builder", "ingestor", "callback")
EVENTS = 200_000


async def _fire_cpu(variant: str) -> dict[str, Any]:
    """CPU per event inside async_set, and the collector's share of it."""
    fire_cpu = 0.0
    original_fire = scenario.fire

    def fire(*args: Any) -> None:
        nonlocal fire_cpu
        started = time.thread_time()
        original_fire(*args)
        fire_cpu += time.thread_time() - started

    async def setup(hass: Any, kind: str, server: Any, options: dict[str, Any]) -> Any:
        entry = await original_setup(hass, kind, server, options)
        if variant == "builder":
            # Three named parameters: *args would build a tuple per event.
            entry.runtime_data.capture._add_point = lambda key, shared, own: None
        return entry

    async def stored(*args: Any, **kwargs: Any) -> tuple[int, float]:
        # Nothing to wait for: only the firing is measured.
        return EVENTS, 0.0

    original_setup = scenario.setup_integration
    kind = "listener" if variant == "listener" else "ingestor"
    args = argparse.Namespace(
        mode="throughput", kind=kind, events=EVENTS, rate=0, seconds=0
    )
    with (
        patch.object(scenario, "fire", fire),
        patch.object(scenario, "setup_integration", setup),
        patch.object(scenario.InfluxTarget, "wait_for", stored),
    ):
        result = await scenario.measure(args)
    return {
        "fire_cpu_us": fire_cpu / EVENTS * 1e6,
        "gc_us": result["gc_s"] / EVENTS * 1e6,
    }


async def _callback_alone() -> dict[str, Any]:
    """The capture callback on prepared events: states reuse one attributes
    object per entity, as Home Assistant's state machine does."""
    config_dir = tempfile.mkdtemp(prefix="ha_ingestor_profile_")
    Path(config_dir, "configuration.yaml").write_text("")
    server = scenario.InfluxDB1Server().start()
    try:
        server.create_database(scenario.DATABASE)
        with patch(
            "homeassistant.helpers.aiohttp_client._async_make_resolver",
            return_value=scenario._resolver(),
        ):
            async with scenario.async_test_home_assistant(
                config_dir=config_dir
            ) as hass:
                hass.data.pop(scenario.loader.DATA_CUSTOM_COMPONENTS, None)
                ids = scenario.build_home(hass)
                await hass.async_block_till_done()
                entry = await scenario.setup_integration(
                    hass,
                    "ingestor",
                    server,
                    {"batch_size": 100_000, "flush_interval": 3600},
                )
                assert entry is not None
                capture = entry.runtime_data.capture
                queue = entry.runtime_data.pipeline._queue
                attributes = [ReadOnlyDict(a) for a in scenario.ATTRIBUTES]
                events = [
                    Event(
                        "state_changed",
                        {
                            "entity_id": ids[n % 1000],
                            "old_state": None,
                            "new_state": State(
                                ids[n % 1000],
                                str(n % 5000 / 10),
                                attributes[n % 1000],
                                context=Context(),
                            ),
                        },
                    )
                    for n in range(20_000)
                ]
                on_state_changed = capture._on_state_changed
                for event in events[:2000]:  # warm the caches
                    on_state_changed(event)
                runs = []
                for _ in range(15):
                    queue.drop_oldest(len(queue))
                    started = time.perf_counter()
                    for event in events:
                        on_state_changed(event)
                    runs.append((time.perf_counter() - started) / len(events))
                queue.drop_oldest(len(queue))
                for loaded in hass.config_entries.async_entries():
                    await hass.config_entries.async_unload(loaded.entry_id)
                await hass.async_stop(force=True)
    finally:
        server.cleanup()
        shutil.rmtree(config_dir, ignore_errors=True)
    return {"callback_us": statistics.median(runs) * 1e6}


def one(variant: str) -> dict[str, Any]:
    """Run one variant in this process."""
    gc.collect()
    if variant == "callback":
        return asyncio.run(_callback_alone())
    return asyncio.run(_fire_cpu(variant))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps({"variant": args.variant, **one(args.variant)}))
        return
    results: dict[str, list[dict[str, Any]]] = {variant: [] for variant in VARIANTS}
    for _ in range(args.rounds):
        for variant in VARIANTS:
            output = subprocess.run(
                [sys.executable, __file__, "--variant", variant],
                capture_output=True,
                text=True,
                check=True,
                cwd=ROOT,
            ).stdout
            measured = json.loads(output.strip().splitlines()[-1])
            print(json.dumps(measured), flush=True)
            results[variant].append(measured)
    medians = {
        variant: {
            key: round(statistics.median(run[key] for run in runs), 2)
            for key in runs[0]
            if key != "variant"
        }
        for variant, runs in results.items()
    }
    print(json.dumps({"medians": medians}, indent=2))


if __name__ == "__main__":
    main()
