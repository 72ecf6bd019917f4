"""Chapter 10 (BERT): the input of a sentence pair, the best answer span, and masked-LM
corruption (80/10/10), the last checked by statistics over many draws."""
from __future__ import annotations

import math

import torch

from ....data.bert_pretraining import get_tokens_and_segments
from ....finetune import best_spans
from ...core import Case
from ..registry import Mistake, Question, register

CLS, SEP = "<cls>", "<sep>"


# --- tokens_and_segments -------------------------------------------------------------------

def _tokens_and_segments(tokens_a, tokens_b=None):
    return get_tokens_and_segments(tokens_a, tokens_b)


def _ts_first_sep_in_b(tokens_a, tokens_b=None):
    tokens, segments = get_tokens_and_segments(tokens_a, tokens_b)
    if tokens_b is not None:
        segments[len(tokens_a) + 1] = 1
    return tokens, segments


def _ts_last_sep_in_a(tokens_a, tokens_b=None):
    tokens, segments = get_tokens_and_segments(tokens_a, tokens_b)
    if tokens_b is not None:
        segments[-1] = 0
    return tokens, segments


def _ts_no_final_sep(tokens_a, tokens_b=None):
    tokens, segments = get_tokens_and_segments(tokens_a, tokens_b)
    if tokens_b is not None:
        return tokens[:-1], segments[:-1]
    return tokens, segments


def _ts_no_cls(tokens_a, tokens_b=None):
    tokens, segments = get_tokens_and_segments(tokens_a, tokens_b)
    return tokens[1:], segments[1:]


def _ts_extra_sep_single(tokens_a, tokens_b=None):
    tokens, segments = get_tokens_and_segments(tokens_a, tokens_b)
    if tokens_b is None:
        return tokens + [SEP], segments + [1]
    return tokens, segments


def _ts_extra_sep_single_seg0(tokens_a, tokens_b=None):
    tokens, segments = get_tokens_and_segments(tokens_a, tokens_b)
    if tokens_b is None:
        return tokens + [SEP], segments + [0]
    return tokens, segments


def _ts_cases(rng, hidden):
    names = ("tokens_a", "tokens_b")
    words = ["the", "cat", "sat", "on", "a", "mat", "it", "was", "warm", "dogs", "bark", "loud",
             "birds", "sing", "at", "dawn"]

    def sentence(n):
        return [rng.choice(words) for _ in range(n)]

    if not hidden:
        specs = [(3, 2), (2, None), (1, 1)]
    else:
        specs = [(5, 4), (1, None), (2, 6), (6, 1)]
    cases = []
    for na, nb in specs:
        a, b = sentence(na), (None if nb is None else sentence(nb))
        what = f"one sentence of {na} token(s)" if b is None else \
            f"a pair of sentences of {na} and {nb} token(s)"
        cases.append(Case(what, (a, b), arg_names=names))
    return cases


register(Question(
    qid="ch10.tokens_and_segments", name="tokens_and_segments", kind="function",
    title="BERT's input for a sentence pair", reference=_tokens_and_segments, cases=_ts_cases,
    mistakes=[
        Mistake("the first <sep> is in segment 1",
                "The <sep> that closes sentence a belongs to sentence a: segment 0 covers "
                "<cls>, the tokens of a and that <sep>.", _ts_first_sep_in_b),
        Mistake("the last <sep> is in segment 0",
                "The final <sep> closes sentence b, so it takes b's segment id, 1.",
                _ts_last_sep_in_a),
        Mistake("no <sep> after sentence b",
                "A pair ends with a <sep> too: <cls> a <sep> b <sep>.", _ts_no_final_sep),
        Mistake("no <cls> token",
                "Every BERT input starts with <cls>, whose final state the classifiers read.",
                _ts_no_cls),
        Mistake("a single sentence gets a second <sep>",
                "Without a second sentence the input is <cls> a <sep>: nothing follows the "
                "first <sep>.", _ts_extra_sep_single),
        Mistake("a single sentence gets a second <sep>",
                "Without a second sentence the input is <cls> a <sep>: nothing follows the "
                "first <sep>.", _ts_extra_sep_single_seg0),
    ]))


# --- best_span -------------------------------------------------------------------------------

def _best_span(start_logits, end_logits, max_answer_len):
    return best_spans(start_logits, end_logits, max_answer_len)


def _bs_from_scores(scores, allowed):
    B, T, _ = scores.shape
    best = scores.masked_fill(~allowed, float("-inf")).reshape(B, T * T).argmax(1)
    return best // T, best % T


