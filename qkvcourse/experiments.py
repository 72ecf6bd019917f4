"""Measured comparisons: run a training recipe over arms, budgets and seeds, and summarise.

The course claims that a method helps only with a measured comparison over several seeds.
:func:`sweep` runs ``run(arm, budget, seed) -> float`` for every combination and returns a
:class:`SweepResult`, which prints a mean ± spread table and draws a data-efficiency plot
(the metric against the budget, one curve per arm, a band from the lowest to the highest seed).

Example (chapter 9)::

    result = qc.sweep(finetune_accuracy, arms=["pretrained", "scratch"],
                      budgets=[16, 64, 256, 1024], seeds=[0, 1, 2])
    print(result.table())
    result.plot(xlabel="labelled examples", ylabel="test accuracy")
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Sequence

__all__ = ["SweepResult", "sweep"]


@dataclass
class SweepResult:
    """``values[arm][budget]`` is the list of the metric over ``seeds`` (in that order)."""
    arms: list
    budgets: list
    seeds: list
    values: dict = field(default_factory=dict)

    def mean(self, arm: Hashable, budget: Any) -> float:
        return statistics.fmean(self.values[arm][budget])

    def std(self, arm: Hashable, budget: Any) -> float:
        """Sample standard deviation over seeds (0 for a single seed)."""
        v = self.values[arm][budget]
        return statistics.stdev(v) if len(v) > 1 else 0.0

    def spread(self, arm: Hashable, budget: Any) -> tuple[float, float]:
        """(lowest, highest) over seeds."""
        v = self.values[arm][budget]
        return min(v), max(v)

    def gap(self, arm: Hashable, other: Hashable, budget: Any) -> list[float]:
        """Per-seed differences ``arm - other`` (the seeds pair the two arms' data draws)."""
        return [a - b for a, b in zip(self.values[arm][budget], self.values[other][budget])]

    def table(self, fmt: str = ".3f", budget_name: str = "budget") -> str:
        """One row per budget, one column per arm: ``mean ± std`` over the seeds."""
        cells = [[str(b)] + [f"{self.mean(a, b):{fmt}} ± {self.std(a, b):{fmt}}"
                             for a in self.arms] for b in self.budgets]
        header = [budget_name] + [str(a) for a in self.arms]
        widths = [max(len(r[i]) for r in cells + [header]) for i in range(len(header))]
        line = lambda row: "  ".join(c.rjust(w) for c, w in zip(row, widths))  # noqa: E731
        return "\n".join([line(header)] + [line(r) for r in cells]
                         + [f"(mean ± std over {len(self.seeds)} seeds)"])

    def plot(self, ax=None, xlabel: str = "budget", ylabel: str = "metric",
             logx: bool = True, chance: float | None = None):
        """Mean per arm against the budget, with a band from the lowest to the highest seed."""
        import matplotlib.pyplot as plt  # imported when a figure is drawn
        if ax is None:
            _, ax = plt.subplots(figsize=(5.5, 3.4))
        for arm in self.arms:
            means = [self.mean(arm, b) for b in self.budgets]
            lo, hi = zip(*(self.spread(arm, b) for b in self.budgets))
            (line,) = ax.plot(self.budgets, means, marker="o", label=str(arm))
            ax.fill_between(self.budgets, lo, hi, color=line.get_color(), alpha=0.2)
        if chance is not None:
            ax.axhline(chance, color="grey", linestyle=":", label="chance")
        if logx:
            ax.set_xscale("log", base=2)
            ax.set_xticks(self.budgets, [str(b) for b in self.budgets])  # 64, not 2^6
            ax.minorticks_off()
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.legend()
        return ax


def sweep(run: Callable[[Any, Any, int], float], arms: Sequence, budgets: Sequence,
          seeds: Sequence[int], verbose: bool = False) -> SweepResult:
    """Call ``run(arm, budget, seed)`` for every arm, budget and seed; collect the floats.

    Args:
        run: trains and evaluates one configuration; returns a finite number.
        arms: the compared methods (e.g. ``["pretrained", "scratch"]``).
        budgets: what varies along the x axis (e.g. numbers of labelled examples).
        seeds: one run per seed; use the seed for both the data draw and the initialisation,
            so that the arms are compared on the same data.
        verbose: print one line per run.
    """
    for name, seq in (("arms", arms), ("budgets", budgets), ("seeds", seeds)):
        if len(seq) == 0:
            raise ValueError(f"{name} must not be empty")
    result = SweepResult(list(arms), list(budgets), list(seeds))
    for arm in arms:
        result.values[arm] = {}
        for budget in budgets:
            out = []
            for seed in seeds:
                value = float(run(arm, budget, seed))
                if not math.isfinite(value):
                    raise ValueError(f"run({arm!r}, {budget!r}, {seed!r}) returned {value}")
                if verbose:
                    print(f"{arm} budget={budget} seed={seed}: {value:.4f}")
                out.append(value)
            result.values[arm][budget] = out
    return result
