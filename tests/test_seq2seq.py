"""RNN encoder–decoders (chapter 4): shapes, padding, incremental decoding, the Bahdanau
step against an explicit re-computation, d2l's encoder, an overfit run and bad input."""
from __future__ import annotations


import pytest
import torch

from qkvcourse.decoding import greedy_search
from qkvcourse.encoder_decoder import EncoderDecoder
from qkvcourse.losses import sequence_loss
from qkvcourse.seq2seq import (RNNSeq2SeqConfig, Seq2SeqAttentionDecoder, Seq2SeqAttentionState,
                               Seq2SeqDecoder, Seq2SeqEncoder, Seq2SeqState, make_rnn_seq2seq)
from helpers import raises

V_SRC, V_TGT, E, N, L = 11, 13, 8, 16, 2
TOL = dict(rtol=1e-5, atol=1e-5)
DECODERS = [Seq2SeqDecoder, Seq2SeqAttentionDecoder]


pytestmark = pytest.mark.usefixtures("one_thread")




def build(decoder_cls=Seq2SeqAttentionDecoder, num_layers=L, dropout=0.0):
    model = EncoderDecoder(Seq2SeqEncoder(V_SRC, E, N, num_layers, dropout),
                           decoder_cls(V_TGT, E, N, num_layers, dropout))
    return model.eval()


def batch(B=4, S=6, T=5, lens=(6, 3, 1, 4)):
    g = torch.Generator().manual_seed(1)
    src = torch.randint(0, V_SRC, (B, S), generator=g)
    tgt = torch.randint(0, V_TGT, (B, T), generator=g)
    return src, tgt, torch.tensor(lens)


def decode(model, src, tgt, lens):
    state = model.decoder.init_state(model.encoder(src, lens), lens)
    return model.decoder(tgt, state)


# -- shapes ------------------------------------------------------------------------------------

def test_encoder_shapes():
    src, _, lens = batch()
    outputs, state = Seq2SeqEncoder(V_SRC, E, N, L)(src, lens)
    assert outputs.shape == (4, 6, N) and state.shape == (L, 4, N)
    outputs, state = Seq2SeqEncoder(V_SRC, E, N, 3)(src)
    assert outputs.shape == (4, 6, N) and state.shape == (3, 4, N)


@pytest.mark.parametrize("decoder_cls", DECODERS)
def test_decoder_shapes(decoder_cls):
    model = build(decoder_cls)
    src, tgt, lens = batch()
    logits, state = decode(model, src, tgt, lens)
    assert logits.shape == (4, 5, V_TGT)
    assert state.hidden.shape == (L, 4, N)
    assert model(src, tgt, lens).shape == (4, 5, V_TGT)
    if decoder_cls is Seq2SeqAttentionDecoder:
        assert isinstance(state, Seq2SeqAttentionState)
        assert model.decoder.attention_weights.shape == (4, 5, 6)
        assert model.decoder.contexts.shape == (4, 5, N)
    else:
        assert isinstance(state, Seq2SeqState) and state.context.shape == (4, N)
        assert model.decoder.attention_weights is None


@pytest.mark.parametrize("attention", [True, False])
def test_make_rnn_seq2seq(attention):
    config = RNNSeq2SeqConfig(embed_size=6, num_hiddens=10, num_layers=1, dropout=0.0)
    model = make_rnn_seq2seq(V_SRC, V_TGT, attention=attention, config=config)
    expected = Seq2SeqAttentionDecoder if attention else Seq2SeqDecoder
    assert isinstance(model.decoder, expected) and model.decoder.num_hiddens == 10
    src, tgt, lens = batch()
    assert model(src, tgt, lens).shape == (4, 5, V_TGT)
    assert make_rnn_seq2seq(5, 7).decoder.num_layers == RNNSeq2SeqConfig().num_layers


# -- padding -----------------------------------------------------------------------------------

def test_encoder_final_state_is_taken_at_the_last_valid_position():
    """Reference: the same GRU run on each row alone, cut to its valid length, unpadded."""
    encoder = Seq2SeqEncoder(V_SRC, E, N, L).eval()
    src, _, lens = batch()
    outputs, state = encoder(src, lens)
    for b, n in enumerate(lens.tolist()):
        out_b, state_b = encoder(src[b:b + 1, :n])
        torch.testing.assert_close(state[:, b], state_b[:, 0], **TOL)
        torch.testing.assert_close(outputs[b, :n], out_b[0], **TOL)
        assert torch.all(outputs[b, n:] == 0)


