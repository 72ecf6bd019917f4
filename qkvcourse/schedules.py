"""Learning-rate schedules for the :class:`~qkvcourse.trainer.Trainer` (chapters 7, 9, 10).

Each function returns a ``LambdaLR`` that multiplies the optimiser's own learning rate by
a factor of the step number, and is stepped once after every optimiser step (the trainer
does this), so the factor's argument counts optimiser steps from 1, as in the Transformer
paper (Vaswani et al., 2017, section 5.3).

- :func:`transformer_schedule`   warm-up, then inverse square-root decay (the paper's eq. 3)
- :func:`warmup_cosine_schedule` warm-up, then cosine decay (GPT- and BERT-style pretraining)
"""
from __future__ import annotations

import math
import numbers

import torch
from torch.optim.lr_scheduler import LambdaLR

from ._validate import check_size, check_sizes


def _check_optimizer(optimizer) -> None:
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got "
                        f"{type(optimizer).__name__}")


def transformer_schedule(optimizer: torch.optim.Optimizer, d_model: int,
                         warmup_steps: int = 4000) -> LambdaLR:
    """The learning rate of the Transformer paper (Vaswani et al., 2017, eq. 3).

    The rate for optimiser step ``step_num`` (1, 2, ...) is::

        lrate = d_model^-0.5 * min(step_num^-0.5, step_num * warmup_steps^-1.5)

    a linear increase for ``warmup_steps`` steps, peaking at ``(d_model *
    warmup_steps)^-0.5`` on step ``warmup_steps``, then a decay proportional to
    the inverse square root of the step number.

    ``LambdaLR`` multiplies the optimiser's own learning rate by this factor, so
    create the optimiser with ``lr=1.0`` to get the paper's values (another value
    scales the whole curve). The paper uses Adam with ``betas=(0.9, 0.98)`` and
    ``eps=1e-9``. Step the schedule once per optimiser step (the
    :class:`~qkvcourse.trainer.Trainer` does).

    Args:
        optimizer: the optimiser whose learning rate is set.
        d_model: the model width (512 in the paper's base model).
        warmup_steps: steps of linear warm-up (4000 in the paper).

    Returns:
        A ``LambdaLR``; its ``get_last_lr()`` is the rate of the next optimiser step.
    """
    _check_optimizer(optimizer)
    check_sizes(d_model=d_model, warmup_steps=warmup_steps)

    def factor(scheduler_steps: int) -> float:
        step_num = scheduler_steps + 1  # LambdaLR counts from 0, the paper from 1
        return d_model ** -0.5 * min(step_num ** -0.5, step_num * warmup_steps ** -1.5)

    return LambdaLR(optimizer, factor)


def warmup_cosine_schedule(optimizer: torch.optim.Optimizer, warmup_steps: int,
                           total_steps: int, min_ratio: float = 0.0) -> LambdaLR:
    """Linear warm-up, then cosine decay (the usual schedule for GPT and BERT-style models).

    For optimiser step ``k`` (1, 2, ...) the optimiser's learning rate is multiplied by::

        k / warmup_steps                                     if k <= warmup_steps
        min_ratio + (1 - min_ratio) * (1 + cos(pi * p)) / 2  otherwise, where
        p = min(1, (k - warmup_steps) / (total_steps - warmup_steps))

    so the factor reaches 1 on step ``warmup_steps`` and ``min_ratio`` on step
    ``total_steps``, and stays there afterwards.

    Args:
        optimizer: the optimiser whose learning rate is set (its ``lr`` is the peak).
        warmup_steps: steps of linear warm-up (0: start at the peak).
        total_steps: the step at which the decay ends.
        min_ratio: the final learning rate as a fraction of the peak.

    Returns:
        A ``LambdaLR``, to be stepped once per optimiser step.
    """
    _check_optimizer(optimizer)
    check_size("warmup_steps", warmup_steps, minimum=0)
    if isinstance(total_steps, bool) or not isinstance(total_steps, numbers.Integral) \
            or total_steps <= warmup_steps:
        raise ValueError(f"total_steps must be an integer > warmup_steps ({warmup_steps}), "
                         f"got {total_steps!r}")
    if isinstance(min_ratio, bool) or not isinstance(min_ratio, numbers.Real) \
            or not 0.0 <= min_ratio <= 1.0:  # (a NaN fails the comparison)
        raise ValueError(f"min_ratio must lie in [0, 1], got {min_ratio!r}")

    def factor(scheduler_steps: int) -> float:
        k = scheduler_steps + 1
        if k <= warmup_steps:
            return k / warmup_steps
        progress = min(1.0, (k - warmup_steps) / (total_steps - warmup_steps))
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)
