"""GPT (qkvcourse.gpt) against Hugging Face's GPT2LMHeadModel built from configs with random
weights: logits, loss, parameter counts, KV cache, greedy generation; the sampling filters on
hand cases and against brute force; reproducible sampling; causality; errors on bad input."""
from __future__ import annotations

import math
import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: never the network

import pytest
import torch
from torch.nn import functional as F

from conftest import dtype_for, tolerance
from qkvcourse.gpt import GPT, GPTBlock, GPTConfig, top_k_filter, top_p_filter
from qkvcourse.huggingface import (HubDownloadError, gpt_config_from_huggingface,
                                   gpt_from_huggingface)
from qkvcourse.losses import lm_loss

transformers = pytest.importorskip("transformers")
from transformers import GPT2Config, GPT2LMHeadModel, GPT2Model  # noqa: E402
from helpers import raises  # noqa: E402

PARITY = dict(rtol=1e-4, atol=1e-4)


pytestmark = pytest.mark.usefixtures("one_thread")




def hf_config(num_layers=2, num_heads=4, width=32, vocab=50, positions=24, **kwargs):
    """A GPT2Config without dropout; bos/eos inside the small vocabulary (no warnings)."""
    return GPT2Config(n_layer=num_layers, n_head=num_heads, n_embd=width, vocab_size=vocab,
                      n_positions=positions, attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0,
                      bos_token_id=0, eos_token_id=0, **kwargs)


def make_hf(seed=0, **kwargs) -> GPT2LMHeadModel:
    """A GPT2LMHeadModel with random weights far from its initialisation: every matrix and
    bias N(0, 0.2), LayerNorm gains 1 + N(0, 0.2), so that a misplaced bias, norm, transpose
    or head split changes the logits, and greedy decoding does not just repeat one token."""
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(hf_config(**kwargs))
    model.loss_type = "ForCausalLM"  # the loss it uses anyway, named to silence a notice
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(0.0, 0.2)
            if ".ln_" in name and name.endswith("weight"):
                p.add_(1.0)
    return model.eval()


@pytest.fixture(scope="module")
def pair():
    """(Hugging Face model, our GPT with its weights)."""
    hf = make_hf(seed=1)  # a seed whose greedy continuations vary (random models often loop)
    return hf, GPT.from_huggingface(hf)


def tokens(B, T, vocab=50, seed=1):
    return torch.randint(0, vocab, (B, T), generator=torch.Generator().manual_seed(seed))


# -- parity with Hugging Face ----------------------------------------------------------------

@pytest.mark.parametrize("num_layers,num_heads,width,extra", [
    (1, 2, 32, {}),
    (2, 4, 64, {"n_inner": 96}),
    (3, 3, 96, {"layer_norm_epsilon": 1e-3}),
])
def test_logits_and_loss_match_huggingface(num_layers, num_heads, width, extra):
    hf = make_hf(num_layers=num_layers, num_heads=num_heads, width=width, **extra)
    ours = GPT.from_huggingface(hf)
    assert ours.config.num_layers == num_layers and ours.config.d_model == width
    assert ours.config.ffn_num_hiddens == extra.get("n_inner", 4 * width)
    assert ours.config.layer_norm_eps == extra.get("layer_norm_epsilon", 1e-5)
    idx = tokens(3, 17)
    with torch.no_grad():
        torch.testing.assert_close(ours(idx), hf(idx).logits, **PARITY)
        # Hugging Face shifts labels inside; ours takes the next tokens as targets
        labels = idx.clone()
        labels[0, 5:9] = -100
        _, loss = ours(idx[:, :-1], labels[:, 1:])
        torch.testing.assert_close(loss, hf(idx, labels=labels).loss, **PARITY)


def test_from_state_dict_and_config_dict(pair):
    hf, reference = pair
    idx = tokens(2, 11)
    for config in (hf.config, hf.config.to_dict()):
        ours = gpt_from_huggingface(hf.state_dict(), config)
        with torch.no_grad():
            torch.testing.assert_close(ours(idx), reference(idx), rtol=0, atol=0)
    # a state dict with the causal-mask buffers of older checkpoints still loads
    state = dict(hf.state_dict())
    state["transformer.h.0.attn.bias"] = torch.ones(1, 1, 24, 24, dtype=torch.bool)
    gpt_from_huggingface(state, hf.config)


