"""Argument checks shared by every layer.

Each check raises an error that names the argument and the shape (or dtype, or
value) it received, so that a learner who passes a tensor of the wrong rank
finds out *which* tensor, and *what* it looked like, instead of reading a
broadcasting error from deep inside ``torch.bmm``.

This is the package's one module of argument checks: the models, losses, metrics, searches
and data builders call these helpers instead of writing their own (model-specific checks,
such as a decoder's state, stay with the model and are built from them). Every check that
reads values goes through :func:`value_range`, so none of them copies a tensor from an
accelerator to the host.
"""
from __future__ import annotations

import math
import numbers
import os
from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from torch import Tensor

# Checks that read a tensor's values (token-id and valid_lens ranges) run where reading is
# free, on CPU tensors; on an accelerator they would copy to the host and wait for the device
# at every layer, so there they run only inside value_checks() (or with
# QKVCOURSE_VALUE_CHECKS=1), a debugging switch. Shape, rank, dtype and device checks always run.
_value_checks = os.environ.get("QKVCOURSE_VALUE_CHECKS", "") == "1"


@contextmanager
def value_checks(enabled: bool = True) -> Iterator[None]:
    """Run the checks that read values on every device inside a ``with`` block (debugging:
    each one then waits for the accelerator)."""
    global _value_checks
    previous, _value_checks = _value_checks, enabled
    try:
        yield
    finally:
        _value_checks = previous


def value_checks_enabled(t: Tensor) -> bool:
    """Whether a check may read ``t``'s values: on the CPU, or anywhere but on the ``meta``
    device inside :func:`value_checks`; never while ``torch.compile`` traces (a read would
    break the graph, as it would stall a GPU), unless :func:`value_checks` asks for it."""
    if torch.compiler.is_compiling():
        return _value_checks
    if t.device.type == "cpu":
        return True
    return _value_checks and t.device.type != "meta"


def value_range(t: Tensor) -> tuple[float, float] | None:
    """``(min, max)`` of a tensor in one read (ints for an integer tensor; for a floating one
    NaN when any value is NaN), or None when it is empty or its values must not be read here
    (see :func:`value_checks_enabled`)."""
    if not t.numel() or not value_checks_enabled(t):
        return None
    lo, hi = torch.stack(torch.aminmax(t)).tolist()
    return lo, hi


def shape_str(x: Tensor) -> str:
    """``(2, 3, 4)`` for a tensor of that shape."""
    return str(tuple(x.shape))


def check_tensor(name: str, x, *, ndim: int | Sequence[int] | None = None) -> None:
    """Raise ``TypeError`` if ``x`` is not a tensor, ``ValueError`` for a wrong rank."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if ndim is None:
        return
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if x.dim() not in allowed:
        want = " or ".join(f"{d}-D" for d in allowed)
        raise ValueError(f"{name} must be {want}, got shape {shape_str(x)} ({x.dim()}-D)")


def check_size(name: str, value, *, minimum: int | None = 1) -> None:
    """Require a Python int (not a bool) ``>= minimum`` (any int when ``minimum`` is None):
    sizes, counts, offsets."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or \
            (minimum is not None and value < minimum):
        bound = "an integer" if minimum is None else f"an integer >= {minimum}"
        positive = " (a positive size or count)" if minimum == 1 else ""
        raise ValueError(f"{name} must be {bound}, got {value!r}{positive}")


def check_token_ids(name: str, ids: Tensor) -> None:
    """Token ids index an embedding: int64 or int32, nothing narrower, no floats or bools."""
    if ids.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name} must hold integer token ids of dtype torch.int64 (or torch.int32), "
                        f"got {ids.dtype} with shape {shape_str(ids)}")


def check_nonempty(name: str, x: Tensor, dim: int = 0, what: str = "batch") -> None:
    """Require ``x.shape[dim] >= 1``: an empty batch (or sequence) is an error, not a NaN or a
    silent 0 further on."""
    if x.shape[dim] == 0:
        raise ValueError(f"{name} is an empty {what} (dimension {dim} has size 0), got shape "
                         f"{shape_str(x)}")


def check_floating(name: str, x: Tensor) -> None:
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must have a floating-point dtype, got {x.dtype} with shape {shape_str(x)}"
        )


def check_same_dtype(**tensors: Tensor) -> None:
    dtypes = {name: t.dtype for name, t in tensors.items()}
    if len(set(dtypes.values())) > 1:
        listed = ", ".join(f"{n}: {d} with shape {shape_str(tensors[n])}"
                           for n, d in dtypes.items())
        raise TypeError(f"dtypes must match, got {listed}")


