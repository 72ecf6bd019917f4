"""The Transformer (qkvcourse.transformer) against torch.nn.Transformer*Layer and d2l, plus
incremental decoding, causality, a small overfit run and errors on bad input."""
from __future__ import annotations

import math
import re

import pytest
import torch
from torch import nn

import qkvcourse as qc
from conftest import dtype_for, tolerance
from qkvcourse.encoder_decoder import EncoderDecoder
from qkvcourse.losses import sequence_loss
from qkvcourse.multihead import MultiHeadAttention
from qkvcourse.transformer import (AddNorm, CausalSelfAttention, CrossAttention,
                                   GlobalSelfAttention, PositionWiseFFN, TransformerConfig,
                                   TransformerDecoder, TransformerDecoderBlock,
                                   TransformerEncoder, TransformerEncoderBlock, make_transformer)

TIGHT = dict(rtol=1e-5, atol=1e-5)
B, N, F, H = 3, 16, 32, 4
S, T = 7, 5


def raises(exc, *fragments):
    """``pytest.raises`` requiring every fragment (literal text) somewhere in the message."""
    pattern = "(?s)" + "".join(f"(?=.*{re.escape(f)})" for f in fragments)
    return pytest.raises(exc, match=pattern)


# -- copying weights from PyTorch's layers ---------------------------------------------------

def randomise_vectors(module: nn.Module) -> None:
    """PyTorch starts biases at 0 and LayerNorm at (1, 0), which would hide a missing or
    misplaced bias or norm; give every 1-D parameter random values instead."""
    with torch.no_grad():
        for p in module.parameters():
            if p.dim() == 1:
                p.normal_(0.0, 0.5)


def copy_linear(ours: nn.Linear, theirs: nn.Linear) -> None:
    with torch.no_grad():
        ours.weight.copy_(theirs.weight)
        if theirs.bias is not None:
            ours.bias.copy_(theirs.bias)


def copy_mha(ours: MultiHeadAttention, theirs: nn.MultiheadAttention) -> None:
    with torch.no_grad():
        for layer, w, b in zip((ours.W_q, ours.W_k, ours.W_v), theirs.in_proj_weight.chunk(3),
                               theirs.in_proj_bias.chunk(3)):
            layer.weight.copy_(w)
            layer.bias.copy_(b)
    copy_linear(ours.W_o, theirs.out_proj)


def copy_ffn(ours: PositionWiseFFN, theirs) -> None:
    copy_linear(ours.dense1, theirs.linear1)
    copy_linear(ours.dense2, theirs.linear2)


def copy_norm(ours: nn.LayerNorm, theirs: nn.LayerNorm) -> None:
    ours.load_state_dict(theirs.state_dict())


def encoder_block_from_torch(layer: nn.TransformerEncoderLayer, norm_first: bool,
                             dropout: float) -> TransformerEncoderBlock:
    ours = TransformerEncoderBlock(N, F, H, dropout, use_bias=True, norm_first=norm_first)
    copy_mha(ours.attention.mha, layer.self_attn)
    copy_ffn(ours.ffn, layer)
    copy_norm(ours.addnorm1.ln, layer.norm1)
    copy_norm(ours.addnorm2.ln, layer.norm2)
    return ours


def decoder_block_from_torch(layer: nn.TransformerDecoderLayer, norm_first: bool,
                             dropout: float) -> TransformerDecoderBlock:
    ours = TransformerDecoderBlock(N, F, H, dropout, use_bias=True, norm_first=norm_first)
    copy_mha(ours.self_attention.mha, layer.self_attn)
    copy_mha(ours.cross_attention.mha, layer.multihead_attn)
    copy_ffn(ours.ffn, layer)
    for addnorm, norm in zip((ours.addnorm1, ours.addnorm2, ours.addnorm3),
                             (layer.norm1, layer.norm2, layer.norm3)):
        copy_norm(addnorm.ln, norm)
    return ours


def torch_encoder_layer(norm_first: bool, dropout: float) -> nn.TransformerEncoderLayer:
    layer = nn.TransformerEncoderLayer(N, H, F, dropout=dropout, activation="relu",
                                       batch_first=True, norm_first=norm_first, bias=True)
    randomise_vectors(layer)
    return layer