def test_from_gpt2_model_without_head(pair):
    hf, reference = pair
    base = GPT2Model(hf.config).eval()
    base.load_state_dict(hf.transformer.state_dict())
    ours = GPT.from_huggingface(base)
    idx = tokens(2, 9)
    with torch.no_grad():
        torch.testing.assert_close(ours.features(idx), base(idx).last_hidden_state, **PARITY)
        torch.testing.assert_close(ours(idx), hf(idx).logits, **PARITY)


def test_converted_weights_are_transposed_and_split(pair):
    """c_attn (N, 3N) packs q | k | v along its outputs: W_q = c_attn[:, :N]ᵀ etc."""
    hf, ours = pair
    N = hf.config.n_embd
    c_attn = hf.transformer.h[1].attn.c_attn
    mha = ours.blks[1].attention.mha
    for j, layer in enumerate((mha.W_q, mha.W_k, mha.W_v)):
        assert torch.equal(layer.weight, c_attn.weight[:, j * N:(j + 1) * N].t())
        assert torch.equal(layer.bias, c_attn.bias[j * N:(j + 1) * N])
    assert torch.equal(ours.pos_embedding.P[0], hf.transformer.wpe.weight)


def test_dtype_argument(pair):
    hf, _ = pair
    ours = GPT.from_huggingface(hf, dtype=torch.bfloat16)
    assert {p.dtype for p in ours.parameters()} == {torch.bfloat16}
    assert ours.lm_head.weight is ours.token_embedding.weight
    assert not ours.training


def test_gpt2_small_has_the_parameter_count_of_huggingface():
    with torch.device("meta"):  # no memory, no initialisation cost
        hf = GPT2LMHeadModel(GPT2Config())
        ours = GPT(GPTConfig.gpt2_small())
    assert ours.num_parameters() == hf.num_parameters() == 124_439_808
    assert ours.num_parameters(exclude_embeddings=True) \
        == hf.num_parameters(exclude_embeddings=True)
    assert ours.lm_head.weight is ours.token_embedding.weight


# -- KV cache and generation -------------------------------------------------------------------

def test_kv_cache_logits_equal_full_forward(pair):
    _, ours = pair
    idx = tokens(3, 14)
    with torch.no_grad():
        full = ours(idx)
        past, pieces, start = None, [], 0
        for size in (3, 1, 4, 1, 5):
            logits, past = ours.forward_with_cache(idx[:, start:start + size], past)
            pieces.append(logits)
            start += size
    assert len(past) == ours.config.num_layers
    assert past[0][0].shape == (3, 4, 14, 8)  # (B, H, P, D)
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch, length", [(1, 1), (1, 9), (3, 14)])
def test_next_token_logits_equal_the_last_row_of_hugging_face(pair, batch, length):
    """The last-position shortcut (the last block's FFN on one position) gives the logits that
    Hugging Face's model gives for the last position, and leaves the other blocks alone."""
    hf, ours = pair
    idx = tokens(batch, length, seed=5)
    with torch.no_grad():
        fast = ours.next_token_logits(idx)
        theirs = hf(idx).logits[:, -1]
        full = ours(idx)[:, -1]
    assert fast.shape == (batch, ours.config.vocab_size)
    torch.testing.assert_close(fast, theirs, **PARITY)
    torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-5)


def test_last_only_block_output_is_the_last_row():
    torch.manual_seed(0)
    blk = GPTBlock(GPTConfig(vocab_size=10, d_model=16, num_heads=2, dropout=0.0))
    X = torch.randn(2, 7, 16)
    out, cache = blk(X)
    last, cache_last = blk(X, last_only=True)
    assert last.shape == (2, 1, 16)
    torch.testing.assert_close(last, out[:, -1:], rtol=1e-5, atol=1e-6)
    assert all(torch.equal(a, b) for a, b in zip(cache, cache_last))  # every position cached


