"""The benchmark harness's plumbing on tiny sizes (the benchmarks themselves are run by hand or
by `make bench` / `make gpu-check`; no timed assertions here)."""
from __future__ import annotations

import types

import torch
from torch import nn
from torch.nn import functional as F

import qkvcourse as qc
from qkvcourse import benchmarks


def test_profile_shares_split_a_step_into_its_groups():
    layer, norm = nn.Linear(32, 64), nn.LayerNorm(64)
    x = torch.randn(16, 32)

    def step():
        norm(F.gelu(layer(x))).sum().backward()

    shares = benchmarks.profile_shares(step, steps=2)
    groups = [*benchmarks._PROFILE_GROUPS, "other"]
    assert abs(sum(shares[g] for g in groups) - 1.0) < 1e-6
    for group in ("matrix products", "GELU", "LayerNorm", "other"):
        assert shares[group] > 0, group
    assert shares["attention kernel"] == 0 and shares["ms per step"] > 0


def _stand_in_nanogpt():
    """A module with nanoGPT's interface (GPTConfig fields, forward(idx, targets) -> (logits,
    loss), last-position logits without targets), built on qc.GPT."""
    class GPTConfig:
        def __init__(self, block_size, vocab_size, n_layer, n_head, n_embd, dropout, bias):
            self.__dict__.update(locals())

    class GPT(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.inner = qc.GPT(qc.GPTConfig(vocab_size=c.vocab_size, max_len=c.block_size,
                                             num_layers=c.n_layer, num_heads=c.n_head,
                                             d_model=c.n_embd, dropout=c.dropout))

        def forward(self, idx, targets=None):
            if targets is None:
                return self.inner(idx)[:, -1:], None
            return self.inner(idx, targets)

    return types.SimpleNamespace(GPT=GPT, GPTConfig=GPTConfig)


def test_nanogpt_comparison_runs_and_profiles_both_models():
    torch.manual_seed(0)
    r = benchmarks.bench_nanogpt(_stand_in_nanogpt(), torch.device("cpu"), layers=1, heads=2,
                                 width=16, context=8, batch=2, rounds=2, inner=1, profile=True)
    for kind in ("train", "inference"):
        assert r[kind]["ours"] > 0 and r[kind]["ref"] > 0
    for who in ("ours", "ref"):
        shares = r["profile"][who]
        assert shares["matrix products"] > 0 and shares["attention kernel"] > 0
        assert shares["gflops"] > 0


def test_gemm_rate_is_a_rate():
    assert benchmarks.gemm_rate(torch.device("cpu"), n=64, rounds=2) > 0
