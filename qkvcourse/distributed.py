"""Data-parallel training on several processes: the helpers :class:`~qkvcourse.Trainer` uses.

Distributed data parallelism (DDP) runs one process per device. Every process holds a
full copy of the model and reads its own shard of each global batch; after the
backward pass the gradients are averaged over the processes (an all-reduce), so every
copy takes the same optimiser step. With per-process batch b on W processes, one step
uses the gradient of the mean loss over the global batch of ``b * W`` examples.

A script is started once per process by ``torchrun``, which sets the environment
variables read here (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``,
``MASTER_PORT``)::

    torchrun --nproc_per_node=2 train.py        # same as python -m torch.distributed.run

Run without ``torchrun`` (no such variables), everything here describes a world of one
process, rank 0, and the same script trains on one device.

Processes talk through a backend: ``gloo`` on the CPU, ``nccl`` between CUDA devices.

Shape legend: N examples in a data set, W processes (the world size), b the batch size
of one process.
"""
from __future__ import annotations

import os
from typing import Any, Iterator, Sized

import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data.distributed import DistributedSampler

from ._validate import check_flag, check_seed, check_size

# what torchrun sets; together they say how to reach the other processes
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


# ---------------------------------------------------------------------------------------------
# who am I
# ---------------------------------------------------------------------------------------------

def is_initialized() -> bool:
    """True once a default process group exists (``torch.distributed`` is set up)."""
    return dist.is_available() and dist.is_initialized()


def launched_by_torchrun() -> bool:
    """True when every variable ``torchrun`` sets for ``init_process_group`` is present."""
    return all(name in os.environ for name in TORCHRUN_VARIABLES)


def get_world_size() -> int:
    """W, the number of processes: the process group's size, else ``$WORLD_SIZE``, else 1."""
    if is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", 1))


def get_rank() -> int:
    """This process's number in ``0 .. W-1``: the group's rank, else ``$RANK``, else 0."""
    if is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", 0))


def get_local_rank() -> int:
    """This process's number on its machine (``$LOCAL_RANK``, else 0): the CUDA device it uses."""
    return int(os.environ.get("LOCAL_RANK", 0))


def is_main_process() -> bool:
    """True on rank 0, the process that prints, plots and writes files."""
    return get_rank() == 0


# ---------------------------------------------------------------------------------------------
# the process group
# ---------------------------------------------------------------------------------------------