@pytest.mark.parametrize("with_eos", [False, True])
def test_greedy_generation_with_and_without_cache_equals_huggingface(pair, with_eos):
    hf, ours = pair
    prompt = tokens(3, 5, seed=3)
    n = 12
    plain = ours.generate(prompt, n, do_sample=False)
    eos_id = None
    if with_eos:  # a token that row 0 surely produces, at its 4th step
        eos_id = int(plain[0, 5 + 3])
    cached = ours.generate(prompt, n, do_sample=False, eos_id=eos_id)
    uncached = ours.generate(prompt, n, temperature=0.0, use_cache=False, eos_id=eos_id)
    assert torch.equal(cached, uncached)
    if not with_eos:  # a test that can fail: continuations that are not one repeated token
        assert all(len(set(row)) > 3 for row in cached[:, 5:].tolist())
    theirs = hf.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                         max_new_tokens=n, pad_token_id=0 if eos_id is None else eos_id,
                         eos_token_id=eos_id)
    assert torch.equal(cached, theirs)
    if with_eos:
        row = cached[0, 5:].tolist()
        assert row[3] == eos_id and all(t == eos_id for t in row[3:])


def test_generation_beyond_the_context_slides_the_window(pair):
    """Past max_len (24) the model sees the last 24 tokens, with or without the cache."""
    _, ours = pair
    prompt = tokens(2, 20, seed=4)
    cached = ours.generate(prompt, 10, do_sample=False)
    uncached = ours.generate(prompt, 10, do_sample=False, use_cache=False)
    assert torch.equal(cached, uncached)
    out = prompt
    with torch.no_grad():
        for _ in range(10):
            out = torch.cat((out, ours(out[:, -24:])[:, -1].argmax(-1, keepdim=True)), dim=1)
    assert torch.equal(cached, out)


def test_generate_keeps_the_training_mode_and_needs_no_grad():
    model = GPT(GPTConfig.tiny(vocab_size=20))
    model.train()
    out = model.generate(torch.zeros(1, 1, dtype=torch.long), 3, do_sample=False)
    assert model.training and all(m.training for m in model.modules())
    assert out.shape == (1, 4) and not out.requires_grad
    assert model.generate(torch.zeros(2, 3, dtype=torch.long), 0).shape == (2, 3)


# -- sampling filters ---------------------------------------------------------------------------

def test_top_k_filter_hand_cases():
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0], [0.5, 0.5, -1.0, 2.0]])
    inf = float("-inf")
    assert torch.equal(top_k_filter(logits, 2), torch.tensor([[inf, 3.0, 2.0, inf],
                                                              [0.5, 0.5, inf, 2.0]]))
    # ties with the k-th value are kept: row 2 keeps 3 tokens for k = 2
    assert torch.equal(top_k_filter(logits, 1), torch.tensor([[inf, 3.0, inf, inf],
                                                              [inf, inf, inf, 2.0]]))
    assert torch.equal(top_k_filter(logits, 4), logits)
    assert torch.equal(top_k_filter(logits, 10), logits)
    assert torch.equal(top_k_filter(logits[0], 3), torch.tensor([1.0, 3.0, 2.0, inf]))  # 1-D


def test_top_p_filter_hand_cases():
    inf = float("-inf")
    probs = torch.tensor([0.1, 0.6, 0.3])  # sorted: 0.6, 0.3, 0.1
    logits = probs.log()
    kept = lambda p: torch.isfinite(top_p_filter(logits, p)).tolist()  # noqa: E731
    assert kept(0.3) == [False, True, False]  # the best token alone has mass 0.6 >= 0.3
    assert kept(0.59) == [False, True, False]
    assert kept(0.61) == [False, True, True]  # 0.6 < 0.61: the next one is needed
    assert kept(0.89) == [False, True, True]  # 0.9 >= 0.89
    assert kept(0.95) == [True, True, True]
    assert kept(1.0) == [True, True, True]
    assert kept(1e-9) == [False, True, False]  # always at least one token
    # exactly p is enough (probabilities 0.25, 0.5, 0.25, exact in float64)
    exact = torch.tensor([0.0, math.log(2), 0.0], dtype=torch.float64)
    assert torch.isfinite(top_p_filter(exact, 0.5)).tolist() == [False, True, False]
    assert torch.isfinite(top_p_filter(exact, 0.75)).tolist() == [True, True, False]
    assert torch.isfinite(top_p_filter(exact, 0.7500001)).tolist() == [True, True, True]
    # the kept logits are unchanged, the others -inf; rows are independent
    two = torch.stack((logits, logits.flip(0)))
    out = top_p_filter(two, 0.7)
    assert torch.equal(out, torch.stack((torch.tensor([inf, logits[1], logits[2]]),
                                         torch.tensor([logits[2], logits[1], inf]))))