def _bs_table(start_logits, end_logits):
    return start_logits.double()[:, :, None] + end_logits.double()[:, None, :]


def _lengths(T):
    i = torch.arange(T)
    return i[None, :] - i[:, None]  # (T, T): j - i


def _bs_independent(start_logits, end_logits, max_answer_len):
    return start_logits.argmax(-1), end_logits.argmax(-1)


def _bs_no_cap(start_logits, end_logits, max_answer_len):
    T = start_logits.shape[1]
    return _bs_from_scores(_bs_table(start_logits, end_logits), _lengths(T) >= 0)


def _bs_cap_off_by_one(start_logits, end_logits, max_answer_len):
    T = start_logits.shape[1]
    length = _lengths(T)
    return _bs_from_scores(_bs_table(start_logits, end_logits),
                           (length >= 0) & (length <= max_answer_len))


def _bs_probabilities_added(start_logits, end_logits, max_answer_len):
    T = start_logits.shape[1]
    length = _lengths(T)
    scores = start_logits.double().softmax(-1)[:, :, None] + \
        end_logits.double().softmax(-1)[:, None, :]
    return _bs_from_scores(scores, (length >= 0) & (length < max_answer_len))


def _bs_axes_swapped(start_logits, end_logits, max_answer_len):
    """The table holds end logits on its rows, but its flat arg max is read as (start, end)."""
    T = start_logits.shape[1]
    length = _lengths(T)
    scores = end_logits.double()[:, :, None] + start_logits.double()[:, None, :]
    return _bs_from_scores(scores, (length >= 0) & (length < max_answer_len))


def _bs_cases(rng, hidden):
    names = ("start_logits", "end_logits", "max_answer_len")
    cases = []
    if not hidden:
        s = torch.tensor([[0.1, 0.5, 0.2, 0.0, 2.0, 0.3]])
        e = torch.tensor([[0.2, 2.5, 0.1, 0.4, 0.3, 1.2]])
        cases.append(Case("one row whose best start comes after its best end", (s, e, 6),
                          arg_names=names))
        s = torch.tensor([[0.0, 3.0, 0.2, 0.1, 0.0, 0.3], [1.0, 0.0, 0.5, 0.2, 0.1, 0.0]])
        e = torch.tensor([[0.1, 0.0, 0.2, 2.4, 0.0, 3.0], [0.0, 0.3, 0.2, 1.5, 0.4, 2.0]])
        cases.append(Case("two rows, max_answer_len=2", (s, e, 2), arg_names=names))
        s, e = torch.randn(3, 8), torch.randn(3, 8)
        cases.append(Case("three random rows of 8 positions, max_answer_len=3", (s, e, 3),
                          arg_names=names))
        s, e = torch.randn(2, 9), torch.randn(2, 9)
        s[:, :4] = e[:, :4] = -1e4  # <cls> question <sep>
        s[:, -2:] = e[:, -2:] = -1e4  # the closing <sep> and a padding position
        cases.append(Case("positions outside the passage have logit -10000, max_answer_len=4",
                          (s, e, 4), arg_names=names))
    else:
        s, e = torch.randn(4, 12) * 2, torch.randn(4, 12) * 2
        cases.append(Case("four rows of 12 positions, max_answer_len=5", (s, e, 5),
                          arg_names=names))
        cases.append(Case("the same rows, max_answer_len=1 (one-token answers)", (s, e, 1),
                          arg_names=names))
        cases.append(Case("the same rows, max_answer_len=30 (longer than the rows)",
                          (s, e, 30), arg_names=names))
        s, e = torch.randn(1, 1), torch.randn(1, 1)
        cases.append(Case("a single position", (s, e, 3), arg_names=names))
        s = torch.tensor([[0.0, 5.0, 0.0, 0.0, 0.0], [0.5, 0.0, 0.0, 4.0, 0.0]])
        e = torch.tensor([[0.0, 1.0, 0.9, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 4.5]])
        cases.append(Case("peaked start logits, flatter end logits, max_answer_len=3",
                          (s, e, 3), arg_names=names))
        s, e = torch.randn(2, 10), torch.randn(2, 10)
        s[:, :3] = e[:, :3] = -1e4
        s[:, -1] = e[:, -1] = -1e4
        cases.append(Case("positions outside the passage have logit -10000, max_answer_len=2",
                          (s, e, 2), arg_names=names))
    return cases


