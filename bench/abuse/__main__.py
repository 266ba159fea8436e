"""``python -m bench.abuse`` (``./dev abuse``): run every abuse scenario, print a short report.

Finds ``bench/abuse/*_cases.py``, runs each module's ``SCENARIOS`` one after
the other (each within ``SCENARIO_TIMEOUT``), prints one line per outcome and
exits 1 if any failed. ``-k TEXT`` runs only scenarios whose name contains it.

Examples::

    python -m bench.abuse
    python -m bench.abuse -k grpc_cases
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import signal
import sys
import time
from pathlib import Path

from . import SCENARIO_TIMEOUT, Outcome, Scenario


def _exit_on_sigterm(signum: int, frame: object) -> None:
    sys.exit(128 + signum)  # atexit stops any server still running


def discover() -> list[tuple[str, Scenario]]:
    found: list[tuple[str, Scenario]] = []
    for path in sorted(Path(__file__).parent.glob("*_cases.py")):
        module = importlib.import_module(f"{__package__}.{path.stem}")
        for scenario in getattr(module, "SCENARIOS", []):
            found.append((f"{path.stem}.{scenario.__name__}", scenario))
    return found


async def run(selected: list[tuple[str, Scenario]]) -> list[Outcome]:
    outcomes = []
    for name, scenario in selected:
        started = time.monotonic()
        try:
            outcome = await asyncio.wait_for(scenario(), SCENARIO_TIMEOUT)
        except TimeoutError:
            outcome = Outcome(name, False, note=f"did not finish in {SCENARIO_TIMEOUT:.0f} s")
        except Exception as error:
            outcome = Outcome(name, False, note=f"crashed: {error!r}")
        outcome.figures.setdefault("seconds", time.monotonic() - started)
        print(outcome.line(), flush=True)
        outcomes.append(outcome)
    return outcomes


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    parser = argparse.ArgumentParser(
        prog="python -m bench.abuse", description=__doc__.split("\n")[0]
    )
    parser.add_argument("-k", default="", help="run only scenarios whose name contains this")
    args = parser.parse_args(argv)
    selected = [(name, s) for name, s in discover() if args.k in name]
    if not selected:
        print("no scenario matches", file=sys.stderr)
        return 2
    outcomes = asyncio.run(run(selected))
    failed = [o for o in outcomes if not o.passed]
    print(f"abuse: {len(outcomes) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
