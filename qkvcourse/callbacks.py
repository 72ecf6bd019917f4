"""Callbacks: what the :class:`~qkvcourse.trainer.Trainer` does around its loop (chapter 2 on).

A callback is told when a fit starts, after every optimiser step, after each epoch
(with that epoch's metrics) and when the fit ends; it may log, record, plot, save, or
stop training by setting ``trainer.should_stop``. The ones the course uses:

- :class:`PrintMetrics`   one line per epoch
- :class:`EvaluateEvery`  a metric other than the loss, every few steps
- :class:`LossCurve`      the training and validation loss against the step, drawn
  after ``fit`` or live in a notebook (matplotlib is imported only when it draws)
- :class:`EarlyStopping`  stop when a metric stops improving
- :class:`Checkpoint`     save the trainer's state every few epochs

Write your own by subclassing :class:`Callback` and overriding the hooks you need.
"""
from __future__ import annotations

import io
import math
import numbers
import os
import sys
from typing import TYPE_CHECKING, Callable

from torch import Tensor

from ._validate import check_flag, check_path, check_real, check_size

if TYPE_CHECKING:  # only for the annotations: the trainer imports this module
    from .trainer import Trainer


class Callback:
    """Base class of callbacks; override the hooks you need. Hooks are called in this order::

        on_fit_start(trainer)
        on_train_batch_end(trainer, step, loss)      after every optimiser step
        on_epoch_end(trainer, epoch, metrics)        after each epoch (and its evaluation)
        on_fit_end(trainer)

    A callback can stop training by setting ``trainer.should_stop = True``: the
    trainer stops after the current step (in a distributed run, after the next step
    at which the ranks agree: a multiple of ``log_every``, or the end of the epoch).

    In a distributed run a callback runs on rank 0 only, unless its class sets
    ``all_ranks = True``; such a callback sees the same metrics on every rank.
    """

    all_ranks: bool = False  # run on every process of a distributed run, not only rank 0

    def on_fit_start(self, trainer: "Trainer") -> None:
        pass

    def on_train_batch_end(self, trainer: "Trainer", step: int, loss: Tensor) -> None:
        """``step`` counts optimiser steps from 1; ``loss`` is the batch's loss as a
        detached 0-dim tensor on the training device (``float(loss)`` reads it, which
        makes the CPU wait for the GPU)."""

    def on_epoch_end(self, trainer: "Trainer", epoch: int, metrics: dict) -> None:
        """``epoch`` counts from 1; ``metrics`` holds ``epoch``, ``step``, ``train_loss``
        (mean over the epoch), ``lr`` and, with a validation loader, ``val_loss``.
        Callbacks earlier in the list may add entries that later ones see."""

    def on_fit_end(self, trainer: "Trainer") -> None:
        pass


class PrintMetrics(Callback):
    """Prints one line per epoch (every ``every`` epochs, and the last).

    A line reads like
    ``epoch  3/10  step    120  train_loss 0.4321  val_loss 0.5123  lr 1.00e-03``.
    """

    def __init__(self, every: int = 1):
        check_size("every", every)
        self.every = every

    def on_epoch_end(self, trainer, epoch, metrics):
        last = (epoch == trainer.config.max_epochs or trainer.should_stop
                or trainer._out_of_steps())
        if epoch % self.every and not last:
            return
        width = len(str(trainer.config.max_epochs))
        parts = [f"epoch {epoch:>{width}}/{trainer.config.max_epochs}",
                 f"step {metrics['step']:>6}"]
        for name, value in metrics.items():
            if name in ("epoch", "step"):
                continue
            if isinstance(value, float):
                parts.append(f"{name} {value:.2e}" if name == "lr" else f"{name} {value:.4f}")
            else:
                parts.append(f"{name} {value}")
        print("  ".join(parts))


class EvaluateEvery(Callback):
    """Records ``metric(trainer)`` every ``every`` optimiser steps (and after the last step).

    ``steps`` and ``values`` hold the record, for a learning curve of a metric other than the
    loss, e.g. ``EvaluateEvery(lambda t: evaluate_classifier(t.model, val_loader), every=50)``
    or ``EvaluateEvery(lambda t: t.evaluate(val_loader), every=100)``.
    """

    def __init__(self, metric: Callable[["Trainer"], float], every: int):
        if not callable(metric):
            raise TypeError(f"metric must be callable, got {type(metric).__name__}")
        check_size("every", every)
        self.metric, self.every = metric, every
        self.steps: list[int] = []
        self.values: list[float] = []

    def _record(self, trainer, step):
        if not self.steps or self.steps[-1] != step:
            self.steps.append(step)
            self.values.append(float(self.metric(trainer)))

    def on_train_batch_end(self, trainer, step, loss):
        if step % self.every == 0:
            self._record(trainer, step)

    def on_fit_end(self, trainer):
        if trainer.step:
            self._record(trainer, trainer.step)