def test_encoder_zero_length_row():
    encoder = Seq2SeqEncoder(V_SRC, E, N, L).eval()
    src, _, _ = batch()
    outputs, state = encoder(src, torch.tensor([6, 0, 2, 0]))
    assert torch.all(state[:, [1, 3]] == 0) and torch.all(outputs[[1, 3]] == 0)
    assert state[:, [0, 2]].abs().sum() > 0


@pytest.mark.parametrize("decoder_cls", DECODERS)
def test_padding_invariance(decoder_cls):
    """Appending padding (here arbitrary tokens) after the valid lengths changes nothing."""
    model = build(decoder_cls)
    src, tgt, lens = batch()
    longer = torch.cat([src, torch.randint(0, V_SRC, (4, 5))], dim=1)  # (4, 11)
    with torch.no_grad():
        out_a, state_a = model.encoder(src, lens)
        out_b, state_b = model.encoder(longer, lens)
        torch.testing.assert_close(state_a, state_b, **TOL)
        torch.testing.assert_close(out_a, out_b[:, :6], **TOL)
        logits_a, _ = decode(model, src, tgt, lens)
        weights_a = model.decoder.attention_weights
        logits_b, _ = decode(model, longer, tgt, lens)
        torch.testing.assert_close(logits_a, logits_b, **TOL)
        if weights_a is not None:
            torch.testing.assert_close(weights_a, model.decoder.attention_weights[..., :6], **TOL)
        # Without src_valid_lens the padding is read, so the logits must change
        changed, _ = decode(model, longer, tgt, None)
    assert not torch.allclose(logits_a, changed, atol=1e-3)


# -- decoding contract -------------------------------------------------------------------------

@pytest.mark.parametrize("decoder_cls", DECODERS)
def test_whole_equals_incremental(decoder_cls):
    model = build(decoder_cls, dropout=0.3)  # eval mode: dropout off
    src, tgt, lens = batch(T=7)
    with torch.no_grad():
        whole, whole_state = decode(model, src, tgt, lens)
        whole_weights = model.decoder.attention_weights
        state = model.decoder.init_state(model.encoder(src, lens), lens)
        steps, weights = [], []
        for t in range(tgt.shape[1]):
            logits, state = model.decoder(tgt[:, t:t + 1], state)
            steps.append(logits)
            weights.append(model.decoder.attention_weights)
    torch.testing.assert_close(torch.cat(steps, dim=1), whole, **TOL)
    torch.testing.assert_close(state.hidden, whole_state.hidden, **TOL)
    if whole_weights is not None:
        assert weights[0].shape == (4, 1, 6)
        torch.testing.assert_close(torch.cat(weights, dim=1), whole_weights, **TOL)


@pytest.mark.parametrize("decoder_cls", DECODERS)
def test_reorder_state(decoder_cls):
    """Decoding from reordered states equals reordering the rows decoded from the originals."""
    model = build(decoder_cls)
    src, tgt, lens = batch()
    index = torch.tensor([2, 0, 0, 3, 1, 2])
    with torch.no_grad():
        state = model.decoder.init_state(model.encoder(src, lens), lens)
        _, state = model.decoder(tgt[:, :2], state)
        expected, _ = model.decoder(tgt[:, 2:], state)
        picked = model.decoder.reorder_state(state, index)
        got, _ = model.decoder(tgt[index, 2:], picked)
    assert type(picked) is type(state) and picked.hidden.shape == (L, 6, N)
    torch.testing.assert_close(got, expected[index], **TOL)


def test_attention_weights_sum_to_one_and_respect_lengths():
    model = build()
    src, tgt, lens = batch()
    with torch.no_grad():
        decode(model, src, tgt, lens)
    weights = model.decoder.attention_weights  # (4, 5, 6)
    torch.testing.assert_close(weights.sum(-1), torch.ones(4, 5), **TOL)
    beyond = torch.arange(6)[None, None, :] >= lens[:, None, None]  # (4, 1, 6)
    assert torch.all(weights.masked_select(beyond.expand_as(weights)) == 0)
    assert torch.all(weights.masked_select(~beyond.expand_as(weights)) > 0)


