"""Timing, the result table model, and the markdown/PNG writers behind `make bench`.

Nothing here imports ComfyUI: the rules every number in the report follows live here and
are tested on plain functions (tests/unit/test_bench_harness.py).

- Every timed variant runs once untimed first (warm-up), then `repeats` times; figures are
  medians of those repeats.
- Variants that are compared run interleaved in the same process (A B C, B C A, C A B, ...;
  or, for many short variants, each right next to its own base run: `paired`), so load from
  other processes hits them alike; a speedup is the median of the per-repeat ratios
  base/variant, never a ratio of numbers taken at different times.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform
import resource
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence


# --------------------------------------------------------------------------- timing

@dataclass
class Timing:
    """Wall-clock seconds of the timed repeats (warm-up excluded)."""

    seconds: list[float]
    warmup: list[float] = field(default_factory=list)
    result: Any = None  # what the last call returned
    base_seconds: list[float] | None = None  # paired(): the base run next to each repeat

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def spread(self) -> float:
        """(max - min) / median: how noisy the repeats were."""
        return (max(self.seconds) - min(self.seconds)) / self.median if self.median > 0 else 0.0


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def side_by_side(variants: dict[str, Callable[[], Any]], repeats: int = 3, warmup: int = 1,
                 warm_each: bool = True) -> dict[str, Timing]:
    """Time several variants interleaved, each warmed up first (or, with warm_each=False,
    only the first variant: for calls of a minute or more, where the first call's one-off
    costs are shared by all variants and negligible); rotate the order every repeat so no
    variant always runs first (or right after a heavy one)."""
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    names = list(variants)
    warm = {n: [] for n in names}
    for _ in range(warmup):
        for n in names if warm_each else names[:1]:
            warm[n].append(_timed(variants[n])[0])
    secs = {n: [] for n in names}
    results: dict[str, Any] = {}
    for r in range(repeats):
        for i in range(len(names)):
            n = names[(r + i) % len(names)]
            t, results[n] = _timed(variants[n])
            secs[n].append(t)
    return {n: Timing(secs[n], warm[n], results.get(n)) for n in names}


def paired(base: Callable[[], Any], variants: dict[str, Callable[[], Any]], repeats: int = 3,
           warmup: int = 1) -> tuple[Timing, dict[str, Timing]]:
    """Each variant timed right next to its own run of `base` (base first on even repeats,
    second on odd ones), after one warm-up of everything. For many short variants on a
    shared machine: a load burst hits a variant and the base it is compared with alike.
    Returns (every base run, {name: variant Timing with .base_seconds})."""
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    warm_base = [_timed(base)[0] for _ in range(warmup)]
    warm = {n: [_timed(fn)[0] for _ in range(warmup)] for n, fn in variants.items()}
    all_base, base_result = [], None
    secs = {n: [] for n in variants}
    pairs = {n: [] for n in variants}
    results: dict[str, Any] = {}
    for r in range(repeats):
        for n, fn in variants.items():
            if r % 2 == 0:
                tb, base_result = _timed(base)
                tv, results[n] = _timed(fn)
            else:
                tv, results[n] = _timed(fn)
                tb, base_result = _timed(base)
            secs[n].append(tv)
            pairs[n].append(tb)
            all_base.append(tb)
    out = {n: Timing(secs[n], warm[n], results.get(n), base_seconds=pairs[n]) for n in variants}
    return Timing(all_base, warm_base, base_result), out


def speedup(base: Timing, variant: Timing) -> float:
    """Median of the per-repeat ratios base/variant (> 1: the variant is faster). A variant
    timed by paired() is compared with the base runs next to it."""
    base_secs = variant.base_seconds if variant.base_seconds is not None else base.seconds
    if len(base_secs) != len(variant.seconds):
        raise ValueError("speedup needs timings taken side by side (same number of repeats)")
    return statistics.median(b / v for b, v in zip(base_secs, variant.seconds))


class Stopwatch:
    """Named laps inside one run: `with sw.lap("read"): ...`."""

    def __init__(self):
        self.laps: dict[str, float] = {}

    def lap(self, name: str):
        watch = self

        class _Lap:
            def __enter__(self):
                self.start = time.perf_counter()

            def __exit__(self, *exc):
                watch.laps[name] = watch.laps.get(name, 0.0) + time.perf_counter() - self.start
                return False

        return _Lap()


# --------------------------------------------------------------------------- tables

@dataclass(frozen=True)
class Column:
    key: str
    header: str
    fmt: str | Callable[[Any], str] = "{}"

    def render(self, value: Any) -> str:
        if value is None:
            return "–"
        if isinstance(value, float) and math.isinf(value):
            return "identical" if value > 0 else "-inf"
        if callable(self.fmt):
            return self.fmt(value)
        return self.fmt.format(value)


@dataclass
class Row:
    values: dict[str, Any]
    provider: str = "core"  # "core" (ComfyUI's own node, the peer) or "fewstep"


@dataclass
class Table:
    family: str
    title: str
    columns: list[Column]
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # markdown paragraphs above the table
    plots: list[str] = field(default_factory=list)  # PNG file names next to the .md

    def add(self, provider: str = "core", **values) -> Row:
        unknown = set(values) - {c.key for c in self.columns}
        if unknown:
            raise KeyError(f"{self.family}: no column(s) {sorted(unknown)} in table '{self.title}'")
        row = Row(values, provider)
        self.rows.append(row)
        return row

    def markdown(self) -> str:
        head = "| " + " | ".join(c.header for c in self.columns) + " |"
        sep = "|" + "|".join("---" for _ in self.columns) + "|"
        body = ["| " + " | ".join(c.render(r.values.get(c.key)) for c in self.columns) + " |" for r in self.rows]
        return "\n".join([head, sep, *body])


def fmt_psnr(v: float) -> str:
    return "identical" if math.isinf(v) else f"{v:.2f} dB"


def fmt_pct(v: float) -> str:
    return f"{100 * v:.0f}%"


# --------------------------------------------------------------------------- environment

def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _machine_busy_seconds() -> float | None:
    """CPU seconds all processes have spent (user+nice+system) since boot, from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        ticks = sum(int(fields[i]) for i in (0, 1, 2, 5, 6))  # user nice system irq softirq
        return ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _own_cpu_seconds() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class LoadMonitor:
    """How much CPU other processes took while the benchmark ran (they slow every
    absolute time; side-by-side ratios stay meaningful), and how much the benchmark used."""

    def __init__(self):
        self.start_wall = time.perf_counter()
        self.start_busy = _machine_busy_seconds()
        self.start_own = _own_cpu_seconds()

    def report(self) -> dict[str, float] | None:
        busy = _machine_busy_seconds()
        if busy is None or self.start_busy is None:
            return None
        wall = time.perf_counter() - self.start_wall
        others = max(0.0, (busy - self.start_busy) - (_own_cpu_seconds() - self.start_own))
        cores = os.cpu_count() or 1
        own = _own_cpu_seconds() - self.start_own
        return {"wall_s": wall, "other_cpu_s": others, "other_share": others / (wall * cores) if wall > 0 else 0.0,
                "own_cpu_s": own}


