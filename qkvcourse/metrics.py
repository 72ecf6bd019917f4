"""Every score the course reports, in one place (chapters 4, 7, 9 and 10).

Translation and other sequence outputs (chapters 4 and 7):

- :func:`bleu`: d2l's per-sentence BLEU on the 0–1 scale (Zhang et al., *Dive into Deep
  Learning*, section 10.7), which weighs the n-gram precisions by ``1/2^n``.
- :func:`corpus_bleu`: the standard corpus-level BLEU of Papineni et al. (2002), on the
  0–100 scale, equal to ``sacrebleu``'s score (Post, 2018) with ``tokenize="none"``;
  optional add-one smoothing (Lin and Och, 2004).
- :func:`exact_match`: the fraction of outputs equal to their reference as a whole.
- :func:`token_accuracy`: the fraction of reference tokens predicted right at their position.
- :func:`expected_calibration_error`: how far a model's confidence is from its accuracy,
  over confidence bins (Guo et al., 2017, eq. 3).

Classification and span extraction (chapters 9 and 10):

- :func:`classification_accuracy`: the fraction of rows whose arg-max class is the label.
- :func:`token_f1`: SQuAD's F1 of one answer (Rajpurkar et al., 2016), the harmonic mean of
  the precision and recall of the tokens the prediction shares with the answer.
- :func:`span_exact_match`, :func:`span_f1`: SQuAD's exact match and F1 averaged over a batch
  of predicted spans, compared by position or by the tokens they cover.

The functions take Python lists of tokens (the decoded outputs) or tensors (logits,
positions), check their arguments once on entry, and return a Python float. Checks that
read a tensor's values run only where that is free (CPU tensors, see
:func:`qkvcourse.value_checks`).
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Hashable, Sequence

from torch import Tensor

import torch

from ._validate import (check_flag, check_floating, check_index_range, check_index_vector,
                        check_size, check_tensor, shape_str, value_checks_enabled, value_range)

__all__ = [
    "bleu", "classification_accuracy", "corpus_bleu", "exact_match",
    "expected_calibration_error", "span_exact_match", "span_f1", "span_scores", "token_accuracy",
    "token_f1",
]


# -- argument checks ---------------------------------------------------------------------------

def _check_token_list(name: str, tokens) -> None:
    """A list (or tuple) of tokens; a string is refused, since its characters would be
    compared one by one without anyone noticing."""
    if isinstance(tokens, str):
        raise TypeError(f"{name} must be a list of tokens, got the string {tokens[:40]!r}; "
                        "split it first, e.g. sentence.split()")
    if not isinstance(tokens, Sequence):
        raise TypeError(f"{name} must be a list of tokens, got {type(tokens).__name__}")


def _check_outputs(name: str, items) -> None:
    """A list of outputs (strings or token lists), one per example."""
    if isinstance(items, str) or not isinstance(items, Sequence):
        what = f"the string {items[:40]!r}" if isinstance(items, str) else type(items).__name__
        raise TypeError(f"{name} must be a list with one output per example, got {what}")


def _check_paired(predictions, references) -> None:
    _check_outputs("predictions", predictions)
    _check_outputs("references", references)
    if len(predictions) != len(references):
        raise ValueError(f"predictions has {len(predictions)} items but references has "
                         f"{len(references)}")


# -- BLEU --------------------------------------------------------------------------------------

def _ngrams(tokens: Sequence[Hashable], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def _clipped_matches(pred: Sequence[Hashable], label: Sequence[Hashable], n: int) -> int:
    """Σ over n-grams g of min(count of g in pred, count of g in label) (Papineni, section 2.1)."""
    return sum((_ngrams(pred, n) & _ngrams(label, n)).values())


def bleu(pred_tokens: Sequence[Hashable], label_tokens: Sequence[Hashable], k: int = 4) -> float:
    """d2l's per-sentence BLEU, on the 0–1 scale.

    exp(min(0, 1 - len_label / len_pred)) · Π_{n=1}^{min(k, len_pred)} p_n^(1/2^n),
    where p_n is the fraction of the prediction's n-grams found in the label
    (each label n-gram matched at most once). Longer n-grams get larger weights
    1/2^n, so matching them matters more. An empty prediction scores 0.

    Args:
        pred_tokens: the predicted tokens (a list, not a string).
        label_tokens: the reference tokens.
        k: the longest n-gram considered.
    """
    _check_token_list("pred_tokens", pred_tokens)
    _check_token_list("label_tokens", label_tokens)
    check_size("k", k)
    len_pred, len_label = len(pred_tokens), len(label_tokens)
    if len_pred == 0:
        return 0.0
    score = math.exp(min(0.0, 1.0 - len_label / len_pred))  # brevity penalty
    for n in range(1, min(k, len_pred) + 1):
        precision = _clipped_matches(pred_tokens, label_tokens, n) / (len_pred - n + 1)
        score *= precision ** (0.5 ** n)
    return score


def corpus_bleu(predictions: Sequence[Sequence[Hashable]],
                references: Sequence[Sequence[Hashable]], max_n: int = 4,
                smooth: bool = False) -> float:
    """Corpus-level BLEU of Papineni et al. (2002), section 2, on the 0–100 scale.

    p_n = Σ_sentences clipped n-gram matches / Σ_sentences predicted n-grams;
    BLEU = BP · exp((1/max_n) Σ_n log p_n), with the corpus brevity penalty
    BP = 1 if c > r else exp(1 - r/c), c and r the total prediction and reference
    lengths. Any p_n = 0 gives 0. One reference per prediction. This is
    ``sacrebleu``'s score with ``tokenize="none"`` on space-joined tokens.

    Args:
        predictions: one token list per sentence.
        references: the matching reference token lists.
        max_n: the longest n-gram (4 is standard).
        smooth: add one to the matches and counts of every n > 1 (Lin and Och, 2004;
            sacrebleu's ``smooth_method="add-k"`` with k = 1), so that short
            corpora with no 4-gram match do not score 0.
    """
    if isinstance(predictions, str) or not isinstance(predictions, Sequence):
        raise TypeError(f"predictions must be a list of token lists, "
                        f"got {type(predictions).__name__}")
    if isinstance(references, str) or not isinstance(references, Sequence):
        raise TypeError(f"references must be a list of token lists, "
                        f"got {type(references).__name__}")
    if len(predictions) != len(references):
        raise ValueError(f"predictions and references must have the same length, got "
                         f"{len(predictions)} predictions and {len(references)} references")
    check_size("max_n", max_n)
    check_flag("smooth", smooth)
    for i, (pred, ref) in enumerate(zip(predictions, references)):
        _check_token_list(f"predictions[{i}]", pred)
        _check_token_list(f"references[{i}]", ref)
    matches, totals = [0] * max_n, [0] * max_n
    pred_length = sum(len(pred) for pred in predictions)
    ref_length = sum(len(ref) for ref in references)
    for pred, ref in zip(predictions, references):
        for n in range(1, max_n + 1):
            matches[n - 1] += _clipped_matches(pred, ref, n)
            totals[n - 1] += max(len(pred) - n + 1, 0)
    if matches[0] == 0:  # no unigram in common (or an empty corpus)
        return 0.0
    log_precision = 0.0
    for n in range(1, max_n + 1):
        m, t = matches[n - 1], totals[n - 1]
        if smooth and n > 1:
            m, t = m + 1, t + 1
        if m == 0:
            return 0.0
        log_precision += math.log(m / t)
    brevity = 1.0 if pred_length > ref_length else math.exp(1 - ref_length / pred_length)
    return 100.0 * brevity * math.exp(log_precision / max_n)


# -- whole outputs and positions ---------------------------------------------------------------

def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Fraction of predictions equal to their reference (a whole date right, or not).

    Args:
        predictions: one output per example (a string or a token list).
        references: the matching references.
    """
    _check_paired(predictions, references)
    if not references:
        raise ValueError("exact_match needs at least one prediction, got empty lists")
    return sum(p == r for p, r in zip(predictions, references)) / len(references)


def token_accuracy(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Fraction of reference tokens predicted right at their position.

    A prediction shorter than its reference misses the positions it lacks; extra tokens
    beyond the reference are not counted (the exact match already punishes them).

    Args:
        predictions: one output per example (a string of character tokens or a token list).
        references: the matching references.
    """
    _check_paired(predictions, references)
    total = sum(len(r) for r in references)
    if total == 0:
        raise ValueError("token_accuracy needs at least one reference token")
    right = sum(p_tok == r_tok for p, r in zip(predictions, references)
                for p_tok, r_tok in zip(p, r))
    return right / total


def expected_calibration_error(confidence: Tensor, correct: Tensor, num_bins: int = 10) -> float:
    """ECE: ``Σ_bins (n_bin / n) · |accuracy in the bin − mean confidence in the bin|``.

    ``confidence (n,)`` is the probability a model gives to its prediction, ``correct (n,)``
    whether the prediction was right (booleans, or numbers 0 and 1); bins split [0, 1] into
    ``num_bins`` equal parts (Guo et al., 2017, "On calibration of modern neural networks",
    eq. 3). 0 for a model whose confidence is, in every bin, its accuracy.
    """
    check_tensor("confidence", confidence)
    check_tensor("correct", correct)
    if confidence.shape != correct.shape or confidence.dim() != 1:
        raise ValueError(f"confidence and correct must be 1-D of the same shape, got "
                         f"{tuple(confidence.shape)} and {tuple(correct.shape)}")
    if confidence.numel() == 0:
        raise ValueError("need at least one prediction")
    check_floating("confidence", confidence)  # probabilities
    if correct.is_complex():
        raise TypeError(f"correct must hold booleans (or 0 and 1), got dtype {correct.dtype} "
                        f"with shape {shape_str(correct)}")
    check_size("num_bins", num_bins)
    bounds = value_range(confidence)
    if bounds is not None:
        lo, hi = bounds
        # probabilities computed in float32 may overshoot 1 by a rounding error; a NaN fails
        if not 0.0 <= lo <= hi <= 1.0 + 1e-6:
            raise ValueError(f"confidence must lie in [0, 1], got values from {lo} to {hi}")
    if correct.dtype != torch.bool and value_checks_enabled(correct) \
            and not bool(((correct == 0) | (correct == 1)).all()):
        bad = correct[(correct != 0) & (correct != 1)]
        raise ValueError(f"correct must hold booleans or the numbers 0 and 1 (right or wrong), "
                         f"got {bad[:5].tolist()} among its values, dtype {correct.dtype}, "
                         f"shape {shape_str(correct)}")
    confidence, correct = confidence.double(), correct.double()
    bins = (confidence * num_bins).long().clamp(0, num_bins - 1)  # confidence 1.0 -> last bin
    ece = 0.0
    for b in range(num_bins):
        in_bin = bins == b
        if in_bin.any():
            gap = correct[in_bin].mean() - confidence[in_bin].mean()
            ece += in_bin.double().mean().item() * abs(gap.item())
    return ece


# -- classification ----------------------------------------------------------------------------

def classification_accuracy(logits: Tensor, labels: Tensor) -> float:
    """The fraction of rows whose arg-max class is the label.

    Args:
        logits: ``(B, C)`` class scores.
        labels: ``(B,)`` integer labels in ``[0, C)``.
    """
    check_tensor("logits", logits, ndim=2)
    check_index_vector("labels", labels, logits.shape[0])
    if logits.shape[0] == 0:
        raise ValueError(f"logits must hold at least one row, got shape {shape_str(logits)}")
    check_index_range("labels", labels, logits.shape[1],
                      f"the number of classes, logits has shape {shape_str(logits)}")
    return (logits.argmax(dim=-1) == labels.to(logits.device)).float().mean().item()


# -- SQuAD: exact match and F1 (Rajpurkar et al., 2016) ------------------------------------------

def token_f1(prediction: Sequence, ground_truth: Sequence) -> float:
    """SQuAD's F1 of one answer: the harmonic mean of the precision and recall of the
    tokens they share, counted as bags (a repeated token counts as often as it is in
    both). Two empty answers score 1, one empty answer 0 (as in SQuAD v2's script).

    The official script first normalises the texts (lower case, no punctuation, no
    articles ``a``/``an``/``the``); the course's tokens need none of it.

    Args:
        prediction: the predicted answer's tokens (a list, not a string).
        ground_truth: the answer's tokens.
    """
    _check_token_list("prediction", prediction)
    _check_token_list("ground_truth", ground_truth)
    prediction, ground_truth = list(prediction), list(ground_truth)
    if not prediction or not ground_truth:
        return float(prediction == ground_truth)
    num_same = sum((Counter(prediction) & Counter(ground_truth)).values())
    if num_same == 0:
        return 0.0
    precision, recall = num_same / len(prediction), num_same / len(ground_truth)
    return 2 * precision * recall / (precision + recall)


def _span_args(pred_start, pred_end, start, end, tokens) -> list[list[int]]:
    """Check a batch of predicted and answer spans; return them as four lists of ints."""
    batch_size = pred_start.shape[0] if isinstance(pred_start, Tensor) else None
    for name, t in (("pred_start", pred_start), ("pred_end", pred_end), ("start", start),
                    ("end", end)):
        check_index_vector(name, t, batch_size)
    if pred_start.shape[0] == 0:
        raise ValueError("pred_start must hold at least one span, got shape (0,)")
    if tokens is not None:
        check_tensor("tokens", tokens, ndim=2)
        if tokens.shape[0] != pred_start.shape[0]:
            raise ValueError(f"tokens must have one row per span, got shape "
                             f"{shape_str(tokens)} for {pred_start.shape[0]} spans")
    positions = [t.tolist() for t in (pred_start, pred_end, start, end)]  # reads them anyway
    upper = tokens.shape[1] if tokens is not None else None
    for name, values in zip(("pred_start", "pred_end", "start", "end"), positions):
        lo, hi = min(values), max(values)
        if lo < 0 or (upper is not None and hi >= upper):
            bound = "be >= 0" if upper is None else \
                f"lie in [0, {upper}) (the length of tokens, shape {shape_str(tokens)})"
            raise ValueError(f"{name} must {bound}, got values from {lo} to {hi}")
    # An answer ends at or after its start (spans are inclusive). A reversed *prediction* is
    # allowed: it is an empty span, a wrong answer that scores 0
    s, e = positions[2:]
    reversed_rows = [b for b in range(len(s)) if e[b] < s[b]]
    if reversed_rows:
        b = reversed_rows[0]
        raise ValueError(f"end must be >= start (answer spans are inclusive [start, end]), "
                         f"got start={s[b]} and end={e[b]} in row {b} "
                         f"({len(reversed_rows)} reversed answer span(s) of {len(s)})")
    return positions


def _span_items(pred_start, pred_end, start, end, tokens):
    """Yield ``(predicted span, answer span)`` per row, as token lists (or position lists)."""
    ps, pe, gs, ge = _span_args(pred_start, pred_end, start, end, tokens)
    rows = tokens.tolist() if tokens is not None else None
    for b in range(len(ps)):
        if rows is None:  # positions stand for tokens: every position is a distinct token
            yield list(range(ps[b], pe[b] + 1)), list(range(gs[b], ge[b] + 1))
        else:
            yield rows[b][ps[b]:pe[b] + 1], rows[b][gs[b]:ge[b] + 1]


def span_exact_match(pred_start: Tensor, pred_end: Tensor, start: Tensor, end: Tensor,
                     tokens: Tensor | None = None) -> float:
    """SQuAD's exact match: the fraction of predicted spans equal to the answer.

    Args:
        pred_start, pred_end: ``(B,)`` predicted first and last positions (inclusive;
            :func:`~qkvcourse.finetune.best_spans` gives ``pred_end >= pred_start``; a
            reversed prediction is an empty span and scores 0).
        start, end: ``(B,)`` the answers' first and last positions (``end >= start``).
        tokens: ``(B, T)`` token ids; if given, spans are compared by their tokens (as
            SQuAD compares texts: the same words elsewhere count), otherwise by position.
    """
    matches = [p == g for p, g in _span_items(pred_start, pred_end, start, end, tokens)]
    return sum(matches) / len(matches)


def span_f1(pred_start: Tensor, pred_end: Tensor, start: Tensor, end: Tensor,
            tokens: Tensor | None = None) -> float:
    """SQuAD's F1 averaged over the batch (:func:`token_f1` of each predicted span and its
    answer).

    Args:
        pred_start, pred_end: ``(B,)`` predicted first and last positions (inclusive).
        start, end: ``(B,)`` the answers' first and last positions.
        tokens: ``(B, T)`` token ids; if given, spans are compared as bags of tokens
            (SQuAD's definition), otherwise as sets of positions (the overlap of the two
            intervals).
    """
    scores = [token_f1(p, g) for p, g in _span_items(pred_start, pred_end, start, end, tokens)]
    return sum(scores) / len(scores)


def span_scores(pred_start: Tensor, pred_end: Tensor, start: Tensor, end: Tensor,
                tokens: Tensor | None = None) -> tuple[float, float]:
    """``(span_exact_match(...), span_f1(...))`` with the spans read once."""
    items = list(_span_items(pred_start, pred_end, start, end, tokens))
    return (sum(p == g for p, g in items) / len(items),
            sum(token_f1(p, g) for p, g in items) / len(items))