def _gru_cell(x, h, w_ih, w_hh, b_ih, b_hh):
    """One GRU step written out (PyTorch's gate order: reset, update, new)."""
    r_i, z_i, n_i = (x @ w_ih.T + b_ih).chunk(3, dim=-1)
    r_h, z_h, n_h = (h @ w_hh.T + b_hh).chunk(3, dim=-1)
    r, z = torch.sigmoid(r_i + r_h), torch.sigmoid(z_i + z_h)
    n = torch.tanh(n_i + r * n_h)
    return (1 - z) * n + z * h


def test_bahdanau_step_matches_explicit_equations():
    """Two steps of eqs. (4)-(6) of Bahdanau et al. recomputed from the parameters."""
    model = build()
    dec = model.decoder
    src, tgt, lens = batch(T=2)
    with torch.no_grad():
        enc_out, enc_state = model.encoder(src, lens)
        logits, _ = dec(tgt, dec.init_state((enc_out, enc_state), lens))
        s = enc_state.clone()  # (L, B, N)
        valid = torch.arange(6)[None, :] < lens[:, None]  # (B, S)
        for i in range(2):
            W_q, W_k = dec.attention.W_q.weight, dec.attention.W_k.weight
            w_v = dec.attention.w_v.weight[0]
            e = torch.tanh((s[-1] @ W_q.T)[:, None, :] + enc_out @ W_k.T) @ w_v  # (B, S)
            e = e.masked_fill(~valid, float("-inf"))
            alpha = torch.exp(e - e.max(-1, keepdim=True).values)
            alpha = alpha / alpha.sum(-1, keepdim=True)  # (B, S)
            c = (alpha[:, :, None] * enc_out).sum(1)  # (B, N)
            x = torch.cat([dec.embedding.weight[tgt[:, i]], c], dim=-1)
            new = []
            for layer in range(L):
                p = [getattr(dec.rnn, f"{n}_l{layer}") for n in
                     ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
                x = _gru_cell(x, s[layer], *p)
                new.append(x)
            s = torch.stack(new)
            expected = s[-1] @ dec.dense.weight.T + dec.dense.bias
            torch.testing.assert_close(logits[:, i], expected, **TOL)
            torch.testing.assert_close(dec.attention_weights[:, i], alpha, **TOL)
            torch.testing.assert_close(dec.contexts[:, i], c, **TOL)


def test_fixed_context_decoder_matches_explicit_equations():
    model = build(Seq2SeqDecoder, num_layers=1)
    dec = model.decoder
    src, tgt, lens = batch(T=3)
    with torch.no_grad():
        enc_out, enc_state = model.encoder(src, lens)
        logits, _ = dec(tgt, dec.init_state((enc_out, enc_state), lens))
        s, c = enc_state[0], enc_state[-1]
        for i in range(3):
            x = torch.cat([dec.embedding.weight[tgt[:, i]], c], dim=-1)
            s = _gru_cell(x, s, dec.rnn.weight_ih_l0, dec.rnn.weight_hh_l0,
                          dec.rnn.bias_ih_l0, dec.rnn.bias_hh_l0)
            torch.testing.assert_close(logits[:, i], s @ dec.dense.weight.T + dec.dense.bias,
                                       **TOL)


def test_encoder_matches_d2l(d2l):
    """Without padding, the encoder is d2l's Seq2SeqEncoder in a batch-first layout."""
    ours = Seq2SeqEncoder(V_SRC, E, N, L).eval()
    ref = d2l.Seq2SeqEncoder(V_SRC, E, N, L).eval()
    ref.embedding.load_state_dict(ours.embedding.state_dict())
    ref.rnn.rnn.load_state_dict(ours.rnn.state_dict())
    src, _, _ = batch()
    with torch.no_grad():
        out, state = ours(src)
        ref_out, ref_state = ref(src)
    torch.testing.assert_close(out, ref_out.transpose(0, 1), **TOL)  # (S, B, N) -> (B, S, N)
    torch.testing.assert_close(state, ref_state, **TOL)


def test_gradients_flow_and_are_finite():
    model = build().train()
    src, tgt, _ = batch()
    lens = torch.tensor([6, 0, 2, 5])  # an empty source row too
    loss = sequence_loss(model(src, tgt, lens), tgt, pad_id=0)
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.decoder.attention.W_q.weight.grad.abs().sum() > 0


# -- learning ----------------------------------------------------------------------------------

def test_attention_model_learns_to_reverse():
    """Overfit: reverse 8 short sequences, exact match under greedy decoding."""
    torch.manual_seed(0)
    PAD, BOS, EOS, V = 0, 1, 2, 8
    g = torch.Generator().manual_seed(0)
    lengths = [3, 4, 5, 3, 4, 5, 4, 3]
    seqs = [torch.randint(3, V, (n,), generator=g).tolist() for n in lengths]
    S = max(lengths) + 1
    src = torch.tensor([s + [EOS] + [PAD] * (S - len(s) - 1) for s in seqs])
    src_lens = torch.tensor([len(s) + 1 for s in seqs])
    targets = [s[::-1] for s in seqs]
    dec_in = torch.tensor([[BOS] + t + [PAD] * (S - len(t) - 1) for t in targets])
    dec_out = torch.tensor([t + [EOS] + [PAD] * (S - len(t) - 1) for t in targets])
    config = RNNSeq2SeqConfig(embed_size=16, num_hiddens=32, num_layers=1, dropout=0.0)
    model = make_rnn_seq2seq(V, V, attention=True, config=config)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(150):
        loss = sequence_loss(model(src, dec_in, src_lens), dec_out, pad_id=PAD)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert model.training  # greedy_search restores the mode it found
    result = greedy_search(model, src, src_lens, BOS, EOS, max_len=S + 2)
    assert model.training
    assert result.tokens == targets, (loss.item(), result.tokens)
    assert all(result.finished)


# -- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [Seq2SeqEncoder, *DECODERS])
@pytest.mark.parametrize("kwargs,fragments", [
    (dict(vocab_size=0), ("vocab_size", "positive", "0")),
    (dict(embed_size=-2), ("embed_size", "positive", "-2")),
    (dict(num_hiddens=1.5), ("num_hiddens", "1.5")),
    (dict(num_layers=0), ("num_layers", "0")),
    (dict(dropout=1.0), ("dropout", "[0, 1)", "1.0")),
])
def test_bad_constructor_arguments(cls, kwargs, fragments):
    args = dict(vocab_size=5, embed_size=4, num_hiddens=6, num_layers=1) | kwargs
    with raises(ValueError, *fragments):
        cls(**args)


class TestEncoderBadInput:
    encoder = Seq2SeqEncoder(V_SRC, E, N, L)
    src = torch.zeros(2, 3, dtype=torch.long)

    def test_src_not_a_tensor(self):
        with raises(TypeError, "src", "list"):
            self.encoder([[1, 2]])

    def test_src_wrong_rank(self):
        with raises(ValueError, "src", "2-D", "(3,)"):
            self.encoder(torch.zeros(3, dtype=torch.long))

    def test_src_float(self):
        with raises(TypeError, "src", "integer", "torch.float32", "(2, 3)"):
            self.encoder(torch.zeros(2, 3))

    def test_src_out_of_vocabulary(self):
        with raises(ValueError, "src", "(2, 3)", "from 0 to 11", f"[0, {V_SRC})"):
            self.encoder(torch.tensor([[0, 1, 11], [0, 0, 0]]))

    def test_lens_wrong_shape(self):
        with raises(ValueError, "src_valid_lens", "(2,)", "(3,)"):
            self.encoder(self.src, torch.tensor([1, 2, 3]))
        with raises(ValueError, "src_valid_lens", "1-D", "(2, 1)"):
            self.encoder(self.src, torch.tensor([[1], [2]]))

    def test_lens_float(self):
        with raises(TypeError, "src_valid_lens", "integer", "torch.float32", "(2,)"):
            self.encoder(self.src, torch.tensor([1.0, 2.0]))

    def test_lens_out_of_range(self):
        with raises(ValueError, "src_valid_lens", "[0, 3]", "from 1 to 4"):
            self.encoder(self.src, torch.tensor([1, 4]))


@pytest.mark.parametrize("decoder_cls", DECODERS)
class TestDecoderBadInput:
    def setup_state(self, decoder_cls):
        model = build(decoder_cls)
        src, tgt, lens = batch()
        enc = model.encoder(src, lens)
        return model.decoder, enc, model.decoder.init_state(enc, lens), tgt

    def test_init_state_wrong_type(self, decoder_cls):
        dec, enc, _, _ = self.setup_state(decoder_cls)
        with raises(TypeError, "enc_outputs", "Tensor"):
            dec.init_state(enc[0])

    def test_init_state_wrong_sizes(self, decoder_cls):
        dec, enc, _, _ = self.setup_state(decoder_cls)
        with raises(ValueError, "enc_outputs", f"num_hiddens={N}", "(4, 6, 3)", f"({L}, 4, 3)"):
            dec.init_state((torch.zeros(4, 6, 3), torch.zeros(L, 4, 3)))
        with raises(ValueError, "enc_outputs", f"num_layers={L}", f"(1, 4, {N})"):
            dec.init_state((enc[0], enc[1][:1]))

    def test_tgt_float(self, decoder_cls):
        dec, _, state, _ = self.setup_state(decoder_cls)
        with raises(TypeError, "tgt", "integer", "torch.float32", "(4, 5)"):
            dec(torch.zeros(4, 5), state)

    def test_tgt_wrong_rank(self, decoder_cls):
        dec, _, state, _ = self.setup_state(decoder_cls)
        with raises(ValueError, "tgt", "2-D", "(4,)"):
            dec(torch.zeros(4, dtype=torch.long), state)

    def test_tgt_out_of_vocabulary(self, decoder_cls):
        dec, _, state, tgt = self.setup_state(decoder_cls)
        with raises(ValueError, "tgt", "(4, 5)", f"[0, {V_TGT})", "-1"):
            dec(tgt - tgt.max() - 1, state)

    def test_state_wrong_type(self, decoder_cls):
        dec, _, state, tgt = self.setup_state(decoder_cls)
        with raises(TypeError, "state", "init_state", "tuple"):
            dec(tgt, tuple(state))

    def test_state_batch_mismatch(self, decoder_cls):
        dec, _, state, tgt = self.setup_state(decoder_cls)
        with raises(ValueError, "state.hidden", f"({L}, 3, {N})", f"({L}, 4, {N})", "(3, 5)"):
            dec(tgt[:3], state)

    def test_reorder_index(self, decoder_cls):
        dec, _, state, _ = self.setup_state(decoder_cls)
        with raises(TypeError, "index", "integer", "torch.float32", "(2,)"):
            dec.reorder_state(state, torch.tensor([0.0, 1.0]))
        with raises(ValueError, "index", "(2,)", "0 to 4", "batch size 4"):
            dec.reorder_state(state, torch.tensor([0, 4]))
        with raises(ValueError, "index", "1-D", "(1, 2)"):
            dec.reorder_state(state, torch.tensor([[0, 1]]))


def test_attention_init_state_bad_lens():
    model = build(Seq2SeqAttentionDecoder)
    src, _, lens = batch()
    enc = model.encoder(src, lens)
    with raises(ValueError, "src_valid_lens", "(4,)", "(3,)"):
        model.decoder.init_state(enc, torch.tensor([1, 2, 3]))
    with raises(ValueError, "src_valid_lens", "[0, 6]", "from 1 to 7"):
        model.decoder.init_state(enc, torch.tensor([1, 2, 3, 7]))
    with raises(TypeError, "src_valid_lens", "integer", "torch.float32"):
        model.decoder.init_state(enc, torch.tensor([1.0, 2.0, 3.0, 4.0]))


def test_make_rnn_seq2seq_bad_config():
    with raises(TypeError, "config", "RNNSeq2SeqConfig", "dict"):
        make_rnn_seq2seq(5, 5, config=dict(num_hiddens=8))
    with raises(ValueError, "num_hiddens", "positive", "0"):
        make_rnn_seq2seq(5, 5, config=RNNSeq2SeqConfig(num_hiddens=0))
    with raises(ValueError, "vocab_size", "-1"):
        make_rnn_seq2seq(-1, 5)