def check_same_device(**tensors: Tensor) -> None:
    devices = {name: t.device for name, t in tensors.items()}
    if len(set(devices.values())) > 1:
        listed = ", ".join(f"{n}: {d}" for n, d in devices.items())
        raise ValueError(f"tensors must be on one device, got {listed}")


def check_dim_match(name_a: str, a: Tensor, dim_a: int, name_b: str, b: Tensor, dim_b: int,
                    what: str) -> None:
    """Require ``a.shape[dim_a] == b.shape[dim_b]``; ``what`` names the size (e.g. 'batch size')."""
    if a.shape[dim_a] != b.shape[dim_b]:
        raise ValueError(
            f"{what} of {name_a} and {name_b} differ: {name_a} has shape {shape_str(a)}, "
            f"{name_b} has shape {shape_str(b)}"
        )


def check_lens_values(valid_lens, num_keys: int) -> None:
    """``valid_lens`` is a 1-D or 2-D integer tensor with values in ``[0, num_keys]``."""
    _check_lens_dtype(valid_lens)
    _check_lens_range(valid_lens, num_keys)


def check_valid_lens(valid_lens, batch_size: int, num_queries: int, num_keys: int,
                     scores_name: str = "X") -> None:
    """Check d2l-style ``valid_lens``: 1-D ``(B,)`` or 2-D ``(B, Q)``, integers in ``[0, K]``."""
    _check_lens_dtype(valid_lens)
    _check_lens_shape(valid_lens, batch_size, num_queries, scores_name)
    _check_lens_range(valid_lens, num_keys)


def _check_lens_dtype(valid_lens) -> None:
    check_tensor("valid_lens", valid_lens, ndim=(1, 2))
    if valid_lens.dtype == torch.bool or valid_lens.is_floating_point() or valid_lens.is_complex():
        hint = " (pass a boolean mask as mask=/attn_mask=, not valid_lens)" \
            if valid_lens.dtype == torch.bool else ""
        raise TypeError(
            f"valid_lens must have an integer dtype, got {valid_lens.dtype} "
            f"with shape {shape_str(valid_lens)}{hint}"
        )


def _check_lens_range(valid_lens, num_keys: int) -> None:
    bounds = value_range(valid_lens)  # None on an accelerator: no host sync
    if bounds is not None:
        lo, hi = bounds
        if lo < 0 or hi > num_keys:
            raise ValueError(
                f"valid_lens must lie in [0, {num_keys}] (the number of keys), "
                f"got values from {lo} to {hi}"
            )


def _check_lens_shape(valid_lens, batch_size: int, num_queries: int, scores_name: str) -> None:
    expected = (batch_size,) if valid_lens.dim() == 1 else (batch_size, num_queries)
    if tuple(valid_lens.shape) != expected:
        raise ValueError(
            f"valid_lens has shape {shape_str(valid_lens)} but {scores_name} has "
            f"{batch_size} batch rows and {num_queries} queries, so valid_lens must have shape "
            f"({batch_size},) or ({batch_size}, {num_queries})"
        )


def check_index_range(name: str, index: Tensor, upper: int, what: str) -> None:
    """Require every entry of the integer tensor ``index`` to lie in ``[0, upper)``.

    ``what`` says where ``upper`` comes from, e.g. "the sequence length, shape (2, 7)".
    """
    bounds = value_range(index)
    if bounds is not None:
        lo, hi = bounds
        if lo < 0 or hi >= upper:
            raise ValueError(f"{name} must lie in [0, {upper}) ({what}), "
                             f"got values from {lo} to {hi} in shape {shape_str(index)}")


def check_mask(name: str, mask: Tensor, target_shape: Sequence[int], *,
               allow_float: bool = True) -> None:
    """Require a boolean (or, if allowed, floating) mask broadcastable to ``target_shape``."""
    check_tensor(name, mask)
    if mask.dtype != torch.bool and not (allow_float and mask.is_floating_point()):
        kinds = "boolean (True = attend) or floating (added to the scores)" if allow_float \
            else "boolean (True = attend)"
        raise TypeError(f"{name} must be {kinds}, got dtype {mask.dtype} "
                        f"with shape {shape_str(mask)}")
    try:
        ok = tuple(torch.broadcast_shapes(tuple(mask.shape), tuple(target_shape))) \
            == tuple(target_shape)
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(
            f"{name} of shape {shape_str(mask)} does not broadcast to the attention scores' "
            f"shape ({', '.join(map(str, target_shape))})"
        )