@dataclass
class Environment:
    date: str
    cores: int
    cpu: str
    memory_gib: float | None
    python: str
    torch: str
    comfyui: str
    attention: str
    device: str
    dtype: str = "?"
    extra: dict[str, str] = field(default_factory=dict)


def memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def today() -> str:
    return _dt.date.today().isoformat()


# --------------------------------------------------------------------------- report

def render_markdown(env: Environment, tables: Sequence[Table | str], command: str, *, total_s: float | None = None,
                    load: dict[str, float] | None = None, preamble: Sequence[str] = (), repeats: int = 3) -> str:
    lines = [f"# FewStep benchmarks, {env.date}", "",
             f"Made by `{command}`.", "",
             "| machine | torch | ComfyUI | attention | device |",
             "|---|---|---|---|---|",
             f"| {env.cores} cores, {env.cpu}" + (f", {env.memory_gib:.0f} GiB" if env.memory_gib else "")
             + f" | {env.torch} | {env.comfyui} | {env.attention} | {env.device} ({env.dtype}) |", ""]
    for k, v in env.extra.items():
        lines.append(f"- {k}: {v}")
    facts = [f"Batch 1. Each timed variant runs once as warm-up, then {repeats} timed repeat{'s' if repeats != 1 else ''}; "
             "times are medians. "
             "Speedups are medians of per-repeat ratios of variants run interleaved with their base in the same process."]
    if total_s is not None:
        facts.append(f"Total benchmark wall time: {total_s / 60:.1f} min.")
    if load is not None:
        busy = load["other_share"]
        if busy > 0.05:
            facts.append(f"Other processes were running during this run: they used {load['other_cpu_s']:.0f} CPU-seconds, "
                         f"{100 * busy:.0f}% of the machine's capacity over the run, which inflates every absolute "
                         "time; the side-by-side ratios remain meaningful. The benchmark itself used "
                         f"{load.get('own_cpu_s', 0) / 60:.0f} CPU-minutes.")
        else:
            facts.append("The machine was otherwise idle during this run "
                         f"(other processes used {100 * busy:.0f}% of its CPU capacity).")
    lines += ["- " + f for f in facts] + [""]
    lines += list(preamble)
    for t in tables:
        if isinstance(t, str):  # a section kept from an earlier report (bench/report_sections.py)
            lines += [t.strip("\n"), ""]
            continue
        lines += [section_marker(t.family, env.date), f"## {t.title}", ""]
        for n in t.notes:
            lines += [n, ""]
        if t.rows:
            lines += [t.markdown(), ""]
        for p in t.plots:
            lines += [f"![{t.title}]({p})", ""]
    return "\n".join(lines).rstrip() + "\n"