def test_top_p_filter_keeps_the_smallest_set_of_mass_p():
    """Brute force: the kept set is the shortest prefix of the sorted tokens with mass >= p."""
    gen = torch.Generator().manual_seed(5)
    logits = torch.randn(40, 9, generator=gen) * 2
    for p in (0.05, 0.3, 0.5, 0.8, 0.95, 0.999):
        kept = torch.isfinite(top_p_filter(logits, p))
        for row, mask in zip(logits, kept):
            probs = F.softmax(row.double(), dim=-1)
            ranked = probs.argsort(descending=True).tolist()
            size = next(i + 1 for i in range(len(ranked))
                        if probs[ranked[:i + 1]].sum() >= p - 1e-6)
            assert sorted(ranked[:size]) == mask.nonzero().flatten().tolist()


def test_sampling_is_reproducible_with_a_seeded_generator(pair):
    _, ours = pair
    prompt = tokens(4, 3, seed=6)
    draw = lambda seed, **kw: ours.generate(  # noqa: E731
        prompt, 10, temperature=1.5, generator=torch.Generator().manual_seed(seed), **kw)
    assert torch.equal(draw(0), draw(0))
    assert not torch.equal(draw(0), draw(1))
    # the cache changes nothing, samples included
    assert torch.equal(draw(2, top_k=5, top_p=0.9), draw(2, top_k=5, top_p=0.9, use_cache=False))
    greedy = ours.generate(prompt, 10, do_sample=False)
    assert torch.equal(draw(3, top_k=1), greedy)
    assert torch.equal(draw(4, top_p=1e-6), greedy)


def test_sampling_follows_the_filtered_distribution(pair):
    """Frequencies of the first sampled token over many rows match softmax(logits / τ)."""
    _, ours = pair
    prompt = tokens(1, 4, seed=7)
    with torch.no_grad():
        logits = ours(prompt)[0, -1]  # (V,)
    rows = prompt.expand(6000, -1)
    gen = torch.Generator().manual_seed(8)
    for temperature, top_k in ((1.0, None), (2.0, None), (1.0, 3)):
        first = ours.generate(rows, 1, temperature=temperature, top_k=top_k, generator=gen)[:, -1]
        freq = torch.bincount(first, minlength=50).double() / len(first)
        scaled = logits / temperature
        if top_k is not None:
            scaled = top_k_filter(scaled, top_k)
        expected = F.softmax(scaled.double(), dim=-1)
        assert (freq - expected).abs().max() < 0.03
        assert ((freq > 0) <= (expected > 0)).all()  # nothing outside the filtered support


# -- model behaviour ----------------------------------------------------------------------------

def test_causality_future_tokens_do_not_change_past_logits(pair):
    _, ours = pair
    idx = tokens(2, 12, seed=9)
    changed = idx.clone()
    changed[:, 7:] = (changed[:, 7:] + 1) % 50
    with torch.no_grad():
        a, b = ours(idx), ours(changed)
    torch.testing.assert_close(a[:, :7], b[:, :7], rtol=1e-5, atol=1e-5)
    assert (a[:, 7:] - b[:, 7:]).abs().max() > 1e-2


def test_attention_weights_on_request(pair):
    _, ours = pair
    idx = tokens(2, 6)
    with torch.no_grad():
        fused = ours(idx)
        assert ours.attention_weights == [None, None]
        ours.need_weights = True
        try:
            explicit = ours(idx)
        finally:
            ours.need_weights = False
    torch.testing.assert_close(explicit, fused, rtol=1e-5, atol=1e-5)
    weights = ours.attention_weights[1]
    assert weights.shape == (2, 4, 6, 6)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, 6))
    assert (weights.triu(1) == 0).all()


