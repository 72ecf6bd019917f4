"""The scores of qkvcourse.metrics against independent references.

References: ``sacrebleu`` for corpus BLEU, d2l for the per-sentence BLEU, Papineni et al.'s
(2002) clipped-precision example and other hand-computed cases; SQuAD's F1 (Rajpurkar et
al., 2016) on hand cases and, for spans compared by position, the closed form
2·overlap / (predicted length + answer length); hand-computed calibration bins (Guo et al.,
2017); errors on bad input; and the old import paths that the notebooks still use."""
from __future__ import annotations

import math
import random

import pytest
import sacrebleu
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import qkvcourse as qc
from qkvcourse.metrics import (bleu, classification_accuracy, corpus_bleu, exact_match,
                               expected_calibration_error, span_exact_match, span_f1,
                               token_accuracy, token_f1)
from helpers import raises

pytestmark = pytest.mark.usefixtures("one_thread")


# -- BLEU --------------------------------------------------------------------------------------

def test_bleu_hand_computed():
    assert bleu(list("abcd"), list("abcd")) == pytest.approx(1.0)
    assert bleu(list("abc"), list("abcd"), k=3) == pytest.approx(math.exp(1 - 4 / 3))
    assert bleu(list("abd"), list("abc"), k=3) == 0.0  # no trigram in common
    # p1 = 1, p2 = 2/3 (ab, cd of ab, bc, cd); brevity exp(1 - 5/4)
    expected = math.exp(-0.25) * 1.0 ** 0.5 * (2 / 3) ** 0.25
    assert bleu(list("abcd"), list("abxcd"), k=2) == pytest.approx(expected)
    assert bleu(["a"], ["a", "b"], k=4) == pytest.approx(math.exp(-1))  # n stops at len_pred
    # clipping: "the" appears twice in the label, so 2 of 4 unigrams match
    assert bleu(["the"] * 4, ["the", "cat", "the"], k=1) == pytest.approx(0.5 ** 0.5)
    assert bleu([], ["a"]) == 0.0


def test_bleu_matches_d2l(d2l):
    rng = random.Random(0)
    for _ in range(300):
        pred = [rng.choice("abcd") for _ in range(rng.randint(1, 9))]
        label = [rng.choice("abcd") for _ in range(rng.randint(1, 9))]
        k = rng.randint(1, 4)
        assert bleu(pred, label, k) == pytest.approx(d2l.bleu(" ".join(pred), " ".join(label), k),
                                                     abs=1e-12)


def _sacrebleu(predictions, references, max_n, smooth):
    metric = sacrebleu.metrics.BLEU(tokenize="none", effective_order=False,
                                    smooth_method="add-k" if smooth else "none",
                                    smooth_value=1 if smooth else None,
                                    max_ngram_order=max_n)
    return metric.corpus_score([" ".join(p) for p in predictions],
                               [[" ".join(r) for r in references]]).score


sentences = st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), min_size=0, max_size=9)


@settings(max_examples=300, deadline=None)
@given(corpus=st.lists(st.tuples(sentences, sentences), min_size=1, max_size=6),
       max_n=st.integers(1, 4), smooth=st.booleans())
def test_corpus_bleu_matches_sacrebleu(corpus, max_n, smooth):
    predictions, references = [p for p, _ in corpus], [r for _, r in corpus]
    ours = corpus_bleu(predictions, references, max_n=max_n, smooth=smooth)
    assert ours == pytest.approx(_sacrebleu(predictions, references, max_n, smooth), abs=1e-6)


def test_corpus_bleu_matches_sacrebleu_on_longer_corpora():
    rng = random.Random(1)
    words = "the a cat dog sat on mat and ran".split()
    for _ in range(30):
        references = [[rng.choice(words) for _ in range(rng.randint(3, 15))]
                      for _ in range(rng.randint(5, 20))]
        # predictions: noisy copies of the references
        predictions = [[w if rng.random() < 0.7 else rng.choice(words) for w in r
                        if rng.random() < 0.9] for r in references]
        for smooth in (False, True):
            assert corpus_bleu(predictions, references, smooth=smooth) == pytest.approx(
                _sacrebleu(predictions, references, 4, smooth), abs=1e-6)


