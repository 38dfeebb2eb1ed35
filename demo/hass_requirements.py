"""Install what a real ``hass`` with its UI needs that this virtualenv lacks.

In the demo's own virtualenv that starts with Home Assistant itself (and what the
demo imports: demo/requirements_hass.txt); the tests' virtualenv has it from the test
harness, which pins it. Beyond that, the test harness installs Home Assistant
without the packages of its own default integrations (the frontend, hassil for
conversation, …): ``hass --skip-pip`` would fail to set those up and the UI would
never load. This walks the integrations Home Assistant sets up for the configuration
of tests/hass_process.py and the demo, for MQTT, HA Ingestor and onboarding, with
their dependencies, after-dependencies and discovery integrations (as
``homeassistant.requirements`` does), and prints every pinned requirement of their
manifests that is not installed. ``--install`` installs them under Home Assistant's
own constraints, as ``hass`` would without ``--skip-pip`` — with uv when the
virtualenv has it (the demo's: parallel downloads and builds, see scripts/demo).
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
import subprocess
import sys
import sysconfig

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

HOME_ASSISTANT = ROOT / "demo" / "requirements_hass.txt"
CUSTOM = ROOT / "custom_components"
# What onboarding sets up that works offline; it also offers met and radio_browser,
# which need the internet: without their packages nothing is set up for them (their
# flows fail to load, as hass's log says).
ONBOARDING = ("google_translate", "shopping_list")
INCLUDE = Path(sysconfig.get_paths()["include"])
UV = Path(sys.executable).with_name("uv")


def installer() -> list[str]:
    if UV.exists():
        return [str(UV), "pip", "install", "-q", "--python", sys.executable]
    return [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check"]


def install_home_assistant() -> int:
    """Home Assistant itself where no test harness brought it (a no-op check when
    it is installed already)."""
    if importlib.util.find_spec("pytest_homeassistant_custom_component"):
        return 0
    return subprocess.run(
        [*installer(), "-r", str(HOME_ASSISTANT)], check=False
    ).returncode


def manifest(domain: str) -> dict[str, object] | None:
    import homeassistant.components

    for folder in (CUSTOM, Path(homeassistant.components.__file__).parent):
        if (path := folder / domain / "manifest.json").exists():
            loaded: dict[str, object] = json.loads(path.read_text())
            return loaded
    return None


def needed_requirements() -> list[str]:
    # Imported here: Home Assistant may have been installed by this very run.
    from homeassistant import bootstrap, requirements
    import yaml

    from demo.run import CONFIGURATION as DEMO_CONFIGURATION
    from tests.hass_process import CONFIGURATION

    configured = yaml.safe_load(CONFIGURATION.format(port=8123) + DEMO_CONFIGURATION)
    todo = [
        *bootstrap.CORE_INTEGRATIONS,
        *bootstrap.DEFAULT_INTEGRATIONS,
        *configured,
        "mqtt",
        "ha_ingestor",
        *ONBOARDING,
    ]
    seen: set[str] = set()
    needed: set[str] = set()
    while todo:
        domain = todo.pop()
        if domain in seen or (loaded := manifest(domain)) is None:
            continue
        seen.add(domain)
        needed.update(loaded.get("requirements", []))  # type: ignore[arg-type]
        todo += loaded.get("dependencies", [])  # type: ignore[arg-type]
        todo += loaded.get("after_dependencies", [])  # type: ignore[arg-type]
        todo += [
            discovery
            for discovery, keys in requirements.DISCOVERY_INTEGRATIONS.items()
            if any(key in loaded for key in keys)
        ]
    return sorted(needed)


def main() -> int:
    install = "--install" in sys.argv
    if install and (code := install_home_assistant()):
        return code
    import homeassistant
    from homeassistant.util.package import is_installed

    missing = [r for r in needed_requirements() if not is_installed(r)]
    if not install:
        print("\n".join(missing))
        return 0
    if not missing:
        return 0
    constraints = Path(homeassistant.__file__).parent / "package_constraints.txt"
    # Some (pymicro-vad, pyspeex-noise) have no wheel for every Python and are
    # built here: Debian's Python.h includes <x86_64-linux-gnu/python3.x/pyconfig.h>,
    # which a private root (scripts/python314) holds beside it, not in /usr/include.
    cppflags = f"{os.environ.get('CPPFLAGS', '')} -I{INCLUDE.parent}"
    done = subprocess.run(
        [*installer(), "--constraint", str(constraints), *missing],
        env={**os.environ, "CPPFLAGS": cppflags},
        check=False,
    )
    if done.returncode and not (INCLUDE / "Python.h").exists():
        print(
            f"Building a package needs Python's headers in {INCLUDE}.", file=sys.stderr
        )
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