class LossCurve(Callback):
    """Training and validation loss against the optimiser step.

    ``plot()`` draws the recorded curves (call it after ``fit``). With ``live=True``
    the figure is redrawn in a Jupyter notebook after every epoch, and every
    ``live_every_steps`` steps if given. Each drawing replaces the previous one in
    place (an updatable display), so other output of the cell, such as the lines of
    :class:`PrintMetrics`, stays. Outside a notebook ``live`` does nothing.

    The training curve has one point per ``TrainerConfig.log_every`` steps (the mean
    loss over those steps); the validation curve one point per epoch.
    """

    def __init__(self, live: bool = False, live_every_steps: int | None = None,
                 figsize: tuple[float, float] = (5.0, 3.0), logy: bool = False):
        check_flag("live", live)
        if live_every_steps is not None:
            check_size("live_every_steps", live_every_steps)
        if not (isinstance(figsize, (tuple, list)) and len(figsize) == 2 and all(
                not isinstance(v, bool) and isinstance(v, numbers.Real) and math.isfinite(v)
                and v > 0 for v in figsize)):
            raise ValueError(f"figsize must be a pair (width, height) of positive numbers "
                             f"(inches), got {figsize!r}")
        check_flag("logy", logy)
        self.live, self.live_every_steps = live, live_every_steps
        self.figsize, self.logy = figsize, logy
        self.history: dict[str, list] = {}
        self._trainer_history: dict[str, list] | None = None
        self._display = None  # the notebook output that live drawings update

    def on_fit_start(self, trainer):
        self._trainer_history, self._display = trainer.history, None

    def on_train_batch_end(self, trainer, step, loss):
        if self.live and self.live_every_steps and step % self.live_every_steps == 0:
            self._redraw()

    def on_epoch_end(self, trainer, epoch, metrics):
        self._snapshot()
        if self.live:
            self._redraw()

    def on_fit_end(self, trainer):
        self._snapshot()

    def _snapshot(self):
        if self._trainer_history is not None:
            self.history = {k: list(v) for k, v in self._trainer_history.items()}

    def _redraw(self):
        if not _in_notebook():
            return
        from IPython.display import Image, display
        from matplotlib.figure import Figure
        self._snapshot()
        if not self.history.get("train_loss"):
            return
        figure = Figure(figsize=self.figsize)  # not registered with pyplot: shown only here
        self._draw(figure.add_subplot())
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", bbox_inches="tight")
        image = Image(data=buffer.getvalue(), format="png")
        if self._display is None:
            self._display = display(image, display_id=True)
        else:
            self._display.update(image)

    def plot(self, ax=None):
        """Draw the curves; returns the figure (a new one unless ``ax`` is given)."""
        import matplotlib.pyplot as plt
        if not self.history.get("train_loss"):
            raise ValueError("LossCurve has nothing to plot: pass it to Trainer(callbacks=[...]) "
                             "and call fit() first")
        if ax is None:
            _, ax = plt.subplots(figsize=self.figsize)
        self._draw(ax)
        return ax.figure

    def _draw(self, ax):
        h = self.history
        ax.plot(h.get("step", []), h.get("train_loss", []), "-", label="train")
        if h.get("val_loss"):
            ax.plot(h["epoch_end_step"], h["val_loss"], "o--", label="validation")
        ax.set_xlabel("optimiser step")
        ax.set_ylabel("loss")
        if self.logy:
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend()


class EarlyStopping(Callback):
    """Stops training when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    It runs on every rank of a distributed run (the metrics are averaged over the
    ranks, so all decide alike).
    """

    all_ranks = True

    def __init__(self, monitor: str = "val_loss", patience: int = 3, min_delta: float = 0.0,
                 mode: str = "min"):
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be the name of a metric, such as 'val_loss', got "
                            f"{type(monitor).__name__}: {monitor!r}")
        if not isinstance(mode, str) or mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        check_size("patience", patience)
        check_real("min_delta", min_delta, minimum=0.0,
                   what="the smallest change that counts as an improvement")
        self.monitor, self.patience, self.min_delta, self.mode = monitor, patience, min_delta, mode
        self.best: float | None = None
        self.bad_epochs = 0

    def on_fit_start(self, trainer):
        self.best, self.bad_epochs = None, 0

    def on_epoch_end(self, trainer, epoch, metrics):
        if self.monitor not in metrics:
            raise KeyError(f"EarlyStopping monitors {self.monitor!r}, which is not among the "
                           f"epoch's metrics {sorted(metrics)}")
        value = metrics[self.monitor]
        sign = 1.0 if self.mode == "min" else -1.0
        if self.best is None or sign * (self.best - value) > self.min_delta:
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs >= self.patience:
                trainer.should_stop = True


class Checkpoint(Callback):
    """Saves a checkpoint every ``every`` epochs (and after the last one).

    ``path`` may contain ``{epoch}``, e.g. ``"runs/epoch{epoch:03d}.pt"``; otherwise
    the one file is overwritten, atomically, each time.
    """

    def __init__(self, path: str | os.PathLike, every: int = 1):
        check_path("path", path)
        check_size("every", every)
        self.path, self.every = os.fspath(path), every
        self.saved: list[str] = []

    def on_epoch_end(self, trainer, epoch, metrics):
        last = epoch == trainer.config.max_epochs
        if epoch % self.every == 0 or last:
            path = self.path.format(epoch=epoch) if "{epoch" in self.path else self.path
            trainer.save_checkpoint(path)
            self.saved.append(path)


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (including Colab), without importing IPython."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})