# -- integer tensors: ids, positions, lengths --------------------------------------------------

def check_integer(name: str, x: Tensor, what: str = "ids, positions or lengths") -> None:
    """Require an integer dtype (no float, complex or bool); ``what`` says what ``x`` holds."""
    if x.dtype == torch.bool or x.is_floating_point() or x.is_complex():
        raise TypeError(f"{name} must hold integers ({what}) of an integer dtype, got dtype "
                        f"{x.dtype} with shape {shape_str(x)}")


def check_index_dtype(name: str, x: Tensor, what: str = "ids, positions or labels") -> None:
    """Indices (for ``gather``, ``nn.Embedding``, ``cross_entropy``): int64 or int32, no
    narrower integers, floats or bools; ``what`` says what ``x`` holds."""
    check_integer(name, x, what)
    if x.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name} must be int64 or int32 ({what}), got dtype {x.dtype} with "
                        f"shape {shape_str(x)}")


def check_index_vector(name: str, ids, batch_size: int | None = None,
                       what: str = "one per batch row", *, indexes: bool = False) -> None:
    """A ``(B,)`` integer tensor (labels, positions, row numbers), ``B = batch_size`` if given;
    with ``indexes`` (it will index: ``gather``, ``cross_entropy`` targets) int64 or int32."""
    check_tensor(name, ids, ndim=1)
    (check_index_dtype if indexes else check_integer)(name, ids, what)
    if batch_size is not None and ids.shape[0] != batch_size:
        raise ValueError(f"{name} must have shape ({batch_size},) ({what}), got "
                         f"shape {shape_str(ids)}")


def check_tokens(name: str, tokens, vocab_size: int) -> None:
    """``(B, T)`` token ids (int64 or int32) in ``[0, vocab_size)``, with T >= 1."""
    check_tensor(name, tokens, ndim=2)
    check_token_ids(name, tokens)
    if tokens.shape[1] == 0:
        raise ValueError(f"{name} must hold at least one token per row, got shape "
                         f"{shape_str(tokens)}")
    bounds = value_range(tokens)  # None on an accelerator: no host sync
    if bounds is not None:
        lo, hi = bounds
        if lo < 0 or hi >= vocab_size:
            raise ValueError(f"{name} token ids must lie in [0, {vocab_size}) (vocab_size="
                             f"{vocab_size}), got values from {lo} to {hi} in shape "
                             f"{shape_str(tokens)}")


def check_lengths(name: str, lens, seq_name: str, seq: Tensor, *, minimum: int = 0,
                  why: str = "") -> None:
    """``lens (B,)`` integers in ``[0, L]`` for ``seq (B, L, ...)``, one length per row;
    with ``minimum``, also ``>= minimum`` (``why`` says why)."""
    check_tensor(name, lens, ndim=1)
    check_integer(name, lens, "lengths")
    B, L = seq.shape[0], seq.shape[1]
    if lens.shape[0] != B:
        raise ValueError(f"{name} has shape {shape_str(lens)} but {seq_name} has shape "
                         f"{shape_str(seq)}, so {name} must have shape ({B},), one length "
                         f"per row")
    bounds = value_range(lens)  # None on an accelerator: no host sync
    if bounds is None:
        return
    lo, hi = bounds
    if lo < 0 or hi > L:
        raise ValueError(f"{name} must lie in [0, {L}] (the length of {seq_name}, shape "
                         f"{shape_str(seq)}), got values from {lo} to {hi}")
    if lo < minimum:
        because = f" ({why})" if why else ""
        raise ValueError(f"{name} must be >= {minimum}{because}, got {lo} in shape "
                         f"{shape_str(lens)}")


# -- sizes and probabilities ---------------------------------------------------------------------

def check_sizes(minimum: int | None = 1, /, **sizes) -> None:
    """:func:`check_size` for each keyword: ``check_sizes(vocab_size=V, num_heads=H)``."""
    for name, value in sizes.items():
        check_size(name, value, minimum=minimum)