def torch_decoder_layer(norm_first: bool, dropout: float) -> nn.TransformerDecoderLayer:
    layer = nn.TransformerDecoderLayer(N, H, F, dropout=dropout, activation="relu",
                                       batch_first=True, norm_first=norm_first, bias=True)
    randomise_vectors(layer)
    return layer


def padding_mask(valid_lens: torch.Tensor, length: int) -> torch.Tensor:
    """PyTorch's key padding mask: True = ignore (the opposite of the package's convention)."""
    return torch.arange(length)[None, :] >= valid_lens[:, None]  # (B, length)


norm_first_ids = pytest.mark.parametrize("norm_first", [False, True], ids=["post_norm", "pre_norm"])
# eval mode with dropout (dropout must switch off), or training mode with dropout 0
modes = pytest.mark.parametrize("training,dropout", [(False, 0.3), (True, 0.0)],
                                ids=["eval", "train_p0"])


# -- blocks against PyTorch ------------------------------------------------------------------

@norm_first_ids
@modes
@pytest.mark.parametrize("padded", [False, True], ids=["no_padding", "padding"])
def test_encoder_block_matches_torch(norm_first, training, dropout, padded):
    layer = torch_encoder_layer(norm_first, dropout).train(training)
    ours = encoder_block_from_torch(layer, norm_first, dropout).train(training)
    X = torch.randn(B, S, N)
    valid_lens = torch.tensor([7, 3, 1]) if padded else None
    mask = padding_mask(valid_lens, S) if padded else None
    expected = layer(X, src_key_padding_mask=mask)
    torch.testing.assert_close(ours(X, valid_lens), expected, **TIGHT)
    with qc.attention_backend("explicit"):
        torch.testing.assert_close(ours(X, valid_lens), expected, **TIGHT)


