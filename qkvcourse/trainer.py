"""A generic trainer: model, data, optimiser, callbacks (used from chapter 2 on).

The chapters differ in their models and data, not in how they train, so one loop
serves them all. A task supplies

- a model (any ``nn.Module``),
- ``loss_fn(model, batch) -> loss``, a scalar tensor: the task decides how to use a
  batch (``model(X)`` against ``y``, teacher forcing, masked language modelling...),
- a training ``DataLoader`` and optionally a validation one,

and the :class:`Trainer` does the rest: it moves every tensor of a (nested) batch to
the device, steps the optimiser and the learning-rate schedule, clips gradients,
evaluates, checkpoints, and calls callbacks for logging and plots (the
:class:`~qkvcourse.callbacks.Callback` objects of :mod:`qkvcourse.callbacks`). The
learning-rate schedules it steps are in :mod:`qkvcourse.schedules`.

The trainer owns the performance switches, chosen once in :meth:`Trainer._prepare`
and recorded in ``trainer.settings``; each turns itself off where it does not apply:

========================  ================================================
switch                    used when
========================  ================================================
device                    ``config.device``, else :func:`qkvcourse.get_device`
autocast bf16             CUDA with native bf16 (compute capability ≥ 8.0)
autocast fp16 + scaler    CUDA without native bf16 (e.g. a Colab T4)
``torch.compile``         ``config.compile`` and CUDA (capability ≥ 7.0)
fused AdamW               the default optimiser on CUDA
DistributedDataParallel   started by ``torchrun`` with ≥ 2 processes, or a
                          process group already initialised
========================  ================================================

Shape legend: B batch (the first dimension of the first tensor in a batch).

Counting convention: ``trainer.step`` is the number of optimiser steps taken and
``trainer.epoch`` the number of epochs completed; callbacks receive them 1-based
(the first step is step 1). Learning-rate schedules are stepped after every
optimiser step, so a schedule's argument is a step count, as in the Transformer
paper (Vaswani et al., 2017, section 5.3).

    >>> trainer = Trainer(model, loss_fn, train_loader, val_loader,
    ...                   callbacks=[PrintMetrics()], config=TrainerConfig(max_epochs=5))
    >>> history = trainer.fit()

Several processes (DistributedDataParallel)
-------------------------------------------
The same script trains on W processes, one per GPU (or W CPU processes) when started
with ``torchrun``::

    torchrun --nproc_per_node=2 your_script.py

With the default ``TrainerConfig(distributed="auto")`` the trainer sees torchrun's
environment variables (``WORLD_SIZE`` > 1), creates the process group (backend
``gloo`` on the CPU, ``nccl`` on CUDA, each process on GPU ``LOCAL_RANK``) and wraps
the model in ``DistributedDataParallel``; a group the script created itself is used as
it is. What changes in a distributed run:

- Data: build the training loader with :func:`qkvcourse.distributed.distributed_loader`,
  so that each rank reads a disjoint shard. Its ``batch_size`` is per process: the
  global batch is ``batch_size * W``. The trainer calls ``sampler.set_epoch(epoch)``
  before every epoch (any loader whose sampler has ``set_epoch``). The trainer does
  not reshard a plain ``DataLoader``; it warns that every rank would read all of it.
- ``loss_fn`` must call the model (``model(...)``): DDP averages the gradients while
  they are computed by the backward pass of that call, so every optimiser step, and
  gradient clipping after it, sees the gradient of the mean over the global batch.
- Logged losses (``history``, the epoch's ``train_loss``) and :meth:`Trainer.evaluate`
  are averaged over all ranks, so every rank holds the same history and metrics;
  ``on_train_batch_end`` receives the loss of this rank's batch.
- Only rank 0 shows the progress bar and runs callbacks, except those whose
  ``all_ranks`` is True (:class:`~qkvcourse.callbacks.EarlyStopping`, which decides from
  averaged metrics). :class:`~qkvcourse.callbacks.PrintMetrics`,
  :class:`~qkvcourse.callbacks.LossCurve` and :class:`~qkvcourse.callbacks.Checkpoint` run
  on rank 0.
  ``should_stop`` is agreed between the ranks at the next ``log_every`` point (or the
  end of the epoch), so all stop after the same step.
- :meth:`Trainer.save_checkpoint` writes on rank 0 only (other ranks return at once);
  checkpoints hold the plain model's weights, so they load in a single process too.
- Call :meth:`Trainer.evaluate` and :meth:`Trainer.fit` on every rank (they
  communicate), and :meth:`Trainer.close` at the end (or use ``with Trainer(...) as
  trainer:``), which destroys the process group if the trainer created it.
"""
from __future__ import annotations

import atexit
import dataclasses
import gc
import importlib.util
import math
import numbers
import os
import random
import sys
import tempfile
import time
import warnings
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from . import distributed as ddp_utils
from ._validate import (MAX_SEED, check_flag, check_path, check_seed, check_size, shape_str,
                        value_checks_enabled)