def check_int_pair(name: str, value, lo: int, hi: int) -> None:
    """``value`` must be a pair ``(low, high)`` of integers with ``lo <= low <= high <= hi``."""
    ok = (isinstance(value, (tuple, list)) and len(value) == 2
          and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
          and lo <= value[0] <= value[1] <= hi)
    if not ok:
        raise ValueError(f"{name} must be a pair (low, high) of integers with {lo} <= low <= "
                         f"high <= {hi}, got {value!r}")


def check_flag(name: str, value) -> None:
    """A switch: ``True`` or ``False`` (or a NumPy bool), not any object that happens to be
    truthy."""
    numpy_bool = type(value).__module__ == "numpy" and type(value).__name__ in ("bool_", "bool")
    if not (isinstance(value, bool) or numpy_bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")


MAX_SEED = 2 ** 32 - 1  # NumPy's legacy seeding takes 0 .. 2**32 - 1


def check_seed(name: str, seed) -> None:
    """A seed for ``random``, NumPy and torch alike: an integer (``TypeError`` for a float, bool
    or str) in ``[0, 2**32 - 1]``."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{name} must be an integer seed, got {type(seed).__name__}: {seed!r}")
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"{name} must be an integer in [0, 2**32 - 1] (NumPy's seeds), "
                         f"got {seed!r}")


def check_path(name: str, path) -> None:
    """A file path: a ``str`` or an ``os.PathLike``."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a file path (str or os.PathLike), got "
                        f"{type(path).__name__}: {path!r}"[:200])


def check_real(name: str, value, *, minimum: float | None = None, maximum: float | None = None,
               strict: bool = False, what: str = "") -> None:
    """A finite real number (not a bool) in ``[minimum, maximum]``; ``strict`` makes the lower
    bound exclusive (``> minimum``): scales, epsilons, bases, weights, temperatures."""
    ok = (not isinstance(value, bool) and isinstance(value, numbers.Real)
          and math.isfinite(value)
          and (minimum is None or (value > minimum if strict else value >= minimum))
          and (maximum is None or value <= maximum))
    if not ok:
        lower = "" if minimum is None else f"{'>' if strict else '>='} {minimum}"
        upper = "" if maximum is None else f"<= {maximum}"
        bounds = " and ".join(b for b in (lower, upper) if b)
        because = f" ({what})" if what else ""
        raise ValueError(f"{name} must be a finite number{' ' + bounds if bounds else ''}"
                         f"{because}, got {value!r}")


def check_dropout(name: str, p) -> None:
    """A dropout probability: a real number (NumPy's too) in ``[0, 1)``."""
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p < 1.0:
        raise ValueError(f"{name} must lie in [0, 1), got {p!r}")


# -- hidden states and caches -------------------------------------------------------------------

def check_hidden(name: str, X, num_hiddens: int) -> None:
    """``X`` must be a floating ``(B, T, N)`` tensor with ``N = num_hiddens``."""
    check_tensor(name, X, ndim=3)
    check_floating(name, X)
    if X.shape[-1] != num_hiddens:
        raise ValueError(f"{name} must have num_hiddens={num_hiddens} features (last dimension), "
                         f"got shape {shape_str(X)}")


def check_kv_cache(name: str, cache, B: int, H: int, D: int) -> int:
    """``cache`` must be a pair (keys, values) of ``(B, H, P, D)`` tensors; returns P."""
    if not (isinstance(cache, (tuple, list)) and len(cache) == 2):
        raise TypeError(f"{name} must be a pair (keys, values) of (B, H, P, D) tensors, "
                        f"got {type(cache).__name__}")
    for part, t in zip(("keys", "values"), cache):
        check_tensor(f"{name} {part}", t, ndim=4)
        if (t.shape[0], t.shape[1], t.shape[3]) != (B, H, D):
            raise ValueError(f"{name} {part} must have shape ({B}, {H}, P, {D}) (B, H, P, D) "
                             f"to match the new tokens, got shape {shape_str(t)}")
    check_dim_match(f"{name} keys", cache[0], 2, f"{name} values", cache[1], 2,
                    "numbers of cached positions")
    return cache[0].shape[2]


def check_max_len(name: str, tokens: Tensor, offset: int, max_len: int) -> None:
    """The positions ``offset .. offset + T - 1`` of ``tokens (B, T)`` must be ``< max_len``."""
    if offset + tokens.shape[1] > max_len:
        where = f" after {offset} decoded tokens" if offset else ""
        raise ValueError(f"{name} of shape {shape_str(tokens)} reaches position "
                         f"{offset + tokens.shape[1]}{where}, beyond max_len={max_len} "
                         f"of the positional encoding")