def backend_for(device: torch.device | str) -> str:
    """``"nccl"`` for a CUDA device, ``"gloo"`` for the CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        return "nccl"
    if device.type == "cpu":
        return "gloo"
    raise ValueError(f"distributed training runs on 'cpu' (gloo) or 'cuda' (nccl), "
                     f"not on device {str(device)!r}")


def init_distributed(device: torch.device | str) -> bool:
    """Create the default process group from torchrun's variables, if none exists yet.

    The backend follows ``device`` (:func:`backend_for`); on CUDA, call
    ``torch.cuda.set_device`` first so that NCCL binds this process to its own GPU.
    Whoever creates the group destroys it at the end (:func:`shutdown_distributed`),
    after every ``DistributedDataParallel`` module that uses it has been released
    (see :func:`shutdown_distributed`).

    Returns:
        True if this call created the group, False if one existed already.
    """
    if is_initialized():
        return False
    if not dist.is_available():
        raise RuntimeError("this PyTorch build has no torch.distributed")
    missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
    if missing:
        raise RuntimeError(f"cannot start distributed training: the environment variables "
                           f"{missing} are not set; launch the script with "
                           f"`torchrun --nproc_per_node=N script.py`")
    dist.init_process_group(backend=backend_for(device))
    return True


def shutdown_distributed() -> None:
    """Destroy the default process group if there is one (safe to call twice).

    Release (``del``) the ``DistributedDataParallel`` modules first. A DDP module keeps
    the group alive; if it outlives ``destroy_process_group`` its destructor is the last
    owner of a gloo group and joins the group's threads while holding Python's GIL,
    which one of those threads may be waiting for: the process hangs. Destroyed here,
    through its Python handle, the group releases the GIL first.
    :meth:`qkvcourse.Trainer.close` does it in this order.
    """
    if is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """Sum ``tensor`` over all processes, in place, and return it (no-op without a group)."""
    if is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


# ---------------------------------------------------------------------------------------------
# sharding the data
# ---------------------------------------------------------------------------------------------

class ShardSampler(Sampler[int]):
    """Every example exactly once over all processes, in order: rank r reads r, r+W, r+2W, ...

    For evaluation. Unlike ``DistributedSampler`` it pads nothing, so the shards may
    differ by one example (N=41, W=2: 21 and 20) and some ranks may run one batch
    fewer; :meth:`~qkvcourse.Trainer.evaluate` sums losses and counts over the ranks,
    which gives the exact mean over the N examples. Do not train with it: in training
    every step is a collective, so every rank must take the same number of steps.
    """

    def __init__(self, data_source: Sized, num_replicas: int | None = None,
                 rank: int | None = None):
        self.num_examples = len(data_source)
        self.num_replicas = get_world_size() if num_replicas is None else num_replicas
        self.rank = get_rank() if rank is None else rank
        _check_rank(self.rank, self.num_replicas)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.num_examples, self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, self.num_examples, self.num_replicas))


def distributed_loader(dataset: Dataset, batch_size: int, shuffle: bool = True, seed: int = 0,
                       drop_last: bool = False, even_shards: bool = True,
                       num_replicas: int | None = None, rank: int | None = None,
                       **loader_kwargs: Any) -> DataLoader:
    """A ``DataLoader`` that reads this process's shard of ``dataset``.

    ``batch_size`` is the batch of ONE process: the global batch of a step is
    ``batch_size * W``. Call it in every process, before or after the
    :class:`~qkvcourse.Trainer` is made: without a process group it reads W and the
    rank from torchrun's variables, and without those it is a world of one.

    With ``even_shards=True`` (training) the sampler is a ``DistributedSampler``: each
    epoch it permutes all N indices with a generator seeded by ``seed + epoch`` (the
    :class:`~qkvcourse.Trainer` calls ``sampler.set_epoch(epoch)``), pads the
    permutation by repeating its first indices up to a multiple of W (or, with
    ``drop_last=True``, cuts it down to one), and gives rank r the positions r, r+W,
    r+2W, ... Step k of all ranks together therefore reads positions ``k*b*W`` to
    ``(k+1)*b*W - 1`` of the permutation: the data order depends on ``seed`` and the
    global batch only, so W processes with batch b see the same global batches as one
    process with batch ``b*W`` (when N is a multiple of ``b*W``).

    With ``even_shards=False`` (evaluation) the sampler is a :class:`ShardSampler`:
    no shuffling, no padding, every example once.

    Args:
        dataset: a map-style data set of N examples.
        batch_size: b, the examples per batch in this process.
        shuffle: a new permutation every epoch (only with ``even_shards``).
        seed: seeds the permutation; the same on every rank.
        drop_last: drop the tail so that N divides among the ranks (sampler) and the
            last incomplete batch (loader) instead of padding.
        even_shards: pad to equal shards (training) or keep every example once (evaluation).
        num_replicas, rank: W and the rank, if not those of the current run.
        **loader_kwargs: passed on to ``DataLoader`` (``num_workers``, ``collate_fn``,
            ``pin_memory``...).

    Returns:
        A ``DataLoader`` whose ``sampler`` is the ``DistributedSampler`` or ``ShardSampler``.
    """
    check_size("batch_size", batch_size)
    check_seed("seed", seed)
    for name, flag in (("shuffle", shuffle), ("drop_last", drop_last),
                       ("even_shards", even_shards)):
        check_flag(name, flag)
    if not isinstance(dataset, Sized):
        raise TypeError(f"dataset must be a map-style data set with a length (len(dataset)), "
                        f"got {type(dataset).__name__}")
    if len(dataset) == 0:
        raise ValueError(f"dataset is empty (len(dataset) == 0, a {type(dataset).__name__}): "
                         f"there is nothing to load")
    for name in ("sampler", "batch_sampler", "shuffle"):
        if name in loader_kwargs:
            raise TypeError(f"distributed_loader chooses the sampler; do not pass {name}=")
    num_replicas = get_world_size() if num_replicas is None else num_replicas
    rank = get_rank() if rank is None else rank
    _check_rank(rank, num_replicas)
    if even_shards:
        sampler: Sampler[int] = DistributedSampler(dataset, num_replicas=num_replicas, rank=rank,
                                                   shuffle=shuffle, seed=seed,
                                                   drop_last=drop_last)
    else:
        if shuffle:
            raise ValueError("even_shards=False is for evaluation, which does not shuffle: "
                             "pass shuffle=False")
        sampler = ShardSampler(dataset, num_replicas=num_replicas, rank=rank)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last,
                      **loader_kwargs)


def set_sampler_epoch(loader: Any, epoch: int) -> bool:
    """Call ``set_epoch(epoch)`` on the loader's sampler if it has one (DistributedSampler).

    Returns:
        True if a sampler was told the epoch.
    """
    for sampler in (getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None),
                    getattr(getattr(loader, "batch_sampler", None), "sampler", None)):
        if callable(getattr(sampler, "set_epoch", None)):
            sampler.set_epoch(epoch)
            return True
    return False


def is_sharded(loader: Any) -> bool:
    """False for a ``DataLoader`` over a map-style data set that every rank reads whole."""
    if not isinstance(loader, DataLoader) or isinstance(loader.dataset,
                                                        torch.utils.data.IterableDataset):
        return True  # the caller shards it some other way; nothing to check
    samplers = (loader.sampler, getattr(loader.batch_sampler, "sampler", None))
    return any(isinstance(s, (DistributedSampler, ShardSampler)) for s in samplers)


def _check_rank(rank: int, num_replicas: int) -> None:
    check_size("num_replicas", num_replicas)
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < num_replicas:
        raise ValueError(f"rank must be an integer in [0, {num_replicas}), got {rank!r}")
