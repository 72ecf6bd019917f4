"""Chapter 2 (attention pooling): Nadaraya–Watson regression and its leave-one-out error."""
from __future__ import annotations

import torch

from ....pooling import NadarayaWatson, leave_one_out_mask, make_regression_data, nadaraya_watson
from ...core import Case
from ..registry import Mistake, Question, register


# --- nw_regression --------------------------------------------------------------------------

def _nw_regression(queries, keys, values, kernel, bandwidth):
    return nadaraya_watson(queries, keys, values, kernel, bandwidth)


def _kernel(name, u, gaussian_half=True, closed_box=True, clip=True):
    if name == "gaussian":
        return torch.exp(-u ** 2 / 2) if gaussian_half else torch.exp(-u ** 2)
    if name == "boxcar":
        return ((u.abs() <= 1) if closed_box else (u.abs() < 1)).to(u.dtype)
    if name == "epanechnikov":
        k = 0.75 * (1 - u ** 2)
        return k.clamp(min=0) if clip else k
    raise ValueError(f"unknown kernel {name!r}")


def _nw(queries, keys, values, kernel, bandwidth, *, multiply=False, norm_dim=1, normalise=True,
        nan_rows=False, **kernel_options):
    diff = queries[:, None] - keys[None, :]
    u = diff * bandwidth if multiply else diff / bandwidth
    k = _kernel(kernel, u, **kernel_options)
    if not normalise:
        weights = k
    else:
        total = k.sum(dim=norm_dim, keepdim=True)
        weights = k / total if nan_rows else k / torch.where(total == 0, torch.ones_like(total), total)
    return weights @ values, weights


def _nw_multiply(q, k, v, kernel, bandwidth):
    return _nw(q, k, v, kernel, bandwidth, multiply=True)


def _nw_gauss_no_half(q, k, v, kernel, bandwidth):
    return _nw(q, k, v, kernel, bandwidth, gaussian_half=False)


def _nw_open_box(q, k, v, kernel, bandwidth):
    return _nw(q, k, v, kernel, bandwidth, closed_box=False)


def _nw_no_clip(q, k, v, kernel, bandwidth):
    return _nw(q, k, v, kernel, bandwidth, clip=False)


def _nw_over_queries(q, k, v, kernel, bandwidth):
    return _nw(q, k, v, kernel, bandwidth, norm_dim=0)


def _nw_unnormalised(q, k, v, kernel, bandwidth):
    return _nw(q, k, v, kernel, bandwidth, normalise=False)


def _nw_nan_rows(q, k, v, kernel, bandwidth):
    return _nw(q, k, v, kernel, bandwidth, nan_rows=True)


_NW_NAMES = ("queries", "keys", "values", "kernel", "bandwidth")


def _points(n, low=0.0, high=5.0):
    return (torch.rand(n, dtype=torch.float64) * (high - low) + low).sort().values


def _nw_case(label, queries, keys, kernel, bandwidth, values=None):
    values = torch.randn(len(keys), dtype=torch.float64) if values is None else values
    return Case(f"{label}: {len(queries)} queries, {len(keys)} keys, kernel={kernel!r}, "
                f"bandwidth={bandwidth}", (queries, keys, values, kernel, bandwidth),
                arg_names=_NW_NAMES)


def _nw_cases(rng, hidden):
    f64 = torch.float64
    if not hidden:
        return [
            _nw_case("random points", _points(3), _points(5), "gaussian", 0.5),
            _nw_case("random points", _points(3), _points(5), "epanechnikov", 1.0),
            # keys exactly one bandwidth from the first query; no key near the last query
            _nw_case("grid, edges of the window, a query with no key in its window",
                     torch.tensor([0.5, 1.25, 4.5], dtype=f64),
                     torch.tensor([0.0, 0.5, 1.0, 1.5, 3.0], dtype=f64), "boxcar", 0.5),
        ]
    cases = [
        _nw_case("one query", _points(1), _points(6), "gaussian", 2.0),
        _nw_case("one key", _points(4), _points(1), "gaussian", 1.5),
        _nw_case("many points", _points(9), _points(14), "gaussian", rng.choice([0.3, 0.7])),
        _nw_case("random points", _points(5), _points(8), "epanechnikov", 0.8),
        _nw_case("far queries", torch.tensor([-3.0, 2.0, 9.0], dtype=f64), _points(7),
                 "epanechnikov", 1.0),
        _nw_case("random points", _points(6), _points(10), "boxcar", 1.0),
        _nw_case("grid with keys on the window edges", torch.tensor([1.0, 2.0, 2.5, 6.0], dtype=f64),
                 torch.arange(0, 13, dtype=f64) * 0.25, "boxcar", 0.25),
        _nw_case("no query has a key in its window", torch.tensor([10.0, -4.0], dtype=f64),
                 _points(5), "boxcar", 0.5),
    ]
    q32, k32 = _points(4).float(), _points(6).float()
    cases.append(_nw_case("float32 inputs", q32, k32, "gaussian", 0.6, torch.randn(6)))
    return cases


