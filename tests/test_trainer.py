"""The generic trainer: learning, clipping, schedules, switches, checkpoints, callbacks."""
from __future__ import annotations

import math
import os
from collections import namedtuple

import matplotlib
import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import qkvcourse as qc
from qkvcourse.callbacks import Callback, Checkpoint, EarlyStopping, LossCurve, PrintMetrics
from qkvcourse.schedules import transformer_schedule, warmup_cosine_schedule
from qkvcourse.trainer import Trainer, TrainerConfig, batch_size_of, move_to_device

DEVICES = qc.available_devices()


# -- a tiny task -------------------------------------------------------------------------------

def make_blobs(n=96, seed=0):
    """Two Gaussian blobs in 4-D, labels 0/1; linearly separable with margin."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    centres = torch.tensor([[-1.5, 1.0, 0.0, 0.5], [1.5, -1.0, 0.5, -0.5]])
    X = centres[y] + 0.5 * torch.randn(n, 4, generator=g)
    return X, y


def make_model(seed=0, dropout=0.0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 2))


def classification_loss(model, batch):
    X, y = batch
    return F.cross_entropy(model(X).float(), y)


def loaders(batch_size=16, shuffle_seed=1, n=96):
    X, y = make_blobs(n)
    train = DataLoader(TensorDataset(X, y), batch_size=batch_size, shuffle=True,
                       generator=torch.Generator().manual_seed(shuffle_seed))
    Xv, yv = make_blobs(40, seed=1)
    val = DataLoader(TensorDataset(Xv, yv), batch_size=batch_size)
    return train, val


def cfg(**kwargs):
    kwargs.setdefault("device", "cpu")
    kwargs.setdefault("log_every", 1)
    return TrainerConfig(**kwargs)


# -- learning ----------------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES, ids=str)
def test_loss_decreases(device):
    train, val = loaders()
    model = make_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    trainer = Trainer(model, classification_loss, train, val, optimizer=optimizer,
                      config=cfg(max_epochs=15, device=device))
    before = trainer.evaluate(val)
    history = trainer.fit()
    assert before > 0.5
    assert history["val_loss"][-1] < 0.25 * before
    assert history["epoch_train_loss"][-1] < history["epoch_train_loss"][0]
    assert len(history["val_loss"]) == 15 and history["epoch"] == list(range(1, 16))
    assert len(history["train_loss"]) == 15 * len(train)  # log_every=1: one point per step
    assert all(p.device.type == torch.device(device).type for p in trainer.model.parameters())


def test_default_optimizer_is_adamw_and_not_fused_on_cpu():
    train, _ = loaders()
    trainer = Trainer(make_model(), classification_loss, train, config=cfg())
    assert isinstance(trainer.optimizer, torch.optim.AdamW)
    assert trainer.optimizer.param_groups[0]["lr"] == 1e-3
    assert trainer.settings["fused_optimizer"] is False


def test_log_every_averages_windows():
    train, _ = loaders(batch_size=16)  # 6 batches per epoch
    losses = []

    def loss_fn(model, batch):
        loss = classification_loss(model, batch)
        losses.append(loss.item())
        return loss

    trainer = Trainer(make_model(), loss_fn, train, config=cfg(max_epochs=2, log_every=4))
    history = trainer.fit()
    # windows restart at each epoch end: steps 4, 6 | 8, 12
    assert history["step"] == [4, 6, 8, 12]
    expected = [sum(losses[0:4]) / 4, sum(losses[4:6]) / 2, sum(losses[6:8]) / 2,
                sum(losses[8:12]) / 4]
    assert history["train_loss"] == pytest.approx(expected, rel=1e-6)


# -- gradient clipping -------------------------------------------------------------------------

class GradNorms(Callback):
    """The global gradient norm after clipping, read right after each optimiser step."""

    def __init__(self):
        self.norms = []

    def on_train_batch_end(self, trainer, step, loss):
        grads = [p.grad.detach().flatten() for p in trainer.model.parameters()
                 if p.grad is not None]
        self.norms.append(torch.cat(grads).norm().item())


def regression_loss(model, batch):
    X, y = batch
    return F.mse_loss(model(X).squeeze(-1), y)


def big_regression_loader():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(64, 4, generator=g)
    y = 100.0 * X.sum(-1)  # large targets: large gradients
    return DataLoader(TensorDataset(X, y), batch_size=16)


def test_grad_clipping_bounds_the_global_norm():
    clip = 0.5
    norms = {}
    for clip_norm in (None, clip):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
        recorder = GradNorms()
        trainer = Trainer(model, regression_loss, big_regression_loader(), callbacks=[recorder],
                          config=cfg(max_epochs=2, grad_clip_norm=clip_norm))
        trainer.fit()
        norms[clip_norm] = recorder.norms
        if clip_norm is not None:
            assert trainer.last_grad_norm is not None and trainer.last_grad_norm.item() > clip
    assert min(norms[None]) > 10 * clip  # the control: without clipping the norms are large
    assert max(norms[clip]) <= clip * (1 + 1e-5)
    assert max(norms[clip]) >= clip * (1 - 1e-5)  # clipped to, not below, the bound


# -- learning-rate schedules ------------------------------------------------------------------

def lrs_for_steps(make_scheduler, steps, base_lr=1.0):
    """The learning rate each optimiser step k (1-based) uses."""
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=base_lr)
    scheduler = make_scheduler(optimizer)
    rates, k = {}, 1
    for target in sorted(steps):
        while k < target:
            optimizer.step()
            scheduler.step()
            k += 1
        rates[target] = optimizer.param_groups[0]["lr"]
    return rates


@pytest.mark.parametrize("d_model,warmup", [(512, 4000), (64, 30)])
def test_transformer_schedule_matches_eq3(d_model, warmup):
    steps = [1, 2, 7, warmup - 1, warmup, warmup + 1, 3 * warmup]
    rates = lrs_for_steps(lambda o: transformer_schedule(o, d_model, warmup), steps)
    for k in steps:
        expected = d_model ** -0.5 * min(k ** -0.5, k * warmup ** -1.5)
        assert rates[k] == pytest.approx(expected, rel=1e-12), k
    # the peak is at step_num = warmup_steps, with value (d_model * warmup)^-0.5
    assert rates[warmup] == pytest.approx((d_model * warmup) ** -0.5, rel=1e-12)
    assert rates[warmup - 1] < rates[warmup] and rates[warmup + 1] < rates[warmup]


def test_transformer_schedule_peak_over_a_full_run():
    rates = lrs_for_steps(lambda o: transformer_schedule(o, 32, 20), range(1, 61), base_lr=2.0)
    assert max(rates, key=rates.get) == 20
    assert rates[20] == pytest.approx(2.0 * (32 * 20) ** -0.5, rel=1e-12)  # base lr scales it


@pytest.mark.parametrize("min_ratio", [0.0, 0.1])
def test_warmup_cosine_schedule_matches_formula(min_ratio):
    warmup, total, peak = 10, 50, 3e-3
    steps = [1, 5, 10, 11, 30, 49, 50, 51, 80]
    rates = lrs_for_steps(lambda o: warmup_cosine_schedule(o, warmup, total, min_ratio), steps,
                          base_lr=peak)
    for k in steps:
        if k <= warmup:
            factor = k / warmup
        else:
            p = min(1.0, (k - warmup) / (total - warmup))
            factor = min_ratio + (1 - min_ratio) * (1 + math.cos(math.pi * p)) / 2
        assert rates[k] == pytest.approx(peak * factor, rel=1e-12), k
    assert rates[warmup] == pytest.approx(peak)
    assert rates[30] == pytest.approx(peak * (1 + min_ratio) / 2)  # halfway down the cosine
    assert rates[total] == pytest.approx(peak * min_ratio, abs=1e-15)
    assert rates[80] == rates[total]


def test_trainer_steps_the_schedule_every_step():
    train, _ = loaders(batch_size=16)  # 6 steps per epoch
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = transformer_schedule(optimizer, d_model=16, warmup_steps=5)
    trainer = Trainer(model, classification_loss, train, optimizer=optimizer,
                      scheduler=scheduler, config=cfg(max_epochs=2))
    history = trainer.fit()
    expected = [16 ** -0.5 * min(k ** -0.5, k * 5 ** -1.5) for k in range(1, 13)]
    assert history["step"] == list(range(1, 13))
    assert history["lr"] == pytest.approx(expected, rel=1e-12)


def test_schedule_bad_input():
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="warmup_steps must be an integer >= 1, got 0"):
        transformer_schedule(optimizer, 512, 0)
    with pytest.raises(ValueError, match="d_model must be an integer >= 1, got -4"):
        transformer_schedule(optimizer, -4, 10)
    with pytest.raises(ValueError, match=r"total_steps must be an integer > warmup_steps \(10\), "
                                         r"got 10"):
        warmup_cosine_schedule(optimizer, 10, 10)
    with pytest.raises(ValueError, match=r"min_ratio must lie in \[0, 1\], got 1.5"):
        warmup_cosine_schedule(optimizer, 1, 10, min_ratio=1.5)


# -- checkpoints -------------------------------------------------------------------------------

def make_dropout_run(max_epochs, shuffle_seed=1, init_seed=0):
    train, val = loaders(batch_size=8, shuffle_seed=shuffle_seed)
    model = make_model(seed=init_seed, dropout=0.3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = warmup_cosine_schedule(optimizer, warmup_steps=5, total_steps=60, min_ratio=0.1)
    return Trainer(model, classification_loss, train, val, optimizer=optimizer,
                   scheduler=scheduler, config=cfg(max_epochs=max_epochs, seed=7, log_every=3))


def comparable(history):
    return {k: v for k, v in history.items() if k != "epoch_seconds"}


def test_resume_is_bit_identical_on_cpu(tmp_path):
    uninterrupted = make_dropout_run(max_epochs=4)
    full_history = uninterrupted.fit()

    first_half = make_dropout_run(max_epochs=2)
    first_half.fit()
    path = tmp_path / "run.pt"
    first_half.save_checkpoint(path)

    # a fresh process would start from other weights, another loader state and RNG state:
    # a different initialisation and shuffle seed prove that all of them are restored
    resumed = make_dropout_run(max_epochs=4, shuffle_seed=99, init_seed=5)
    torch.manual_seed(12345)
    history = resumed.fit(resume_from=path)

    assert resumed.step == uninterrupted.step == 4 * 12 and resumed.epoch == 4
    for (name, a), b in zip(uninterrupted.model.state_dict().items(),
                            resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert comparable(history) == comparable(full_history)
    assert resumed.optimizer.param_groups[0]["lr"] == uninterrupted.optimizer.param_groups[0]["lr"]
    # the control: without restoring the sampler's generator the run differs
    control = make_dropout_run(max_epochs=4, shuffle_seed=99)
    state = torch.load(path, weights_only=True)
    state["rng"]["loader"] = [control.train_loader.generator.get_state()]
    control.load_state_dict(state)
    control.fit()
    assert not torch.equal(control.model[0].weight, uninterrupted.model[0].weight)


def test_checkpoint_callback_resumes_from_an_epoch_boundary(tmp_path):
    saver = Checkpoint(tmp_path / "epoch{epoch}.pt", every=2)
    uninterrupted = make_dropout_run(max_epochs=4)
    uninterrupted.callbacks.append(saver)
    uninterrupted.fit()
    assert [os.path.basename(p) for p in saver.saved] == ["epoch2.pt", "epoch4.pt"]

    resumed = make_dropout_run(max_epochs=4, shuffle_seed=3, init_seed=3)
    resumed.fit(resume_from=tmp_path / "epoch2.pt")
    for a, b in zip(uninterrupted.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)


def test_checkpoint_contents_load_with_weights_only(tmp_path):
    trainer = make_dropout_run(max_epochs=1)
    trainer.fit()
    trainer.save_checkpoint(tmp_path / "sub" / "c.pt")  # the folder is created
    state = torch.load(tmp_path / "sub" / "c.pt", weights_only=True)
    assert state["format"] == "qkvcourse.trainer/1"
    assert state["step"] == 12 and state["epoch"] == 1
    assert set(state["rng"]) == {"torch", "cuda", "python", "numpy", "loader"}
    assert len(state["rng"]["loader"]) == 1  # DataLoader and sampler share one generator
    assert state["scheduler"]["last_epoch"] == 12
    assert state["config"]["device"] == "cpu"


def test_checkpoint_is_written_atomically(tmp_path, monkeypatch):
    trainer = make_dropout_run(max_epochs=1)
    trainer.fit()
    path = tmp_path / "ckpt.pt"
    trainer.save_checkpoint(path)
    good = path.read_bytes()

    def failing_save(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")  # some bytes reach the disk, then the save dies
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    trainer.fit()  # nothing to do (max_epochs reached) but make the state differ anyway
    trainer.step += 1
    with pytest.raises(OSError, match="disk full"):
        trainer.save_checkpoint(path)
    assert path.read_bytes() == good  # the old checkpoint is intact
    with pytest.raises(OSError, match="disk full"):
        trainer.save_checkpoint(tmp_path / "new.pt")
    assert sorted(os.listdir(tmp_path)) == ["ckpt.pt"]  # no partial file, no temporary left


def test_load_checkpoint_rejects_other_files(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"model": {}}, path)
    trainer = make_dropout_run(max_epochs=1)
    with pytest.raises(ValueError, match="not a qkvcourse trainer checkpoint"):
        trainer.load_checkpoint(path)


# -- performance switches ----------------------------------------------------------------------

@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_falls_back_to_fp32_on_cpu(precision):
    train, _ = loaders()
    seen = []

    def loss_fn(model, batch):
        out = model(batch[0])
        seen.append(out.dtype)
        return F.cross_entropy(out, batch[1])

    trainer = Trainer(make_model(), loss_fn, train, config=cfg(precision=precision, max_epochs=1))
    assert trainer.settings["precision"] == "fp32"
    assert trainer.settings["autocast_dtype"] is None and trainer.grad_scaler is None
    assert any(precision in note and "fp32" in note for note in trainer.settings["notes"])
    trainer.fit()
    assert seen and set(seen) == {torch.float32}


def test_auto_precision_is_fp32_on_cpu_without_notes():
    train, _ = loaders()
    trainer = Trainer(make_model(), classification_loss, train, config=cfg(precision="auto"))
    assert trainer.settings["precision"] == "fp32" and trainer.settings["notes"] == []


def test_compile_is_ignored_on_cpu(monkeypatch):
    def no_compile(*args, **kwargs):
        raise AssertionError("torch.compile must not be called on the CPU")

    monkeypatch.setattr(torch, "compile", no_compile)
    train, _ = loaders()
    trainer = Trainer(make_model(), classification_loss, train,
                      config=cfg(compile=True, max_epochs=1))
    assert trainer.settings["compile"] is False
    assert any("compile=True ignored" in note for note in trainer.settings["notes"])
    assert trainer.train_model is trainer.model
    trainer.fit()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_switches_on():
    train, val = loaders()
    seen = []

    def loss_fn(model, batch):
        out = model(batch[0])
        seen.append(out.dtype)
        return F.cross_entropy(out.float(), batch[1])

    trainer = Trainer(make_model(), loss_fn, train, val, config=cfg(device="cuda", max_epochs=3))
    assert trainer.settings["fused_optimizer"] is True
    expected = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(trainer.settings["precision"],
                                                                   torch.float32)
    history = trainer.fit()
    assert set(seen) == {expected}
    assert history["val_loss"][-1] < history["val_loss"][0]
    fp16 = Trainer(make_model(), loss_fn, train, config=cfg(device="cuda", precision="fp16",
                                                            grad_clip_norm=1.0, max_epochs=2))
    assert fp16.grad_scaler is not None and fp16.settings["precision"] == "fp16"
    assert fp16.fit()["epoch_train_loss"][-1] < fp16.history["epoch_train_loss"][0]


def test_bad_config():
    with pytest.raises(ValueError, match=r"precision must be one of .*got 'fp8'"):
        TrainerConfig(precision="fp8")
    with pytest.raises(ValueError, match="grad_clip_norm must be None or > 0, got 0"):
        TrainerConfig(grad_clip_norm=0)
    with pytest.raises(ValueError, match="max_steps must be None or an integer >= 1, got 0"):
        TrainerConfig(max_steps=0)
    with pytest.raises(ValueError, match="max_steps must be None or an integer >= 1, got True"):
        TrainerConfig(max_steps=True)  # a bool is not a step count
    with pytest.raises(ValueError, match="log_every must be an integer >= 1, got True"):
        TrainerConfig(log_every=True)
    with pytest.raises(ValueError, match="log_every must be an integer >= 1, got 0"):
        TrainerConfig(log_every=0)
    with pytest.raises(ValueError, match="progress must be 'auto', True or False, got 'yes'"):
        TrainerConfig(progress="yes")


# -- batches -----------------------------------------------------------------------------------

Pair = namedtuple("Pair", "src tgt")


@pytest.mark.parametrize("device", DEVICES, ids=str)
def test_move_to_device_handles_nested_batches(device):
    batch = {"pair": Pair(torch.ones(3, 2), [torch.zeros(3), "text"]),
             "lens": (torch.tensor([1, 2, 3]), 7, None)}
    moved = move_to_device(batch, device)
    assert type(moved) is dict and isinstance(moved["pair"], Pair)
    assert isinstance(moved["pair"].tgt, list) and isinstance(moved["lens"], tuple)
    assert moved["pair"].tgt[1] == "text" and moved["lens"][1:] == (7, None)
    for t in (moved["pair"].src, moved["pair"].tgt[0], moved["lens"][0]):
        assert t.device.type == torch.device(device).type
    torch.testing.assert_close(moved["lens"][0].cpu(), batch["lens"][0])


def test_batch_size_is_the_first_dimension_of_the_first_tensor():
    assert batch_size_of({"ids": (torch.zeros(5, 2), torch.zeros(7))}) == 5
    assert batch_size_of(["no tensors", 3]) == 1
    assert batch_size_of(torch.tensor(2.0)) == 1


def test_trainer_moves_dict_batches_and_calls_loss_fn_with_model():
    X, y = make_blobs(32)
    data = [{"inputs": (X[i:i + 8],), "labels": y[i:i + 8]} for i in range(0, 32, 8)]
    calls = []

    def loss_fn(model, batch):
        calls.append((type(batch), batch["inputs"][0].device.type))
        return F.cross_entropy(model(batch["inputs"][0]), batch["labels"])

    trainer = Trainer(make_model(), loss_fn, data, config=cfg(max_epochs=1))
    trainer.fit()
    assert calls == [(dict, "cpu")] * 4


def test_loss_fn_must_return_a_scalar():
    train, _ = loaders()

    def per_example(model, batch):
        return F.cross_entropy(model(batch[0]), batch[1], reduction="none")

    trainer = Trainer(make_model(), per_example, train, config=cfg(max_epochs=1))
    with pytest.raises(ValueError, match=r"loss_fn must return a 0-dim .*shape \(16,\)"):
        trainer.fit()
    trainer = Trainer(make_model(), lambda m, b: 0.5, train, config=cfg(max_epochs=1))
    with pytest.raises(TypeError, match="loss_fn must return a tensor, got float"):
        trainer.fit()


def test_non_finite_loss_is_an_error():
    train, _ = loaders()

    def exploding(model, batch):
        return classification_loss(model, batch) * float("nan")

    model = make_model()
    before = [p.detach().clone() for p in model.parameters()]
    trainer = Trainer(model, exploding, train, config=cfg(max_epochs=1, log_every=4))
    # On the CPU the loss is read at every step (free): training stops at step 1, before the
    # optimiser has seen it (on an accelerator, at the end of the logging window instead).
    with pytest.raises(FloatingPointError, match="at step 1, before its optimiser step"):
        trainer.fit()
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


# -- evaluation --------------------------------------------------------------------------------

def test_evaluate_weights_batches_by_size():
    values = torch.arange(10, dtype=torch.float32)
    loader = DataLoader(TensorDataset(values), batch_size=4)  # batches of 4, 4 and 2

    def batch_mean(model, batch):
        return batch[0].mean()

    trainer = Trainer(make_model(), batch_mean, loader, config=cfg())
    result = trainer.evaluate(loader)
    assert result == pytest.approx(4.5, rel=1e-12)  # the mean over examples
    unweighted = (1.5 + 5.5 + 8.5) / 3
    assert abs(result - unweighted) > 0.5


def test_evaluate_uses_eval_mode_and_restores_it():
    train, val = loaders()
    modes = []

    def loss_fn(model, batch):
        modes.append(model.training)
        return classification_loss(model, batch)

    trainer = Trainer(make_model(dropout=0.5), loss_fn, train, config=cfg())
    trainer.model.train()
    first, second = trainer.evaluate(val), trainer.evaluate(val)
    assert first == second and not any(modes) and trainer.model.training
    accuracy = trainer.evaluate(val, fn=lambda m, b: (m(b[0]).argmax(-1) == b[1]).float().mean())
    assert 0.0 <= accuracy <= 1.0
    with pytest.raises(ValueError, match="loader yielded no batches"):
        trainer.evaluate([])


# -- callbacks ---------------------------------------------------------------------------------

class Recorder(Callback):
    def __init__(self):
        self.calls = []

    def on_fit_start(self, trainer):
        self.calls.append(("fit_start", trainer.step))

    def on_train_batch_end(self, trainer, step, loss):
        assert isinstance(loss, torch.Tensor) and loss.dim() == 0 and not loss.requires_grad
        self.calls.append(("batch", step, float(loss)))

    def on_epoch_end(self, trainer, epoch, metrics):
        self.calls.append(("epoch", epoch, dict(metrics)))

    def on_fit_end(self, trainer):
        self.calls.append(("fit_end", trainer.step))


def test_callbacks_called_in_order_with_arguments():
    train, val = loaders(batch_size=32)  # 3 batches per epoch
    losses = []

    def loss_fn(model, batch):
        loss = classification_loss(model, batch)
        if model.training:
            losses.append(loss.item())
        return loss

    first, second = Recorder(), Recorder()
    trainer = Trainer(make_model(), loss_fn, train, val, callbacks=[first, second],
                      config=cfg(max_epochs=2))
    history = trainer.fit()
    calls = first.calls
    assert first.calls == second.calls
    assert [c[0] for c in calls] == ["fit_start"] + (["batch"] * 3 + ["epoch"]) * 2 + ["fit_end"]
    assert [c[1] for c in calls if c[0] == "batch"] == [1, 2, 3, 4, 5, 6]
    assert [c[2] for c in calls if c[0] == "batch"] == pytest.approx(losses, rel=1e-6)
    epochs = [c for c in calls if c[0] == "epoch"]
    assert [e[1] for e in epochs] == [1, 2]
    for i, (_, epoch, metrics) in enumerate(epochs):
        assert list(metrics) == ["epoch", "step", "train_loss", "val_loss", "lr"]
        assert metrics["epoch"] == epoch and metrics["step"] == 3 * epoch
        assert metrics["val_loss"] == history["val_loss"][i]
        assert metrics["train_loss"] == history["epoch_train_loss"][i]
    # the epoch's train loss is the size-weighted mean of its batch losses (32, 32, 32)
    assert epochs[0][2]["train_loss"] == pytest.approx(sum(losses[:3]) / 3, rel=1e-6)
    assert epochs[-1][2]["val_loss"] == pytest.approx(trainer.evaluate(val), rel=1e-12)
    assert calls[0] == ("fit_start", 0) and calls[-1] == ("fit_end", 6)


def test_max_steps_is_respected():
    train, val = loaders(batch_size=16)  # 6 batches per epoch
    recorder = Recorder()
    trainer = Trainer(make_model(), classification_loss, train, val, callbacks=[recorder],
                      config=cfg(max_epochs=5, max_steps=8))
    history = trainer.fit()
    assert trainer.step == 8
    assert len([c for c in recorder.calls if c[0] == "batch"]) == 8
    assert history["epoch"] == [1, 2] and history["epoch_end_step"] == [6, 8]
    assert trainer.optimizer.state[trainer.model[0].weight]["step"].item() == 8
    trainer.fit()  # already at max_steps: nothing more happens
    assert trainer.step == 8


def test_max_epochs_counts_in_total_when_fit_again():
    train, _ = loaders(batch_size=32)
    trainer = Trainer(make_model(), classification_loss, train, config=cfg(max_epochs=2))
    trainer.fit()
    trainer.config.max_epochs = 3
    trainer.fit()
    assert trainer.epoch == 3 and trainer.step == 9 and trainer.history["epoch"] == [1, 2, 3]


def test_early_stopping():
    train, val = loaders(batch_size=32)
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # the validation loss never moves
    stopper = EarlyStopping(patience=2)
    trainer = Trainer(model, classification_loss, train, val, optimizer=optimizer,
                      callbacks=[stopper], config=cfg(max_epochs=10))
    history = trainer.fit()
    assert history["epoch"] == [1, 2, 3] and stopper.bad_epochs == 2
    with pytest.raises(KeyError, match="'accuracy'.*not among"):
        Trainer(make_model(), classification_loss, train, val,
                callbacks=[EarlyStopping(monitor="accuracy")], config=cfg(max_epochs=1)).fit()


def test_print_metrics(capsys):
    train, val = loaders(batch_size=32)
    trainer = Trainer(make_model(), classification_loss, train, val, callbacks=[PrintMetrics()],
                      config=cfg(max_epochs=2))
    history = trainer.fit()
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    assert lines[1] == (f"epoch 2/2  step      6  train_loss {history['epoch_train_loss'][1]:.4f}"
                        f"  val_loss {history['val_loss'][1]:.4f}  lr 1.00e-03")


def test_progress_is_off_when_not_a_terminal(capsys):
    train, _ = loaders(batch_size=32)
    Trainer(make_model(), classification_loss, train, config=cfg(max_epochs=1)).fit()
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_progress_bar_when_asked(capsys):
    train, _ = loaders(batch_size=32)
    Trainer(make_model(), classification_loss, train,
            config=cfg(max_epochs=2, progress=True)).fit()
    err = capsys.readouterr().err
    assert "6/6" in err and "loss=" in err


def test_loss_curve_plot_returns_a_figure():
    assert matplotlib.get_backend().lower() == "agg"
    train, val = loaders(batch_size=32)
    curve = LossCurve(live=True)  # live does nothing outside a notebook
    with pytest.raises(ValueError, match="nothing to plot"):
        curve.plot()
    trainer = Trainer(make_model(), classification_loss, train, val, callbacks=[curve],
                      config=cfg(max_epochs=3))
    history = trainer.fit()
    figure = curve.plot()
    assert isinstance(figure, matplotlib.figure.Figure)
    train_line, val_line = figure.axes[0].get_lines()
    assert list(train_line.get_xdata()) == history["step"]
    assert list(train_line.get_ydata()) == pytest.approx(history["train_loss"])
    assert list(val_line.get_xdata()) == [3, 6, 9]
    assert list(val_line.get_ydata()) == pytest.approx(history["val_loss"])
    matplotlib.pyplot.close(figure)


def test_loss_curve_live_updates_one_display(monkeypatch):
    from IPython import display as ipython_display

    from qkvcourse import callbacks as callbacks_module

    shown = []

    class Handle:
        def update(self, obj):
            shown.append(("update", obj))

    def fake_display(obj, display_id=False):
        shown.append(("display", obj))
        return Handle()

    monkeypatch.setattr(callbacks_module, "_in_notebook", lambda: True)
    monkeypatch.setattr(ipython_display, "display", fake_display)
    train, val = loaders(batch_size=32)
    curve = LossCurve(live=True, live_every_steps=2)
    Trainer(make_model(), classification_loss, train, val, callbacks=[curve],
            config=cfg(max_epochs=2)).fit()
    # steps 2, 4, 6 and the ends of epochs 1 and 2: one display, then updates in place
    assert [kind for kind, _ in shown] == ["display"] + ["update"] * 4
    assert all(isinstance(obj, ipython_display.Image) and obj.data[:8] == b"\x89PNG\r\n\x1a\n"
               for _, obj in shown)
