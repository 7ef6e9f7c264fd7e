"""Fig. 2 as a PNG: a metric (avg win rate by default) against the SFT data size, log x."""

from __future__ import annotations

from pathlib import Path

from xlexp.report.tables import SystemRow, languages, size_label


def scaling_plot(
    rows: list[SystemRow],
    path: Path,
    metric: str = "win_rate",
    lines: str = "model",
    title: str = "",
) -> bool:
    """Fig. 2: avg win rate vs SFT data size (log x), one line per base model (or per language of
    each model with lines="lang"); a model's score as is is a dashed line. False: nothing to
    plot."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a cluster node
    import matplotlib.pyplot as plt

    sized = [r for r in rows if r.data_size]
    if not sized:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    models = list(dict.fromkeys(r.name for r in sized))
    series: list[tuple[str, str, str]] = []  # (legend label, model, column)
    for model in models:
        cols = ["avg"] if lines == "model" else languages([r for r in sized if r.name == model])
        series += [(model if lines == "model" else f"{model} {c}", model, c) for c in cols]
    for i, (name, model, col) in enumerate(series):
        color = f"C{i % 10}"
        points = sorted(
            (r.data_size, r.value(col, metric))
            for r in sized
            if r.name == model and r.value(col, metric) is not None
        )
        if points:
            ax.plot(
                [p[0] for p in points], [p[1] for p in points], marker="o", color=color, label=name
            )
        base = [
            r.value(col, metric)
            for r in rows
            if r.name == model and r.data_size is None and r.value(col, metric) is not None
        ]
        if base:
            ax.axhline(base[0], color=color, linestyle="--", linewidth=1)
    ax.set_xscale("log")
    xs = sorted({r.data_size for r in sized})
    ax.set_xticks(xs, [size_label(x) for x in xs])
    ax.minorticks_off()
    ax.set_xlabel("SFT instructions (log scale)")
    unit = " (%)" if metric in ("win_rate", "ci_low", "ci_high") else ""
    ax.set_ylabel(f"{'avg ' if lines == 'model' else ''}{metric.replace('_', ' ')}{unit}")
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, title="dashed: without SFT", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return True
