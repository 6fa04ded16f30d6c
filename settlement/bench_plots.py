"""PNG plots of a suite's results (matplotlib, Agg backend: no display needed).

- ledger throughput against commit interval, and against worker processes,
  exactly-once and at-least-once, with the Cassandra LWT ceiling for scale;
- p50/p99 latency (produced -> visible read_committed) against commit interval,
  p99 against worker processes, and p50/p99 against load (exactly-once), with the
  target (commit interval + 250 ms);
- a worker's RSS over time under the backlog, with the 200 MB target.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from settlement.bench_stats import LATENCY_SLACK_MS, WORKER_RSS_MB, curve_max, load_curves

_MODES = (("exactly-once", "EOS", "tab:blue"), ("at-least-once", "ALOS", "tab:orange"))
_STYLES = ("-", "--", ":", "-.")


def _figure(title: str) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _save(fig: Any, path: Path, meta: str) -> Path:
    from matplotlib import pyplot as plt

    if meta:
        fig.text(0.99, 0.01, meta, ha="right", va="bottom", fontsize=7, color="grey")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _ceiling(ax: Any, suite: Mapping[str, Any]) -> None:
    ceiling = suite.get("ceiling") or {}
    for key, label, style in (("cassandra_lwt", "Cassandra LWT ceiling", ":"),
                              ("cassandra_lwt_batch", "conditional batch ceiling", "--")):
        rate = (ceiling.get(key) or {}).get("records_per_s")
        if rate:
            ax.axhline(rate, color="grey", linestyle=style, linewidth=1.2,
                       label=f"{label} ({rate:,.0f} rows/s)")


def throughput_vs_interval(suite: Mapping[str, Any], path: Path, meta: str = "") -> Path | None:
    ledger: Sequence[Mapping[str, Any]] = suite.get("ledger") or []
    if not ledger:
        return None
    fig, ax = _figure("Ledger throughput vs commit interval")
    for mode, label, color in _MODES:
        for i, w in enumerate(sorted({r["workers"] for r in ledger})):
            pts = sorted((r["commit_interval_ms"], r["events_per_s"]) for r in ledger
                         if r["mode"] == mode and r["workers"] == w)
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", color=color,
                        linestyle=_STYLES[i % len(_STYLES)],
                        label=f"{label}, {w} worker{'' if w == 1 else 's'}")
    _ceiling(ax, suite)
    ax.set_xscale("log")
    ax.set_xticks(sorted({r["commit_interval_ms"] for r in ledger}))
    ax.get_xaxis().set_major_formatter("{x:.0f}")
    ax.set_xlabel("commit interval (ms, log scale)")
    ax.set_ylabel("events recorded per second")
    ax.set_ylim(bottom=0)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path, meta)


def throughput_vs_workers(suite: Mapping[str, Any], path: Path, meta: str = "") -> Path | None:
    ledger: Sequence[Mapping[str, Any]] = suite.get("ledger") or []
    if not ledger:
        return None
    fig, ax = _figure("Ledger throughput vs worker processes")
    for mode, label, color in _MODES:
        for i, ci in enumerate(sorted({r["commit_interval_ms"] for r in ledger})):
            pts = sorted((r["workers"], r["events_per_s"]) for r in ledger
                         if r["mode"] == mode and r["commit_interval_ms"] == ci)
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", color=color,
                        linestyle=_STYLES[i % len(_STYLES)], label=f"{label}, commit {ci} ms")
    _ceiling(ax, suite)
    ax.set_xticks(sorted({r["workers"] for r in ledger}))
    ax.set_xlabel("ledger worker processes")
    ax.set_ylabel("events recorded per second")
    ax.set_ylim(bottom=0)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path, meta)


def latency_vs_interval(suite: Mapping[str, Any], path: Path, meta: str = "") -> Path | None:
    lat: Sequence[Mapping[str, Any]] = suite.get("latency") or []
    if not lat:
        return None
    lo, hi = min(r["rate_per_s"] for r in lat), max(r["rate_per_s"] for r in lat)
    load = f"{lo:,.0f}" if lo == hi else f"{lo:,.0f}-{hi:,.0f}"
    fig, ax = _figure(f"Ledger latency, produced -> readable read_committed ({load} events/s)")
    intervals = sorted({r["commit_interval_ms"] for r in lat})
    counts = sorted({r["workers"] for r in lat})
    for mode, label, color in _MODES:
        for i, w in enumerate(counts):
            rows = sorted((r for r in lat if r["mode"] == mode and r["workers"] == w),
                          key=lambda r: r["commit_interval_ms"])
            if not rows:
                continue
            who = f"{label}, {w} worker{'' if w == 1 else 's'}" if len(counts) > 1 else label
            xs = [r["commit_interval_ms"] for r in rows]
            ax.plot(xs, [r["p99_ms"] for r in rows], marker="o", color=color,
                    linestyle=_STYLES[(2 * i) % len(_STYLES)], label=f"{who} p99")
            ax.plot(xs, [r["p50_ms"] for r in rows], marker="s", color=color,
                    linestyle=_STYLES[(2 * i + 1) % len(_STYLES)], alpha=0.6, label=f"{who} p50")
    ax.plot(intervals, [ci + LATENCY_SLACK_MS for ci in intervals], color="red", linestyle=":", marker="x",
            label=f"target: p99 <= interval + {LATENCY_SLACK_MS} ms")
    ax.set_xscale("log")
    ax.set_xticks(intervals)
    ax.get_xaxis().set_major_formatter("{x:.0f}")
    ax.set_xlabel("commit interval (ms, log scale)")
    ax.set_ylabel("latency (ms)")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path, meta)


def latency_vs_workers(suite: Mapping[str, Any], path: Path, meta: str = "") -> Path | None:
    lat: Sequence[Mapping[str, Any]] = suite.get("latency") or []
    if not lat:
        return None
    fig, ax = _figure("Ledger p99 latency vs worker processes (each at half its maximum)")
    counts = sorted({r["workers"] for r in lat})
    for i, ci in enumerate(sorted({r["commit_interval_ms"] for r in lat})):
        style = _STYLES[i % len(_STYLES)]
        for mode, label, color in _MODES:
            rows = sorted((r for r in lat if r["mode"] == mode and r["commit_interval_ms"] == ci),
                          key=lambda r: r["workers"])
            if rows:
                ax.plot([r["workers"] for r in rows], [r["p99_ms"] for r in rows], marker="o",
                        color=color, linestyle=style, label=f"{label} p99, commit {ci} ms")
                for r in rows:
                    ax.annotate(f"{r['rate_per_s']:,.0f}/s", (r["workers"], r["p99_ms"]),
                                textcoords="offset points", xytext=(4, 4), fontsize=7, color=color)
        ax.axhline(ci + LATENCY_SLACK_MS, color="red", linestyle=style, linewidth=1,
                   label=f"target, commit {ci} ms: p99 <= {ci + LATENCY_SLACK_MS} ms")
    ax.set_xticks(counts)
    if len(counts) == 1:
        ax.set_xlim(counts[0] - 1, counts[0] + 1)
    ax.set_xlabel("ledger worker processes")
    ax.set_ylabel("p99 latency (ms)")
    top = max(max(r["p99_ms"] for r in lat),
              max(r["commit_interval_ms"] for r in lat) + LATENCY_SLACK_MS)
    ax.set_ylim(0, top * 1.35)  # room for the legend above the points
    ax.legend(loc="upper left", fontsize=8, ncol=2)
    return _save(fig, path, meta)


def latency_vs_load(suite: Mapping[str, Any], path: Path, meta: str = "") -> Path | None:
    curves = load_curves(suite.get("latency_load") or [], suite.get("latency") or [])
    if not curves:
        return None
    fig, ax = _figure("Ledger latency vs load, exactly-once (produced -> readable read_committed)")
    colors = ("tab:blue", "tab:green", "tab:purple", "tab:brown")
    for i, ((w, ci), runs) in enumerate(sorted(curves.items())):
        color = colors[i % len(colors)]
        top = curve_max(runs)
        who = f"{w} worker{'' if w == 1 else 's'}, commit {ci} ms (max {top:,.0f}/s)"
        xs = [r["rate_per_s"] for r in runs]
        ax.plot(xs, [r["p99_ms"] for r in runs], marker="o", color=color, label=f"{who} p99")
        ax.plot(xs, [r["p50_ms"] for r in runs], marker="s", color=color, linestyle=":",
                alpha=0.6, label=f"{who} p50")
        for r in runs:
            ax.annotate(f"{r['rate_per_s'] / top:.0%}", (r["rate_per_s"], r["p99_ms"]),
                        textcoords="offset points", xytext=(4, 4), fontsize=7, color=color)
    for ci in sorted({ci for _, ci in curves}):
        ax.axhline(ci + LATENCY_SLACK_MS, color="red", linestyle=":", linewidth=1,
                   label=f"target, commit {ci} ms: p99 <= {ci + LATENCY_SLACK_MS} ms "
                         "(at half the maximum)")
    ax.set_xlabel("offered load (events/s); labels: share of that worker count's maximum")
    ax.set_ylabel("latency (ms, log scale)")
    # Log scale: past the knee p99 grows by seconds, and a linear axis flattens the
    # loads below it, where the target is decided.
    ax.set_yscale("log")
    values = [r[k] for runs in curves.values() for r in runs for k in ("p50_ms", "p99_ms")]
    values += [ci + LATENCY_SLACK_MS for _, ci in curves]
    ax.set_ylim(min(values) / 1.5, max(values) * 4)  # room for the legend above the points
    ax.yaxis.set_major_formatter("{x:,.0f}")
    ax.set_xlim(left=0)
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path, meta)


def memory_over_time(suite: Mapping[str, Any], path: Path, meta: str = "") -> Path | None:
    m = suite.get("memory") or {}
    samples = m.get("rss_samples") or []
    if not samples:
        return None
    fig, ax = _figure(f"Ledger worker RSS under a {m['backlog']:,}-event backlog")
    ts, mb = zip(*samples, strict=True)
    ax.plot(ts, mb, color="tab:blue", label=f"RSS (steady {m['steady_rss_mb']:.0f} MB, "
                                            f"{m['slope_mb_per_min']:+.2f} MB/min in the second half)")
    ax.axhline(WORKER_RSS_MB, color="red", linestyle=":", label=f"target {WORKER_RSS_MB:.0f} MB")
    ax.axvspan(ts[0] + (ts[-1] - ts[0]) / 2, ts[-1], color="grey", alpha=0.08,
               label="second half (steady, slope)")
    ax.set_xlabel("seconds since the worker started")
    ax.set_ylabel("resident set size (MB)")
    ax.set_ylim(0, max(WORKER_RSS_MB * 1.15, max(mb) * 1.1))
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path, meta)


def draw(suite: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """Every plot the results allow, into out_dir; returns the files written."""
    info = suite.get("meta") or {}
    meta = " ".join(x for x in (
        str(info.get("when", ""))[:16].replace("T", " "),
        f"{info['cpus']} cores" if "cpus" in info else "",
        f"load {info['load_before']}" if "load_before" in info else "") if x)
    made = [
        throughput_vs_interval(suite, out_dir / "throughput_vs_commit_interval.png", meta),
        throughput_vs_workers(suite, out_dir / "throughput_vs_workers.png", meta),
        latency_vs_interval(suite, out_dir / "latency_vs_commit_interval.png", meta),
        latency_vs_workers(suite, out_dir / "latency_vs_workers.png", meta),
        latency_vs_load(suite, out_dir / "latency_vs_load.png", meta),
        memory_over_time(suite, out_dir / "memory_under_backlog.png", meta),
    ]
    return [p for p in made if p is not None]