def test_corpus_bleu_hand_cases():
    refs = [["the", "cat", "sat", "on", "the", "mat"], ["a", "dog", "ran", "off", "fast"]]
    assert corpus_bleu(refs, refs) == pytest.approx(100.0)
    assert corpus_bleu([["x", "y", "z"], ["u"]], refs) == 0.0
    # Perfect n-gram precision but short: 8 tokens of 11, BP = exp(1 - 11/8)
    short = [refs[0][:5], refs[1][:3]]
    assert corpus_bleu(short, refs) == pytest.approx(100 * math.exp(1 - 11 / 8), abs=1e-9)
    # Papineni et al.'s example: modified unigram precision 2/7, no brevity penalty
    assert corpus_bleu([["the"] * 7], [refs[0]], max_n=1) == pytest.approx(100 * 2 / 7)
    # No 4-gram match: 0 without smoothing, positive with it
    pred = [["the", "cat", "sat", "the", "mat"]]
    assert corpus_bleu(pred, [refs[0]]) == 0.0
    assert corpus_bleu(pred, [refs[0]], smooth=True) > 0.0


def test_bleu_bad_input():
    with raises(TypeError, "pred_tokens", "string", "split"):
        bleu("a b c", ["a"])
    with raises(TypeError, "label_tokens", "string"):
        bleu(["a"], "a b")
    with raises(TypeError, "pred_tokens", "int"):
        bleu(3, ["a"])
    with raises(ValueError, "k", "positive", "0"):
        bleu(["a"], ["a"], k=0)


def test_corpus_bleu_bad_input():
    with raises(ValueError, "predictions", "references", "2 predictions", "1 references"):
        corpus_bleu([["a"], ["b"]], [["a"]])
    with raises(TypeError, "predictions", "str"):
        corpus_bleu("a b", ["a b"])
    with raises(TypeError, "references", "str"):
        corpus_bleu([["a"]], "a")
    with raises(TypeError, "predictions[1]", "string", "split"):
        corpus_bleu([["a"], "b c"], [["a"], ["b"]])
    with raises(TypeError, "references[0]", "string"):
        corpus_bleu([["a"]], ["a"])
    with raises(ValueError, "max_n", "positive", "0"):
        corpus_bleu([["a"]], [["a"]], max_n=0)


# -- exact match and token accuracy (chapters 4 and 7) ---------------------------------------

def test_exact_match():
    assert exact_match(["a", "b", "c", "d"], ["a", "x", "c", "y"]) == 0.5
    with pytest.raises(ValueError, match="predictions has 1 items but references has 2"):
        exact_match(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="empty"):
        exact_match([], [])


def test_token_accuracy():
    assert token_accuracy(["abc", "abd"], ["abc", "abc"]) == pytest.approx(5 / 6)
    assert token_accuracy(["a", "abcdef"], ["abc", "abc"]) == pytest.approx(4 / 6)  # short misses
    with pytest.raises(ValueError, match="items"):
        token_accuracy(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="at least one"):
        token_accuracy([""], [""])


def test_outputs_must_be_lists():
    with raises(TypeError, "predictions", "list", "'abc'"):
        exact_match("abc", "abc")  # would compare characters
    with raises(TypeError, "references", "list", "int"):
        exact_match(["a"], 3)
    with raises(TypeError, "predictions", "list", "'ab'"):
        token_accuracy("ab", ["ab"])


# -- calibration -------------------------------------------------------------------------------

def test_expected_calibration_error_by_hand():
    conf = torch.tensor([0.95, 0.95, 0.55, 0.55])
    correct = torch.tensor([True, True, True, False])
    # bin 9: accuracy 1, confidence 0.95 -> 0.05; bin 5: accuracy 0.5, confidence 0.55 -> 0.05
    assert expected_calibration_error(conf, correct) == pytest.approx(0.05)
    assert expected_calibration_error(torch.tensor([1.0]), torch.tensor([True])) == 0.0
    assert expected_calibration_error(torch.tensor([0.9, 0.9]), torch.tensor([False, False])) \
        == pytest.approx(0.9)
    with pytest.raises(ValueError):
        expected_calibration_error(torch.tensor([0.5]), torch.tensor([True, False]))
    with pytest.raises(ValueError):
        expected_calibration_error(torch.tensor([]), torch.tensor([], dtype=torch.bool))