def section_marker(family: str, date: str) -> str:
    """The line before each table of a report: which family made it, on which date."""
    return f"<!-- bench-family: {family} {date} -->"


def write_report(out_dir: Path, markdown: str, date: str) -> tuple[Path, Path]:
    """`<date>.md` and `latest.md` (same content) in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    dated, latest = out_dir / f"{date}.md", out_dir / "latest.md"
    for p in (dated, latest):
        tmp = p.with_name(f".{p.name}.tmp")
        tmp.write_text(markdown)
        os.replace(tmp, p)
    return dated, latest


Series = tuple[str, Sequence[float], Sequence[float]]  # (label, xs, ys)


def plot_curves(path: Path, series: Sequence[Series], *, xlabel: str, ylabel: str, title: str,
                annotations: Sequence[Sequence[str]] | None = None, logy: bool = False) -> Path:
    """One line per (label, xs, ys); `annotations[i][j]` labels point j of series i."""
    return plot_panels(path, [(ylabel, series)], xlabel=xlabel, title=title, annotations=annotations, logy=logy)


def plot_panels(path: Path, panels: Sequence[tuple[str, Sequence[Series]]], *, xlabel: str, title: str,
                annotations: Sequence[Sequence[str]] | None = None, logy: bool = False,
                xticks: Sequence[float] | None = None, styles: Mapping[str, dict] | None = None) -> Path:
    """Side-by-side panels sharing the x axis, one (ylabel, series) each; PNG via matplotlib's
    Agg backend (no display needed). Non-finite points (e.g. an infinite PSNR) are left out;
    a panel whose label ends in "(%)" spans 0-100; `xticks` puts the x axis on a log2 scale
    with exactly those ticks (e.g. step counts 1, 2, 4, 8); `styles[label]` overrides a series'
    matplotlib line style. Past 6 series the legend goes below the panels, off the data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    legend_rows = math.ceil(max(len(series) for _, series in panels) / 3)
    below = legend_rows > 2
    height = 4.2 + (0.22 * legend_rows if below else 0)
    fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), height), dpi=110, squeeze=False)
    for ax, (ylabel, series) in zip(axes[0], panels):
        for i, (label, xs, ys) in enumerate(series):
            pts = [(x, y, j) for j, (x, y) in enumerate(zip(xs, ys)) if y is not None and math.isfinite(y)]
            if not pts:
                continue
            style = {"marker": "o", "color": f"C{i % 10}", "linestyle": "-" if i < 10 else "--",
                     **(styles or {}).get(label, {})}
            ax.plot([x for x, _, _ in pts], [y for _, y, _ in pts], label=label, **style)
            if annotations:
                for x, y, j in pts:
                    ax.annotate(annotations[i][j], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        if logy:
            ax.set_yscale("log")
        if ylabel.endswith("(%)"):
            ax.set_ylim(-3, 103)
        if xticks:
            ax.set_xscale("log", base=2)
            ax.set_xticks(list(xticks), [f"{t:g}" for t in xticks])
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if not below:
            ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    if below:
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, 0.22 * legend_rows / height + 0.02, 1, 1))
    else:
        fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
