"""Benchmarks that compare qkvcourse layers with PyTorch's, measured in the same run.

Run ``python -m qkvcourse.benchmarks`` (or ``make bench``). Every figure is a ratio
against a reference timed in the same process, on the same inputs, interleaved
round by round, so machine noise affects both sides alike. Ratios below 1 mean
qkvcourse is faster.

Benchmarks:
- ``mha``: ``qc.MultiHeadAttention`` forward + backward vs ``torch.nn.MultiheadAttention``
  with the same weights, for self-attention and cross-attention, on the fused path
  (no weights) and on the explicit path (weights returned, per head).
- ``transformer``: training throughput (target tokens per second: forward, backward and an
  AdamW step) of ``qc.make_transformer`` vs a model of the same size built from
  ``torch.nn.Transformer`` layers with the same embeddings, positions and output layer.
- ``gpt``: GPT training throughput (tokens per second, AdamW step included) of ``qc.GPT``
  vs Hugging Face ``GPT2LMHeadModel`` with SDPA attention at the same config and weights;
  on CUDA also with bf16 autocast and ``torch.compile``, reported as model FLOPs utilisation.
- ``nanogpt`` (with ``--nanogpt PATH/TO/model.py``): ``qc.GPT`` vs nanoGPT's ``model.py``
  (github.com/karpathy/nanoGPT, fetched for the benchmark and never part of this repository)
  at the same config, like for like: exact GELU (nanoGPT's), dropout 0, float32, AdamW;
  training tokens/s, and inference tokens/s with the logits of the last position only (what
  nanoGPT's ``forward`` computes without targets); at the course size (4 layers, 4 heads,
  width 128, context 64, batch 12) and a medium size (6 layers, width 384, context 256,
  batch 8); eager, and with ``--compile`` also ``torch.compile``.
- ``generate``: greedy KV-cache generation (200 new tokens after a 16-token prompt) of
  ``qc.GPT.generate`` vs Hugging Face ``GPT2LMHeadModel.generate`` with the same weights, which
  must produce the same tokens; tokens per second.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from torch import nn

from .multihead import MultiHeadAttention
from .positional import sinusoidal_table
from .transformer import TransformerConfig, make_transformer
from .utils import synchronize


def copy_weights_to_torch(ours: MultiHeadAttention, theirs: nn.MultiheadAttention) -> None:
    """Copy W_q, W_k, W_v, W_o into PyTorch's packed ``in_proj_weight`` and ``out_proj``."""
    with torch.no_grad():
        theirs.in_proj_weight.copy_(torch.cat([ours.W_q.weight, ours.W_k.weight, ours.W_v.weight]))
        theirs.out_proj.weight.copy_(ours.W_o.weight)
        if ours.W_q.bias is not None:
            theirs.in_proj_bias.copy_(torch.cat([ours.W_q.bias, ours.W_k.bias, ours.W_v.bias]))
            theirs.out_proj.bias.copy_(ours.W_o.bias)


def _interleaved_medians(fns: dict, device, rounds: int, inner: int) -> dict[str, float]:
    """Median seconds per call for each function, timed in alternating rounds.

    The order alternates from one round to the next (A B, then B A): whichever runs second
    inherits the caches and the allocator state the first left behind, which on this 2-core
    machine moved a fixed-order ratio by up to 7%."""
    for fn in fns.values():  # warm-up
        for _ in range(3):
            fn()
    samples = {name: [] for name in fns}
    for r in range(rounds):
        for name, fn in (list(fns.items()) if r % 2 == 0 else list(fns.items())[::-1]):
            synchronize(device)
            start = time.perf_counter()
            for _ in range(inner):
                fn()
            synchronize(device)
            samples[name].append((time.perf_counter() - start) / inner)
    return {name: statistics.median(s) for name, s in samples.items()}


