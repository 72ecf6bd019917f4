"""Scoring an encoder–decoder beyond exact match (chapter 7).

Chapter 7 compares the Transformer with the RNN encoder–decoder of chapter 4 at the same
training budget (on :class:`~qkvcourse.data.sequences.SequenceTaskData`, trained by
:func:`~qkvcourse.seq2seq.train_seq2seq`), and measures what label smoothing does. Both need
:func:`evaluate_seq2seq`: greedy-decoding accuracy (whole sequences and per position)
and, under teacher forcing, the quantities that label smoothing trades off: the
negative log-likelihood of the reference (perplexity) and calibration (mean confidence
and expected calibration error, :func:`expected_calibration_error`).

Shape legend: B batch, S source length, T target length, V target vocabulary size.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

from .data.translation import TranslationData
from .decoding import greedy_search
from .encoder_decoder import EncoderDecoder

__all__ = ["Seq2SeqScores", "expected_calibration_error", "evaluate_seq2seq", "scores_table"]


def expected_calibration_error(confidence: Tensor, correct: Tensor, num_bins: int = 10) -> float:
    """ECE: ``Σ_bins (n_bin / n) · |accuracy in the bin − mean confidence in the bin|``.

    ``confidence (n,)`` is the probability a model gives to its prediction, ``correct (n,)``
    whether the prediction was right; bins split [0, 1] into ``num_bins`` equal parts
    (Guo et al., 2017, "On calibration of modern neural networks", eq. 3). 0 for a model
    whose confidence is, in every bin, its accuracy.
    """
    if confidence.shape != correct.shape or confidence.dim() != 1:
        raise ValueError(f"confidence and correct must be 1-D of the same shape, got "
                         f"{tuple(confidence.shape)} and {tuple(correct.shape)}")
    if confidence.numel() == 0:
        raise ValueError("need at least one prediction")
    confidence, correct = confidence.double(), correct.double()
    bins = (confidence * num_bins).long().clamp(0, num_bins - 1)  # confidence 1.0 -> last bin
    ece = 0.0
    for b in range(num_bins):
        in_bin = bins == b
        if in_bin.any():
            gap = correct[in_bin].mean() - confidence[in_bin].mean()
            ece += in_bin.double().mean().item() * abs(gap.item())
    return ece


@dataclass
class Seq2SeqScores:
    """What :func:`evaluate_seq2seq` measures on one split."""
    exact_match: float  # greedy decoding: fraction of outputs entirely right
    token_accuracy: float  # greedy decoding: fraction of reference characters right in place
    position_accuracy: list  # greedy decoding: accuracy at output position 0, 1, ... (by column)
    teacher_forced_accuracy: float  # teacher forcing: the argmax is the reference token
    nll: float  # teacher forcing: mean −log p(reference token), nats, without smoothing
    perplexity: float  # exp(nll)
    confidence: float  # teacher forcing: mean probability of the predicted (argmax) token
    ece: float  # teacher forcing: expected calibration error of those predictions


def evaluate_seq2seq(model: EncoderDecoder, data: TranslationData, split: str = "test",
                     device=None) -> Seq2SeqScores:
    """Greedy-search accuracies and teacher-forced likelihood and calibration on ``split``."""
    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test', got {split!r}")
    tensors = data.val_tensors if split == "val" else data.test_tensors
    pairs = data.val_pairs if split == "val" else data.test_pairs
    device = next(model.parameters()).device if device is None else device
    src, lens = tensors.src.to(device), tensors.src_valid_lens.to(device)
    tgt_in, tgt_out = tensors.tgt_in.to(device), tensors.tgt_out.to(device)
    vocab = data.tgt_vocab
    hyps = greedy_search(model, src, lens, bos_id=vocab.bos_id, eos_id=vocab.eos_id,
                         max_len=tgt_out.shape[1] + 1)
    predictions = data.decode_targets(hyps.tokens)
    targets = [t for _, t in pairs]
    longest = max(len(t) for t in targets)
    hits, counts = [0] * longest, [0] * longest
    for p, t in zip(predictions, targets):
        for i, c in enumerate(t):
            counts[i] += 1
            hits[i] += i < len(p) and p[i] == c
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = model(src, tgt_in, lens).float()  # (B, T, V), teacher forcing
    model.train(was_training)
    keep = tgt_out != vocab.pad_id  # (B, T)
    log_probs = F.log_softmax(logits, dim=-1)[keep]  # (n, V) over the counted positions
    reference = tgt_out[keep]  # (n,)
    nll = -log_probs.gather(1, reference[:, None]).mean().item()
    confidence, predicted = log_probs.exp().max(dim=-1)  # (n,), (n,)
    return Seq2SeqScores(
        exact_match=sum(p == t for p, t in zip(predictions, targets)) / len(targets),
        token_accuracy=sum(hits) / sum(counts),
        position_accuracy=[h / c for h, c in zip(hits, counts)],
        teacher_forced_accuracy=(predicted == reference).double().mean().item(),
        nll=nll, perplexity=float(torch.tensor(nll).exp()),
        confidence=confidence.mean().item(),
        ece=expected_calibration_error(confidence, predicted == reference))


def scores_table(scores: dict, arms: Sequence, seeds: Sequence[int],
                 fields: Sequence[str] = ("exact_match", "token_accuracy", "perplexity",
                                          "confidence", "ece")) -> str:
    """``mean ± std`` over ``seeds`` of each field (rows) for each arm (columns).

    ``scores[arm, seed]`` is a :class:`Seq2SeqScores`.
    """
    import statistics
    header = ["", *map(str, arms)]
    rows = []
    for f in fields:
        row = [f]
        for arm in arms:
            v = [getattr(scores[arm, s], f) for s in seeds]
            sd = statistics.stdev(v) if len(v) > 1 else 0.0
            row.append(f"{statistics.fmean(v):.3f} ± {sd:.3f}")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "  ".join(c.rjust(w) if i else c.ljust(w)  # noqa: E731
                               for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([line(header), *map(line, rows), f"(mean ± std over {len(seeds)} seeds)"])