@norm_first_ids
@modes
@pytest.mark.parametrize("causal_as", ["square_subsequent_mask", "is_causal"])
def test_decoder_block_matches_torch(norm_first, training, dropout, causal_as):
    layer = torch_decoder_layer(norm_first, dropout).train(training)
    ours = decoder_block_from_torch(layer, norm_first, dropout).train(training)
    X, memory = torch.randn(B, T, N), torch.randn(B, S, N)
    enc_valid_lens = torch.tensor([7, 2, 4])
    tgt_mask = nn.Transformer.generate_square_subsequent_mask(T)  # float, -inf above diagonal
    kwargs = (dict(tgt_mask=tgt_mask) if causal_as == "square_subsequent_mask"
              else dict(tgt_mask=tgt_mask, tgt_is_causal=True))
    expected = layer(X, memory, memory_key_padding_mask=padding_mask(enc_valid_lens, S),
                     **kwargs)
    out, (k, v) = ours(X, memory, enc_valid_lens)
    torch.testing.assert_close(out, expected, **TIGHT)
    assert k.shape == v.shape == (B, H, T, N // H)
    with qc.attention_backend("explicit"):
        torch.testing.assert_close(ours(X, memory, enc_valid_lens)[0], expected, **TIGHT)


def test_ffn_and_addnorm_match_torch_pieces():
    layer = torch_encoder_layer(False, 0.0)
    ffn = PositionWiseFFN(N, F)
    copy_ffn(ffn, layer)
    X, Y = torch.randn(B, S, N), torch.randn(B, S, N)
    torch.testing.assert_close(ffn(X), layer.linear2(torch.relu(layer.linear1(X))), **TIGHT)
    post, pre = AddNorm(N, 0.5).eval(), AddNorm(N, 0.5, norm_first=True).eval()
    copy_norm(post.ln, layer.norm1)
    copy_norm(pre.ln, layer.norm1)
    torch.testing.assert_close(post(X, Y), layer.norm1(X + Y), **TIGHT)
    torch.testing.assert_close(pre(X, Y), X + Y, **TIGHT)
    torch.testing.assert_close(pre.sublayer_input(X), layer.norm1(X), **TIGHT)
    assert post.sublayer_input(X) is X
    # the dropout sits on Y, the sub-layer's output, not on the residual X
    post.train()
    zeros = torch.zeros_like(X)
    torch.testing.assert_close(post(X, zeros), layer.norm1(X), **TIGHT)


# -- whole stacks against PyTorch ------------------------------------------------------------

@norm_first_ids
def test_encoder_matches_torch_stack(norm_first):
    V, num_blks = 11, 2
    ours = TransformerEncoder(V, N, F, H, num_blks, 0.2, use_bias=True,
                              norm_first=norm_first).eval()
    layer = torch_encoder_layer(norm_first, 0.2)
    final = nn.LayerNorm(N) if norm_first else None
    theirs = nn.TransformerEncoder(layer, num_blks, norm=final, enable_nested_tensor=False).eval()
    randomise_vectors(theirs)  # the deep-copied layers get different biases and norms
    for blk, their_layer in zip(ours.blks, theirs.layers):
        blk.load_state_dict(encoder_block_from_torch(their_layer, norm_first, 0.2).state_dict())
    if norm_first:
        copy_norm(ours.norm, theirs.norm)
    else:
        assert ours.norm is None

    src = torch.randint(0, V, (B, S))
    valid_lens = torch.tensor([7, 4, 2])
    X = ours.embedding(src) * math.sqrt(N) + qc.sinusoidal_table(S, N)[None]  # (B, S, N)
    expected = theirs(X, src_key_padding_mask=padding_mask(valid_lens, S))
    torch.testing.assert_close(ours(src, valid_lens), expected, **TIGHT)
    assert ours.attention_weights == [None, None]  # not requested: fused path


@norm_first_ids
def test_decoder_matches_torch_stack(norm_first):
    V, num_blks = 13, 2
    ours = TransformerDecoder(V, N, F, H, num_blks, 0.2, use_bias=True,
                              norm_first=norm_first).eval()
    layer = torch_decoder_layer(norm_first, 0.2)
    final = nn.LayerNorm(N) if norm_first else None
    theirs = nn.TransformerDecoder(layer, num_blks, norm=final).eval()
    randomise_vectors(theirs)
    for blk, their_layer in zip(ours.blks, theirs.layers):
        blk.load_state_dict(decoder_block_from_torch(their_layer, norm_first, 0.2).state_dict())
    if norm_first:
        copy_norm(ours.norm, theirs.norm)

    tgt, memory = torch.randint(0, V, (B, T)), torch.randn(B, S, N)
    enc_valid_lens = torch.tensor([1, 7, 5])
    X = ours.embedding(tgt) * math.sqrt(N) + qc.sinusoidal_table(T, N)[None]  # (B, T, N)
    hidden = theirs(X, memory, tgt_mask=nn.Transformer.generate_square_subsequent_mask(T),
                    tgt_is_causal=True,
                    memory_key_padding_mask=padding_mask(enc_valid_lens, S))
    logits, state = ours(tgt, ours.init_state(memory, enc_valid_lens))
    torch.testing.assert_close(logits, ours.dense(hidden), **TIGHT)
    assert logits.shape == (B, T, V) and state["num_decoded"] == T


# -- against d2l -----------------------------------------------------------------------------

@pytest.mark.parametrize("use_bias", [False, True], ids=["no_bias", "bias"])
@pytest.mark.parametrize("valid_lens", [torch.tensor([7, 3, 1]),
                                        torch.tensor([[1, 2, 3, 4, 5, 6, 7]] * 3)],
                         ids=["1d", "2d"])
def test_encoder_block_matches_d2l(d2l, use_bias, valid_lens):
    theirs = d2l.TransformerEncoderBlock(N, F, H, 0.5, use_bias).eval()
    X = torch.randn(B, S, N)
    theirs(X, valid_lens)  # materialise the LazyLinear layers
    randomise_vectors(theirs)
    ours = TransformerEncoderBlock(N, F, H, 0.5, use_bias).eval()
    for name in ("W_q", "W_k", "W_v", "W_o"):
        copy_linear(getattr(ours.attention.mha, name), getattr(theirs.attention, name))
    copy_linear(ours.ffn.dense1, theirs.ffn.dense1)
    copy_linear(ours.ffn.dense2, theirs.ffn.dense2)
    copy_norm(ours.addnorm1.ln, theirs.addnorm1.ln)
    copy_norm(ours.addnorm2.ln, theirs.addnorm2.ln)
    expected = theirs(X, valid_lens)
    torch.testing.assert_close(ours(X, valid_lens), expected, **TIGHT)
    ours.attention.need_weights = True
    torch.testing.assert_close(ours(X, valid_lens), expected, **TIGHT)
    # d2l keeps (B*H, S, S), heads folded into the batch
    torch.testing.assert_close(ours.attention.attention_weights.reshape(B * H, S, S),
                               theirs.attention.attention.attention_weights, **TIGHT)


# -- incremental decoding and beam-search reordering -----------------------------------------

def small_model(norm_first=False, dropout=0.2, V=17, max_len=50) -> EncoderDecoder:
    config = TransformerConfig(V, V, num_hiddens=N, ffn_num_hiddens=F, num_heads=H,
                               num_enc_blks=2, num_dec_blks=2, dropout=dropout,
                               max_len=max_len, norm_first=norm_first)
    return make_transformer(config).eval()


@norm_first_ids
@pytest.mark.parametrize("backend", ["auto", "explicit"])
def test_incremental_decoding_equals_teacher_forcing(norm_first, backend):
    model = small_model(norm_first)
    src, tgt = torch.randint(0, 17, (B, S)), torch.randint(0, 17, (B, 6))
    src_valid_lens = torch.tensor([7, 5, 2])
    with qc.attention_backend(backend):
        enc_outputs = model.encoder(src, src_valid_lens)
        state = model.decoder.init_state(enc_outputs, src_valid_lens)
        full, full_state = model.decoder(tgt, state)
        torch.testing.assert_close(full, model(src, tgt, src_valid_lens), rtol=0, atol=0)
        # one token at a time
        steps, step_state = [], state
        for t in range(tgt.shape[1]):
            logits, step_state = model.decoder(tgt[:, t:t + 1], step_state)
            assert step_state["num_decoded"] == t + 1
            assert step_state["caches"][0][0].shape == (B, H, t + 1, N // H)
            steps.append(logits)
        torch.testing.assert_close(torch.cat(steps, dim=1), full, **TIGHT)
        # a chunk of 4, then 2 more: new token j of a chunk sees cached positions 0..P+j
        first, chunk_state = model.decoder(tgt[:, :4], state)
        rest, chunk_state = model.decoder(tgt[:, 4:], chunk_state)
        torch.testing.assert_close(torch.cat((first, rest), dim=1), full, **TIGHT)
    for (k1, v1), (k2, v2) in zip(full_state["caches"], step_state["caches"]):
        torch.testing.assert_close(k1, k2, **TIGHT)
        torch.testing.assert_close(v1, v2, **TIGHT)
    assert state["num_decoded"] == 0 and state["caches"] == [None, None]  # not mutated


def test_runs_on_every_device(device):
    """Masks, positions and caches follow the input's device (bf16 on an accelerator)."""
    dtype = dtype_for(device)
    model = small_model().to(device=device, dtype=dtype)
    src = torch.randint(0, 17, (B, S), device=device)
    tgt = torch.randint(0, 17, (B, 4), device=device)
    src_valid_lens = torch.tensor([7, 5, 2], device=device)
    full = model(src, tgt, src_valid_lens)
    assert full.device.type == device.type and full.dtype == dtype
    state = model.decoder.init_state(model.encoder(src, src_valid_lens), src_valid_lens)
    steps = []
    for t in range(4):
        logits, state = model.decoder(tgt[:, t:t + 1], state)
        steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, **tolerance(dtype))
    reordered = model.decoder.reorder_state(state, torch.tensor([1, 1, 0]))
    assert reordered["caches"][0][0].device.type == device.type


def test_decoder_weights_with_cache():
    model = small_model()
    model.decoder.need_weights = True
    src, tgt = torch.randint(0, 17, (B, S)), torch.randint(0, 17, (B, 4))
    src_valid_lens = torch.tensor([7, 5, 2])
    state = model.decoder.init_state(model.encoder(src, src_valid_lens), src_valid_lens)
    _, state = model.decoder(tgt[:, :3], state)
    weights = model.decoder.attention_weights
    assert len(weights["self"]) == len(weights["cross"]) == 2
    self_w, cross_w = weights["self"][0], weights["cross"][1]
    assert self_w.shape == (B, H, 3, 3) and cross_w.shape == (B, H, 3, S)
    assert torch.all(self_w.triu(1) == 0)  # nothing above the diagonal: no peeking ahead
    assert torch.all(cross_w[2, :, :, 2:] == 0)  # source row 2 has 2 valid tokens
    torch.testing.assert_close(cross_w.sum(-1), torch.ones(B, H, 3))
    _, state = model.decoder(tgt[:, 3:], state)
    self_w = model.decoder.attention_weights["self"][0]
    assert self_w.shape == (B, H, 1, 4)  # the new token sees all 4 positions
    torch.testing.assert_close(self_w.sum(-1), torch.ones(B, H, 1))


def test_reorder_state_selects_rows():
    model = small_model()
    src, tgt = torch.randint(0, 17, (B, S)), torch.randint(0, 17, (B, 5))
    src_valid_lens = torch.tensor([7, 5, 2])
    decoder = model.decoder
    state = decoder.init_state(model.encoder(src, src_valid_lens), src_valid_lens)
    _, state = decoder(tgt[:, :3], state)
    index = torch.tensor([2, 0, 0, 1])
    reordered = decoder.reorder_state(state, index)
    assert reordered["num_decoded"] == 3
    torch.testing.assert_close(reordered["enc_outputs"], state["enc_outputs"][index])
    assert reordered["enc_valid_lens"].tolist() == [2, 7, 7, 5]
    for (k, v), (k0, v0) in zip(reordered["caches"], state["caches"]):
        assert k.shape == (4, H, 3, N // H)
        torch.testing.assert_close(k, k0[index], rtol=0, atol=0)
        torch.testing.assert_close(v, v0[index], rtol=0, atol=0)
    # continuing from the reordered state = decoding the reordered batch from scratch
    continued, _ = decoder(tgt[index, 3:], reordered)
    expected = model(src[index], tgt[index], src_valid_lens[index])[:, 3:]
    torch.testing.assert_close(continued, expected, **TIGHT)


# -- causality -------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["explicit", "fused"])
def test_causal_self_attention_has_no_information_from_the_future(backend):
    attention = CausalSelfAttention(N, H, bias=True).double()
    X = torch.randn(1, 6, N, dtype=torch.float64)
    with qc.attention_backend(backend):
        jacobian = torch.autograd.functional.jacobian(lambda x: attention(x)[0], X)
    jacobian = jacobian[0, :, :, 0]  # (T out, N, T in, N)
    for i in range(6):
        for j in range(6):
            block = jacobian[i, :, j]
            if j > i:
                assert torch.all(block == 0), f"output {i} depends on future input {j}"
            else:
                assert block.abs().max() > 1e-6, f"output {i} ignores input {j}"


def test_causal_self_attention_with_cache_sees_the_past_but_not_the_future():
    attention = CausalSelfAttention(N, H).eval()
    X = torch.randn(2, 7, N)
    full, _ = attention(X)
    _, cache = attention(X[:, :4])
    new = X[:, 4:].clone().requires_grad_(True)
    out, (k, v) = attention(new, cache)
    assert k.shape == (2, H, 7, N // H)
    torch.testing.assert_close(out, full[:, 4:], **TIGHT)
    out[:, 0].sum().backward()  # the first new token must not see the two after it
    assert torch.all(new.grad[:, 1:] == 0) and new.grad[:, 0].abs().max() > 0


def test_global_and_cross_attention_masks():
    glob = GlobalSelfAttention(N, H, need_weights=True)
    X = torch.randn(B, S, N)
    glob(X, torch.tensor([7, 3, 1]))
    w = glob.attention_weights
    assert w.shape == (B, H, S, S)
    assert torch.all(w[1, :, :, 3:] == 0) and torch.all(w[0] > 0)
    cross = CrossAttention(N, H, need_weights=True)
    out = cross(torch.randn(B, T, N), X, torch.tensor([2, 7, 0]))
    assert out.shape == (B, T, N)
    assert cross.attention_weights.shape == (B, H, T, S)
    assert torch.all(cross.attention_weights[2] == 0)  # no valid source token: zeros, no NaN
    assert not out.isnan().any()
    cross.need_weights = False
    assert cross(torch.randn(B, T, N), X).shape == (B, T, N) and cross.attention_weights is None


def test_encoder_attention_weights_when_requested():
    model = small_model()
    model.encoder.need_weights = True
    assert model.encoder.need_weights
    src = torch.randint(0, 17, (B, S))
    model.encoder(src, torch.tensor([7, 4, 4]))
    weights = model.encoder.attention_weights
    assert len(weights) == 2 and all(w.shape == (B, H, S, S) for w in weights)
    assert all(torch.all(w[1, :, :, 4:] == 0) for w in weights)


# -- the whole model learns ------------------------------------------------------------------

PAD, BOS, EOS = 0, 1, 2


def reversal_task(num_seqs=8, max_len=6, vocab_size=12):
    """Fixed random sequences (symbols 3..V-1) of lengths 3..max_len, padded; the target is
    the reversed sequence followed by EOS."""
    g = torch.Generator().manual_seed(1)
    lens = torch.randint(3, max_len + 1, (num_seqs,), generator=g)
    src = torch.full((num_seqs, max_len), PAD)
    tgt = torch.full((num_seqs, max_len + 1), PAD)
    for b, n in enumerate(lens.tolist()):
        seq = torch.randint(3, vocab_size, (n,), generator=g)
        src[b, :n] = seq
        tgt[b, :n] = seq.flip(0)
        tgt[b, n] = EOS
    dec_input = torch.cat((torch.full((num_seqs, 1), BOS), tgt[:, :-1]), dim=1)
    return src, lens, dec_input, tgt


def greedy_decode(model: EncoderDecoder, src, src_valid_lens, num_steps: int) -> torch.Tensor:
    state = model.decoder.init_state(model.encoder(src, src_valid_lens), src_valid_lens)
    token, outputs = torch.full((src.shape[0], 1), BOS), []
    for _ in range(num_steps):
        logits, state = model.decoder(token, state)
        token = logits.argmax(-1)  # (B, 1)
        outputs.append(token)
    return torch.cat(outputs, dim=1)


def fits(model: EncoderDecoder, src, src_valid_lens, dec_input, labels) -> bool:
    """Every target token right, both under teacher forcing and when generated greedily."""
    keep = labels != PAD
    model.eval()
    with torch.no_grad():
        predicted = model(src, dec_input, src_valid_lens).argmax(-1)
        generated = greedy_decode(model, src, src_valid_lens, labels.shape[1])
    model.train()
    return torch.equal(predicted[keep], labels[keep]) and torch.equal(generated[keep], labels[keep])


@norm_first_ids
def test_overfits_a_reversal_task(norm_first):
    V = 12
    src, src_valid_lens, dec_input, labels = reversal_task(vocab_size=V)
    model = make_transformer(TransformerConfig(V, V, num_hiddens=32, ffn_num_hiddens=64,
                                               num_heads=4, dropout=0.0, norm_first=norm_first))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    assert not fits(model, src, src_valid_lens, dec_input, labels)
    # About 60 steps reach 100% under teacher forcing; greedy generation needs a few more.
    for step in range(1, 301):
        loss = sequence_loss(model(src, dec_input, src_valid_lens), labels, PAD)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 10 == 0 and fits(model, src, src_valid_lens, dec_input, labels):
            break
    assert fits(model, src, src_valid_lens, dec_input, labels), f"loss {loss.item():.4f}"


# -- configuration ---------------------------------------------------------------------------

def test_config_defaults_and_paper_base():
    base = TransformerConfig.paper_base(37000, 37000)
    assert (base.num_hiddens, base.num_heads, base.ffn_num_hiddens, base.num_enc_blks,
            base.num_dec_blks, base.dropout) == (512, 8, 2048, 6, 6, 0.1)
    small = TransformerConfig(10, 12)
    model = make_transformer(small)
    assert isinstance(model, EncoderDecoder)
    assert len(model.encoder.blks) == small.num_enc_blks
    assert len(model.decoder.blks) == small.num_dec_blks
    assert model.encoder.embedding.num_embeddings == 10
    assert model.decoder.dense.out_features == 12
    logits = model.eval()(torch.randint(0, 10, (2, 4)), torch.randint(0, 12, (2, 3)))
    assert logits.shape == (2, 3, 12)


# -- bad input -------------------------------------------------------------------------------

class TestBadInput:
    @pytest.fixture
    def model(self):
        return small_model(V=17, max_len=10)

    def test_num_heads_must_divide_num_hiddens(self):
        for build in (lambda: TransformerEncoderBlock(10, 16, 3, 0.0),
                      lambda: TransformerDecoderBlock(10, 16, 3, 0.0),
                      lambda: make_transformer(TransformerConfig(5, 5, num_hiddens=30,
                                                                 num_heads=4))):
            with raises(ValueError, "num_heads", "num_hiddens"):
                build()

    def test_sub_layers_run_bare_and_the_entry_points_check(self):
        """Blocks, Residual, the FFN and the attention roles do not check their inputs (issue
        11: once, at the boundary); the public layers that take the same tensors do."""
        blk = TransformerEncoderBlock(N, F, H, 0.0)
        with pytest.raises(RuntimeError):  # PyTorch's own error, from inside the layer
            blk(torch.randn(B, S, N + 1))
        mha = qc.MultiHeadAttention(N, H)
        X = torch.randn(B, S, N)
        with raises(ValueError, "queries", "3-D", str((S, N))):
            mha(torch.randn(S, N), X, X)
        with raises(ValueError, "queries", f"{N} features", str((B, S, N + 1))):
            mha(torch.randn(B, S, N + 1), X, X)
        with raises(TypeError, "queries", "torch.int64", str((B, S, N))):
            mha(torch.ones(B, S, N, dtype=torch.long), X, X)
        with raises(ValueError, "batch sizes", "queries", "keys", str((2, S, N))):
            mha(X, torch.randn(2, S, N), torch.randn(2, S, N))
        with raises(ValueError, "X", "Y", str((B, S, N)), str((B, 2, N))):
            AddNorm(N, 0.0)(torch.randn(B, S, N), torch.randn(B, 2, N))  # d2l's form checks

    def test_attention_valid_lens(self):
        mha = qc.MultiHeadAttention(N, H)
        X = torch.randn(B, S, N)
        with raises(ValueError, "valid_lens", str((2,))):
            mha(X, X, X, torch.tensor([1, 2]))
        with raises(TypeError, "valid_lens", "torch.float32"):
            mha(X, X, X, torch.tensor([1.0, 2.0, 3.0]))
        with raises(ValueError, "valid_lens", f"[0, {S}]", "8"):
            mha(X, X, X, torch.tensor([1, 2, 8]))

    def test_source_tokens(self, model):
        enc = model.encoder
        with raises(ValueError, "src", "2-D", str((S,))):
            enc(torch.randint(0, 17, (S,)))
        with raises(ValueError, "src", "2-D", str((B, S, 1))):
            enc(torch.randint(0, 17, (B, S, 1)))
        with raises(TypeError, "src", "torch.float32", str((B, S))):
            enc(torch.rand(B, S))
        with raises(ValueError, "src", "[0, 17)", "17", str((B, S))):
            enc(torch.full((B, S), 17))
        with raises(ValueError, "src", str((B, 11)), "max_len=10"):
            enc(torch.zeros(B, 11, dtype=torch.long))

    def test_source_valid_lens(self, model):
        src = torch.randint(0, 17, (B, S))
        with raises(ValueError, "src_valid_lens", str((2,)), str((B, S)), f"({B},)"):
            model.encoder(src, torch.tensor([1, 2]))
        with raises(ValueError, "src_valid_lens", "1-D", str((B, S))):
            model.encoder(src, torch.ones(B, S, dtype=torch.long))
        with raises(TypeError, "src_valid_lens", "torch.float32", str((B,))):
            model.encoder(src, torch.tensor([1.0, 2.0, 3.0]))
        with raises(TypeError, "src_valid_lens", "torch.bool"):
            model.encoder(src, torch.tensor([True, False, True]))
        with raises(ValueError, "src_valid_lens", f"[0, {S}]", "-1"):
            model.encoder(src, torch.tensor([-1, 2, 3]))
        with raises(ValueError, "src_valid_lens", "enc_outputs", f"[0, {S}]", "9"):
            model.decoder.init_state(torch.randn(B, S, N), torch.tensor([9, 2, 3]))

    def test_target_tokens_and_state(self, model):
        dec = model.decoder
        state = dec.init_state(torch.randn(B, S, N), torch.tensor([7, 2, 3]))
        with raises(TypeError, "tgt", "torch.float32", str((B, T))):
            dec(torch.rand(B, T), state)
        with raises(ValueError, "tgt", "2-D", str((T,))):
            dec(torch.randint(0, 17, (T,)), state)
        with raises(ValueError, "tgt", "[0, 17)", "-3"):
            dec(torch.full((B, T), -3), state)
        with raises(ValueError, "tgt", "at least one token", str((B, 0))):
            dec(torch.zeros(B, 0, dtype=torch.long), state)
        with raises(ValueError, "batch sizes", "tgt", str((2, T)), str((B, S, N))):
            dec(torch.randint(0, 17, (2, T)), state)
        with raises(TypeError, "state", "init_state"):
            dec(torch.randint(0, 17, (B, T)), [torch.randn(B, S, N), None])
        with raises(ValueError, "enc_outputs", f"num_hiddens={N}", str((B, S, 3))):
            dec.init_state(torch.randn(B, S, 3))
        with raises(ValueError, "enc_outputs", "3-D", str((S, N))):
            dec.init_state(torch.randn(S, N))

    def test_target_longer_than_max_len(self, model):
        dec = model.decoder
        state = dec.init_state(torch.randn(B, S, N))
        with raises(ValueError, "tgt", str((B, 11)), "max_len=10"):
            dec(torch.zeros(B, 11, dtype=torch.long), state)
        _, state = dec(torch.zeros(B, 8, dtype=torch.long), state)
        _, state = dec(torch.zeros(B, 2, dtype=torch.long), state)  # exactly max_len: fine
        with raises(ValueError, "tgt", "position 11", "after 10 decoded tokens", "max_len=10"):
            dec(torch.zeros(B, 1, dtype=torch.long), state)

    def test_bad_cache(self, model):
        dec = model.decoder
        state = dec.init_state(torch.randn(B, S, N))
        _, state = dec(torch.zeros(B, 2, dtype=torch.long), state)
        tgt = torch.zeros(B, 1, dtype=torch.long)
        good = state["caches"][0][0]  # (B, H, 2, D)
        name = "state['caches'][0]"
        for cache, exc, fragments in (
                (good, TypeError, (name, "pair")),
                ((torch.randn(B, 2, 2, 8), good), ValueError,
                 (f"{name} keys", f"({B}, {H}, P, {N // H})", str((B, 2, 2, 8)))),
                ((good, torch.randn(B, 2, N)), ValueError, (f"{name} values", "4-D",
                                                            str((B, 2, N)))),
                ((good, torch.randn(B, H, 3, N // H)), ValueError,
                 ("numbers of cached positions", str((B, H, 3, N // H))))):
            with raises(exc, *fragments):
                dec(tgt, {**state, "caches": [cache, *state["caches"][1:]]})

    def test_reorder_state_index(self, model):
        state = model.decoder.init_state(torch.randn(B, S, N))
        with raises(TypeError, "index", "torch.float32"):
            model.decoder.reorder_state(state, torch.tensor([0.0, 1.0]))
        with raises(ValueError, "index", f"[0, {B})", "5"):
            model.decoder.reorder_state(state, torch.tensor([0, 5]))
        with raises(ValueError, "index", "1-D", str((2, 1))):
            model.decoder.reorder_state(state, torch.zeros(2, 1, dtype=torch.long))

    def test_inconsistent_state(self, model):
        dec = model.decoder
        state = dec.init_state(torch.randn(B, S, N))
        _, state = dec(torch.zeros(B, 2, dtype=torch.long), state)
        with raises(ValueError, "num_decoded", "5", "2 positions"):
            dec(torch.zeros(B, 1, dtype=torch.long), {**state, "num_decoded": 5})


@pytest.mark.parametrize("side", ["encoder", "decoder"])
def test_scaled_embeddings_do_not_drown_the_positional_encoding(side):
    """sqrt(N) * embedding should be of the same order as the sinusoidal table (RMS ~0.7)."""
    torch.manual_seed(0)
    config = qc.TransformerConfig(src_vocab_size=500, tgt_vocab_size=500, num_hiddens=64)
    model = qc.make_transformer(config)
    module = getattr(model, side)
    scaled = module.embedding.weight * math.sqrt(config.num_hiddens)
    positions = module.pos_encoding.P[0, :100]
    ratio = scaled.pow(2).mean().sqrt() / positions.pow(2).mean().sqrt()
    assert 1.0 < ratio < 2.0, f"RMS ratio embedding/position = {ratio:.2f}"