register(Question(
    qid="ch02.nw_regression", name="nw_regression", kind="function",
    title="Nadaraya–Watson kernel regression", reference=_nw_regression, cases=_nw_cases,
    atol=1e-6, rtol=1e-5,
    mistakes=[
        Mistake("bandwidth multiplies the distance",
                "The kernel is evaluated at (query - key) / bandwidth: a larger bandwidth must "
                "make the weights spread wider, not narrower.", _nw_multiply),
        Mistake("Gaussian kernel without the 1/2",
                "The Gaussian kernel of the chapter is exp(-u^2 / 2); exp(-u^2) is a Gaussian "
                "with a different width.", _nw_gauss_no_half),
        Mistake("boxcar window open at its edges",
                "The boxcar kernel is 1 for |u| <= 1, so a key exactly one bandwidth away is "
                "inside the window.", _nw_open_box),
        Mistake("Epanechnikov kernel not clipped at 0",
                "0.75 (1 - u^2) is negative for |u| > 1; the kernel is 0 there, so keys far "
                "from the query must get no weight.", _nw_no_clip),
        Mistake("weights normalised over the queries",
                "Each query's weights are divided by that query's total over the keys (a sum "
                "along the key axis), so every row sums to 1.", _nw_over_queries),
        Mistake("weights not normalised",
                "The kernel values must be divided by their sum over the keys, so the "
                "prediction is a weighted average of the values.", _nw_unnormalised),
        Mistake("NaN for a query with no key in its window",
                "When every kernel value of a query is 0, the sum is 0 and 0/0 is NaN; the "
                "exercise asks for all-zero weights and prediction 0 there.", _nw_nan_rows),
    ]))


# --- loo_mse ----------------------------------------------------------------------------------

def _loo_mse(x, y, bandwidth):
    model = NadarayaWatson(bandwidth).to(x.dtype)
    pred = model(x, x, y, mask=leave_one_out_mask(len(x)))
    return float(((pred - y) ** 2).mean())


def _gauss_weights(x, bandwidth, half=True, multiply=False):
    d = x[:, None] - x[None, :]
    u = d * bandwidth if multiply else d / bandwidth
    return torch.exp(-u ** 2 / 2) if half else torch.exp(-u ** 2)


def _loo_from_kernel(k, y, reduce="mean"):
    k = k.clone()
    k.fill_diagonal_(0.0)
    pred = (k / k.sum(1, keepdim=True)) @ y
    se = (pred - y) ** 2
    if reduce == "sum":
        return float(se.sum())
    if reduce == "rmse":
        return float(se.mean().sqrt())
    return float(se.mean())


def _loo_keeps_self(x, y, bandwidth):
    k = _gauss_weights(x, bandwidth)
    pred = (k / k.sum(1, keepdim=True)) @ y
    return float(((pred - y) ** 2).mean())


def _loo_zero_after_normalising(x, y, bandwidth):
    k = _gauss_weights(x, bandwidth)
    w = k / k.sum(1, keepdim=True)
    w.fill_diagonal_(0.0)
    return float(((w @ y - y) ** 2).mean())


def _loo_no_half(x, y, bandwidth):
    return _loo_from_kernel(_gauss_weights(x, bandwidth, half=False), y)


def _loo_multiply(x, y, bandwidth):
    return _loo_from_kernel(_gauss_weights(x, bandwidth, multiply=True), y)


def _loo_sum(x, y, bandwidth):
    return _loo_from_kernel(_gauss_weights(x, bandwidth), y, "sum")


def _loo_rmse(x, y, bandwidth):
    return _loo_from_kernel(_gauss_weights(x, bandwidth), y, "rmse")


def _loo_tensor(x, y, bandwidth):
    return torch.tensor(_loo_mse(x, y, bandwidth), dtype=x.dtype)


def _loo_cases(rng, hidden):
    names = ("x", "y", "bandwidth")

    def case(label, x, y, h):
        return Case(f"{label}: {len(x)} pairs, bandwidth={h}", (x, y, h), arg_names=names)

    if not hidden:
        return [case("random pairs", _points(5), torch.randn(5, dtype=torch.float64), 0.5),
                case("random pairs", _points(6), torch.randn(6, dtype=torch.float64), 1.0),
                case("random pairs", _points(4), torch.randn(4, dtype=torch.float64), 2.0)]
    x, y, _, _ = make_regression_data(n_train=40, seed=rng.randint(0, 1000))
    x, y = x.double(), y.double()
    return [case("two pairs (each is predicted by the other)", torch.tensor([1.0, 2.0], dtype=torch.float64),
                 torch.tensor([0.5, -1.5], dtype=torch.float64), 0.7),
            case("the chapter's kind of data", x, y, rng.choice([0.2, 0.3, 0.5])),
            case("the chapter's kind of data, wide bandwidth", x, y, 3.0),
            case("random pairs", _points(9), torch.randn(9, dtype=torch.float64), 0.4),
            case("float32 pairs", _points(7).float(), torch.randn(7), 0.8)]


register(Question(
    qid="ch02.loo_mse", name="loo_mse", kind="function",
    title="Leave-one-out error of Gaussian kernel regression", reference=_loo_mse,
    cases=_loo_cases, atol=1e-6, rtol=1e-5,
    mistakes=[
        Mistake("each point used to predict itself",
                "Leave-one-out means the prediction at x_i is built from the other pairs only; "
                "with its own pair included, a tiny bandwidth would just copy y_i.", _loo_keeps_self),
        Mistake("own weight removed after normalising",
                "Removing the pair i after dividing by the sum leaves weights that no longer "
                "sum to 1; leave it out before normalising.", _loo_zero_after_normalising),
        Mistake("Gaussian kernel without the 1/2",
                "The Gaussian kernel is exp(-u^2 / 2) with u = (x - x_j) / bandwidth.",
                _loo_no_half),
        Mistake("bandwidth multiplies the distance",
                "u is the difference divided by the bandwidth, not multiplied by it.", _loo_multiply),
        Mistake("squared errors summed, not averaged",
                "The loss is the mean of the n squared errors.", _loo_sum),
        Mistake("square root taken (RMSE)",
                "The exercise asks for the mean squared error itself, without a square root.",
                _loo_rmse),
        Mistake("returned a tensor, not a float",
                "The value is right, but the exercise asks for a Python float: turn the 0-d "
                "tensor into a number (.item()).", _loo_tensor),
    ]))