def test_expected_calibration_error_bad_input():
    with raises(ValueError, "confidence", "[0, 1]", "1.5"):
        expected_calibration_error(torch.tensor([0.5, 1.5]), torch.tensor([True, False]))
    with raises(ValueError, "confidence", "[0, 1]", "nan"):
        expected_calibration_error(torch.tensor([0.5, float("nan")]), torch.tensor([True, True]))
    with raises(TypeError, "confidence", "floating", "torch.int64"):
        expected_calibration_error(torch.tensor([1, 0]), torch.tensor([True, False]))
    with raises(ValueError, "num_bins", "positive", "0"):
        expected_calibration_error(torch.tensor([0.5]), torch.tensor([True]), num_bins=0)
    with raises(TypeError, "correct", "torch.Tensor", "list"):
        expected_calibration_error(torch.tensor([0.5]), [True])


# -- classification (chapters 9 and 10) --------------------------------------------------------

def test_classification_accuracy_against_counting():
    assert classification_accuracy(torch.tensor([[1.0, 0.0], [0.0, 1.0]]),
                                   torch.tensor([0, 0])) == 0.5
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 4, generator=generator)
    labels = torch.randint(0, 4, (50,), generator=generator)
    rows = logits.tolist()
    right = sum(max(range(4), key=row.__getitem__) == label
                for row, label in zip(rows, labels.tolist()))
    assert classification_accuracy(logits, labels) == pytest.approx(right / 50)


def test_classification_accuracy_bad_input():
    with raises(ValueError, "labels", "(2,)", "(3,)"):
        classification_accuracy(torch.zeros(2, 3), torch.tensor([0, 1, 2]))
    with raises(ValueError, "labels", "[0, 3)", "3"):
        classification_accuracy(torch.zeros(2, 3), torch.tensor([0, 3]))
    with raises(TypeError, "labels", "integers", "torch.float32"):
        classification_accuracy(torch.zeros(2, 3), torch.zeros(2))
    with raises(ValueError, "logits", "2-D", "(3,)"):
        classification_accuracy(torch.zeros(3), torch.tensor([0, 1, 2]))
    with raises(ValueError, "logits", "at least one row", "(0, 3)"):
        classification_accuracy(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))


# -- SQuAD: exact match and F1 (chapter 10) ----------------------------------------------------

def test_squad_exact_match_and_f1_on_hand_cases():
    # token_f1 is SQuAD's f1_score on already normalised tokens
    assert token_f1(["new", "york"], ["new", "york"]) == 1.0
    assert token_f1(["york"], ["new", "york"]) == pytest.approx(2 * 1.0 * 0.5 / 1.5)
    assert token_f1(["in", "new", "york", "city"], ["new", "york"]) == pytest.approx(2 / 3)
    assert token_f1(["paris"], ["new", "york"]) == 0.0
    assert token_f1(["a", "a", "b"], ["a", "b", "b"]) == pytest.approx(2 / 3)  # bags, not sets
    assert token_f1([], []) == 1.0 and token_f1([], ["a"]) == 0.0
    pred_s, pred_e = torch.tensor([2, 5, 0, 4]), torch.tensor([3, 5, 1, 4])
    gold_s, gold_e = torch.tensor([2, 4, 3, 1]), torch.tensor([3, 6, 3, 1])
    assert span_exact_match(pred_s, pred_e, gold_s, gold_e) == 0.25
    # by positions: 1, then 1 of 1 predicted / 1 of 3 gold -> 0.5, then 0, then 0
    assert span_f1(pred_s, pred_e, gold_s, gold_e) == pytest.approx((1 + 0.5 + 0 + 0) / 4)
    # by tokens: the last prediction is the same word as the answer, elsewhere
    tokens = torch.tensor([[1, 2, 3, 4, 5, 6, 7]] * 3 + [[9, 8, 7, 6, 8, 6, 5]])
    assert span_exact_match(pred_s, pred_e, gold_s, gold_e, tokens) == 0.5
    assert span_f1(pred_s, pred_e, gold_s, gold_e, tokens) == pytest.approx((1 + .5 + 0 + 1) / 4)
    # both at once, reading the spans once (what evaluate_spans uses)
    from qkvcourse.metrics import span_scores
    assert span_scores(pred_s, pred_e, gold_s, gold_e, tokens) == (
        span_exact_match(pred_s, pred_e, gold_s, gold_e, tokens),
        span_f1(pred_s, pred_e, gold_s, gold_e, tokens))


