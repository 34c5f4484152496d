"""`python -m bench.peers [--quick] [--only ROW,...] [--rounds N] [--no-profile]`: the table,
printed and written to bench/results/peers-<UTC time>.json (profiles beside it)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from bench.cli import RESULTS
from bench.peers import table
from bench.peers.cache import DEFAULT_ROOT
from bench.peers.measure import FULL, QUICK
from bench.peers.rows import ROWS, TOKENS
from bench.peers.run import run


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__.split("\n")[0])
    p.add_argument("--only", help=f"comma-separated rows, in this order: {','.join(ROWS)}")
    p.add_argument("--quick", action="store_true", help="shorter loads (about a third)")
    p.add_argument("--clients", type=int, help=f"concurrent clients (default {FULL.clients})")
    p.add_argument("--seconds", type=float, help=f"saturation window (default {FULL.seconds:g})")
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure every row this many times, interleaved; the table shows medians",
    )
    p.add_argument(
        "--tokens",
        type=int,
        default=TOKENS,
        help=f"content tokens per stream (default {TOKENS}): a stream's CPU split into per "
        "request and per token",
    )
    p.add_argument("--no-profile", action="store_true", help="skip py-spy on our two rows")
    p.add_argument("--profile-seconds", type=float, default=15.0)
    p.add_argument(
        "--cache",
        type=Path,
        default=DEFAULT_ROOT,
        help="where the peers are installed (reused when present)",
    )
    p.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON and profiles")
    p.add_argument("--keep", action="store_true", help="keep the servers' logs and configs")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    only = [r.strip() for r in args.only.split(",")] if args.only else None
    unknown = [r for r in only or [] if r not in ROWS]
    if unknown:
        print(f"bench.peers: unknown row(s) {unknown}; known: {', '.join(ROWS)}", file=sys.stderr)
        return 2
    if not 1 <= args.tokens <= 100_000:
        print("bench.peers: --tokens takes 1 to 100000", file=sys.stderr)
        return 2
    sizes = QUICK if args.quick else FULL
    if args.clients:
        sizes = replace(sizes, clients=args.clients)
    if args.seconds:
        sizes = replace(sizes, seconds=args.seconds)
    path, report = run(
        only=only,
        sizes=sizes,
        profile=not args.no_profile,
        profile_seconds=args.profile_seconds,
        cache_root=args.cache.resolve(),
        out=args.out,
        keep=args.keep,
        quick=args.quick,
        rounds=max(1, args.rounds),
        tokens=args.tokens,
    )
    print(table.text(report["rows"]))
    for res in report["rows"]:
        for note in [*res.get("notes", []), *res.get("warnings", [])]:
            print(f"  {res['id']}: {note}")
    for rid, prof in report["profiles"].items():
        print(f"  profile {rid}: " + (prof.get("error") or prof["top"]))
        for line in prof.get("packages", [])[:8]:
            print(f"      {line}")
    if report["profile_note"]:
        print(f"  {report['profile_note']}")
    print(
        f"  load average (1 min) {report['loadavg_1m']['before']} -> "
        f"{report['loadavg_1m']['after']}"
    )
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
