"""The busy-hour plot: ack and answer latency (p50, p99; log scale) against offered load.

    .venv/bin/python -m benchmarks.plot benchmarks/results/busy_hour-<stamp>.json

draws `busy_hour-<stamp>.png` next to it (the orchestrator draws it too). Needs matplotlib
(the `bench` extra); without it, `plot` says so and returns False.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _series(
    target: dict[str, Any], group: str, pct: str
) -> tuple[list[float], list[float], list[bool]]:
    """Offered rates, latencies (ms) and whether each is only a lower bound (censored)."""
    xs, ys, bounds = [], [], []
    for phase in target.get("phases", []):
        value = phase[group].get(pct)
        if value is not None:
            xs.append(float(phase["offered_per_s"]))
            ys.append(max(float(value), 0.01))
            bounds.append(bool(phase[group].get(f"{pct}_at_least")))
    return xs, ys, bounds


def plot(results: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot", file=sys.stderr)
        return False
    fig, axes = plt.subplots(1, 2, figsize=(14, 7), sharex=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, group, title in (
        (axes[0], "ack_ms", "ack latency (from intended send time)"),
        (axes[1], "answer_ms", "answer latency (response_url post received)"),
    ):
        for i, (key, target) in enumerate(results["targets"].items()):
            colour = colours[i % len(colours)]
            for pct, style in (("p50", "-"), ("p99", "--")):
                xs, ys, bounds = _series(target, group, pct)
                if not xs:
                    continue
                ax.plot(xs, ys, style, color=colour, label=f"{key} {pct}")
                # Filled: measured; hollow: at least this (timeouts, answers never seen).
                for x, y, bound in zip(xs, ys, bounds, strict=True):
                    face = "white" if bound else colour
                    ax.plot([x], [y], "o", color=colour, markerfacecolor=face)
        ax.axhline(3000, color="grey", linewidth=0.8, linestyle=":")
        ax.text(
            0.01,
            3000,
            "Slack's 3 s",
            va="bottom",
            fontsize=8,
            color="grey",
            transform=ax.get_yaxis_transform(),
        )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("offered load (commands/s, open loop)")
        ax.set_ylabel("ms (log scale)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    rates = sorted(
        {float(p["offered_per_s"]) for t in results["targets"].values() for p in t["phases"]}
        if all("phases" in t for t in results["targets"].values())
        else set()
    )
    if rates:
        for ax in axes:
            ax.set_xticks(rates)
            ax.set_xticklabels([f"{r:g}" for r in rates])
            ax.minorticks_off()
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=6, fontsize=8)
    saturation = ", ".join(
        f"{key} {t['saturation']['answered_per_s']:g}/s"
        for key, t in results["targets"].items()
        if t.get("saturation")
    )
    fig.suptitle(
        f"Busy hour {results.get('stamp', '')}: p50 solid, p99 dashed, hollow = at least "
        "(timed out / never answered)"
        + (f"\nanswered at saturation (closed loop): {saturation}" if saturation else ""),
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m benchmarks.plot RESULTS.json", file=sys.stderr)
        return 2
    source = Path(args[0])
    target = source.with_suffix(".png")
    if not plot(json.loads(source.read_text()), target):
        return 1
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
