"""DistributedDataParallel in the trainer: two CPU processes under torchrun (gloo).

One ``python -m torch.distributed.run --nproc_per_node=2`` launch runs this file as a
script (the ``__main__`` block at the end): each rank trains, evaluates and saves in a
few scenarios and writes what it saw to ``rank{r}.pt``. The tests then compare those
results with single-process references computed here: W=2 processes with batch b must
end with the weights of one process trained on the same global batches of 2b.
"""
from __future__ import annotations

import contextlib
import faulthandler
import io
import os
import signal
import socket
import subprocess
import sys
import warnings
import weakref

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from qkvcourse import distributed as ddp_utils
from qkvcourse.distributed import ShardSampler, distributed_loader
from qkvcourse.callbacks import Callback, Checkpoint, PrintMetrics
from qkvcourse.trainer import Trainer, TrainerConfig

WORLD = 2  # processes
B = 4  # batch per process; the global batch is B * WORLD
N_TRAIN = 48  # a multiple of B * WORLD: no padding, 6 steps per epoch
N_VAL = 41  # odd: the evaluation shards are uneven (21 and 20)
EPOCHS = 2
SEED = 3  # the sampler's seed
TORCHRUN_TIMEOUT_S = 120  # a hang fails the test instead of blocking CI
WORKER_WATCHDOG_S = 100  # a hung worker prints every thread's stack and exits
TORCHRUN_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                      "MASTER_PORT", "GROUP_RANK", "TORCHELASTIC_RUN_ID")


# -- the task (shared by the workers and the references) --------------------------------------

def blobs(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    centres = torch.tensor([[-1.0, 1.0, 0.0, 0.5], [1.0, -1.0, 0.5, -0.5]])
    return centres[y] + 0.8 * torch.randn(n, 4, generator=g), y


def train_set():
    return TensorDataset(*blobs(N_TRAIN, seed=0))


def val_set():
    return TensorDataset(*blobs(N_VAL, seed=1))


def make_model():
    torch.manual_seed(0)  # no dropout: training is deterministic
    return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 2))


def classification_loss(model, batch):
    X, y = batch
    return F.cross_entropy(model(X), y)  # the mean over this process's batch


def make_optimizer(kind, model):
    if kind == "sgd":
        return torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    return torch.optim.AdamW(model.parameters(), lr=1e-2)


RUNS = {"sgd": dict(grad_clip_norm=0.3), "adamw": dict(grad_clip_norm=None)}


class LocalLosses(Callback):
    """Each rank's own batch losses (runs on every rank)."""

    all_ranks = True

    def __init__(self):
        self.losses = []

    def on_train_batch_end(self, trainer, step, loss):
        self.losses.append(float(loss))


class StopAt(Callback):
    """Asks to stop after ``step`` (runs on rank 0 only, the default)."""

    def __init__(self, step):
        self.step = step

    def on_train_batch_end(self, trainer, step, loss):
        if step == self.step:
            trainer.should_stop = True


def config(**kwargs):
    kwargs.setdefault("device", "cpu")
    kwargs.setdefault("log_every", 3)
    kwargs.setdefault("max_epochs", EPOCHS)
    return TrainerConfig(**kwargs)


