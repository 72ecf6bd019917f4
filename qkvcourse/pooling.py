"""Attention pooling: Nadaraya–Watson kernel regression (chapter 2).

Nadaraya (1964) and Watson (1964) estimate f(x) from pairs (x_i, y_i) as

    f̂(x) = Σ_i α(x, x_i) y_i,    α(x, x_i) = K((x − x_i)/σ) / Σ_j K((x − x_j)/σ),

a weighted average of the observed values, with weights from a kernel K of
bandwidth σ. In attention language, x is the query, the x_i are keys, the y_i
values, and α are the attention weights.

Shape legend: Q queries, N training pairs (keys = values).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

from ._validate import (check_floating, check_nonempty, check_real, check_seed, check_size,
                        check_sizes, check_tensor, shape_str, value_checks_enabled)
from .masking import masked_softmax


def gaussian(u: Tensor) -> Tensor:
    return torch.exp(-u ** 2 / 2)


def boxcar(u: Tensor) -> Tensor:
    return (u.abs() <= 1).to(u.dtype)


def constant(u: Tensor) -> Tensor:
    return torch.ones_like(u)


def epanechnikov(u: Tensor) -> Tensor:
    return torch.clamp(1 - u ** 2, min=0) * 0.75


KERNELS: dict[str, Callable[[Tensor], Tensor]] = {
    "gaussian": gaussian, "boxcar": boxcar, "constant": constant, "epanechnikov": epanechnikov,
}


def _check_1d(name: str, x: Tensor) -> None:
    check_tensor(name, x, ndim=1)
    check_floating(name, x)


def _check_data(queries: Tensor, keys: Tensor, values: Tensor) -> None:
    """1-D floating queries, keys and values; keys and values of one shape, not empty (an
    estimate from no training pair would be a silent 0)."""
    for name, t in (("queries", queries), ("keys", keys), ("values", values)):
        _check_1d(name, t)
    if keys.shape != values.shape:
        raise ValueError(f"keys and values must have the same shape, got {shape_str(keys)} "
                         f"and {shape_str(values)}")
    check_nonempty("keys", keys, what="set of training inputs")


_POSITIVE = "the kernel's width σ, positive"


def _check_kernel_and_bandwidth(kernel, bandwidth, Q: int, N: int) -> None:
    """``kernel``: a name in ``KERNELS`` or a callable; ``bandwidth``: a number > 0, or a
    tensor of positive values that broadcasts to the ``(Q, N)`` weights (one σ per query
    ``(Q, 1)``, per key ``(N,)``, or one ``()``)."""
    if isinstance(kernel, str):
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {sorted(KERNELS)}, got {kernel!r}")
    elif not callable(kernel):
        raise TypeError(f"kernel must be one of {sorted(KERNELS)} or a function of a tensor, "
                        f"got {type(kernel).__name__}: {kernel!r}")
    if not isinstance(bandwidth, Tensor):
        check_real("bandwidth", bandwidth, minimum=0.0, strict=True, what=_POSITIVE)
        return
    if bandwidth.dtype == torch.bool or bandwidth.is_complex():
        raise TypeError(f"bandwidth must hold real numbers, got dtype {bandwidth.dtype} with "
                        f"shape {shape_str(bandwidth)}")
    if value_checks_enabled(bandwidth) and \
            not bool((torch.isfinite(bandwidth) & (bandwidth > 0)).all()):
        raise ValueError(f"bandwidth must be positive and finite ({_POSITIVE}), got values "
                         f"{bandwidth.flatten()[:6].tolist()} in shape {shape_str(bandwidth)}")
    try:
        fits = torch.broadcast_shapes(bandwidth.shape, (Q, N)) == (Q, N)
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(f"bandwidth must broadcast to the weights' shape ({Q}, {N}) (queries, "
                         f"keys): shape (), ({Q}, 1) or ({N},), got shape "
                         f"{shape_str(bandwidth)}")


def nadaraya_watson(queries: Tensor, keys: Tensor, values: Tensor, kernel: str = "gaussian",
                    bandwidth: float | Tensor = 1.0) -> tuple[Tensor, Tensor]:
    """Kernel regression estimate at each query.

    Args:
        queries: ``(Q,)`` query points x.
        keys: ``(N,)`` training inputs x_i.
        values: ``(N,)`` training targets y_i.
        kernel: a name in ``KERNELS`` or a callable applied to (x − x_i)/σ.
        bandwidth: σ > 0, a number, or a tensor broadcasting to ``(Q, N)``.

    Returns:
        ``(predictions (Q,), weights (Q, N))``. A query with no key inside a
        compact kernel's support gets all-zero weights and prediction 0 (not NaN).
    """
    _check_data(queries, keys, values)
    _check_kernel_and_bandwidth(kernel, bandwidth, len(queries), len(keys))
    K = KERNELS[kernel] if isinstance(kernel, str) else kernel
    u = (queries[:, None] - keys[None, :]) / bandwidth  # (Q, N)
    k = K(u)
    total = k.sum(dim=1, keepdim=True)  # (Q, 1)
    # Divide by 1 where the total is 0 (the row's weights are all 0 then): 0, not NaN. Not a
    # clamp to the smallest normal number, which would leave rows whose total is subnormal
    # (a Gaussian query ~13 bandwidths from the data, in float32) summing to less than 1.
    weights = k / torch.where(total > 0, total, torch.ones_like(total))
    return weights @ values, weights


class NadarayaWatson(nn.Module):
    """Gaussian Nadaraya–Watson regression with a learnable bandwidth.

    The bandwidth is stored as its logarithm so that gradient steps keep it
    positive. ``forward(queries (Q,), keys (N,), values (N,), mask=None)``
    returns predictions ``(Q,)``; ``mask (Q, N)`` (True = use this pair) lets
    training leave each point out of its own estimate, otherwise the optimum
    would be σ → 0, which simply copies every training target.
    """

    def __init__(self, bandwidth: float = 1.0):
        super().__init__()
        if isinstance(bandwidth, Tensor) and bandwidth.numel() == 1:
            bandwidth = bandwidth.item()  # once, at construction
        check_real("bandwidth", bandwidth, minimum=0.0, strict=True, what=_POSITIVE)
        self.log_bandwidth = nn.Parameter(torch.tensor(math.log(bandwidth)))
        self.attention_weights: Tensor | None = None

    @property
    def bandwidth(self) -> float:
        return float(self.log_bandwidth.detach().exp())  # detach: no requires_grad warning

    def forward(self, queries: Tensor, keys: Tensor, values: Tensor,
                mask: Tensor | None = None) -> Tensor:
        _check_data(queries, keys, values)
        u = (queries[:, None] - keys[None, :]) / self.log_bandwidth.exp()  # (Q, N)
        # log of the Gaussian kernel, so the normalisation is a (stable) softmax
        self.attention_weights = masked_softmax(-u ** 2 / 2, mask=mask)  # (Q, N)
        return self.attention_weights @ values  # (Q,)


def leave_one_out_mask(n: int, device=None) -> Tensor:
    """``(n, n)`` boolean mask, False on the diagonal: point i may not predict itself."""
    check_size("n", n)
    return ~torch.eye(n, dtype=torch.bool, device=device)


def fit_bandwidth(model: NadarayaWatson, x: Tensor, y: Tensor, epochs: int = 200,
                  lr: float = 0.1) -> list[float]:
    """Train the bandwidth by SGD on the leave-one-out squared error; returns the losses."""
    _check_fit_args(model, x, y, epochs, lr)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    mask = leave_one_out_mask(len(x), device=x.device)
    losses = []
    for _ in range(epochs):
        optimizer.zero_grad()
        loss = ((model(x, x, y, mask=mask) - y) ** 2).mean()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def _check_fit_args(model, x, y, epochs, lr) -> None:
    if not isinstance(model, NadarayaWatson):
        raise TypeError(f"model must be a NadarayaWatson (its bandwidth is trained), got "
                        f"{type(model).__name__}")
    _check_1d("x", x)
    _check_1d("y", y)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape (one target per input), got "
                         f"{shape_str(x)} and {shape_str(y)}")
    if len(x) < 2:
        raise ValueError(f"x must hold at least 2 points (each is predicted from the others), "
                         f"got shape {shape_str(x)}")
    check_size("epochs", epochs)
    check_real("lr", lr, minimum=0.0, strict=True, what="the SGD learning rate")


def target_function(x: Tensor) -> Tensor:
    """The smooth function the chapter estimates: 2 sin(x) + x^0.8."""
    check_tensor("x", x)
    return 2 * torch.sin(x) + x ** 0.8


def make_regression_data(n_train: int = 50, n_test: int = 100, noise: float = 0.5,
                         seed: int = 0, x_max: float = 5.0):
    """Noisy training pairs and a clean test grid for kernel regression, from a seed.

    Returns ``x_train (n_train,)`` sorted, ``y_train``, ``x_test (n_test,)``, ``y_test``.
    """
    check_sizes(n_train=n_train, n_test=n_test)
    check_real("noise", noise, minimum=0.0, what="the standard deviation of the noise")
    check_seed("seed", seed)
    check_real("x_max", x_max, minimum=0.0, strict=True, what="inputs are drawn from [0, x_max]")
    g = torch.Generator().manual_seed(seed)
    x_train = torch.sort(torch.rand(n_train, generator=g) * x_max).values
    y_train = target_function(x_train) + noise * torch.randn(n_train, generator=g)
    x_test = torch.linspace(0, x_max, n_test)
    return x_train, y_train, x_test, target_function(x_test)
