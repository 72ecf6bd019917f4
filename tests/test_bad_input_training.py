"""Bad input to the training loop, its callbacks and schedules, the searches, Nadaraya–Watson
pooling, the metrics and the timing helpers: the right error type, and a message that names
the argument and what it received."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import qkvcourse as qc
from helpers import raises
from qkvcourse import metrics, pooling, profiling
from qkvcourse.callbacks import Checkpoint, EarlyStopping, LossCurve, PrintMetrics
from qkvcourse.decoding import beam_search, greedy_search
from qkvcourse.schedules import transformer_schedule, warmup_cosine_schedule
from qkvcourse.seq2seq import make_rnn_seq2seq
from qkvcourse.trainer import Trainer, TrainerConfig
from qkvcourse.utils import get_device, seed_everything, time_function

X, Y = torch.randn(8, 2), torch.tensor([0, 1] * 4)
LOADER = DataLoader(TensorDataset(X, Y), batch_size=4)


def loss_fn(model, batch):
    return F.cross_entropy(model(batch[0]), batch[1])


def config(**kwargs):
    return TrainerConfig(max_epochs=1, progress=False, **kwargs)


def trainer(**kwargs):
    torch.manual_seed(0)
    return Trainer(nn.Linear(2, 2), kwargs.pop("loss", loss_fn), kwargs.pop("train", LOADER),
                   config=kwargs.pop("config", config()), **kwargs)


# -- 1. the trainer's arguments --------------------------------------------------------------

@pytest.mark.parametrize("kwargs, exc, fragments", [
    (dict(train=None), TypeError, ("train_loader", "NoneType")),
    (dict(train=3), TypeError, ("train_loader", "int")),
    (dict(val_loader=2.5), TypeError, ("val_loader", "float")),
    (dict(optimizer="adam"), TypeError, ("optimizer", "'adam'")),
    (dict(scheduler="cosine"), TypeError, ("scheduler", "str")),
    (dict(callbacks=[3]), TypeError, ("callbacks[0]", "int", "on_fit_start")),
    (dict(callbacks=[PrintMetrics(), "x"]), TypeError, ("callbacks[1]", "str")),
    (dict(callbacks=PrintMetrics()), TypeError, ("callbacks", "PrintMetrics", "list")),
    (dict(config={"max_epochs": 1}), TypeError, ("config", "dict", "TrainerConfig")),
])
def test_trainer_arguments_are_type_checked(kwargs, exc, fragments):
    with raises(exc, *fragments):
        trainer(**kwargs).fit()


def test_loss_fn_must_return_a_floating_scalar():
    with raises(TypeError, "loss_fn", "floating", "torch.int64"):
        trainer(loss=lambda model, batch: batch[1].sum()).fit()
    with raises(ValueError, "loss_fn", "0-dim", "(4,)"):
        trainer(loss=lambda model, batch: F.cross_entropy(model(batch[0]), batch[1],
                                                          reduction="none")).fit()


def test_evaluate_arguments():
    t = trainer()
    with raises(TypeError, "loader", "NoneType"):
        t.evaluate(None)
    with raises(TypeError, "fn", "int"):
        t.evaluate(LOADER, fn=3)
    # a metric may be an integer tensor (it is not differentiated)
    assert t.evaluate(LOADER, fn=lambda model, batch: (batch[1] >= 0).sum()) == 4.0


def test_checkpoint_paths_are_checked(tmp_path):
    t = trainer()
    with raises(TypeError, "path", "int"):
        t.save_checkpoint(3)
    with raises(TypeError, "resume_from", "int"):
        t.fit(resume_from=3)
    with raises(TypeError, "state", "list"):
        t.load_state_dict([])


@pytest.mark.parametrize("kwargs, exc, fragments", [
    (dict(grad_clip_norm="1"), ValueError, ("grad_clip_norm", "'1'")),
    (dict(grad_clip_norm=math.nan), ValueError, ("grad_clip_norm", "nan")),
    (dict(grad_clip_norm=True), ValueError, ("grad_clip_norm", "True")),
    (dict(seed=1.5), TypeError, ("seed", "1.5")),
    (dict(seed=-1), ValueError, ("seed", "-1")),
    (dict(seed=2 ** 32), ValueError, ("seed", str(2 ** 32))),
    (dict(compile="no"), TypeError, ("compile", "'no'")),
    (dict(eval_every_epoch=1), TypeError, ("eval_every_epoch", "1")),
    (dict(find_unused_parameters="yes"), TypeError, ("find_unused_parameters", "'yes'")),
    (dict(progress=1), ValueError, ("progress", "1")),
    (dict(device="gpu0"), ValueError, ("device", "'gpu0'")),
    (dict(device=3.0), TypeError, ("device", "3.0")),
    (dict(precision=["fp32"]), ValueError, ("precision", "['fp32']")),
])
def test_trainer_config_is_checked(kwargs, exc, fragments):
    with raises(exc, *fragments):
        TrainerConfig(**kwargs)


def test_valid_configs_stay_valid():
    TrainerConfig(seed=0, grad_clip_norm=1, compile=False, progress=True, device="cpu")
    TrainerConfig(seed=2 ** 32 - 1, grad_clip_norm=0.5, device=torch.device("cpu"))


# -- 2. evaluate refuses empty batches, as training does -------------------------------------

def test_evaluate_refuses_an_empty_batch():
    good, empty = (X[:4], Y[:4]), (X[:0], Y[:0])
    with raises(ValueError, "loader", "empty batch", "batch 2"):
        trainer().evaluate([good, empty])
    with raises(ValueError, "train_loader", "empty batch"):
        trainer(train=[empty]).fit()


# -- 3. searches: bos_id out of the vocabulary -----------------------------------------------

@pytest.mark.parametrize("search", [greedy_search, beam_search])
def test_search_bos_id_outside_the_vocabulary(search):
    torch.manual_seed(0)
    model = make_rnn_seq2seq(10, 11)
    src = torch.randint(0, 10, (2, 5))
    with raises(ValueError, "bos_id", "[0, 11)", "11"):
        search(model, src, None, bos_id=11, eos_id=2, max_len=4)
    with raises(TypeError, "return_attention", "'yes'"):
        search(model, src, None, bos_id=1, eos_id=2, max_len=4, return_attention="yes")


# -- 4. Nadaraya–Watson ----------------------------------------------------------------------

Q = torch.rand(3)


def test_nadaraya_watson_refuses_empty_keys():
    with raises(ValueError, "keys", "empty", "(0,)"):
        qc.nadaraya_watson(Q, torch.zeros(0), torch.zeros(0))
    with raises(ValueError, "keys", "empty", "(0,)"):
        qc.NadarayaWatson()(Q, torch.zeros(0), torch.zeros(0))


@pytest.mark.parametrize("kwargs, exc, fragments", [
    (dict(kernel=3), TypeError, ("kernel", "int", "3")),
    (dict(bandwidth=torch.ones(2)), ValueError, ("bandwidth", "(2,)", "(3, 3)")),
    (dict(bandwidth=torch.ones(3, 3, 1)), ValueError, ("bandwidth", "(3, 3, 1)")),
    (dict(bandwidth="1"), ValueError, ("bandwidth", "'1'")),
    (dict(bandwidth=math.inf), ValueError, ("bandwidth", "inf")),
    (dict(bandwidth=torch.tensor([1.0, math.nan, 1.0])), ValueError, ("bandwidth", "nan")),
    (dict(bandwidth=torch.ones(3, dtype=torch.bool)), TypeError, ("bandwidth", "torch.bool")),
])
def test_nadaraya_watson_kernel_and_bandwidth(kwargs, exc, fragments):
    with raises(exc, *fragments):
        qc.nadaraya_watson(Q, Q, Q, **kwargs)


def test_nadaraya_watson_bandwidth_tensors_that_broadcast_stay_valid():
    keys, values = torch.rand(4), torch.rand(4)
    for h in (torch.tensor(0.5), torch.full((3, 1), 0.5), torch.full((4,), 0.5)):
        torch.testing.assert_close(qc.nadaraya_watson(Q, keys, values, bandwidth=h)[0],
                                   qc.nadaraya_watson(Q, keys, values, bandwidth=0.5)[0])


@pytest.mark.parametrize("kwargs, exc, fragments", [
    (dict(epochs=-1), ValueError, ("epochs", "-1")),
    (dict(epochs=2.0), ValueError, ("epochs", "2.0")),
    (dict(lr=math.nan), ValueError, ("lr", "nan")),
    (dict(lr=0), ValueError, ("lr", "0")),
    (dict(model=nn.Linear(1, 1)), TypeError, ("model", "NadarayaWatson", "Linear")),
    (dict(x=torch.rand(1), y=torch.rand(1)), ValueError, ("x", "2 points", "(1,)")),
])
def test_fit_bandwidth_arguments(kwargs, exc, fragments):
    args = dict(model=pooling.NadarayaWatson(), x=torch.rand(5), y=torch.rand(5), epochs=2)
    args.update(kwargs)
    with raises(exc, *fragments):
        pooling.fit_bandwidth(**args)


@pytest.mark.parametrize("kwargs, fragments", [
    (dict(n_train=-1), ("n_train", "-1")), (dict(n_test=0), ("n_test", "0")),
    (dict(noise=math.nan), ("noise", "nan")),
    (dict(x_max=0.0), ("x_max", "0.0")),
])
def test_make_regression_data_arguments(kwargs, fragments):
    with raises(ValueError, *fragments):
        pooling.make_regression_data(**kwargs)


def test_leave_one_out_mask_and_module_bandwidth():
    with raises(ValueError, "n", "-2"):
        qc.leave_one_out_mask(-2)
    with raises(ValueError, "bandwidth", "'1'"):
        qc.NadarayaWatson("1")


# -- 5. metrics ------------------------------------------------------------------------------

@pytest.mark.parametrize("correct", [torch.tensor([2, 7]), torch.tensor([0.5, 1.0]),
                                     torch.tensor([1.0, math.nan])])
def test_calibration_correct_must_be_0_or_1(correct):
    with raises(ValueError, "correct", "0 and 1", str(correct.dtype)):
        metrics.expected_calibration_error(torch.tensor([0.5, 0.9]), correct)


def test_calibration_accepts_0_1_numbers_as_booleans():
    conf = torch.tensor([0.5, 0.9, 0.2])
    assert metrics.expected_calibration_error(conf, torch.tensor([1, 0, 1])) == \
        metrics.expected_calibration_error(conf, torch.tensor([True, False, True]))


def test_span_metrics_refuse_reversed_answers():
    t = torch.tensor
    pred_start, pred_end, start, end = t([1, 5]), t([2, 6]), t([1, 5]), t([2, 3])
    for score in (metrics.span_exact_match, metrics.span_f1):  # row 1's answer is reversed
        with raises(ValueError, "end", "start", "start=5", "end=3", "row 1"):
            score(pred_start, pred_end, start, end)


def test_a_reversed_prediction_is_an_empty_span_that_scores_0():
    # Predictions may be reversed (separate arg maxes of an untrained model): a wrong answer,
    # not a bad argument
    t = torch.tensor
    pred_start, pred_end, start, end = t([1, 5]), t([2, 3]), t([1, 5]), t([2, 6])
    assert metrics.span_exact_match(pred_start, pred_end, start, end) == 0.5
    assert metrics.span_f1(pred_start, pred_end, start, end) == 0.5


def test_corpus_bleu_smooth_is_a_flag():
    with raises(TypeError, "smooth", "'no'"):
        metrics.corpus_bleu([["a"]], [["a"]], smooth="no")


# -- 6. callbacks, schedules and utilities ---------------------------------------------------

@pytest.mark.parametrize("make, exc, fragments", [
    (lambda: EarlyStopping(min_delta=math.nan), ValueError, ("min_delta", "nan")),
    (lambda: EarlyStopping(min_delta=-0.1), ValueError, ("min_delta", "-0.1")),
    (lambda: EarlyStopping(monitor=3), TypeError, ("monitor", "3")),
    (lambda: LossCurve(live_every_steps=0), ValueError, ("live_every_steps", "0")),
    (lambda: LossCurve(live="yes"), TypeError, ("live", "'yes'")),
    (lambda: LossCurve(logy=1), TypeError, ("logy", "1")),
    (lambda: LossCurve(figsize=(5, -1)), ValueError, ("figsize", "(5, -1)")),
    (lambda: Checkpoint(3), TypeError, ("path", "int")),
])
def test_callback_arguments(make, exc, fragments):
    with raises(exc, *fragments):
        make()


def test_schedule_arguments():
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    with raises(ValueError, "total_steps", "True"):
        warmup_cosine_schedule(optimizer, 0, True)
    with raises(ValueError, "min_ratio", "nan"):
        warmup_cosine_schedule(optimizer, 0, 10, min_ratio=math.nan)
    with raises(TypeError, "optimizer", "str"):
        warmup_cosine_schedule("sgd", 0, 10)
    with raises(TypeError, "optimizer", "NoneType"):
        transformer_schedule(None, 16)


@pytest.mark.parametrize("call, fragments", [
    (lambda: time_function(lambda: None, repeat=0), ("repeat", "0")),
    (lambda: time_function(lambda: None, warmup=-1), ("warmup", "-1")),
    (lambda: profiling.time_call(lambda: None, repeat=0), ("repeat", "0")),
    (lambda: profiling.time_attention("fused", 0), ("n", "0")),
    (lambda: profiling.time_attention("fused", 8, heads=0), ("heads", "0")),
    (lambda: profiling.time_attention("flash", 8), ("path", "'flash'")),
    (lambda: profiling.peak_attention_memory([("fused", 2.5)]), ("configs[0] n", "2.5")),
    (lambda: profiling.power_law_fit([1, 2], [1, math.nan]), ("ys", "nan")),
    (lambda: seed_everything(-3), ("seed", "-3")),
    (lambda: get_device("gpu0"), ("prefer", "'gpu0'")),
])
def test_timing_and_utility_arguments(call, fragments):
    with raises(ValueError, *fragments):
        call()


def test_flags_and_callables_of_the_timers():
    with raises(TypeError, "fn", "int"):
        time_function(3)
    with raises(TypeError, "backward", "'yes'"):
        profiling.time_attention("fused", 8, backward="yes")


def test_fit_bandwidth_names_x_and_y():
    with raises(ValueError, "x", "y", "(5,)", "(4,)"):
        pooling.fit_bandwidth(pooling.NadarayaWatson(), torch.rand(5), torch.rand(4))
    with raises(TypeError, "y", "torch.int64"):
        pooling.fit_bandwidth(pooling.NadarayaWatson(), torch.rand(5), torch.arange(5))