class Branchy(nn.Module):
    """A model with a parameter that never gets a gradient (needs find_unused_parameters)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.used, self.unused = nn.Linear(4, 2), nn.Linear(4, 2)

    def forward(self, X):
        return self.used(X)


class FirstDraw(Callback):
    """Records a draw from the global RNG right after fit() seeds it (on every rank)."""

    all_ranks = True

    def on_fit_start(self, trainer):
        self.draw = torch.rand(4)


# -- the worker: one process of the torchrun launch -------------------------------------------

def worker(out_dir):
    faulthandler.dump_traceback_later(WORKER_WATCHDOG_S, exit=True)
    torch.set_num_threads(1)
    rank = ddp_utils.get_rank()
    result, trainers = {}, {}
    for name, options in RUNS.items():
        model = make_model()
        local = LocalLosses()
        callbacks = [local, PrintMetrics()]
        if name == "sgd":
            saver = Checkpoint(os.path.join(out_dir, "ckpt.pt"))
            callbacks.append(saver)
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            trainer = Trainer(model, classification_loss,
                              distributed_loader(train_set(), B, shuffle=True, seed=SEED),
                              distributed_loader(val_set(), B, shuffle=False, even_shards=False),
                              optimizer=make_optimizer(name, model), callbacks=callbacks,
                              config=config(progress=True, **options))
            history = trainer.fit()
        trainers[name] = trainer
        result[name] = {
            "state": {k: v.clone() for k, v in model.state_dict().items()},
            "history": history, "local_losses": local.losses, "settings": trainer.settings,
            "stdout": stdout.getvalue(), "stderr": stderr.getvalue(),
            "step": trainer.step, "is_ddp": isinstance(trainer.train_model,
                                                       nn.parallel.DistributedDataParallel),
            "saved": list(saver.saved) if name == "sgd" else None,
        }
    trainer = trainers["sgd"]  # the first trainer: it created the process group
    assert trainer._owns_process_group and not trainers["adamw"]._owns_process_group
    # every rank asks to write; only rank 0 does
    trainer.save_checkpoint(os.path.join(out_dir, f"direct_rank{rank}.pt"))

    # evaluation over uneven shards, and over DistributedSampler's padded ones
    exact = distributed_loader(val_set(), B, shuffle=False, even_shards=False)
    padded = distributed_loader(val_set(), B, shuffle=False, even_shards=True)
    own = [classification_loss(trainer.model, batch).item() * len(batch[1]) for batch in exact]
    result["eval"] = {"exact": trainer.evaluate(exact), "padded": trainer.evaluate(padded),
                      "unsharded": trainer.evaluate(DataLoader(val_set(), batch_size=B)),
                      "own_mean": sum(own) / len(exact.sampler),
                      "own_indices": list(exact.sampler)}

    # a stop asked for on rank 0 alone; a plain DataLoader is not sharded (a warning)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plain = DataLoader(train_set(), batch_size=B)
        stopper = Trainer(make_model(), classification_loss, plain, callbacks=[StopAt(5)],
                          config=config(log_every=2, max_epochs=3))
    stopper.fit()
    result["stop"] = {"step": stopper.step, "epoch": stopper.epoch,
                      "should_stop": stopper.should_stop, "notes": stopper.settings["notes"],
                      "warnings": [str(w.message) for w in caught]}
    # a parameter without gradient, and each rank's own random stream
    branchy, draw = Branchy(), FirstDraw()
    unused = Trainer(branchy, classification_loss,
                     distributed_loader(train_set(), B, shuffle=True, seed=SEED), callbacks=[draw],
                     config=config(max_epochs=1, find_unused_parameters=True))
    unused.fit()
    result["unused"] = {"step": unused.step, "draw": draw.draw,
                        "grad_is_none": branchy.unused.weight.grad is None}
    torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    stopper.close()  # it did not create the group: the group stays
    result["open_after_others_closed"] = ddp_utils.is_initialized()
    released = weakref.ref(trainers["adamw"].train_model)
    trainer.close()  # it created the group: it releases every DDP module, then the group
    result["closed"] = not ddp_utils.is_initialized()
    result["adamw_released"] = not trainers["adamw"].distributed and released() is None
    torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    faulthandler.cancel_dump_traceback_later()


# -- running the workers ----------------------------------------------------------------------

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_environment(**extra):
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARIABLES}
    env.update(OMP_NUM_THREADS="1", PYTHONHASHSEED="0", **extra)
    return env


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """Launch two CPU processes with torchrun; returns their results and the folder."""
    out = tmp_path_factory.mktemp("ddp")
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1",
               f"--nproc_per_node={WORLD}", "--master_addr=127.0.0.1",
               f"--master_port={free_port()}", __file__, str(out)]
    log_path = out / "torchrun.log"  # a file, not a pipe: nothing blocks on a stray writer
    with open(log_path, "w") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT,
                                   env=clean_environment())
        try:
            process.wait(timeout=TORCHRUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGTERM)  # torchrun passes it on to its workers
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            pytest.fail(f"torchrun did not finish in {TORCHRUN_TIMEOUT_S} s:\n"
                        f"{log_path.read_text()[-3000:]}")
    assert process.returncode == 0, f"torchrun failed:\n{log_path.read_text()[-5000:]}"
    results = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    return results, out


# -- single-process references ----------------------------------------------------------------

def reference_training(kind, global_batch=B * WORLD, seed=SEED, clip=None):
    """A plain loop, without Trainer or samplers: the permutation of DistributedSampler's
    documented order (randperm seeded by seed + epoch), cut into global batches."""
    model = make_model()
    optimizer = make_optimizer(kind, model)
    X, y = train_set().tensors
    for epoch in range(EPOCHS):
        order = torch.randperm(N_TRAIN, generator=torch.Generator().manual_seed(seed + epoch))
        for start in range(0, N_TRAIN, global_batch):
            idx = order[start:start + global_batch]
            loss = F.cross_entropy(model(X[idx]), y[idx])  # the mean over the global batch
            optimizer.zero_grad()
            loss.backward()
            if clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()
    return model.state_dict()


def max_difference(a, b):
    return max((a[k] - b[k]).abs().max().item() for k in a)


# -- the torchrun run -------------------------------------------------------------------------

@pytest.mark.parametrize("kind", list(RUNS))
def test_two_processes_match_one_process_on_the_global_batch(ranks, kind):
    results, _ = ranks
    first, second = (r[kind] for r in results)
    assert first["is_ddp"] and second["is_ddp"]
    assert first["settings"]["distributed"] == {"backend": "gloo", "rank": 0, "world_size": 2,
                                                "local_rank": 0}
    assert second["settings"]["distributed"]["rank"] == 1
    assert first["step"] == EPOCHS * N_TRAIN // (B * WORLD)  # per-rank batches of B
    for k in first["state"]:  # DDP keeps the copies identical
        assert torch.equal(first["state"][k], second["state"][k]), k
    expected = reference_training(kind, clip=RUNS[kind]["grad_clip_norm"])
    for k, v in expected.items():
        torch.testing.assert_close(first["state"][k], v, rtol=0, atol=1e-6)
    # the controls: another order, or each rank's batch alone, ends elsewhere
    assert max_difference(reference_training(kind, seed=SEED + 10,
                                             clip=RUNS[kind]["grad_clip_norm"]),
                          first["state"]) > 1e-3
    assert max_difference(reference_training(kind, global_batch=B,
                                             clip=RUNS[kind]["grad_clip_norm"]),
                          first["state"]) > 1e-3


def test_gradient_clipping_was_active(ranks):
    # the reference with a clip differs from the one without: clipping mattered, and the
    # DDP run (compared above within 1e-6) clipped the averaged gradient
    clipped = reference_training("sgd", clip=RUNS["sgd"]["grad_clip_norm"])
    assert max_difference(clipped, reference_training("sgd")) > 1e-3


def test_one_process_trainer_on_the_global_batch_agrees(ranks):
    results, _ = ranks
    model = make_model()
    trainer = Trainer(model, classification_loss,
                      distributed_loader(train_set(), B * WORLD, shuffle=True, seed=SEED),
                      optimizer=make_optimizer("sgd", model),
                      config=config(grad_clip_norm=RUNS["sgd"]["grad_clip_norm"]))
    assert trainer.settings["distributed"] is None
    trainer.fit()
    for k, v in model.state_dict().items():
        torch.testing.assert_close(results[0]["sgd"]["state"][k], v, rtol=0, atol=1e-6)


def test_logged_losses_are_averaged_over_ranks(ranks):
    results, _ = ranks
    for kind in RUNS:
        first, second = (r[kind] for r in results)
        assert first["history"]["step"] == second["history"]["step"] == [3, 6, 9, 12]
        for key in ("train_loss", "epoch_train_loss", "val_loss"):
            assert first["history"][key] == second["history"][key], key
        a, b = first["local_losses"], second["local_losses"]
        assert a != b  # the ranks read different shards
        means = [(sum(a[i:i + 3]) + sum(b[i:i + 3])) / 6 for i in range(0, 12, 3)]
        assert first["history"]["train_loss"] == pytest.approx(means, rel=1e-6)
        per_epoch = [(sum(a[i:i + 6]) + sum(b[i:i + 6])) / 12 for i in (0, 6)]
        assert first["history"]["epoch_train_loss"] == pytest.approx(per_epoch, rel=1e-6)


def test_only_rank_zero_prints_shows_progress_and_writes(ranks):
    results, out = ranks
    first, second = results[0]["sgd"], results[1]["sgd"]
    lines = first["stdout"].strip().splitlines()
    assert len(lines) == EPOCHS and lines[-1].startswith(f"epoch {EPOCHS}/{EPOCHS}")
    assert second["stdout"] == ""
    assert "loss=" in first["stderr"] and "loss=" not in second["stderr"]
    assert first["saved"] == [str(out / "ckpt.pt")] * EPOCHS and second["saved"] == []
    assert (out / "direct_rank0.pt").exists() and not (out / "direct_rank1.pt").exists()
    assert not [name for name in os.listdir(out) if name.startswith(".tmp")]
    # the checkpoint holds the plain model (no "module." prefix) and loads in one process
    state = torch.load(out / "ckpt.pt", weights_only=True)
    assert list(state["model"]) == list(make_model().state_dict())
    assert state["step"] == EPOCHS * N_TRAIN // (B * WORLD)
    model = make_model()
    single = Trainer(model, classification_loss,
                     distributed_loader(train_set(), B * WORLD, seed=SEED),
                     optimizer=make_optimizer("sgd", model), config=config())
    single.load_checkpoint(out / "ckpt.pt")
    for k, v in model.state_dict().items():
        assert torch.equal(v, first["state"][k]), k


def test_evaluate_averages_over_uneven_shards(ranks):
    results, _ = ranks
    first, second = (r["eval"] for r in results)
    # ShardSampler: 21 and 20 examples, each once
    assert first["own_indices"] == list(range(0, N_VAL, 2))
    assert second["own_indices"] == list(range(1, N_VAL, 2))
    model = make_model()
    model.load_state_dict(results[0]["sgd"]["state"])
    X, y = val_set().tensors
    with torch.no_grad():
        per_example = F.cross_entropy(model(X), y, reduction="none").double()
    exact = per_example.mean().item()
    assert first["exact"] == second["exact"] == pytest.approx(exact, rel=1e-6)
    assert first["unsharded"] == pytest.approx(exact, rel=1e-6)  # every rank read everything
    # the control: each rank's own mean differs, so the all-reduce mattered
    assert abs(first["own_mean"] - exact) > 1e-4 and abs(second["own_mean"] - exact) > 1e-4
    assert (21 * first["own_mean"] + 20 * second["own_mean"]) / N_VAL == \
        pytest.approx(exact, rel=1e-6)
    # DistributedSampler pads 41 to 42 by repeating index 0: that example counts twice
    padded = torch.cat([per_example, per_example[:1]]).mean().item()
    assert first["padded"] == pytest.approx(padded, rel=1e-6) != pytest.approx(exact, rel=1e-6)
    # the validation losses in the history are the exact ones, too
    assert results[0]["sgd"]["history"]["val_loss"][-1] == pytest.approx(exact, rel=1e-6)


def test_a_stop_on_rank_zero_stops_every_rank_at_the_next_log_point(ranks):
    results, _ = ranks
    first, second = (r["stop"] for r in results)
    # StopAt(5) runs on rank 0 only; the ranks agree at step 6 (log_every=2)
    assert first["step"] == second["step"] == 6
    assert first["epoch"] == second["epoch"] == 1
    assert first["should_stop"] and second["should_stop"]
    assert any("distributed_loader" in note for note in first["notes"])
    assert any("without a DistributedSampler" in w for w in first["warnings"])
    assert second["warnings"] == []  # only rank 0 warns


def test_the_trainer_destroys_the_group_it_created(ranks):
    results, _ = ranks
    for result in results:
        assert result["open_after_others_closed"] and result["closed"]
        assert result["adamw_released"]  # the DDP module went before the group did


# -- one process ------------------------------------------------------------------------------

@pytest.fixture
def no_torchrun(monkeypatch):
    for name in TORCHRUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def small_run(**kwargs):
    model = make_model()
    trainer = Trainer(model, classification_loss,
                      DataLoader(train_set(), batch_size=8, shuffle=True,
                                 generator=torch.Generator().manual_seed(1)),
                      DataLoader(val_set(), batch_size=8),
                      optimizer=make_optimizer("adamw", model), config=config(**kwargs))
    return trainer, trainer.fit()


def test_single_process_is_unchanged_without_torchrun(no_torchrun):
    auto, auto_history = small_run()
    off, off_history = small_run(distributed="off")
    for trainer in (auto, off):
        assert trainer.settings["distributed"] is None and trainer.train_model is trainer.model
        assert trainer.eval_model is trainer.model and not trainer.distributed
        assert (trainer.rank, trainer.world_size, trainer.is_main_process) == (0, 1, True)
        assert trainer.settings["notes"] == []
    for a, b in zip(auto.model.parameters(), off.model.parameters()):
        assert torch.equal(a, b)
    drop = ("epoch_seconds",)
    assert {k: v for k, v in auto_history.items() if k not in drop} == \
        {k: v for k, v in off_history.items() if k not in drop}
    auto.close()  # nothing to close
    assert not ddp_utils.is_initialized()


def test_auto_needs_more_than_one_process(monkeypatch, no_torchrun):
    for name, value in dict(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                            MASTER_PORT="1").items():
        monkeypatch.setenv(name, value)  # torchrun --nproc_per_node=1
    trainer, _ = small_run(max_epochs=1)
    assert trainer.settings["distributed"] is None and not ddp_utils.is_initialized()


def test_on_without_torchrun_is_an_error(no_torchrun):
    with pytest.raises(RuntimeError, match=r"distributed='on'.*torchrun --nproc_per_node"):
        small_run(distributed="on")


def test_bad_distributed_setting():
    with pytest.raises(ValueError, match=r"distributed must be one of .*got 'yes'"):
        TrainerConfig(distributed="yes")


def test_a_world_of_one_process_in_this_process(monkeypatch, no_torchrun):
    """distributed='on' with torchrun's variables for W=1: the trainer creates a gloo
    group, trains through DDP exactly like one plain process, and destroys the group."""
    for name, value in dict(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                            MASTER_PORT=str(free_port())).items():
        monkeypatch.setenv(name, value)
    plain, plain_history = small_run(distributed="off")
    wrapped = None
    try:
        with pytest.warns(UserWarning, match="without a DistributedSampler"):
            wrapped, history = small_run(distributed="on")
        assert isinstance(wrapped.train_model, nn.parallel.DistributedDataParallel)
        assert wrapped.eval_model is wrapped.model
        assert wrapped.settings["distributed"] == {"backend": "gloo", "rank": 0,
                                                   "world_size": 1, "local_rank": 0}
        assert any("without a DistributedSampler" in n for n in wrapped.settings["notes"])
        for a, b in zip(plain.model.parameters(), wrapped.model.parameters()):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
        assert history["val_loss"] == pytest.approx(plain_history["val_loss"], rel=1e-6)
        # a group that exists already is used, and left alone by close()
        with pytest.warns(UserWarning, match="without a DistributedSampler"):
            user, _ = small_run(max_epochs=1)
        assert user.settings["distributed"] is not None and not user._owns_process_group
        user.close()
        assert ddp_utils.is_initialized()
        module = weakref.ref(wrapped.train_model)
        wrapped.close()  # it created the group: it releases DDP, then destroys the group
        assert not ddp_utils.is_initialized() and module() is None
        assert wrapped.train_model is wrapped.model and not wrapped.distributed
        assert wrapped.evaluate(wrapped.val_loader) == pytest.approx(history["val_loss"][-1])
    finally:
        ddp_utils.shutdown_distributed()  # whatever failed above, leave no group behind


def test_gpt_finetuning_through_ddp_matches_one_plain_process(monkeypatch, no_torchrun):
    """qc.gpt_finetune_loss under distributed='on' (a world of one): the trainer passes the
    DDP wrapper to the loss, which used to refuse it ("model must be a GPTClassifier, got
    DistributedDataParallel"); now it trains exactly as one plain process does."""
    import qkvcourse as qc
    from qkvcourse.finetune import GPTClassifier, gpt_finetune_loss
    for name, value in dict(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                            MASTER_PORT=str(free_port())).items():
        monkeypatch.setenv(name, value)

    def run(distributed):
        torch.manual_seed(0)
        gpt = qc.GPT(qc.GPTConfig(12, max_len=8, num_layers=1, num_heads=2, d_model=8,
                                  dropout=0.0))
        model = GPTClassifier(gpt, 2)
        g = torch.Generator().manual_seed(0)
        idx = torch.randint(0, 12, (16, 6), generator=g)
        data = TensorDataset(idx, torch.full((16,), 6), torch.randint(0, 2, (16,), generator=g))
        trainer = Trainer(model, gpt_finetune_loss, DataLoader(data, batch_size=8),
                          optimizer=torch.optim.AdamW(model.parameters(), lr=1e-3),
                          config=config(max_epochs=2, distributed=distributed))
        history = trainer.fit()
        wrapped = isinstance(trainer.train_model, nn.parallel.DistributedDataParallel)
        trainer.close()
        return model, history, wrapped

    try:
        plain, plain_history, _ = run("off")
        with pytest.warns(UserWarning, match="without a DistributedSampler"):
            ddp, ddp_history, wrapped = run("on")
        assert wrapped
        for a, b in zip(plain.parameters(), ddp.parameters()):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
        assert ddp_history["train_loss"] == pytest.approx(plain_history["train_loss"], rel=1e-6)
    finally:
        ddp_utils.shutdown_distributed()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_nccl_on_cuda_world_of_one(monkeypatch, no_torchrun):
    for name, value in dict(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                            MASTER_PORT=str(free_port())).items():
        monkeypatch.setenv(name, value)
    model = make_model()
    with Trainer(model, classification_loss, distributed_loader(train_set(), 8, seed=SEED),
                 optimizer=make_optimizer("sgd", model),
                 config=config(device="cuda", distributed="on", precision="fp32",
                               grad_clip_norm=0.3)) as trainer:
        assert trainer.device == torch.device("cuda", 0)
        assert trainer.settings["distributed"]["backend"] == "nccl"
        assert trainer.train_model.device_ids == [0]
        trainer.fit()
        assert trainer.evaluate(distributed_loader(val_set(), 8, shuffle=False,
                                                   even_shards=False)) > 0
    assert not ddp_utils.is_initialized()
    expected = reference_training("sgd", clip=0.3)
    for k, v in expected.items():
        torch.testing.assert_close(model.state_dict()[k].cpu(), v, rtol=1e-4, atol=1e-5)


# -- the samplers -----------------------------------------------------------------------------

def test_distributed_loader_shards_the_global_batch(no_torchrun):
    data = TensorDataset(torch.arange(16))
    loaders = [distributed_loader(data, 2, seed=5, num_replicas=2, rank=r) for r in range(2)]
    for epoch in (0, 1):
        for loader in loaders:
            ddp_utils.set_sampler_epoch(loader, epoch)
        order = torch.randperm(16, generator=torch.Generator().manual_seed(5 + epoch))
        batches = [[b[0].tolist() for b in loader] for loader in loaders]
        for k, (mine, theirs) in enumerate(zip(*batches)):
            # step k of both ranks reads positions 4k .. 4k+3 of the permutation
            assert sorted(mine + theirs) == sorted(order[4 * k:4 * k + 4].tolist())
            assert not set(mine) & set(theirs)
    alone = distributed_loader(data, 4, seed=5)  # no torchrun: a world of one
    assert alone.sampler.num_replicas == 1 and len(alone) == 4
    assert [b[0].tolist() for b in alone] == \
        torch.randperm(16, generator=torch.Generator().manual_seed(5)).view(4, 4).tolist()


def test_shard_sampler_covers_every_example_once():
    shards = [list(ShardSampler(range(7), num_replicas=3, rank=r)) for r in range(3)]
    assert shards == [[0, 3, 6], [1, 4], [2, 5]]
    assert [len(ShardSampler(range(7), 3, r)) for r in range(3)] == [3, 2, 2]
    assert list(ShardSampler(range(1), num_replicas=2, rank=1)) == []


def test_distributed_loader_bad_input():
    data = TensorDataset(torch.arange(8))
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        distributed_loader(data, 0)
    with pytest.raises(ValueError, match=r"rank must be an integer in \[0, 2\), got 2"):
        distributed_loader(data, 2, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="num_replicas must be an integer >= 1, got 0"):
        ShardSampler(data, num_replicas=0, rank=0)
    with pytest.raises(ValueError, match="even_shards=False is for evaluation"):
        distributed_loader(data, 2, shuffle=True, even_shards=False)
    with pytest.raises(TypeError, match="do not pass sampler="):
        distributed_loader(data, 2, sampler=None)
    with pytest.raises(ValueError, match="not on device 'mps'"):
        ddp_utils.backend_for("mps")


if __name__ == "__main__":  # one process of the torchrun launch in the ``ranks`` fixture
    worker(sys.argv[1])


def test_find_unused_parameters_and_a_random_stream_per_rank(ranks):
    results, _ = ranks
    for r in results:
        assert r["unused"]["step"] > 1 and r["unused"]["grad_is_none"]
    assert not torch.equal(results[0]["unused"]["draw"], results[1]["unused"]["draw"]), \
        "every rank drew the same random numbers: dropout masks would repeat across ranks"
