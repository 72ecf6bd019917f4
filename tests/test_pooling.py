"""Nadaraya–Watson attention pooling against a naive loop reference."""
from __future__ import annotations

import math

import pytest
import torch

import qkvcourse as qc

KERNEL_FORMULAS = {  # written out here, independently of qkvcourse.pooling
    "gaussian": lambda u: math.exp(-u * u / 2),
    "boxcar": lambda u: 1.0 if abs(u) <= 1 else 0.0,
    "constant": lambda u: 1.0,
    "epanechnikov": lambda u: 0.75 * max(0.0, 1 - u * u),
}


def naive_nadaraya_watson(queries, keys, values, kernel, bandwidth):
    """Loops over queries and keys in Python floats."""
    predictions, weights = [], []
    for x in queries.tolist():
        k = [KERNEL_FORMULAS[kernel]((x - xi) / bandwidth) for xi in keys.tolist()]
        total = sum(k)
        row = [ki / total if total > 0 else 0.0 for ki in k]
        weights.append(row)
        predictions.append(sum(w * y for w, y in zip(row, values.tolist())))
    return torch.tensor(predictions, dtype=torch.float64), torch.tensor(weights, dtype=torch.float64)


def test_the_kernel_table_is_complete():
    assert set(qc.KERNELS) == set(KERNEL_FORMULAS)


@pytest.mark.parametrize("kernel", sorted(KERNEL_FORMULAS))
@pytest.mark.parametrize("bandwidth", [0.3, 1.0, 2.5])
def test_matches_naive_reference(kernel, bandwidth):
    keys = torch.sort(torch.rand(30, dtype=torch.float64) * 5).values
    values = torch.randn(30, dtype=torch.float64)
    queries = torch.linspace(-1, 6, 41, dtype=torch.float64)
    predictions, weights = qc.nadaraya_watson(queries, keys, values, kernel, bandwidth)
    expected_predictions, expected_weights = naive_nadaraya_watson(queries, keys, values, kernel,
                                                                   bandwidth)
    assert predictions.shape == (41,) and weights.shape == (41, 30)
    torch.testing.assert_close(weights, expected_weights, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(predictions, expected_predictions, rtol=1e-12, atol=1e-12)
    # float32 agrees too
    p32, w32 = qc.nadaraya_watson(queries.float(), keys.float(), values.float(), kernel, bandwidth)
    torch.testing.assert_close(w32.double(), expected_weights, rtol=0, atol=1e-6)
    torch.testing.assert_close(p32.double(), expected_predictions, rtol=0, atol=1e-5)


def test_constant_kernel_is_the_mean_and_tiny_gaussian_bandwidth_the_nearest_key():
    keys, values = torch.tensor([0.0, 1.0, 3.0]), torch.tensor([2.0, -1.0, 5.0])
    predictions, _ = qc.nadaraya_watson(torch.tensor([0.2, 10.0]), keys, values, "constant")
    torch.testing.assert_close(predictions, torch.full((2,), 2.0))
    predictions, _ = qc.nadaraya_watson(torch.tensor([0.2, 0.9, 2.5]), keys, values, "gaussian",
                                        bandwidth=0.05)
    torch.testing.assert_close(predictions, torch.tensor([2.0, -1.0, 5.0]))


@pytest.mark.parametrize("kernel", ["boxcar", "epanechnikov"])
def test_zero_weight_rows_give_zero_not_nan(kernel):
    keys, values = torch.tensor([0.0, 0.5, 1.0]), torch.tensor([1.0, 2.0, 3.0])
    queries = torch.tensor([0.4, 10.0, -7.0])  # the last two are far outside the support
    predictions, weights = qc.nadaraya_watson(queries, keys, values, kernel, bandwidth=0.5)
    assert torch.isfinite(predictions).all() and torch.isfinite(weights).all()
    assert torch.all(weights[1:] == 0) and torch.all(predictions[1:] == 0)
    torch.testing.assert_close(weights[0].sum(), torch.tensor(1.0))
    # and the gradients stay finite (the boxcar kernel has none with respect to the queries)
    q, v = queries.clone().requires_grad_(), values.clone().requires_grad_()
    qc.nadaraya_watson(q, keys, v, kernel, bandwidth=0.5)[0].sum().backward()
    assert torch.isfinite(v.grad).all() and v.grad.sum() == pytest.approx(1.0)
    assert q.grad is None or torch.isfinite(q.grad).all()


def test_gaussian_far_from_the_data_is_still_normalised():
    """A kernel total that is tiny (even subnormal) but positive must still normalise to 1."""
    keys, values = torch.tensor([0.0, 0.1]), torch.tensor([1.0, 3.0])
    for query in (13.5, 13.9):  # exp(-u²/2) ~ 1e-40: a subnormal float32 total
        predictions, weights = qc.nadaraya_watson(torch.tensor([query]), keys, values)
        assert weights[0].sum().item() == pytest.approx(1.0, abs=1e-5), query
        # nearly all the weight on the nearer key, x = 0.1
        ref_p, ref_w = naive_nadaraya_watson(torch.tensor([query]), keys, values, "gaussian", 1.0)
        torch.testing.assert_close(weights.double(), ref_w, rtol=0, atol=1e-4)
        torch.testing.assert_close(predictions.double(), ref_p, rtol=0, atol=3e-4)
    # in float64 the same happens ~38 bandwidths away
    query64 = torch.tensor([37.9], dtype=torch.float64)
    keys64, values64 = torch.tensor([0.0, 0.1], dtype=torch.float64), values.double()
    predictions, weights = qc.nadaraya_watson(query64, keys64, values64)
    assert 0 < math.exp(-(37.9 - 0.1) ** 2 / 2) < torch.finfo(torch.float64).tiny
    ref_p, ref_w = naive_nadaraya_watson(query64, keys64, values64, "gaussian", 1.0)
    torch.testing.assert_close(weights, ref_w, rtol=0, atol=1e-9)


@pytest.mark.parametrize("kernel", ["boxcar", "epanechnikov"])
def test_compact_kernels_at_the_edge_of_their_support(kernel):
    keys, values = torch.tensor([0.0, 0.25, 2.0]), torch.tensor([4.0, 2.0, 1.0])
    queries = torch.tensor([0.5, 1.5])  # |u| = 1 exactly, for keys 0 and 2 (h = 0.5)
    predictions, weights = qc.nadaraya_watson(queries, keys, values, kernel, bandwidth=0.5)
    ref_p, ref_w = naive_nadaraya_watson(queries, keys, values, kernel, 0.5)
    torch.testing.assert_close(weights.double(), ref_w, rtol=0, atol=1e-7)
    torch.testing.assert_close(predictions.double(), ref_p, rtol=0, atol=1e-6)
    if kernel == "boxcar":  # the boxcar includes its edge: the key at distance h counts
        torch.testing.assert_close(weights, torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]))