def test_loss_matches_cross_entropy_and_ignores_positions():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=30, max_len=16, num_layers=1, num_heads=2, d_model=16,
                          dropout=0.0))
    idx, targets = tokens(2, 8, vocab=30), tokens(2, 8, vocab=30, seed=2)
    targets[1, :3] = -100
    logits, loss = model(idx, targets)
    keep = targets != -100
    torch.testing.assert_close(loss, F.cross_entropy(logits[keep], targets[keep]))
    # the function itself, with another ignore_index
    torch.testing.assert_close(lm_loss(logits, targets.masked_fill(~keep, -1), ignore_index=-1),
                               loss)
    _, none_counted = model(idx, torch.full_like(targets, -100))
    assert none_counted.item() == 0.0  # not NaN
    none_counted.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_weight_tying_and_initialisation():
    model = GPT(GPTConfig(vocab_size=40, num_layers=6, d_model=64))
    assert model.lm_head.weight is model.token_embedding.weight
    names = [name for name, _ in model.named_parameters()]
    assert "lm_head.weight" not in names  # one (V, N) matrix, counted once
    copy = GPT(model.config)
    copy.load_state_dict(model.state_dict())
    assert copy.lm_head.weight is copy.token_embedding.weight
    assert torch.equal(copy.lm_head.weight, model.token_embedding.weight)
    # GPT-2's scaled initialisation of the projections into the residual stream
    std = model.blks[0].ffn.dense2.weight.std().item()
    assert abs(std - 0.02 / math.sqrt(12)) < 0.002
    assert abs(model.blks[0].ffn.dense1.weight.std().item() - 0.02) < 0.002
    assert model.blks[0].attention.mha.W_q.bias.abs().sum() == 0
    assert isinstance(model.blks[0], GPTBlock)


def test_works_under_autocast(pair):
    _, ours = pair
    idx = tokens(2, 10)
    with torch.no_grad():
        reference = ours(idx)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits, loss = ours(idx[:, :-1], idx[:, 1:])
            out = ours.generate(idx[:, :3], 4, top_k=5, generator=torch.Generator().manual_seed(0))
    assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32
    torch.testing.assert_close(logits.float(), reference[:, :-1], rtol=0.1, atol=0.3)
    assert torch.isfinite(loss) and out.shape == (2, 7)


def test_on_every_device(pair, device):
    """float32 on the CPU, bf16 on an accelerator: logits, the cache and sampling run there."""
    _, reference = pair
    dtype = dtype_for(device)
    ours = GPT.from_huggingface(pair[0], dtype=dtype).to(device)
    idx = tokens(2, 12)
    with torch.no_grad():
        expected = reference(idx)
        logits = ours(idx.to(device))
        assert logits.device.type == device.type and logits.dtype == dtype
        torch.testing.assert_close(logits.float().cpu(), expected, **tolerance(dtype))
        first, past = ours.forward_with_cache(idx[:, :7].to(device))
        rest, _ = ours.forward_with_cache(idx[:, 7:].to(device), past)
        torch.testing.assert_close(torch.cat((first, rest), 1).float().cpu(), expected,
                                   **tolerance(dtype))
    gen = torch.Generator(device=device).manual_seed(0)
    out = ours.generate(idx[:, :3].to(device), 5, top_k=10, top_p=0.9, generator=gen, eos_id=1)
    assert out.device.type == device.type and out.shape[0] == 2 and 4 <= out.shape[1] <= 8


