"""Scoring an encoder–decoder beyond exact match (chapter 7).

Chapter 7 compares the Transformer with the RNN encoder–decoder of chapter 4 at the same
training budget (on :class:`~qkvcourse.data.sequences.SequenceTaskData`, trained by
:func:`~qkvcourse.seq2seq.train_seq2seq`), and measures what label smoothing does. Both need
:func:`evaluate_seq2seq`: greedy-decoding accuracy (whole sequences and per position)
and, under teacher forcing, the quantities that label smoothing trades off: the
negative log-likelihood of the reference (perplexity) and calibration (mean confidence
and expected calibration error, :func:`~qkvcourse.metrics.expected_calibration_error`).

Shape legend: B batch, S source length, T target length, V target vocabulary size.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch.nn import functional as F

from .data.translation import TranslationData
from .decoding import greedy_search
from .encoder_decoder import EncoderDecoder
from .metrics import exact_match, expected_calibration_error, token_accuracy

__all__ = ["Seq2SeqScores", "evaluate_seq2seq", "scores_table"]


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
        exact_match=exact_match(predictions, targets),
        token_accuracy=token_accuracy(predictions, targets),
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
