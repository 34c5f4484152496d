"""The side-by-side table, as text for the terminal and as Markdown for BENCHMARKS.md."""

from __future__ import annotations

from typing import Any

HEADER = (
    "",
    "added TTFT p50",
    "added TTFT p99",
    "TTFT p50 / p99",
    "streams/s @{n}",
    "CPU per stream",
    "cores used",
    "Redis commands per stream",
    "core taken by others",
)


def num(v: float | None, unit: str = "", digits: int = 2) -> str:
    if v is None:
        return "-"
    text = f"{v:.{digits}f}" if abs(v) < 100 else f"{v:.0f}"
    return text + unit


def ranged(res: dict[str, Any], name: str, value: str, unit: str = "", digits: int = 2) -> str:
    """A median with the (min–max) of its rounds, when there were several."""
    low_high = (res.get("spread") or {}).get(name)
    if not low_high or value == "-":
        return value
    low, high = (num(v, "", digits) for v in low_high)
    return f"{value.removesuffix(unit)} ({low}–{high}){unit}"


def cells(res: dict[str, Any]) -> tuple[str, ...]:
    if res.get("skipped"):
        return (res["label"], "skipped: " + res["skipped"][:90], "", "", "", "", "", "", "")
    one, sat = res["ttft_one_client"], res["saturation"]
    own = one["row"]["ttft_ms"]
    added = one["added_ms"] or {}
    direct = res["id"] == "direct"
    return (
        res["label"],
        "0 (baseline)"
        if direct
        else ranged(res, "added_p50_ms", num(added.get("p50"), " ms"), " ms"),
        "0 (baseline)"
        if direct
        else ranged(res, "added_p99_ms", num(added.get("p99"), " ms"), " ms"),
        f"{num(own['p50'])} / {num(own['p99'])} ms",
        ranged(res, "streams_per_s", num(sat["streams_per_s"], "", 1), "", 1),
        ranged(res, "cpu_ms_per_stream", num(sat["cpu_ms_per_stream"], " ms", 3), " ms", 3),
        num(sat["cpu_cores"], "", 2),
        num(one.get("redis_commands_per_stream"), "", 1),
        taken(sat.get("gateway_core_neighbours")),
    )


def taken(near: dict[str, Any] | None) -> str:
    """How much of the gateway core other processes and the hypervisor's other VMs (steal)
    took during the window: the row's figures are suspect when this is not ~0."""
    if not near or near.get("others_cores") is None:
        return "-"
    return num((near["others_cores"] or 0.0) + (near.get("stolen_cores") or 0.0), "", 2)


def header(results: list[dict[str, Any]]) -> tuple[str, ...]:
    clients = next((r["sizes"]["clients"] for r in results if r.get("sizes")), 50)
    return tuple(h.format(n=clients) for h in HEADER)


def text(results: list[dict[str, Any]]) -> str:
    lines = [header(results), *(cells(r) for r in results)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = []
    for k, line in enumerate(lines):
        out.append("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def markdown(results: list[dict[str, Any]]) -> str:
    lines = [header(results), *(cells(r) for r in results)]
    out = ["| " + " | ".join(lines[0]) + " |", "| " + " | ".join("---" for _ in lines[0]) + " |"]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in line) + " |" for line in lines[1:]]
    return "\n".join(out)
