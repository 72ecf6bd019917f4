"""qc.sweep and qc.EvaluateEvery: the harness behind the course's measured comparisons."""
import math

import pytest
import torch

import qkvcourse as qc


def test_sweep_collects_every_combination_in_seed_order():
    calls = []

    def run(arm, budget, seed):
        calls.append((arm, budget, seed))
        return {"a": 1.0, "b": 0.0}[arm] + budget / 100 + seed / 1000

    result = qc.sweep(run, arms=["a", "b"], budgets=[16, 64], seeds=[0, 1, 2])
    assert len(calls) == 12
    assert result.values["a"][64] == pytest.approx([1.64, 1.641, 1.642])
    assert result.mean("b", 16) == pytest.approx(0.161)
    assert result.std("b", 16) == pytest.approx(0.001)
    assert result.spread("a", 16) == pytest.approx((1.16, 1.162))
    assert result.gap("a", "b", 64) == pytest.approx([1.0, 1.0, 1.0])
    table = result.table()
    assert "1.641 ± 0.001" in table and "(mean ± std over 3 seeds)" in table


def test_sweep_refuses_non_finite_results_and_empty_axes():
    with pytest.raises(ValueError, match="returned nan"):
        qc.sweep(lambda a, b, s: math.nan, arms=["a"], budgets=[1], seeds=[0])
    with pytest.raises(ValueError, match="seeds must not be empty"):
        qc.sweep(lambda a, b, s: 0.0, arms=["a"], budgets=[1], seeds=[])


def test_sweep_plot_draws_one_curve_per_arm():
    import matplotlib
    matplotlib.use("Agg")
    result = qc.sweep(lambda a, b, s: b * (1 if a == "x" else 2) + s, ["x", "y"], [1, 2, 4], [0, 1])
    ax = result.plot(chance=0.5)
    assert [l.get_label() for l in ax.get_lines()] == ["x", "y", "chance"]
    assert list(ax.get_lines()[1].get_ydata()) == [2.5, 4.5, 8.5]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "4"]  # the budgets, as numbers


def test_evaluate_every_records_on_schedule_and_at_the_end():
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    data = [(torch.randn(4, 2), torch.randn(4, 1)) for _ in range(7)]
    seen = []
    cb = qc.EvaluateEvery(lambda t: seen.append(t.step) or float(t.step), every=3)
    trainer = qc.Trainer(model, lambda m, batch: torch.nn.functional.mse_loss(m(batch[0]), batch[1]),
                         data, callbacks=[cb],
                         config=qc.TrainerConfig(max_epochs=1, eval_every_epoch=False, device="cpu"))
    trainer.fit()
    assert cb.steps == [3, 6, 7] and cb.values == [3.0, 6.0, 7.0]


def test_evaluate_every_checks_its_arguments():
    with pytest.raises(ValueError, match="every must be an integer >= 1, got 0"):
        qc.EvaluateEvery(lambda t: 0.0, every=0)
    with pytest.raises(TypeError, match="metric must be callable"):
        qc.EvaluateEvery(3, every=1)