register(Question(
    qid="ch10.best_span", name="best_span", kind="function",
    title="The best answer span", reference=_best_span, cases=_bs_cases,
    mistakes=[
        Mistake("no cap on the answer length",
                "Only spans of at most max_answer_len tokens are candidates: end - start + 1 "
                "<= max_answer_len, as well as end >= start.", _bs_no_cap),
        Mistake("start and end chosen independently",
                "The arg max of the start logits and that of the end logits may give an end "
                "before the start (or a span that is too long); score every allowed pair "
                "(start, end) with start_logit + end_logit and take the best pair.",
                _bs_independent),
        Mistake("answer length cap off by one",
                "A span from i to j (inclusive) has j - i + 1 tokens; it is allowed when that "
                "is at most max_answer_len.", _bs_cap_off_by_one),
        Mistake("probabilities added instead of logits",
                "The score of a span is S·T_i + E·T_j, the sum of the two logits (the log of "
                "the product of the two probabilities, up to a constant); adding the "
                "probabilities themselves ranks spans differently.", _bs_probabilities_added),
        Mistake("start and end axes of the score table mixed up",
                "If scores[b, i, j] = start_logits[b, i] + end_logits[b, j], then i is the "
                "start and j the end; check which axis each logit is broadcast along and how "
                "the flat index is turned back into (start, end).", _bs_axes_swapped),
    ]))


# --- mlm_mask ------------------------------------------------------------------------------

IGNORE = -100


def _mlm_mask(ids, num_special, mask_id, vocab_size, mask_prob=0.15):
    selected = (torch.rand(ids.shape) < mask_prob) & (ids >= num_special)  # (B, T)
    labels = ids.masked_fill(~selected, IGNORE)
    u = torch.rand(ids.shape)
    inputs = ids.clone()
    inputs[selected & (u < 0.8)] = mask_id
    to_random = selected & (u >= 0.8) & (u < 0.9)
    inputs[to_random] = torch.randint(num_special, vocab_size, ids.shape)[to_random]
    return inputs, labels


def _mlm_batch(B, T, num_special, vocab_size, rng, pad_rows=0):
    """Rows ``<cls> a <sep> b <sep> <pad> ...`` with ids <pad>=0, <cls>=1, <sep>=2."""
    ids = torch.zeros(B, T, dtype=torch.long)
    for b in range(B):
        if b < pad_rows:
            continue  # an all-padding row
        n = rng.randint(max(5, T // 2), T)
        na = rng.randint(1, n - 4)
        row = [1] + [rng.randrange(num_special, vocab_size) for _ in range(na)] + [2] + \
            [rng.randrange(num_special, vocab_size) for _ in range(n - na - 3)] + [2]
        ids[b, :n] = torch.tensor(row)
    return ids


def _mlm_cases(rng, hidden):
    names = ("ids", "num_special", "mask_id", "vocab_size")
    cases = []
    if not hidden:
        ids = _mlm_batch(2, 8, 4, 20, rng)
        cases.append(Case("a small batch (only the rules are checked here)", (ids, 4, 3, 20),
                          arg_names=names, seed=1))
        ids = _mlm_batch(64, 256, 4, 50, rng)
        cases.append(Case("64 rows of 256 tokens, mask_prob=0.15: statistics over ~12,000 "
                          "ordinary tokens", (ids, 4, 3, 50), arg_names=names, seed=2))
        ids = _mlm_batch(48, 200, 5, 30, rng, pad_rows=3)
        cases.append(Case("48 rows of 200 tokens (3 all padding), mask_prob=0.3",
                          (ids, 5, 4, 30), {"mask_prob": 0.3}, arg_names=names, seed=3))
    else:
        ids = _mlm_batch(1, 6, 4, 12, rng)
        cases.append(Case("one short row", (ids, 4, 3, 12), arg_names=names, seed=11))
        ids = _mlm_batch(100, 160, 6, 40, rng, pad_rows=5)
        cases.append(Case("100 rows of 160 tokens, mask_prob=0.2", (ids, 6, 5, 40),
                          {"mask_prob": 0.2}, arg_names=names, seed=12))
        ids = _mlm_batch(32, 512, 4, 1000, rng)
        cases.append(Case("32 rows of 512 tokens, a vocabulary of 1000, mask_prob=0.15",
                          (ids, 4, 3, 1000), arg_names=names, seed=13))
    return cases


register(Question(
    qid="ch10.mlm_mask", name="mlm_mask", kind="function",
    title="Masked-LM corruption (80/10/10)", reference=_mlm_mask, cases=_mlm_cases,
    judge="mlm_mask"))
