"""Learning-curve figures a paper can use: one figure per env, a panel per metric (training curves, the Crafter
score over time, greedy-evaluation curves), written as PNG, PDF and SVG.

Each line is the mean over a method's runs (seeds) of per-run curves; the band is the 95% percentile-bootstrap
confidence interval of that mean, said in the figure's caption, with a warning for methods with fewer than
:data:`MIN_SEEDS` runs. The legend sits below the panels, off the data. Method names can be relabelled and
ordered (:class:`FigureStyle`), and curves smoothed by a trailing moving average.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FORMATS = ("png", "pdf", "svg")
MIN_SEEDS = 3  # below this a bootstrap band over seeds says little


@dataclass(frozen=True)
class FigureStyle:
    """How methods are named and ordered, and how curves are drawn.

    Args:
        formats: Files written per figure (any of :data:`FORMATS`).
        labels: Method name -> label in legends and tables (``{"none": "PPO", "count": "PPO + counts"}``).
        order: Methods in this order first, then the others alphabetically.
        smooth: Trailing moving average over this many bins of each run's curve (1: none).
        dpi: PNG resolution.
    """

    formats: tuple[str, ...] = FORMATS
    labels: Mapping[str, str] = field(default_factory=dict)
    order: tuple[str, ...] = ()
    smooth: int = 1
    dpi: int = 150

    def __post_init__(self) -> None:
        bad = [f for f in self.formats if f not in FORMATS]
        if bad or not self.formats:
            raise ValueError(f"unknown figure format(s) {bad or self.formats}; choose from {list(FORMATS)}")
        if self.smooth < 1:
            raise ValueError(f"smooth must be >= 1 bins, got {self.smooth}")

    def label(self, method: str) -> str:
        return self.labels.get(method, method)

    def sort_key(self, method: str) -> tuple[int, str]:
        return (self.order.index(method), "") if method in self.order else (len(self.order), method)

    def check_methods(self, methods: Sequence[str]) -> None:
        """Raises ValueError if ``labels`` or ``order`` name a method that no run has."""
        unknown = sorted((set(self.labels) | set(self.order)) - set(methods))
        if unknown:
            raise ValueError(f"--labels/--order name unknown method(s) {unknown}; the runs have {sorted(set(methods))}")


def smooth_curve(curve: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over ``window`` bins, ignoring NaNs (NaN where the window has no value)."""
    if window <= 1:
        return curve
    out = np.full_like(curve, np.nan)
    for j in range(len(curve)):
        chunk = curve[max(0, j - window + 1) : j + 1]
        chunk = chunk[~np.isnan(chunk)]
        if chunk.size:
            out[j] = chunk.mean()
    return out


def crafter_score_curve(episodes: Sequence[Mapping[str, Any]], edges: np.ndarray) -> np.ndarray:
    """The Crafter score (percent) of the episodes ending in each step interval ``(edges[i], edges[i+1]]``
    (NaN for an interval without episodes)."""
    from rove.experiments.crafter_score import crafter_score, success_rates

    out = np.full(len(edges) - 1, np.nan)
    steps = np.array([e.get("step", 0) for e in episodes], dtype=np.float64)
    bins = np.clip(np.searchsorted(edges, steps, side="left") - 1, 0, len(edges) - 2)
    for i in range(len(out)):
        rates = success_rates([e for e, b in zip(episodes, bins, strict=True) if b == i])
        if rates:
            out[i] = crafter_score(rates)
    return out


@dataclass
class Panel:
    """One panel: a title and, per run, a function of the bin edges giving its curve."""

    title: str
    curve_of: Callable[[Any, np.ndarray], np.ndarray]


def band_note(style: FigureStyle) -> str:
    """What a figure's lines and bands are."""
    text = "Lines: mean over runs (seeds); bands: 95% percentile-bootstrap CI of that mean"
    return text + (f"; trailing average over {style.smooth} bins" if style.smooth > 1 else "") + "."


def caption(groups: Sequence[Any], style: FigureStyle, bin_width: float) -> tuple[str, list[str]]:
    """The figure's caption (what lines and bands are) and its warnings (methods with < MIN_SEEDS runs)."""
    from rove.experiments.report import short_count

    text = band_note(style)[:-1] + f"; bins of {short_count(bin_width)} env steps."
    warnings = [
        f"{style.label(g.method)} on {g.env_id.split('/')[-1]} has {len(g.runs)} run(s): its band is not a reliable"
        f" interval (use >= {MIN_SEEDS} seeds)"
        for g in groups
        if len(g.runs) < MIN_SEEDS
    ]
    return text, warnings


def draw_env(
    groups: Sequence[Any], panels: Sequence[Panel], max_step: float, bins: int, style: FigureStyle
) -> tuple[Any, Any, list[str]]:
    """One env's figure: ``(figure, legend, warnings)``; the caller saves and closes it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rove.experiments.report import _curve_band, label_steps_axis

    groups = sorted(groups, key=lambda g: style.sort_key(g.method))
    edges = np.linspace(0, max_step, bins + 1)
    x = edges[1:]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    handles: list[Any] = []
    for ax, panel in zip(axes[0], panels, strict=True):
        for i, group in enumerate(groups):
            curves = np.stack([smooth_curve(panel.curve_of(r, edges), style.smooth) for r in group.runs])
            if np.isnan(curves).all():
                continue
            mean, low, high = _curve_band(curves)
            color = colors[i % len(colors)]  # a method keeps its colour in every panel
            (line,) = ax.plot(x, mean, color=color, label=f"{style.label(group.method)} ({len(group.runs)} runs)")
            ax.fill_between(x, low, high, alpha=0.2, color=color, linewidth=0)
            if not any(h.get_label() == line.get_label() for h in handles):
                handles.append(line)
        label_steps_axis(ax)
        ax.set_title(panel.title, fontsize="medium")
        ax.grid(alpha=0.3)
    fig.suptitle(groups[0].env_id.split("/")[-1], fontsize="large")
    text, warnings = caption(groups, style, max_step / bins)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    title = "\n".join([text, *("Warning: " + w for w in warnings)])
    legend = fig.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),  # below the panels: never over a curve
        ncol=max(1, min(len(handles), 4)),
        frameon=False,
        title=title,
        title_fontsize="small",
    )
    return fig, legend, warnings


def plot_env(
    groups: Sequence[Any],
    panels: Sequence[Panel],
    max_step: float,
    path: Path,
    bins: int,
    style: FigureStyle,
) -> tuple[list[Path], list[str]]:
    """Draws one env's figure to ``path`` with each suffix of ``style.formats``; returns the files and warnings.

    Text stays text: TrueType fonts in PDFs (conferences refuse Type 3) and ``<text>`` elements in SVGs.
    """
    import matplotlib

    with matplotlib.rc_context({"pdf.fonttype": 42, "ps.fonttype": 42, "svg.fonttype": "none"}):
        fig, _legend, warnings = draw_env(groups, panels, max_step, bins, style)
        path.parent.mkdir(parents=True, exist_ok=True)
        written = []
        for fmt in style.formats:
            target = path.with_suffix(f".{fmt}")
            fig.savefig(target, dpi=style.dpi, bbox_inches="tight")  # the legend and title included
            written.append(target)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return written, warnings