from .callbacks import Callback, _in_notebook
from .multihead import clip_gradients, gradient_plan
from .utils import _check_device, get_device, seed_everything

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DISTRIBUTED = ("auto", "on", "off")
CHECKPOINT_FORMAT = "qkvcourse.trainer/1"


# ---------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------

@dataclass
class TrainerConfig:
    """How to train; the model, data and optimiser are given to :class:`Trainer`."""

    max_epochs: int = 10  # total epochs; a resumed run continues up to this number
    max_steps: int | None = None  # total optimiser steps at most (None: no cap)
    grad_clip_norm: float | None = None  # clip the global gradient norm to this (None: off)
    precision: str = "auto"  # "auto" (bf16/fp16 autocast on CUDA, else fp32), "fp32", "bf16",
    #                          "fp16"; on the CPU every choice ends as fp32
    compile: bool = False  # torch.compile the model; only on CUDA, where it pays for its start-up
    device: str | torch.device | None = None  # None: qkvcourse.get_device()
    seed: int = 0  # seed_everything(seed + rank) when fit() starts a fresh run (rank 0 alone)
    log_every: int = 10  # read the loss back from the device every this many steps
    progress: bool | str = "auto"  # progress bar; "auto": only in an interactive terminal
    eval_every_epoch: bool = True  # evaluate on val_loader after each epoch
    distributed: str = "auto"  # DistributedDataParallel: "auto" (when torchrun started >= 2
    #                            processes or a process group exists), "on" (also for one
    #                            process; an error without torchrun), "off"
    find_unused_parameters: bool = False  # DDP: for models where some parameters get no
    #                                       gradient in a step (costs a graph walk per step)

    def __post_init__(self):
        check_size("max_epochs", self.max_epochs, minimum=0)
        if self.max_steps is not None and (isinstance(self.max_steps, bool)
                                           or not isinstance(self.max_steps, int)
                                           or self.max_steps < 1):
            raise ValueError(f"max_steps must be None or an integer >= 1, got {self.max_steps!r}")
        clip = self.grad_clip_norm
        if clip is not None and (isinstance(clip, bool) or not isinstance(clip, numbers.Real)
                                 or not math.isfinite(clip) or not clip > 0):
            raise ValueError(f"grad_clip_norm must be None or > 0, got {clip!r} (a finite "
                             f"number, the largest global gradient norm; None: no clipping)")
        if not isinstance(self.precision, str) or self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        check_flag("compile", self.compile)
        if self.device is not None:
            _check_device("device", self.device)
        check_seed("seed", self.seed)
        check_size("log_every", self.log_every)
        if not (isinstance(self.progress, bool) or
                (isinstance(self.progress, str) and self.progress == "auto")):
            raise ValueError(f"progress must be 'auto', True or False, got {self.progress!r}")
        check_flag("eval_every_epoch", self.eval_every_epoch)
        if not isinstance(self.distributed, str) or self.distributed not in DISTRIBUTED:
            raise ValueError(f"distributed must be one of {DISTRIBUTED}, "
                             f"got {self.distributed!r}")
        check_flag("find_unused_parameters", self.find_unused_parameters)


# ---------------------------------------------------------------------------------------------
# batches
# ---------------------------------------------------------------------------------------------

