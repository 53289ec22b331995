"""Plain-text tables and learning-curve plots: what a person reads after a run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """An aligned text table; numbers right-aligned, text left-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [all(_is_number(row[i]) for row in cells[1:]) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        parts = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(row, widths, numeric)]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table, to paste beside published results."""
    lines = [headers, ["---"] * len(headers), *rows]
    return "\n".join("| " + " | ".join(str(c) for c in line) + " |" for line in lines)


def _is_number(text: str) -> bool:
    return text.replace(".", "", 1).replace("%", "").replace("+-", "").replace(" ", "").lstrip("-").isdigit()


def labels_to_reach(labelled: Sequence[int], accuracy: Sequence[float], target: float) -> int | None:
    """The labelled-set size at the first evaluation whose accuracy (a fraction) reaches `target` (in %); None when
    none does. Measured at the evaluations a run made, so its resolution is the budget per cycle."""
    for size, value in zip(labelled, accuracy):
        if value is not None and 100 * value >= target - 1e-9:
            return int(size)
    return None


def area_under_curve(labelled: Sequence[float], accuracy: Sequence[float]) -> float:
    """Normalised area under the learning curve: the mean accuracy over the labelling budget range."""
    x, y = np.asarray(labelled, dtype=float), np.asarray(accuracy, dtype=float)
    if len(x) < 2 or x[-1] == x[0]:
        return float(y.mean())
    return float(np.trapezoid(y, x) / (x[-1] - x[0]))


def plot_learning_curves(
    curves: dict[str, tuple[Sequence[float], Sequence[float], Sequence[float] | None]],
    path: Path,
    title: str,
    published: dict[str, tuple[Sequence[float], Sequence[float], Sequence[float] | None]] | None = None,
) -> Path:
    """One PNG with accuracy vs labelled images per curve, a band of +-1 std where given; `published` curves
    (the same shape) dashed with error bars, beside them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for label, (x, mean, std) in curves.items():
        mean = 100 * np.asarray(mean, dtype=float)
        ax.plot(x, mean, marker="o", markersize=3.5, label=label)
        if std is not None:
            std = 100 * np.asarray(std, dtype=float)
            ax.fill_between(x, mean - std, mean + std, alpha=0.18)
    for label, (x, mean, std) in (published or {}).items():
        mean = 100 * np.asarray(mean, dtype=float)
        err = None if std is None else 100 * np.asarray(std, dtype=float)
        ax.errorbar(x, mean, yerr=err, linestyle="--", marker="x", markersize=5, capsize=3, label=label)
    ax.set_xlabel("labelled images")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