def test_a_tiny_model_learns_a_sequence():
    """Ten steps of AdamW on one repeated sequence bring its loss well down."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=12, max_len=16, num_layers=2, num_heads=2, d_model=32,
                          dropout=0.0))
    seq = torch.tensor([[1, 5, 2, 9, 3, 7, 4, 11, 6, 0, 8, 10] * 1])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        _, loss = model(seq[:, :-1], seq[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 < math.log(12) - 0.3 < losses[0] + 0.3
    assert model.generate(seq[:, :1], 11, do_sample=False).tolist() == seq.tolist()


# -- loading by hub name ------------------------------------------------------------------------

def test_hub_name_offline_gives_a_clear_message(tmp_path):
    with raises(HubDownloadError, "'gpt2'", "needs the network",
                "continues with the locally trained model"):
        GPT.from_huggingface("gpt2", cache_dir=str(tmp_path))


def test_hub_name_without_transformers(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # makes `import transformers` fail
    with raises(ImportError, "pip install transformers"):
        gpt_from_huggingface("gpt2")


# -- errors on bad input ------------------------------------------------------------------------

def test_bad_tokens(pair):
    _, ours = pair
    with raises(TypeError, "idx", "integer", "(2, 3)"):
        ours(torch.zeros(2, 3))
    with raises(ValueError, "idx", "2-D", "(5,)"):
        ours(torch.zeros(5, dtype=torch.long))
    with raises(ValueError, "idx", "[0, 50)", "50"):
        ours(torch.full((1, 3), 50))
    with raises(ValueError, "idx", "(1, 25)", "max_len=24"):
        ours(torch.zeros(1, 25, dtype=torch.long))
    with raises(ValueError, "idx", "(1, 20)", "after 5", "max_len=24"):
        _, past = ours.forward_with_cache(torch.zeros(1, 5, dtype=torch.long))
        ours.forward_with_cache(torch.zeros(1, 20, dtype=torch.long), past)


def test_bad_cache_and_targets(pair):
    _, ours = pair
    idx = torch.zeros(2, 3, dtype=torch.long)
    _, past = ours.forward_with_cache(idx)
    with raises(TypeError, "past", "2 (keys, values) pairs", "length 1"):
        ours.forward_with_cache(idx, past[:1])
    with raises(ValueError, "batch sizes", "idx", "(3, 3)"):
        ours.forward_with_cache(torch.zeros(3, 3, dtype=torch.long), past)
    with raises(ValueError, "logits", "targets", "(2, 2)"):
        ours(idx, idx[:, :2])
    with raises(TypeError, "targets", "integer", "torch.float32"):
        ours(idx, idx.float())
    with raises(ValueError, "targets", "[0, 50)", "from 0 to 77"):
        ours(idx, torch.full_like(idx, 77).index_fill_(1, torch.tensor([0]), 0))


def test_bad_generation_arguments(pair):
    _, ours = pair
    prompt = torch.zeros(1, 2, dtype=torch.long)
    cases = [
        (dict(temperature=-0.5), ValueError, ("temperature", ">= 0", "-0.5")),
        (dict(temperature=float("nan")), ValueError, ("temperature", "nan")),
        (dict(top_p=0.0), ValueError, ("top_p", "(0, 1]", "0.0")),
        (dict(top_p=1.5), ValueError, ("top_p", "(0, 1]", "1.5")),
        (dict(top_k=0), ValueError, ("top_k", "positive", "0")),
        (dict(eos_id=50), ValueError, ("eos_id", "[0, 50)", "50")),
        (dict(generator=0), TypeError, ("generator", "int")),
    ]
    for kwargs, exc, fragments in cases:
        with raises(exc, *fragments):
            ours.generate(prompt, 2, **kwargs)
    with raises(ValueError, "max_new_tokens", "-1"):
        ours.generate(prompt, -1)
    with raises(ValueError, "top_p", "2"):
        top_p_filter(torch.zeros(3), 2)
    with raises(ValueError, "top_k", "1.5"):
        top_k_filter(torch.zeros(3), 1.5)
    with raises(TypeError, "logits", "floating", "(3,)"):
        top_k_filter(torch.zeros(3, dtype=torch.long), 1)


def test_bad_configs_and_checkpoints(pair):
    hf, _ = pair
    with raises(ValueError, "num_heads", "d_model=30", "num_heads=4"):
        GPTConfig(vocab_size=10, d_model=30, num_heads=4)
    with raises(ValueError, "dropout", "1.0"):
        GPTConfig(vocab_size=10, dropout=1.0)
    with raises(ValueError, "vocab_size", "0"):
        GPTConfig(vocab_size=0)
    with raises(ValueError, "activation", "'swish'"):
        GPTConfig(vocab_size=10, activation="swish")
    with raises(TypeError, "config is required"):
        gpt_from_huggingface(hf.state_dict())
    with raises(TypeError, "source", "int"):
        gpt_from_huggingface(3)
    with raises(ValueError, "activation_function='silu'"):
        gpt_config_from_huggingface(hf_config(activation_function="silu"))
    with raises(ValueError, "scale_attn_weights=False"):
        gpt_config_from_huggingface(hf_config(scale_attn_weights=False))
    untied = dict(hf.state_dict())
    untied["lm_head.weight"] = untied["lm_head.weight"] + 1
    with raises(ValueError, "lm_head.weight", "ties"):
        gpt_from_huggingface(untied, hf.config)
    missing = {k: v for k, v in hf.state_dict().items() if ".h.1." not in k}
    with raises(KeyError, "h.1.ln_1.weight"):
        gpt_from_huggingface(missing, hf.config)
    extra = {**hf.state_dict(), "transformer.h.2.ln_1.weight": torch.ones(32)}
    with raises(ValueError, "unexpected", "h.2.ln_1.weight"):
        gpt_from_huggingface(extra, hf.config)