def bench_mha(device: torch.device, batch: int, length: int, width: int, heads: int,
              rounds: int, inner: int, dtype=torch.float32) -> list[dict]:
    torch.manual_seed(0)
    ours = MultiHeadAttention(width, heads, bias=True).to(device, dtype)
    theirs = nn.MultiheadAttention(width, heads, bias=True, batch_first=True).to(device, dtype)
    copy_weights_to_torch(ours, theirs)
    x = torch.randn(batch, length, width, device=device, dtype=dtype, requires_grad=True)
    memory = torch.randn(batch, length // 2, width, device=device, dtype=dtype, requires_grad=True)

    def step(module_call):
        def run():
            out = module_call()
            out.sum().backward()
        return run

    rows = []
    for case, (q, kv) in {"self": (x, x), "cross": (x, memory)}.items():
        fns = {
            "qc fused": step(lambda: ours(q, kv, kv)),
            "torch fused": step(lambda: theirs(q, kv, kv, need_weights=False)[0]),
            "qc explicit+weights": step(lambda: ours(q, kv, kv, need_weights=True)),
            "torch explicit+weights": step(
                lambda: theirs(q, kv, kv, need_weights=True, average_attn_weights=False)[0]),
        }
        t = _interleaved_medians(fns, device, rounds, inner)
        rows.append(dict(case=case, path="fused", ours=t["qc fused"], ref=t["torch fused"]))
        rows.append(dict(case=case, path="explicit+weights", ours=t["qc explicit+weights"],
                         ref=t["torch explicit+weights"]))
    return rows


class TorchTransformerSeq2Seq(nn.Module):
    """The reference: ``torch.nn.Transformer`` between the same embeddings and output layer."""

    def __init__(self, c: TransformerConfig):
        super().__init__()
        self.d_model = c.d_model
        self.src_embedding = nn.Embedding(c.src_vocab_size, c.d_model)
        self.tgt_embedding = nn.Embedding(c.tgt_vocab_size, c.d_model)
        self.register_buffer("P", sinusoidal_table(c.max_len, c.d_model)[None], persistent=False)
        self.dropout = nn.Dropout(c.dropout)
        self.transformer = nn.Transformer(c.d_model, c.num_heads, c.num_enc_layers,
                                          c.num_dec_layers, c.ffn_num_hiddens, c.dropout,
                                          batch_first=True, norm_first=c.norm_first)
        self.dense = nn.Linear(c.d_model, c.tgt_vocab_size)

    def embed(self, embedding: nn.Embedding, tokens):
        X = embedding(tokens) * self.d_model ** 0.5  # (B, T, N)
        return self.dropout(X + self.P[:, :tokens.shape[1]])

    def forward(self, src, tgt, src_valid_lens):
        S, T = src.shape[1], tgt.shape[1]
        padding = torch.arange(S, device=src.device)[None] >= src_valid_lens[:, None]  # True = ignore
        causal = nn.Transformer.generate_square_subsequent_mask(T, device=tgt.device)
        out = self.transformer(self.embed(self.src_embedding, src), self.embed(self.tgt_embedding, tgt),
                               tgt_mask=causal, src_key_padding_mask=padding,
                               memory_key_padding_mask=padding, tgt_is_causal=True)
        return self.dense(out)  # (B, T, V)


def bench_transformer(device: torch.device, config: TransformerConfig, batch: int, src_len: int,
                      tgt_len: int, rounds: int, inner: int) -> dict:
    """Training tokens/s of both models on the same random batches (dropout on, AdamW)."""
    from .losses import sequence_loss
    torch.manual_seed(0)
    ours = make_transformer(config).to(device).train()
    theirs = TorchTransformerSeq2Seq(config).to(device).train()
    g = torch.Generator().manual_seed(1)
    src = torch.randint(4, config.src_vocab_size, (batch, src_len), generator=g).to(device)
    tgt = torch.randint(4, config.tgt_vocab_size, (batch, tgt_len + 1), generator=g).to(device)
    src_valid_lens = torch.randint(src_len // 2, src_len + 1, (batch,), generator=g).to(device)
    tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]

    def step_fn(model):
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step():
            optimizer.zero_grad(set_to_none=True)
            logits = model(src, tgt_in, src_valid_lens)
            sequence_loss(logits, tgt_out, pad_id=0).backward()
            optimizer.step()
        return step

    t = _interleaved_medians({"ours": step_fn(ours), "torch": step_fn(theirs)}, device, rounds, inner)
    tokens = batch * tgt_len
    return dict(ours=tokens / t["ours"], ref=tokens / t["torch"],
                params_ours=sum(p.numel() for p in ours.parameters()),
                params_ref=sum(p.numel() for p in theirs.parameters()))


def gpt_train_flops_per_token(config) -> float:
    """6·N (forward + backward over the non-embedding parameters) + attention's 12·L·T·d."""
    n = 12 * config.num_layers * config.d_model ** 2  # ≈ non-embedding parameters
    return 6 * n + 12 * config.num_layers * config.max_len * config.d_model


def bench_gpt(device: torch.device, config, batch: int, rounds: int, inner: int,
              autocast_dtype=None, compile_model: bool = False) -> dict:
    """Training tokens/s of qc.GPT and HF GPT2LMHeadModel (SDPA) with identical weights."""
    from transformers import GPT2Config, GPT2LMHeadModel
    from .gpt import GPT
    torch.manual_seed(0)
    hf_config = GPT2Config(vocab_size=config.vocab_size, n_positions=config.max_len,
                           n_embd=config.d_model, n_layer=config.num_layers,
                           n_head=config.num_heads, resid_pdrop=config.dropout,
                           embd_pdrop=config.dropout, attn_pdrop=config.dropout,
                           bos_token_id=0, eos_token_id=0)
    hf_config._attn_implementation = "sdpa"  # PyTorch's fused kernel, as ours
    theirs = GPT2LMHeadModel(hf_config).to(device).train()
    assert theirs.config._attn_implementation == "sdpa"
    ours = GPT.from_huggingface(theirs).to(device).train()
    idx = torch.randint(0, config.vocab_size, (batch, config.max_len + 1),
                        generator=torch.Generator().manual_seed(1)).to(device)
    inputs, targets = idx[:, :-1], idx[:, 1:]

    def step_fn(model, hf: bool):
        if compile_model:
            model = torch.compile(model)
        params = [p for p in model.parameters()]
        optimizer = torch.optim.AdamW(params, lr=1e-4,
                                      **({"fused": True} if device.type == "cuda" else {}))

        def step():
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                if hf:
                    loss = model(input_ids=inputs, labels=inputs).loss  # HF shifts internally
                else:
                    loss = model(inputs, targets)[1]
            loss.backward()
            optimizer.step()
        return step

    t = _interleaved_medians({"ours": step_fn(ours, False), "hf": step_fn(theirs, True)},
                             device, rounds, inner)
    tokens = batch * config.max_len
    return dict(ours=tokens / t["ours"], ref=tokens / t["hf"])


def load_nanogpt(path: str):
    """nanoGPT's ``model.py`` as a module, from a path outside this repository."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("nanogpt_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bench_nanogpt(nano, device: torch.device, layers: int, heads: int, width: int, context: int,
                  batch: int, rounds: int, inner: int, compile_model: bool = False,
                  vocab: int = 65, profile: bool = False) -> dict:
    """Training and inference tokens/s of qc.GPT and nanoGPT at one config, interleaved; with
    ``profile`` (eager, CPU) also :func:`profile_shares` of each model's training step."""
    import contextlib
    import io

    from .gpt import GPT, GPTConfig

    torch.manual_seed(0)
    ours = GPT(GPTConfig(vocab_size=vocab, max_len=context, num_layers=layers, num_heads=heads,
                         d_model=width, dropout=0.0, activation="gelu")).to(device)
    with contextlib.redirect_stdout(io.StringIO()):  # nanoGPT prints its parameter count
        theirs = nano.GPT(nano.GPTConfig(block_size=context, vocab_size=vocab, n_layer=layers,
                                         n_head=heads, n_embd=width, dropout=0.0,
                                         bias=True)).to(device)
    idx = torch.randint(0, vocab, (batch, context + 1), generator=torch.Generator().manual_seed(1))
    x, y = idx[:, :-1].contiguous().to(device), idx[:, 1:].contiguous().to(device)
    runs = {}

    def prepare(model):
        return torch.compile(model) if compile_model else model

    def train_step(model, is_ours: bool):
        model.train()
        run = prepare(model)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step():
            optimizer.zero_grad(set_to_none=True)
            loss = run(x, y)[1]
            loss.backward()
            optimizer.step()
        return step

    def infer_step(model, is_ours: bool):
        model.eval()
        if is_ours:  # the last position's logits only, as nanoGPT's forward without targets
            run = prepare(model.next_token_logits)
        else:
            run = prepare(model)

        def step():
            with torch.no_grad():
                run(x)
        return step

    for kind, make in (("train", train_step), ("inference", infer_step)):
        t = _interleaved_medians({"ours": make(ours, True), "nano": make(theirs, False)},
                                 device, rounds, inner)
        tokens = batch * context
        runs[kind] = dict(ours=tokens / t["ours"], ref=tokens / t["nano"])
    if profile and device.type == "cpu" and not compile_model:
        # FLOPs of one step's matrix products: forward, and backward twice over (inputs and
        # weights), of every linear layer and the output layer
        flops = 6 * batch * context * (12 * layers * width ** 2 + width * vocab)
        runs["profile"] = {}
        for who, model, is_ours in (("ours", ours, True), ("ref", theirs, False)):
            shares = profile_shares(train_step(model, is_ours))
            seconds = shares["matrix products"] * shares["ms per step"] / 1000
            runs["profile"][who] = dict(shares, gflops=flops / seconds / 1e9)
    return runs


def gemm_rate(device: torch.device, n: int = 1024, rounds: int = 20) -> float:
    """GFLOP/s of one n×n by n×n float32 matrix product on ``device`` (median of rounds)."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    times = []
    for _ in range(rounds + 3):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        times.append(time.perf_counter() - start)
    return 2 * n ** 3 / statistics.median(times[3:]) / 1e9


_PROFILE_GROUPS = {"matrix products": ("aten::mm", "aten::addmm", "aten::bmm"),
                   "attention kernel": ("scaled_dot_product",),
                   "GELU": ("aten::gelu",), "LayerNorm": ("layer_norm",)}


def profile_shares(step, steps: int = 10) -> dict[str, float]:
    """Where a step's CPU time goes: each group's share of the operators' self time (the
    groups above; everything else, the optimiser's element-wise updates included, is "other")."""
    from torch.profiler import ProfilerActivity, profile

    for _ in range(3):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    shares = dict.fromkeys([*_PROFILE_GROUPS, "other"], 0.0)
    events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    total = sum(e.self_cpu_time_total for e in events)
    for e in events:
        group = next((g for g, keys in _PROFILE_GROUPS.items()
                      if any(k in e.key for k in keys)), "other")
        shares[group] += e.self_cpu_time_total / total
    shares["ms per step"] = total / steps / 1000
    return shares


def bench_generate(device: torch.device, layers: int, heads: int, width: int, context: int,
                   new_tokens: int = 200, rounds: int = 5) -> dict:
    """Greedy KV-cache generation tokens/s of qc.GPT and HF GPT2LMHeadModel, same weights."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from .gpt import GPT

    torch.manual_seed(0)
    hf_config = GPT2Config(vocab_size=65, n_positions=context, n_embd=width, n_layer=layers,
                           n_head=heads, bos_token_id=0, eos_token_id=0)
    hf_config._attn_implementation = "sdpa"
    theirs = GPT2LMHeadModel(hf_config).to(device).eval()
    ours = GPT.from_huggingface(theirs).to(device).eval()
    prompt = torch.randint(1, 65, (1, 16), generator=torch.Generator().manual_seed(1)).to(device)
    fns = {"ours": lambda: ours.generate(prompt, new_tokens, do_sample=False),
           "hf": lambda: theirs.generate(prompt, max_new_tokens=new_tokens,
                                         min_new_tokens=new_tokens, do_sample=False,
                                         use_cache=True, pad_token_id=0)}
    same = torch.equal(fns["ours"](), fns["hf"]())
    t = _interleaved_medians(fns, device, rounds, 1)
    return dict(ours=new_tokens / t["ours"], ref=new_tokens / t["hf"], same=same)


def run_generate(args, device, name) -> None:
    print(f"\nGreedy KV-cache generation on {device} ({name}): 200 new tokens after 16, batch 1")
    print(f"{'model':<32}{'qkvcourse tok/s':>16}{'HF tok/s':>10}{'ratio':>8}  same tokens")
    for label, (layers, heads, width, context) in {"course (L=4, d=128)": (4, 4, 128, 256),
                                                   "medium (L=6, d=384)": (6, 6, 384, 512)}.items():
        r = bench_generate(device, layers, heads, width, context)
        print(f"{label:<32}{r['ours']:>16.0f}{r['ref']:>10.0f}{r['ours'] / r['ref']:>8.3f}  {r['same']}")


def run_nanogpt(args, device, name) -> None:
    nano = load_nanogpt(args.nanogpt)
    sizes = {"course (L=4, H=4, d=128, T=64, B=12)": (4, 4, 128, 64, 12),
             "medium (L=6, H=6, d=384, T=256, B=8)": (6, 6, 384, 256, 8)}
    print(f"\nqc.GPT vs nanoGPT model.py on {device} ({name}): float32, dropout 0, exact GELU, "
          f"AdamW; inference = logits of the last position")
    print(f"{'model':<40}{'mode':<10}{'':<9}{'qkvcourse tok/s':>16}{'nanoGPT tok/s':>15}"
          f"{'ratio':>8}")
    profiles = {}
    for label, (layers, heads, width, context, batch) in sizes.items():
        medium = width > 128
        for compiled in ([False, True] if args.compile else [False]):
            r = bench_nanogpt(nano, device, layers, heads, width, context, batch,
                              rounds=max(3, args.rounds // (3 if medium else 1)),
                              inner=1 if medium else args.inner, compile_model=compiled,
                              profile=True)
            if "profile" in r:  # the eager pass's (the compiled pass has none)
                profiles[label] = r.pop("profile")
            for kind, v in r.items():
                print(f"{label:<40}{kind:<10}{'compile' if compiled else 'eager':<9}"
                      f"{v['ours']:>16.0f}{v['ref']:>15.0f}{v['ours'] / v['ref']:>8.3f}")
    if profiles:
        print("\nWhere one eager training step's CPU time goes (operators' self time; "
              "'other' includes AdamW's updates), and the GFLOP/s of its matrix products")
        groups = [*_PROFILE_GROUPS, "other"]
        print(f"{'model':<40}{'':<11}" + "".join(f"{g:>18}" for g in groups)
              + f"{'ms/step':>9}{'GFLOP/s':>9}")
        for label, prof in profiles.items():
            for who, shares in (("qkvcourse", prof["ours"]), ("nanoGPT", prof["ref"])):
                print(f"{label:<40}{who:<11}" + "".join(f"{shares[g]:>18.1%}" for g in groups)
                      + f"{shares['ms per step']:>9.1f}{shares['gflops']:>9.0f}")
        print(f"one 1024x1024 by 1024x1024 float32 product alone: {gemm_rate(device):.0f} GFLOP/s")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="all", help="cpu, cuda or all (every device present)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--inner", type=int, default=5)
    parser.add_argument("--only", choices=["mha", "transformer", "gpt", "nanogpt", "generate"],
                        default=None)
    parser.add_argument("--nanogpt", default=None,
                        help="path to nanoGPT's model.py (outside this repository) for --only nanogpt")
    parser.add_argument("--compile", action="store_true", help="also torch.compile (nanogpt)")
    args = parser.parse_args(argv)
    if args.only == "nanogpt" and not args.nanogpt:
        parser.error("--only nanogpt needs --nanogpt PATH/TO/model.py")

    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    if args.device != "all":
        devices = [torch.device(args.device)]

    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads")
    for device in devices:
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
        if args.only in (None, "mha"):
            run_mha(args, device, name)
        if args.only in (None, "transformer"):
            run_transformer(args, device, name)
        if args.only in (None, "gpt"):
            run_gpt(args, device, name)
        if args.only in (None, "generate"):
            run_generate(args, device, name)
        if args.nanogpt and args.only in (None, "nanogpt"):
            run_nanogpt(args, device, name)


def run_mha(args, device, name) -> None:
    if True:
        print(f"\nMultiHeadAttention forward+backward on {device} ({name}): B={args.batch}, "
              f"T={args.length}, d_model={args.width}, heads={args.heads}, float32")
        print(f"{'case':<7}{'path':<19}{'qkvcourse ms':>14}{'torch ms':>11}{'ratio':>8}")
        for r in bench_mha(device, args.batch, args.length, args.width, args.heads,
                           args.rounds, args.inner):
            print(f"{r['case']:<7}{r['path']:<19}{r['ours'] * 1e3:>14.3f}{r['ref'] * 1e3:>11.3f}"
                  f"{r['ours'] / r['ref']:>8.3f}")


def run_transformer(args, device, name) -> None:
    sizes = {
        "course (d=64, h=4, ff=128, 2+2)": TransformerConfig(40, 40, bias=True),
        "medium (d=256, h=8, ff=1024, 3+3)": TransformerConfig(
            1000, 1000, d_model=256, ffn_num_hiddens=1024, num_heads=8, num_enc_layers=3,
            num_dec_layers=3, bias=True),
    }
    print(f"\nTransformer training (forward, backward, AdamW step) on {device} ({name}): "
          f"B=64, source 32, target 32 tokens, dropout 0.1, float32")
    print(f"{'model':<36}{'qkvcourse tok/s':>16}{'torch tok/s':>13}{'ratio':>8}{'params':>20}")
    for label, config in sizes.items():
        r = bench_transformer(device, config, batch=64, src_len=32, tgt_len=32,
                              rounds=max(3, args.rounds // 3), inner=2)
        print(f"{label:<36}{r['ours']:>16.0f}{r['ref']:>13.0f}{r['ours'] / r['ref']:>8.3f}"
              f"{r['params_ours']:>10d}/{r['params_ref']:<9d}")



def run_gpt(args, device, name) -> None:
    from .gpt import GPTConfig
    cuda = device.type == "cuda"
    sizes = {"course (L=4, d=128, T=128)": (GPTConfig(vocab_size=96), 16)}
    if cuda:
        sizes["GPT-2 small (L=12, d=768, T=1024)"] = (GPTConfig.gpt2_small(), 16)
    else:
        sizes["medium (L=6, d=384, T=256)"] = (GPTConfig(vocab_size=512, max_len=256,
                                                          num_layers=6, num_heads=6, d_model=384), 8)
    print(f"\nGPT training (forward, backward, AdamW step) on {device} ({name}), dropout 0.1")
    print(f"{'model':<36}{'precision':<14}{'qkvcourse tok/s':>16}{'HF tok/s':>11}{'ratio':>8}"
          f"{'qc MFU':>9}")
    runs = [("fp32", None, False)]
    if cuda:
        runs += [("bf16", torch.bfloat16, False), ("bf16+compile", torch.bfloat16, True)]
    peak = 989e12 if cuda else None  # dense bf16 FLOP/s of an H100/H200 SXM; CPU: not reported
    for label, (config, batch) in sizes.items():
        for precision, dtype, compiled in runs:
            r = bench_gpt(device, config, batch, rounds=max(3, args.rounds // 3), inner=2,
                          autocast_dtype=dtype, compile_model=compiled)
            mfu = "" if peak is None or dtype is None else \
                f"{r['ours'] * gpt_train_flops_per_token(config) / peak:>9.1%}"
            print(f"{label:<36}{precision:<14}{r['ours']:>16.0f}{r['ref']:>11.0f}"
                  f"{r['ours'] / r['ref']:>8.3f}{mfu}")


if __name__ == "__main__":
    main()
