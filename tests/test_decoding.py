"""Greedy search and beam search (chapters 4 and 7); BLEU is tested in test_metrics.py.

References: exhaustive enumeration for beam search, teacher forcing for the scores and
attention the searches report, and greedy search for beam search with one beam."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch.nn import functional as F

from qkvcourse.decoding import Hypotheses, beam_search, greedy_search
from qkvcourse.encoder_decoder import Decoder, Encoder, EncoderDecoder
from qkvcourse.seq2seq import RNNSeq2SeqConfig, make_rnn_seq2seq
from helpers import raises

BOS, EOS = 1, 2


pytestmark = pytest.mark.usefixtures("one_thread")




def random_model(seed, attention=True, V=7, eos_bias=1.0, num_layers=2, gain=4.0):
    """An untrained RNN model. At PyTorch's initial scale such a model says one thing
    whatever its input; weights ``gain`` times larger make its outputs vary from step to
    step and from source to source, and ``eos_bias`` sets how soon it tends to end."""
    torch.manual_seed(seed)
    config = RNNSeq2SeqConfig(embed_size=8, num_hiddens=16, num_layers=num_layers, dropout=0.2)
    model = make_rnn_seq2seq(9, V, attention=attention, config=config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "weight" in name:
                parameter.mul_(gain)
        model.decoder.dense.bias[EOS] += eos_bias
    return model


def random_batch(seed, B=5, S=6):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(3, 9, (B, S), generator=g)
    lens = torch.randint(1, S + 1, (B,), generator=g)
    lens[0] = S
    return src, lens


def teacher_forced(model, src, lens, row, tokens, finished):
    """Sum of log-probabilities and per-step attention of one hypothesis, whole-sequence."""
    targets = tokens + [EOS] if finished else tokens
    dec_in = torch.tensor([[BOS] + targets[:-1]]) if targets else None
    if dec_in is None:
        return 0.0, None
    with torch.no_grad():
        enc = model.encoder(src[row:row + 1], lens[row:row + 1])
        logits, _ = model.decoder(dec_in, model.decoder.init_state(enc, lens[row:row + 1]))
    log_probs = F.log_softmax(logits[0], dim=-1)  # (T, V)
    score = log_probs.gather(1, torch.tensor(targets)[:, None]).sum().item()
    return score, model.decoder.attention_weights


# -- a hand-built model: logits depend only on the previous token ----------------------------

class _PassEncoder(Encoder):
    def forward(self, src, src_valid_lens=None):
        return src


class TableDecoder(Decoder):
    """logits(next | previous token) = log table[previous]; the state is just a (B,) counter.

    Records a dict as its ``attention_weights``, to check that the searches keep
    whatever structure a decoder records.
    """

    def __init__(self, table):
        super().__init__()
        probs = torch.tensor(table, dtype=torch.float32)
        self.register_buffer("log_table", probs.clamp_min(1e-9).log())
        self.attention_weights = None
        self.calls = 0

    def init_state(self, enc_outputs, src_valid_lens=None):
        return torch.zeros(enc_outputs.shape[0], dtype=torch.long)

    def forward(self, tgt, state):
        self.calls += 1
        T = tgt.shape[1]
        self.attention_weights = {"previous": tgt.clone(),
                                  "step": (state[:, None] + torch.arange(T)).float()}
        return self.log_table[tgt], state + T


A, B_, C = 3, 4, 5
# rows: previous token; columns: next token (0 pad, 1 bos, 2 eos, 3 A, 4 B, 5 C)
TABLE = [
    [1, 0, 0, 0, 0, 0],           # after pad (unused)
    [0, 0, 0, 0.5, 0.4, 0.1],     # after bos: A is likeliest ...
    [0, 0, 1, 0, 0, 0],           # after eos (unused)
    [0, 0, 0.4, 0.2, 0.2, 0.2],   # ... but after A nothing is sure: "A" scores 0.5·0.4 = 0.2
    [0, 0, 0.9, 0.05, 0.05, 0],   # while "B" scores 0.4·0.9 = 0.36
    [0, 0, 1.0, 0, 0, 0],
]


def table_model():
    return EncoderDecoder(_PassEncoder(), TableDecoder(TABLE))


def test_beam_search_beats_greedy_on_a_hand_built_model():
    model, src = table_model(), torch.zeros(2, 3, dtype=torch.long)
    greedy = greedy_search(model, src, None, BOS, EOS, max_len=5)
    assert greedy.tokens == [[A], [A]]
    assert greedy.scores == pytest.approx([math.log(0.2)] * 2, abs=1e-6)
    beam = beam_search(model, src, None, BOS, EOS, max_len=5, beam_size=2, n_best=2)
    assert beam.tokens == [[B_], [B_]] and beam.finished == [True, True]
    assert beam.scores == pytest.approx([math.log(0.36)] * 2, abs=1e-6)
    assert [h.tokens for h in beam.nbest[0]] == [[B_], [A]]
    assert beam_search(model, src, None, BOS, EOS, 5, beam_size=1).tokens == greedy.tokens


def test_any_attention_record_structure_is_kept():
    model, src = table_model(), torch.zeros(2, 3, dtype=torch.long)
    for result in (greedy_search(model, src, None, BOS, EOS, 5, return_attention=True),
                   beam_search(model, src, None, BOS, EOS, 5, beam_size=3,
                               return_attention=True)):
        steps = result.attention[0]
        assert len(steps) == len(result.tokens[0]) + 1  # one per step, eos included
        assert [int(s["previous"][0]) for s in steps] == [BOS] + result.tokens[0]
        assert [float(s["step"][0]) for s in steps] == list(range(len(steps)))


def test_searches_stop_when_every_row_has_ended():
    model = table_model()
    model.decoder.log_table[BOS] = torch.tensor([0.0, 0, 1, 0, 0, 0]).clamp_min(1e-9).log()
    src = torch.zeros(3, 2, dtype=torch.long)
    for search in (greedy_search, beam_search):
        model.decoder.calls = 0
        result = search(model, src, None, BOS, EOS, max_len=50)
        assert result.tokens == [[], [], []] and result.finished == [True] * 3
        assert model.decoder.calls == 1
        assert result.scores == pytest.approx([0.0] * 3, abs=1e-6)


def test_beam_search_is_exhaustive_with_a_large_beam():
    """With a beam wider than the whole tree, beam search finds the best sequence of all."""
    V, max_len = 4, 4  # non-eos tokens 0, 1, 3: 40 finished and 81 unfinished sequences
    model = random_model(3, V=V, num_layers=1)
    src, lens = random_batch(3, B=3)
    others = [t for t in range(V) if t != EOS]
    candidates = [(list(seq), True) for n in range(max_len) for seq in
                  itertools.product(others, repeat=n)]
    candidates += [(list(seq), False) for seq in itertools.product(others, repeat=max_len)]
    raw = [[teacher_forced(model, src, lens, row, tokens, finished)[0]
            for tokens, finished in candidates] for row in range(3)]
    for alpha in (0.0, 0.75):
        result = beam_search(model, src, lens, BOS, EOS, max_len, beam_size=V ** max_len,
                             length_penalty=alpha, n_best=5)
        for row in range(3):
            scored = [(score / (len(tokens) + finished) ** alpha, score, tokens, finished)
                      for score, (tokens, finished) in zip(raw[row], candidates)]
            scored.sort(key=lambda s: s[0], reverse=True)
            found = result.nbest[row]
            assert [h.tokens for h in found] == [s[2] for s in scored[:5]]
            assert [h.finished for h in found] == [s[3] for s in scored[:5]]
            assert [h.score for h in found] == pytest.approx([s[1] for s in scored[:5]],
                                                            abs=1e-5)


# -- greedy vs beam on random RNN models ---------------------------------------------------------

@pytest.mark.parametrize("attention", [True, False])
def test_beam_size_one_is_greedy(attention):
    seen_finished = seen_unfinished = False
    for seed in range(6):
        model = random_model(seed, attention=attention, eos_bias=0.5 * (seed % 3))
        src, lens = random_batch(seed)
        greedy = greedy_search(model, src, lens, BOS, EOS, max_len=8,
                               return_attention=attention)
        beam = beam_search(model, src, lens, BOS, EOS, max_len=8, beam_size=1,
                           return_attention=attention)
        assert beam.tokens == greedy.tokens
        assert beam.scores == greedy.scores  # exactly: the same float32 additions
        assert beam.finished == greedy.finished
        if attention:
            for a, b in zip(greedy.attention, beam.attention):
                assert len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))
        seen_finished |= any(greedy.finished)
        seen_unfinished |= not all(greedy.finished)
    assert seen_finished and seen_unfinished  # both endings were exercised


def test_beam_search_scores_at_least_greedy():
    """Beam search is not guaranteed to beat greedy search: the greedy prefix can be pushed
    out of the beam by K better prefixes that all end badly (it happens, rarely, on random
    models like these). So this checks the typical case on 400 sources: never worse but
    for at most 1%, often better. The tolerance covers float32 differences between batch
    layouts (B vs B·K rows)."""
    total = worse = better = 0
    for attention in (True, False):
        for seed in range(40):
            model = random_model(seed, attention=attention, eos_bias=0.5 * (seed % 3))
            src, lens = random_batch(seed)
            greedy = greedy_search(model, src, lens, BOS, EOS, max_len=8)
            beam = beam_search(model, src, lens, BOS, EOS, max_len=8, beam_size=4)
            for g, b in zip(greedy.scores, beam.scores):
                total += 1
                worse += b < g - 1e-5
                better += b > g + 1e-3
    assert total == 400 and worse <= 4 and better >= 100, (worse, better)


@pytest.mark.parametrize("search", ["greedy", "beam"])
def test_reported_scores_and_attention_match_teacher_forcing(search):
    model = random_model(1)
    src, lens = random_batch(1)
    if search == "greedy":
        result = greedy_search(model, src, lens, BOS, EOS, max_len=7, return_attention=True)
        hyps = [[(t, s, f, a)] for t, s, f, a in
                zip(result.tokens, result.scores, result.finished, result.attention)]
    else:
        result = beam_search(model, src, lens, BOS, EOS, max_len=7, beam_size=3, n_best=3,
                             length_penalty=0.5, return_attention=True)
        hyps = [[(h.tokens, h.score, h.finished, h.attention) for h in row]
                for row in result.nbest]
        assert all(len(row) == 3 for row in hyps)
    for row, row_hyps in enumerate(hyps):
        for tokens, score, finished, attention in row_hyps:
            expected, weights = teacher_forced(model, src, lens, row, tokens, finished)
            assert score == pytest.approx(expected, abs=1e-5)
            assert len(attention) == len(tokens) + finished
            assert all(a.shape == (1, 6) for a in attention)
            torch.testing.assert_close(torch.cat(attention), weights[0], rtol=1e-5, atol=1e-6)
            assert torch.all(torch.cat(attention)[:, lens[row]:] == 0)


def test_beam_nbest_is_sorted_by_normalised_score():
    model = random_model(2)
    src, lens = random_batch(2)
    for alpha in (0.0, 1.0):
        result = beam_search(model, src, lens, BOS, EOS, max_len=8, beam_size=4, n_best=4,
                             length_penalty=alpha)
        for row in result.nbest:
            norm = [h.score / max(len(h.tokens) + h.finished, 1) ** alpha for h in row]
            assert norm == sorted(norm, reverse=True)
            assert len({tuple(h.tokens) for h in row}) == len(row)  # distinct hypotheses


@pytest.mark.parametrize("search", [greedy_search, beam_search])
def test_max_len_is_respected(search):
    model = random_model(0, eos_bias=-100.0)  # never says eos
    src, lens = random_batch(0)
    result = search(model, src, lens, BOS, EOS, max_len=5, return_attention=True)
    assert all(len(t) == 5 for t in result.tokens) and not any(result.finished)
    assert all(len(a) == 5 for a in result.attention)
    assert all(EOS not in t for t in result.tokens)


@pytest.mark.parametrize("search", [greedy_search, beam_search])
def test_eos_stops_each_row(search):
    model = random_model(0, eos_bias=100.0)  # says eos at once
    src, lens = random_batch(0)
    result = search(model, src, lens, BOS, EOS, max_len=5, return_attention=True)
    assert result.tokens == [[]] * 5 and all(result.finished)
    assert all(len(a) == 1 for a in result.attention)


def test_modes_are_restored_and_dropout_is_off():
    model = random_model(4).train()
    model.encoder.dropout.eval()  # a submodule in its own mode stays so
    src, lens = random_batch(4)
    first = greedy_search(model, src, lens, BOS, EOS, max_len=6)
    second = greedy_search(model, src, lens, BOS, EOS, max_len=6)
    assert first == second  # dropout (p=0.2) would make the two runs differ
    beam_search(model, src, lens, BOS, EOS, max_len=6)
    assert model.training and model.decoder.rnn.training
    assert not model.encoder.dropout.training
    assert isinstance(first, Hypotheses) and first.nbest is None


def test_return_attention_needs_a_decoder_that_records_it():
    model = random_model(0, attention=False)
    src, lens = random_batch(0)
    for search in (greedy_search, beam_search):
        with raises(ValueError, "return_attention", "Seq2SeqDecoder", "attention_weights"):
            search(model, src, lens, BOS, EOS, 4, return_attention=True)


def test_searches_run_on_every_device(device):
    model = random_model(5).to(device)
    src, lens = random_batch(5)
    src, lens = src.to(device), lens.to(device)
    greedy = greedy_search(model, src, lens, BOS, EOS, max_len=6, return_attention=True)
    beam = beam_search(model, src, lens, BOS, EOS, max_len=6, beam_size=1,
                       return_attention=True)
    assert beam.tokens == greedy.tokens and beam.scores == greedy.scores
    assert greedy.attention[0][0].device.type == torch.device(device).type


# -- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize("search", [greedy_search, beam_search])
class TestSearchBadInput:
    model = random_model(0)
    src, lens = random_batch(0)

    def test_not_a_model(self, search):
        with raises(TypeError, "model", "EncoderDecoder", "Seq2SeqAttentionDecoder"):
            search(self.model.decoder, self.src, self.lens, BOS, EOS, 4)

    def test_src(self, search):
        with raises(TypeError, "src", "integer", "torch.float32", "(5, 6)"):
            search(self.model, self.src.float(), self.lens, BOS, EOS, 4)
        with raises(ValueError, "src", "2-D", "(6,)"):
            search(self.model, self.src[0], self.lens, BOS, EOS, 4)
        with raises(ValueError, "src", "at least one", "(0, 6)"):
            search(self.model, self.src[:0], self.lens[:0], BOS, EOS, 4)

    def test_src_valid_lens(self, search):
        with raises(ValueError, "src_valid_lens", "(5,)", "(4,)"):
            search(self.model, self.src, self.lens[:4], BOS, EOS, 4)
        with raises(ValueError, "src_valid_lens", "[0, 6]", "from 1 to 9"):
            search(self.model, self.src, torch.tensor([1, 2, 3, 4, 9]), BOS, EOS, 4)
        with raises(TypeError, "src_valid_lens", "integer", "torch.float32"):
            search(self.model, self.src, self.lens.float(), BOS, EOS, 4)

    def test_token_ids(self, search):
        with raises(ValueError, "bos_id", "-1"):
            search(self.model, self.src, self.lens, -1, EOS, 4)
        with raises(ValueError, "eos_id", "2.0"):
            search(self.model, self.src, self.lens, BOS, 2.0, 4)
        with raises(ValueError, "eos_id=7", "V=7", "1, 7)"):
            search(self.model, self.src, self.lens, BOS, 7, 4)

    def test_max_len(self, search):
        with raises(ValueError, "max_len", "positive", "0"):
            search(self.model, self.src, self.lens, BOS, EOS, 0)


class TestBeamSearchBadInput:
    model = random_model(0)
    src, lens = random_batch(0)

    @pytest.mark.parametrize("beam_size", [0, -3, 2.5, True])
    def test_beam_size(self, beam_size):
        with raises(ValueError, "beam_size", str(beam_size)):
            beam_search(self.model, self.src, self.lens, BOS, EOS, 4, beam_size=beam_size)

    @pytest.mark.parametrize("alpha", [-0.5, float("inf"), float("nan"), "1"])
    def test_length_penalty(self, alpha):
        with raises(ValueError, "length_penalty", "≥ 0", repr(alpha)):
            beam_search(self.model, self.src, self.lens, BOS, EOS, 4, length_penalty=alpha)

    def test_n_best(self):
        with raises(ValueError, "n_best=5", "beam_size=4"):
            beam_search(self.model, self.src, self.lens, BOS, EOS, 4, beam_size=4, n_best=5)
        with raises(ValueError, "n_best", "positive", "0"):
            beam_search(self.model, self.src, self.lens, BOS, EOS, 4, n_best=0)