def test_span_f1_by_position_is_the_interval_overlap():
    # with positions as tokens, F1 = 2 * overlap / (predicted length + answer length)
    rng = random.Random(0)
    for _ in range(200):
        B = rng.randint(1, 5)
        spans = []
        for _ in range(2 * B):
            first = rng.randint(0, 9)
            spans.append((first, first + rng.randint(0, 4)))
        pred, gold = spans[:B], spans[B:]
        expected = []
        for (ps, pe), (gs, ge) in zip(pred, gold):
            overlap = max(0, min(pe, ge) - max(ps, gs) + 1)
            expected.append(2 * overlap / ((pe - ps + 1) + (ge - gs + 1)))
        tensors = [torch.tensor([s[i] for s in spans_]) for spans_ in (pred, gold)
                   for i in (0, 1)]
        assert span_f1(*tensors) == pytest.approx(sum(expected) / B, abs=1e-12)
        assert span_exact_match(*tensors) == sum(p == g for p, g in zip(pred, gold)) / B


def test_squad_metrics_bad_input():
    with raises(TypeError, "prediction", "string", "split"):
        token_f1("new york", ["new", "york"])  # would score characters
    with raises(TypeError, "ground_truth", "int"):
        token_f1(["a"], 3)
    with raises(ValueError, "tokens", "(1, 4)", "2 spans"):
        span_f1(torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([0, 1]),
                torch.tensor([0, 1]), torch.zeros(1, 4, dtype=torch.long))
    with raises(ValueError, "labels", "(2,)", "(3,)"):
        classification_accuracy(torch.zeros(2, 3), torch.tensor([0, 1, 2]))
    with raises(ValueError, "pred_start", ">= 0", "-1"):
        span_f1(torch.tensor([-1, 1]), torch.tensor([0, 1]), torch.tensor([0, 1]),
                torch.tensor([0, 1]))
    with raises(ValueError, "end", "[0, 4)", "(2, 4)", "6"):
        span_exact_match(torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([0, 1]),
                         torch.tensor([0, 6]), torch.zeros(2, 4, dtype=torch.long))
    with raises(TypeError, "start", "integers", "torch.float32"):
        span_f1(torch.tensor([0]), torch.tensor([0]), torch.tensor([0.0]), torch.tensor([0]))
    with raises(ValueError, "pred_start", "at least one span"):
        span_f1(*[torch.zeros(0, dtype=torch.long)] * 4)


# -- where the metrics can be imported from ----------------------------------------------------

def test_metrics_are_exported_and_old_paths_still_work():
    from qkvcourse.data import sequences, translation
    from qkvcourse.data.sequences import token_accuracy as from_sequences  # chapter 4's import

    for name in ("bleu", "corpus_bleu", "exact_match", "token_accuracy",
                 "expected_calibration_error", "classification_accuracy", "token_f1",
                 "span_exact_match", "span_f1"):
        assert getattr(qc, name) is getattr(qc.metrics, name)
    assert from_sequences is sequences.token_accuracy is token_accuracy
    assert qc.data.exact_match is exact_match and qc.data.token_accuracy is token_accuracy
    # the notebooks call data.exact_match on a translation data set
    assert qc.DateTranslationData.exact_match(["1"], ["1"]) == 1.0
    assert translation.TranslationData.exact_match is exact_match