def move_to_device(batch: Any, device: torch.device | str) -> Any:
    """Move every tensor of a nested tuple / list / dict / namedtuple to ``device``.

    Anything that is not a tensor (strings, numbers, ``None``) is returned as it is, and
    the containers keep their types.
    """
    device = _check_device("device", device)
    if isinstance(batch, Tensor):
        # non_blocking overlaps the copy with compute when the loader pins memory
        return batch.to(device, non_blocking=device.type == "cuda")
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a namedtuple
        return type(batch)(*(move_to_device(b, device) for b in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return type(batch)((k, move_to_device(v, device)) for k, v in batch.items())
    return batch


def batch_size_of(batch: Any) -> int:
    """B, the first dimension of the first tensor in a (nested) batch.

    Dicts are searched in insertion order. A 0-dim tensor, or a batch without
    tensors, counts as one example.
    """
    first = _first_tensor(batch)
    if first is None or first.dim() == 0:
        return 1
    return int(first.shape[0])


def _first_tensor(batch: Any) -> Tensor | None:
    if isinstance(batch, Tensor):
        return batch
    items = batch.values() if isinstance(batch, dict) else \
        batch if isinstance(batch, (list, tuple)) else ()
    for item in items:
        found = _first_tensor(item)
        if found is not None:
            return found
    return None


# ---------------------------------------------------------------------------------------------
# the trainer
# ---------------------------------------------------------------------------------------------

class Trainer:
    """Trains ``model`` by minimising ``loss_fn(model, batch)`` over ``train_loader``.

    Args:
        model: any ``nn.Module``; it is moved to the device.
        loss_fn: ``loss_fn(model, batch) -> Tensor``, a 0-dim loss (the batch mean), with
            ``batch`` as the loader yields it, every tensor already on the device. It
            runs under autocast when mixed precision is on.
        train_loader: an iterable of batches, usually a ``DataLoader``. For a
            reproducible shuffle give the ``DataLoader`` a seeded ``generator``, or none
            (it then draws from the global seed).
        val_loader: batches for :meth:`evaluate` after each epoch (optional).
        optimizer: default ``AdamW(lr=1e-3)`` (fused on CUDA), built after the model has
            been moved.
        scheduler: a learning-rate scheduler, stepped after every optimiser step (see
            :func:`~qkvcourse.schedules.transformer_schedule`,
            :func:`~qkvcourse.schedules.warmup_cosine_schedule`). An
            epoch-based schedule can be stepped from a callback's ``on_epoch_end``.
        callbacks: :class:`~qkvcourse.callbacks.Callback` objects, called in the order
            given.
        config: a :class:`TrainerConfig`.

    Attributes:
        settings: what :meth:`_prepare` chose (device, precision, compile, fused
            optimiser, distributed: ``None`` or a dict of backend, rank, world size and
            local rank) and a list of ``notes`` saying which requested switches were
            turned off, and why.
        rank, world_size: this process's rank and the number of processes (0 and 1
            without DDP); ``is_main_process`` is ``rank == 0``.
        history: dict of lists, see :meth:`fit`.
        step: the number of optimiser steps taken.
        epoch: the number of epochs completed.
        last_grad_norm: the global gradient norm before clipping at the last step
            (a 0-dim tensor; ``None`` when clipping is off).
    """

    def __init__(self, model: nn.Module, loss_fn: Callable[[nn.Module, Any], Tensor],
                 train_loader: Iterable, val_loader: Iterable | None = None,
                 optimizer: torch.optim.Optimizer | None = None, scheduler=None,
                 callbacks: Sequence[Callback] = (), config: TrainerConfig | None = None):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        if not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable as loss_fn(model, batch), "
                            f"got {type(loss_fn).__name__}")
        _check_loader("train_loader", train_loader)
        if val_loader is not None:
            _check_loader("val_loader", val_loader)
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be None (AdamW) or a torch.optim.Optimizer, got "
                            f"{type(optimizer).__name__}: {optimizer!r}"[:200])
        if scheduler is not None and not callable(getattr(scheduler, "step", None)):
            raise TypeError(f"scheduler must be None or a learning-rate scheduler with a step() "
                            f"method, got {type(scheduler).__name__}")
        if config is not None and not isinstance(config, TrainerConfig):
            raise TypeError(f"config must be None or a TrainerConfig, got "
                            f"{type(config).__name__}; write config=TrainerConfig(...)")
        self.config = TrainerConfig() if config is None else config
        self.model, self.loss_fn = model, loss_fn
        self.train_loader, self.val_loader = train_loader, val_loader
        self.optimizer, self.scheduler = optimizer, scheduler
        self.callbacks = _check_callbacks(callbacks)
        self.step, self.epoch = 0, 0
        self.should_stop = False
        self.last_grad_norm: Tensor | None = None
        self._plan = None  # gradient_plan(model), kept for clipping; found again by each fit
        self.history: dict[str, list] = _empty_history()
        self._prepare()

    # -- performance switches, chosen in one place --------------------------------------------

    def _prepare(self) -> None:
        """Choose the device, precision, compilation, optimiser and DDP, and wrap the model.

        ``self.model`` stays the plain module (its ``state_dict`` is what checkpoints
        hold); ``self.train_model`` is what ``loss_fn`` receives in training: the same
        module, its ``DistributedDataParallel`` wrapper, or the compiled form of
        either; ``self.eval_model``, what :meth:`evaluate` uses, is never wrapped in DDP
        (evaluation needs no gradient averaging, and ranks may evaluate different
        numbers of batches).
        """
        notes: list[str] = []  # for settings["notes"]: switches turned off and why, warnings
        # distributed: decided first, because it picks the GPU of this process
        use_ddp = self._wants_ddp()
        self.device = device = self._choose_device(use_ddp)
        self._owns_process_group = False
        if use_ddp:
            self._join_process_group()
        self.distributed = use_ddp
        self.rank = ddp_utils.get_rank() if use_ddp else 0
        self.world_size = ddp_utils.get_world_size() if use_ddp else 1
        self.is_main_process = self.rank == 0
        self.model.to(device)

        capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
        self.precision = self._choose_precision(capability, notes)
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        self.grad_scaler = _make_grad_scaler() if self.precision == "fp16" else None

        self.train_model: nn.Module = self.model
        self.eval_model: nn.Module = self.model
        if use_ddp:
            self._wrap_in_ddp(notes)
        compiled = self._compile(capability, notes) if self.config.compile else False
        if self.optimizer is None:
            self.optimizer = self._default_optimizer()
        self.settings = self._settings(compiled, notes)

    def _choose_device(self, use_ddp: bool) -> torch.device:
        """``config.device``, else :func:`qkvcourse.get_device`; a CUDA device without an
        index becomes the current GPU, or under DDP GPU number ``LOCAL_RANK`` (each
        process on a machine drives its own GPU)."""
        device = torch.device(self.config.device) if self.config.device is not None \
            else get_device()
        if device.type == "cuda" and device.index is None:
            index = ddp_utils.get_local_rank() if use_ddp else torch.cuda.current_device()
            device = torch.device("cuda", index)
        return device

    def _join_process_group(self) -> None:
        """Bind this process to its GPU, then join the process group (creating it from
        torchrun's environment when the script has not)."""
        device = self.device
        if device.type == "cuda":
            torch.cuda.set_device(device)  # before NCCL starts, so it binds to this GPU
        ddp_utils.backend_for(device)  # only cpu and cuda are supported
        self._owns_process_group = ddp_utils.init_distributed(device)
        backend = torch.distributed.get_backend()
        if backend == "nccl" and device.type != "cuda":
            raise RuntimeError(f"the process group uses the nccl backend, which needs "
                               f"CUDA tensors, but the trainer's device is {device}")

    def _choose_precision(self, capability: tuple[int, int] | None, notes: list[str]) -> str:
        """The precision of the forward pass: "fp32" off CUDA; with "auto", bf16 where the
        tensor cores support it natively, fp16 (with loss scaling) on older tensor-core
        GPUs, fp32 on GPUs without tensor cores."""
        requested, device = self.config.precision, self.device
        if device.type != "cuda":
            if requested in ("bf16", "fp16"):
                notes.append(f"precision={requested!r} needs CUDA; using fp32 on {device.type}")
            return "fp32"
        if requested == "auto":
            return "bf16" if capability >= (8, 0) else "fp16" if capability >= (7, 0) \
                else "fp32"
        if requested == "bf16" and not torch.cuda.is_bf16_supported():
            name = torch.cuda.get_device_name(device)
            notes.append(f"precision='bf16' is not supported on {name}; using fp32")
            return "fp32"
        return requested

    def _wrap_in_ddp(self, notes: list[str]) -> None:
        """Wrap the training model in DDP, which averages the gradients over the ranks
        during the backward pass; warn (on rank 0) when the loader is not sharded."""
        device = self.device
        self.train_model = nn.parallel.DistributedDataParallel(
            self.model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=self.config.find_unused_parameters)
        _ddp_trainers.add(self)
        if self.is_main_process and not ddp_utils.is_sharded(self.train_loader):
            message = ("train_loader is a DataLoader without a DistributedSampler: every "
                       "rank reads the whole data set; build it with "
                       "qkvcourse.distributed.distributed_loader")
            notes.append(message)
            # 4 levels up: _wrap_in_ddp, _prepare, __init__, the line that built the Trainer
            warnings.warn(message, stacklevel=4)

    def _compile(self, capability: tuple[int, int] | None, notes: list[str]) -> bool:
        """``torch.compile`` the models, only on CUDA, where Triton generates the kernels;
        returns whether it did. It wraps the DDP module (not the other way round), so
        that compiled graphs break at the gradient buckets and communication overlaps
        the backward pass."""
        if self.device.type != "cuda":
            notes.append(f"compile=True ignored: torch.compile is used only on CUDA, "
                         f"not on {self.device.type}")
            return False
        if capability < (7, 0):
            notes.append("compile=True ignored: Triton needs compute capability >= 7.0")
            return False
        self.train_model = torch.compile(self.train_model)
        self.eval_model = torch.compile(self.model) if self.distributed else self.train_model
        return True

    def _default_optimizer(self) -> torch.optim.Optimizer:
        """``AdamW(lr=1e-3)``, fused on CUDA (one kernel for all parameters)."""
        fused = self.device.type == "cuda" and all(
            p.is_floating_point() for p in self.model.parameters())
        return torch.optim.AdamW(self.model.parameters(), lr=1e-3,
                                 **({"fused": True} if fused else {}))

    def _settings(self, compiled: bool, notes: list[str]) -> dict:
        """What :meth:`_prepare` chose, for ``trainer.settings``."""
        return {
            "device": str(self.device),
            "precision": self.precision,
            "autocast_dtype": None if self.autocast_dtype is None else str(self.autocast_dtype),
            "grad_scaler": self.grad_scaler is not None,
            "compile": compiled,
            "fused_optimizer": bool(self.optimizer.defaults.get("fused")),
            "distributed": None if not self.distributed else {
                "backend": torch.distributed.get_backend(), "rank": self.rank,
                "world_size": self.world_size, "local_rank": ddp_utils.get_local_rank()},
            "notes": notes,
        }

    def _wants_ddp(self) -> bool:
        mode = self.config.distributed
        if mode == "off":
            return False
        if ddp_utils.is_initialized():
            return True
        if mode == "on":
            if not ddp_utils.launched_by_torchrun():
                raise RuntimeError("TrainerConfig(distributed='on') needs a process group or "
                                   "torchrun's environment variables (RANK, WORLD_SIZE, "
                                   "MASTER_ADDR, MASTER_PORT); launch the script with "
                                   "`torchrun --nproc_per_node=N script.py`")
            return True
        return ddp_utils.launched_by_torchrun() and ddp_utils.get_world_size() > 1

    def close(self) -> None:
        """End distributed training: release the DDP wrapper, and destroy the process
        group if this trainer created it (releasing the DDP wrappers of every other
        open trainer first, see :func:`qkvcourse.distributed.shutdown_distributed`).

        Afterwards ``train_model`` is the plain (or compiled) module and the trainer
        trains and evaluates on this process alone. Nothing changes in a single
        process. Trainers not closed are closed at interpreter exit.
        """
        self._release_ddp()
        if self._owns_process_group:
            for other in list(_ddp_trainers):
                other._release_ddp()  # no DDP module may outlive the group
            gc.collect()  # a released module held in a reference cycle goes now
            ddp_utils.shutdown_distributed()
            self._owns_process_group = False

    def _release_ddp(self) -> None:
        if self.distributed:
            self.train_model = self.eval_model
            self.distributed = False
            _ddp_trainers.discard(self)

    def __enter__(self) -> "Trainer":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype,
                              enabled=self.autocast_dtype is not None)

    def _loss(self, batch: Any, fn=None, model: nn.Module | None = None) -> Tensor:
        """``loss_fn`` (or ``fn``, a metric of :meth:`evaluate`) on one batch, checked by
        dtype and shape only (no value is read here)."""
        name = "loss_fn" if fn is None else "fn"
        loss = (fn or self.loss_fn)(self.train_model if model is None else model, batch)
        if not isinstance(loss, Tensor):
            raise TypeError(f"{name} must return a tensor, got {type(loss).__name__}")
        if loss.dim() != 0:
            raise ValueError(f"{name} must return a 0-dim (scalar) tensor, got shape "
                             f"{shape_str(loss)}; reduce it, e.g. with .mean()")
        if fn is None and not loss.is_floating_point():
            raise TypeError(f"loss_fn must return a floating-point 0-dim loss (it is "
                            f"differentiated), got dtype {loss.dtype} with shape "
                            f"{shape_str(loss)}")
        if loss.is_complex():
            raise TypeError(f"{name} must return a real tensor, got dtype {loss.dtype}")
        return loss

    # -- training ------------------------------------------------------------------------------

    def fit(self, resume_from: str | os.PathLike | None = None) -> dict[str, list]:
        """Train until ``config.max_epochs`` epochs (or ``config.max_steps`` steps) in total.

        A fresh run first calls ``seed_everything(config.seed + rank)``. A run resumed from a
        checkpoint (``resume_from``), or continued by calling ``fit`` again, keeps its
        random state instead. Resuming from a checkpoint saved at the end of an epoch
        reproduces the uninterrupted run exactly on the CPU. An epoch cut short by
        ``max_steps`` still counts as an epoch (it is evaluated and reported).

        Returns:
            ``trainer.history``, a dict of lists:
            ``step``, ``train_loss``, ``lr`` (one entry per ``log_every`` steps: the step,
            the mean loss since the previous entry, and the learning rate of that step);
            ``epoch``, ``epoch_end_step``, ``epoch_train_loss``, ``val_loss`` (with a
            validation loader) and ``epoch_seconds`` (one entry per epoch). In a
            distributed run the losses are means over all ranks.
        """
        if resume_from is not None:
            check_path("resume_from", resume_from)
            self.load_checkpoint(resume_from)
        elif self.step == 0 and self.epoch == 0:
            # Each rank its own stream (dropout masks differ between ranks); the data order
            # comes from the sampler's own seeded generator, the same on every rank.
            seed_everything((self.config.seed + self.rank) % (MAX_SEED + 1))  # stays in range
        self.should_stop = False
        self._plan = None  # the clipping order of the gradients, found at the first clip
        callbacks = self._callbacks_here()
        for callback in callbacks:
            callback.on_fit_start(self)
        bar = self._progress_bar() if self.is_main_process else None
        try:
            while self.epoch < self.config.max_epochs and not self._out_of_steps() \
                    and not self.should_stop:
                self._train_epoch(bar, callbacks)
        finally:
            if bar is not None:
                bar.close()
        for callback in callbacks:
            callback.on_fit_end(self)
        return self.history

    def _callbacks_here(self) -> list[Callback]:
        """The callbacks this process runs: all of them, except on ranks > 0 of DDP."""
        if self.is_main_process:
            return list(self.callbacks)
        return [c for c in self.callbacks if getattr(c, "all_ranks", False)]

    def _gradient_plan(self):
        if self._plan is None:
            self._plan = gradient_plan(self.model)
        return self._plan

    def _out_of_steps(self) -> bool:
        return self.config.max_steps is not None and self.step >= self.config.max_steps

    def _train_epoch(self, bar, callbacks: list[Callback]) -> None:
        """One pass over ``train_loader`` (shorter when training stops), then the epoch's
        evaluation, history entry and callbacks."""
        start = time.perf_counter()
        self.model.train()
        ddp_utils.set_sampler_epoch(self.train_loader, self.epoch)  # a new shuffle per epoch
        loss_sum, examples, lr = self._train_steps(bar, callbacks)
        self.epoch += 1
        metrics = self._epoch_metrics(loss_sum, examples, lr)
        self._record_epoch(metrics, seconds=time.perf_counter() - start)
        for callback in callbacks:
            callback.on_epoch_end(self, self.epoch, metrics)
        if self.distributed:  # a stop asked for on any rank stops every rank
            flag = torch.tensor([float(self.should_stop)], device=self.device)
            self.should_stop = bool(ddp_utils.all_reduce_sum(flag).item() > 0)

    def _train_steps(self, bar, callbacks: list[Callback]) -> tuple[Tensor, int, float]:
        """The optimiser steps of one epoch.

        The losses are added up on the device and read back once per ``log_every``
        steps, by :meth:`_log_window`. Returns the sum of the batch losses weighted by
        batch size, the number of examples, and the learning rate of the last step."""
        zero = torch.zeros((), device=self.device)
        window_sum, window_steps = zero.clone(), 0  # the loss stays on the device between logs
        epoch_sum, epoch_examples, epoch_steps = zero.clone(), 0, 0
        lr = self.optimizer.param_groups[0]["lr"]
        stop_agreed = False  # distributed: the ranks stop together, when they agree
        for batch in self.train_loader:
            batch = move_to_device(batch, self.device)
            size = _nonempty_size(batch, "train_loader", f"at step {self.step + 1}")
            lr = self.optimizer.param_groups[0]["lr"]  # the rate this step uses
            loss = self._optimiser_step(batch)
            self.step += 1
            epoch_steps += 1
            window_sum += loss
            window_steps += 1
            epoch_sum += loss * size
            epoch_examples += size
            if self.step % self.config.log_every == 0:
                stop_agreed = self._log_window(window_sum, window_steps, lr, bar)
                window_sum, window_steps = zero.clone(), 0
            if bar is not None:
                bar.update(1)
            for callback in callbacks:
                callback.on_train_batch_end(self, self.step, loss)
            if self._out_of_steps() or (stop_agreed if self.distributed else self.should_stop):
                break
        if epoch_steps == 0:
            raise ValueError("train_loader yielded no batches")
        if window_steps:
            self._log_window(window_sum, window_steps, lr, bar)
        return epoch_sum, epoch_examples, lr

    def _epoch_metrics(self, loss_sum: Tensor, examples: int, lr: float) -> dict:
        """What ``on_epoch_end`` receives: the epoch's mean training loss (over every
        example of every rank), the validation loss when there is one, and ``lr``."""
        if self.distributed:
            totals = torch.stack([loss_sum.double(), torch.tensor(
                float(examples), dtype=torch.float64, device=self.device)])
            loss_sum, examples = ddp_utils.all_reduce_sum(totals).tolist()
        metrics = {"epoch": self.epoch, "step": self.step,
                   "train_loss": float(loss_sum) / examples}
        if self.val_loader is not None and self.config.eval_every_epoch:
            metrics["val_loss"] = self.evaluate(self.val_loader)
        metrics["lr"] = lr
        return metrics

    def _record_epoch(self, metrics: dict, seconds: float) -> None:
        """Append the epoch's entries to ``history``."""
        h = self.history
        h["epoch"].append(self.epoch)
        h["epoch_end_step"].append(self.step)
        h["epoch_train_loss"].append(metrics["train_loss"])
        if "val_loss" in metrics:
            h["val_loss"].append(metrics["val_loss"])
        h["epoch_seconds"].append(seconds)

    def _optimiser_step(self, batch: Any) -> Tensor:
        """Forward, backward, clip, step; returns the detached float32 loss.

        A non-finite loss stops training at once, before it reaches the optimiser, where
        reading it is free (a CPU loss, or inside ``qc.value_checks()``); on an accelerator
        the logged window mean catches it without a synchronisation per step."""
        with self._autocast():
            loss = self._loss(batch)
        if value_checks_enabled(loss) and not math.isfinite(value := float(loss.detach())):
            raise FloatingPointError(
                f"the training loss is {value} at step {self.step + 1}, before its optimiser "
                f"step (the weights are those of step {self.step}); try a lower learning rate, "
                f"grad_clip_norm, or precision='fp32'")
        self.optimizer.zero_grad(set_to_none=True)
        scaler, clip = self.grad_scaler, self.config.grad_clip_norm
        if scaler is not None:
            scaler.scale(loss).backward()
            if clip is not None:
                scaler.unscale_(self.optimizer)  # clip the true gradients, not scaled ones
                self.last_grad_norm = clip_gradients(self.model, clip, self._gradient_plan())
            scaler.step(self.optimizer)  # skipped when the gradients overflowed
            scaler.update()
        else:
            loss.backward()
            if clip is not None:
                self.last_grad_norm = clip_gradients(self.model, clip, self._gradient_plan())
            self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        return loss.detach().float()

    def _log_window(self, window_sum: Tensor, window_steps: int, lr: float, bar) -> bool:
        """Record the mean loss of the window; in DDP, average it over the ranks and agree
        on ``should_stop`` in the same all-reduce. Returns the agreed stop (False without DDP)."""
        stop = False
        if self.distributed:
            packed = torch.stack([window_sum.float(), torch.tensor(
                float(self.should_stop), device=self.device)])
            total, stops = ddp_utils.all_reduce_sum(packed).tolist()
            mean = total / self.world_size / window_steps
            stop = self.should_stop = stops > 0
        else:
            mean = float(window_sum) / window_steps  # the one point where training waits
        if not math.isfinite(mean):
            first = self.step - window_steps + 1
            raise FloatingPointError(
                f"the training loss became {mean} between steps {first} and {self.step}; "
                f"try a lower learning rate, grad_clip_norm, or precision='fp32'")
        self.history["step"].append(self.step)
        self.history["train_loss"].append(mean)
        self.history["lr"].append(lr)
        if bar is not None:
            bar.set_postfix(loss=f"{mean:.4f}", refresh=False)
        return stop

    def _progress_bar(self):
        show = self.config.progress
        if show == "auto":
            show = not _in_notebook() and hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
        if not show:
            return None
        try:
            per_epoch = len(self.train_loader)
        except TypeError:
            per_epoch = None
        total = None if per_epoch is None else per_epoch * (self.config.max_epochs - self.epoch)
        if self.config.max_steps is not None:
            left = self.config.max_steps - self.step
            total = left if total is None else min(total, left)
        if _in_notebook() and importlib.util.find_spec("ipywidgets") is not None:
            from tqdm.notebook import tqdm
        else:  # a text bar: tqdm.auto would fail in a notebook without ipywidgets
            from tqdm.std import tqdm
        return tqdm(total=total, desc="training", unit="step")

    # -- evaluation ----------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self, loader: Iterable, fn: Callable[[nn.Module, Any], Tensor] | None = None
                 ) -> float:
        """Mean of ``fn(model, batch)`` (default: the loss) over ``loader``, in eval mode.

        Batches are weighted by their size B, the first dimension of their first
        tensor, so that the result is the mean over examples when ``fn`` returns a
        per-batch mean, even if the last batch is smaller. The model's training
        mode is restored afterwards.

        In a distributed run every rank must call it: the sums and example counts of
        all ranks are added up (an all-reduce), so each rank returns the mean over
        the union of the shards. With ``distributed_loader(..., even_shards=False)``
        that is exactly the mean over the data set; ``DistributedSampler`` would
        repeat a few examples to make the shards equal. A loader that is not sharded
        gives the same mean on every rank, hence the same result.
        """
        _check_loader("loader", loader)
        if fn is not None and not callable(fn):
            raise TypeError(f"fn must be None (the loss) or callable as fn(model, batch), "
                            f"got {type(fn).__name__}")
        was_training = self.model.training
        self.model.eval()
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        examples = 0
        try:
            for index, batch in enumerate(loader):
                batch = move_to_device(batch, self.device)
                size = _nonempty_size(batch, "loader", f"as batch {index + 1} to evaluate")
                with self._autocast():
                    value = self._loss(batch, fn, model=self.eval_model)
                total += value.detach().double() * size
                examples += size
        finally:
            self.model.train(was_training)
        if self.distributed:
            totals = torch.stack([total, torch.tensor(float(examples), dtype=torch.float64,
                                                      device=self.device)])
            total, examples = ddp_utils.all_reduce_sum(totals).tolist()
        if examples == 0:
            raise ValueError("loader yielded no batches to evaluate")
        mean = float(total) / examples
        if not math.isfinite(mean):
            raise FloatingPointError(f"evaluate: the mean over {examples} examples is {mean}; "
                                     "a batch gave a non-finite loss or metric")
        return mean

    # -- checkpoints ---------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Everything needed to continue training exactly: weights, optimiser, schedule,
        gradient scaler, counters, history and every random state (torch CPU and CUDA,
        Python, NumPy, and the training loader's generators)."""
        np_state = np.random.get_state()
        return {
            "format": CHECKPOINT_FORMAT,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "grad_scaler": None if self.grad_scaler is None else self.grad_scaler.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "history": {k: list(v) for k, v in self.history.items()},
            "config": {k: (str(v) if isinstance(v, torch.device) else v)
                       for k, v in dataclasses.asdict(self.config).items()},
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "python": random.getstate(),
                # as plain lists, so that the file loads with torch.load(weights_only=True)
                "numpy": (np_state[0], np_state[1].tolist(), *np_state[2:]),
                "loader": [g.get_state() for g in _loader_generators(self.train_loader)],
            },
        }

    def load_state_dict(self, state: dict) -> None:
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict from Trainer.state_dict(), got "
                            f"{type(state).__name__}")
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"not a qkvcourse trainer checkpoint (format {state.get('format')!r},"
                             f" expected {CHECKPOINT_FORMAT!r})")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if (state["scheduler"] is None) != (self.scheduler is None):
            raise ValueError("the checkpoint and this trainer disagree on having a scheduler")
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.grad_scaler is not None and state["grad_scaler"] is not None:
            self.grad_scaler.load_state_dict(state["grad_scaler"])
        self.step, self.epoch = state["step"], state["epoch"]
        self.history = _empty_history()
        self.history.update({k: list(v) for k, v in state["history"].items()})
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] is not None and torch.cuda.is_available() \
                and len(rng["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(rng["cuda"])
        version, keys, *rest = rng["python"]
        random.setstate((version, tuple(keys), *rest))
        name, keys, *rest = rng["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
        generators = _loader_generators(self.train_loader)
        if len(generators) != len(rng["loader"]):
            raise ValueError(f"the checkpoint holds {len(rng['loader'])} data-loader generator "
                             f"state(s) but train_loader has {len(generators)} generator(s)")
        for generator, generator_state in zip(generators, rng["loader"]):
            generator.set_state(generator_state)

    def save_checkpoint(self, path: str | os.PathLike) -> None:
        """Write :meth:`state_dict` to ``path`` atomically.

        The checkpoint goes to a temporary file in the same folder, which then
        replaces ``path`` in one step, so an interrupted save never leaves a
        truncated file (an existing checkpoint stays as it was). The file loads with
        ``torch.load(path, weights_only=True)``.

        In a distributed run only rank 0 writes (the ranks hold the same weights);
        the others return at once, so a rank that reads the file should wait for rank
        0 first, e.g. with ``torch.distributed.barrier()``.
        """
        check_path("path", path)
        if not self.is_main_process:
            return
        path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        state = self.state_dict()
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".pt")
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(state, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Restore a checkpoint written by :meth:`save_checkpoint` (the trainer must have
        the same kind of model, optimiser and scheduler)."""
        check_path("path", path)
        state = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
        self.load_state_dict(state)


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

_ddp_trainers: "weakref.WeakSet[Trainer]" = weakref.WeakSet()  # trainers holding a DDP module


@atexit.register
def _close_trainers_at_exit() -> None:
    """Release every DDP module, then destroy the groups trainers created (see ``close``)."""
    trainers = list(_ddp_trainers)
    for trainer in trainers:
        trainer._release_ddp()
    for trainer in trainers:
        trainer.close()


def _nonempty_size(batch: Any, loader: str, where: str) -> int:
    """:func:`batch_size_of` ``batch``, which must hold examples (an empty batch's mean loss
    would be NaN)."""
    size = batch_size_of(batch)
    if size == 0:
        raise ValueError(f"{loader} yielded an empty batch (no examples) {where}")
    return size


def _check_loader(name: str, loader: Any) -> None:
    """A loader is anything a ``for`` loop reads batches from (a ``DataLoader``, a list)."""
    if loader is None or isinstance(loader, (str, bytes, dict)) or not (
            hasattr(type(loader), "__iter__") or hasattr(type(loader), "__getitem__")):
        raise TypeError(f"{name} must be an iterable of batches (e.g. a DataLoader), got "
                        f"{type(loader).__name__}")


_HOOKS = ("on_fit_start", "on_train_batch_end", "on_epoch_end", "on_fit_end")


def _check_callbacks(callbacks: Any) -> list:
    """A list of :class:`Callback` objects (or objects with all of its hooks)."""
    if isinstance(callbacks, Callback) or isinstance(callbacks, (str, bytes, dict)) \
            or not hasattr(type(callbacks), "__iter__"):
        hint = " (wrap it in a list: callbacks=[...])" if isinstance(callbacks, Callback) else ""
        raise TypeError(f"callbacks must be a list of Callback objects, got "
                        f"{type(callbacks).__name__}{hint}")
    callbacks = list(callbacks)
    for i, callback in enumerate(callbacks):
        missing = [h for h in _HOOKS if not callable(getattr(callback, h, None))]
        if missing:
            raise TypeError(f"callbacks[{i}] must be a Callback (qkvcourse.callbacks), got "
                            f"{type(callback).__name__}: {callback!r}"[:200]
                            + f"; it lacks {', '.join(missing)}")
    return callbacks


def _empty_history() -> dict[str, list]:
    keys = ("step", "train_loss", "lr", "epoch", "epoch_end_step", "epoch_train_loss",
            "val_loss", "epoch_seconds")
    return {k: [] for k in keys}


def _make_grad_scaler():
    if hasattr(torch.amp, "GradScaler"):  # torch >= 2.3
        return torch.amp.GradScaler("cuda")
    return torch.cuda.amp.GradScaler()


def _loader_generators(loader: Any) -> list[torch.Generator]:
    """The distinct ``torch.Generator`` objects that decide a DataLoader's order."""
    candidates = [getattr(loader, "generator", None)]
    sampler = getattr(loader, "sampler", None)
    candidates.append(getattr(sampler, "generator", None))
    batch_sampler = getattr(loader, "batch_sampler", None)
    candidates.append(getattr(getattr(batch_sampler, "sampler", None), "generator", None))
    found: list[torch.Generator] = []
    for g in candidates:
        if isinstance(g, torch.Generator) and all(g is not f for f in found):
            found.append(g)
    return found