def test_callable_kernel_and_tensor_bandwidth():
    keys, values = torch.rand(10), torch.randn(10)
    queries = torch.rand(4)
    p_callable, _ = qc.nadaraya_watson(queries, keys, values, lambda u: torch.exp(-u ** 2 / 2), 0.4)
    p_named, _ = qc.nadaraya_watson(queries, keys, values, "gaussian", torch.tensor(0.4))
    torch.testing.assert_close(p_callable, p_named)


def test_module_equals_the_function_with_the_same_bandwidth():
    x_train, y_train, x_test, _ = qc.make_regression_data(n_train=40, n_test=25, seed=3)
    for bandwidth in (0.2, 0.7, 1.5):
        model = qc.NadarayaWatson(bandwidth)
        assert model.bandwidth == pytest.approx(bandwidth, rel=1e-6)
        predictions = model(x_test, x_train, y_train)
        expected, weights = qc.nadaraya_watson(x_test, x_train, y_train, "gaussian", bandwidth)
        torch.testing.assert_close(predictions, expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(model.attention_weights, weights, rtol=1e-5, atol=1e-6)


def test_module_mask_leaves_points_out():
    x, y, _, _ = qc.make_regression_data(n_train=20, seed=1)
    model = qc.NadarayaWatson(0.5)
    mask = qc.leave_one_out_mask(20)
    assert mask.shape == (20, 20) and not mask.diagonal().any() and mask.sum() == 20 * 19
    model(x, x, y, mask=mask)
    weights = model.attention_weights
    assert torch.all(weights.diagonal() == 0)
    torch.testing.assert_close(weights.sum(1), torch.ones(20))
    # with a point left out, the estimate is the naive one over the other points
    i = 7
    others = torch.cat([torch.arange(i), torch.arange(i + 1, 20)])
    expected, _ = naive_nadaraya_watson(x[i:i + 1], x[others], y[others], "gaussian", 0.5)
    torch.testing.assert_close(model(x, x, y, mask=mask)[i].double(), expected[0], rtol=0, atol=1e-5)


def test_fit_bandwidth_decreases_the_leave_one_out_loss():
    x, y, x_test, y_test = qc.make_regression_data()
    model = qc.NadarayaWatson(bandwidth=2.0)
    losses = qc.fit_bandwidth(model, x, y, epochs=200, lr=0.1)
    assert len(losses) == 200
    assert losses[-1] < 0.8 * losses[0]
    assert all(b <= a + 1e-6 for a, b in zip(losses[50:], losses[51:]))  # settled: monotone
    # a sensible bandwidth: well inside the data's range, far from both 0 and the start
    assert 0.1 < model.bandwidth < 1.0
    # the fitted bandwidth predicts the clean test curve better than the starting one
    fitted = ((model(x_test, x, y) - y_test) ** 2).mean()
    start = ((qc.NadarayaWatson(2.0)(x_test, x, y) - y_test) ** 2).mean()
    assert fitted < start
    # and the loss at the optimum is about the noise variance (0.5² = 0.25), not 0
    assert 0.1 < losses[-1] < 0.6


def test_make_regression_data_is_deterministic_from_the_seed():
    a = qc.make_regression_data(seed=5)
    torch.manual_seed(999)  # the global generator must not matter
    b = qc.make_regression_data(seed=5)
    c = qc.make_regression_data(seed=6)
    for u, v in zip(a, b):
        assert torch.equal(u, v)
    assert not torch.equal(a[0], c[0]) and not torch.equal(a[1], c[1])
    x_train, y_train, x_test, y_test = a
    assert x_train.shape == (50,) and y_train.shape == (50,) and x_test.shape == (100,)
    assert torch.all(x_train[1:] >= x_train[:-1])  # sorted
    assert 0 <= x_train.min() and x_train.max() <= 5
    torch.testing.assert_close(y_test, 2 * torch.sin(x_test) + x_test ** 0.8)
    residual = y_train - qc.target_function(x_train)
    assert 0.3 < residual.std() < 0.7  # noise=0.5
    x, y, _, _ = qc.make_regression_data(n_train=10, noise=0.0, seed=0)
    torch.testing.assert_close(y, qc.target_function(x))
