"""``python -m bench``: run the suite and write a markdown report and a chart.

Examples::

    python -m bench                   # the full run (~15 min on 2 cores)
    python -m bench --quick --no-peer # a few seconds, agentplane only (CI smoke)
    python -m bench --report bench/.runs/<stamp>/raw.json   # re-render a report
    python -m bench --cluster         # nodes on a real redis-server (~10 min on 2 cores)
    python -m bench --cluster --quick # the same in under a minute
    python -m bench --list            # ListSessions with 10,000 sessions held (~5 min)
"""

from __future__ import annotations

import argparse
import datetime
import json
import signal
import sys
from pathlib import Path
from typing import Any

from .scenarios import QUICK, Config
from .servers import REPO


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # SystemExit runs atexit, which stops any server still running.
    sys.exit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few-second smoke run")
    parser.add_argument("--no-peer", action="store_true", help="measure agentplane only")
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="the cluster benchmark instead: nodes on a real redis-server (no peer)",
    )
    parser.add_argument(
        "--list",
        action="store_true",
        help="the ListSessions benchmark instead: pages with 1,000 and 10,000 sessions held",
    )
    parser.add_argument("--runs", type=int, default=None, help="rounds (default 5; quick 1)")
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default bench/.runs/<stamp>)"
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="also write the report as <RESULTS>.md/.png (e.g. bench/results/2026-11-21-2core)",
    )
    parser.add_argument("--report", type=Path, default=None, help="re-render from a raw.json")
    parser.add_argument(
        "--notes", type=Path, default=None, help="markdown appended to the --results report"
    )
    args = parser.parse_args(argv)

    if args.report is not None:
        result = json.loads(args.report.read_text())
        out_dir = args.out or args.report.parent
    else:
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
        out_dir = args.out or REPO / "bench" / ".runs" / stamp
        result = _run(args, out_dir)
    if result.get("suite") == "cluster":
        from .cluster.report import write_report
    elif result.get("suite") == "list":
        from .listing import write_report
    else:
        from .report import write_report
    paths = write_report(result, out_dir / "report")
    if args.results is not None:
        notes = args.notes.read_text() if args.notes is not None else ""
        paths += write_report(result, args.results, notes)
        (args.results.parent / f"{args.results.name}.json").write_text(json.dumps(result, indent=1))
    for path in paths:
        print(f"wrote {path}")
    return 0


def _run(args: argparse.Namespace, out_dir: Path) -> dict[str, Any]:
    import dataclasses

    if args.cluster:
        from .cluster.run import run_sync as run_cluster
        from .cluster.scenarios import QUICK as CLUSTER_QUICK
        from .cluster.scenarios import ClusterConfig

        cluster = CLUSTER_QUICK if args.quick else ClusterConfig()
        if args.runs is not None:
            cluster = dataclasses.replace(cluster, runs=args.runs)
        return run_cluster(cluster, out_dir)
    if args.list:
        from .listing import QUICK as LIST_QUICK
        from .listing import ListConfig
        from .listing import run_sync as run_list

        listing = LIST_QUICK if args.quick else ListConfig()
        if args.runs is not None:
            listing = dataclasses.replace(listing, runs=args.runs)
        return run_list(listing, out_dir)
    from .run import run_sync

    cfg = QUICK if args.quick else Config()
    if args.runs is not None:
        cfg = dataclasses.replace(cfg, runs=args.runs)
    return run_sync(cfg, with_peer=not args.no_peer, out_dir=out_dir)


if __name__ == "__main__":
    sys.exit(main())
