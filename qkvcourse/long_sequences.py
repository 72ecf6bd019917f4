"""Long-sequence tasks and a fixed-budget recipe for comparing encoder–decoders (chapter 7).

Chapter 7 compares the Transformer with the RNN encoder–decoder of chapter 4 at the same
training budget, and measures what label smoothing does. Both comparisons need the same
three things, kept here so that the chapter's cells stay short:

- :class:`SequenceTaskData`: generated copy and reversal tasks over a small alphabet, with
  sequences longer than the date task's, deterministic from a seed, in the batch format of
  :mod:`qkvcourse.data.translation` (so every model and decoder of the course runs on it);
- :func:`train_seq2seq`: one training recipe (AdamW, linear warm-up then cosine decay,
  gradient clipping, optional label smoothing) for any :class:`~qkvcourse.EncoderDecoder`,
  run for a fixed number of optimiser steps;
- :func:`evaluate_seq2seq`: greedy-decoding accuracy (whole sequences and per position)
  and, under teacher forcing, the quantities that label smoothing trades off: the
  negative log-likelihood of the reference (perplexity) and calibration (mean confidence
  and expected calibration error, :func:`expected_calibration_error`).

Shape legend: B batch, S source length, T target length, V target vocabulary size.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .data.translation import TranslationData
from .data.vocab import Vocab
from .decoding import greedy_search
from .encoder_decoder import EncoderDecoder, sequence_loss
from .trainer import Trainer, TrainerConfig, warmup_cosine_schedule

__all__ = ["SequenceTaskData", "Seq2SeqScores", "expected_calibration_error",
           "evaluate_seq2seq", "scores_table", "train_seq2seq"]

TASKS = ("copy", "reverse")


class SequenceTaskData(TranslationData):
    """Copy or reverse random strings: ``"cabjd" -> "cabjd"`` or ``"cabjd" -> "djbac"``.

    Every symbol is drawn uniformly from ``symbols`` and every length uniformly from
    ``[min_len, max_len]``, with ``random.Random(seed)`` only, so the splits depend on the
    arguments alone. No structure helps: the model must carry each symbol to its place.
    Source and target share one character vocabulary (the symbols after the four special
    tokens), the same for every seed.

    Args:
        task: ``"copy"`` or ``"reverse"``.
        min_len, max_len: shortest and longest string (characters, ``<eos>`` not counted).
        num_train, num_val, num_test: number of pairs in each split.
        seed: draws the strings and seeds the order of the training batches.
        batch_size: rows per batch.
        symbols: the alphabet (distinct characters).
    """

    def __init__(self, task: str = "reverse", min_len: int = 12, max_len: int = 28,
                 num_train: int = 4000, num_val: int = 200, num_test: int = 500, seed: int = 0,
                 batch_size: int = 64, symbols: str = "abcdefghij"):
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        if not 1 <= min_len <= max_len:
            raise ValueError(f"need 1 <= min_len <= max_len, got min_len={min_len}, "
                             f"max_len={max_len}")
        if len(symbols) < 2 or len(set(symbols)) != len(symbols):
            raise ValueError(f"symbols must hold at least two distinct characters, got {symbols!r}")
        for name, n in (("num_train", num_train), ("num_val", num_val), ("num_test", num_test)):
            if n < 0:
                raise ValueError(f"{name} must be >= 0, got {n}")
        self.task, self.min_len, self.max_len, self.symbols = task, min_len, max_len, symbols
        rng = random.Random(seed)
        pairs = []
        for _ in range(num_train + num_val + num_test):
            s = "".join(rng.choice(symbols) for _ in range(rng.randint(min_len, max_len)))
            pairs.append((s, s if task == "copy" else s[::-1]))
        vocab = Vocab(list(symbols))
        a, b = num_train, num_train + num_val
        super().__init__(pairs[:a], pairs[a:b], pairs[b:], vocab, vocab, batch_size, seed)

    def tokenize_source(self, text: str) -> list[str]:
        return list(text)

    def tokenize_target(self, text: str) -> list[str]:
        return list(text)

    def detokenize_target(self, tokens: Sequence[str]) -> str:
        return "".join(tokens)

    def __repr__(self) -> str:
        return (f"SequenceTaskData(task={self.task!r}, lengths {self.min_len}-{self.max_len}, "
                f"train={len(self.train_pairs)}, test={len(self.test_pairs)}, "
                f"symbols={len(self.symbols)}, batch_size={self.batch_size})")


def train_seq2seq(model: EncoderDecoder, data: TranslationData, steps: int, lr: float,
                  label_smoothing: float = 0.0, seed: int = 0, warmup_fraction: float = 0.1,
                  grad_clip_norm: float | None = 1.0, device=None) -> Trainer:
    """Train ``model`` on ``data`` for exactly ``steps`` optimiser steps; return the trainer.

    AdamW (β = 0.9, 0.98, as in the Transformer paper, section 5.3), a linear warm-up over
    ``warmup_fraction`` of the steps followed by a cosine decay to zero, gradient clipping,
    and the teacher-forced :func:`~qkvcourse.sequence_loss` with ``label_smoothing`` ε
    (section 5.4 of the paper uses ε = 0.1). No validation during training. The CPU seconds
    of the loop are stored in ``trainer.settings["cpu_seconds"]``.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must lie in [0, 1), got {label_smoothing!r}")
    pad_id = data.tgt_vocab.pad_id

    def loss_fn(m: nn.Module, batch) -> Tensor:
        logits = m(batch.src, batch.tgt_in, batch.src_valid_lens)  # (B, T, V)
        return sequence_loss(logits, batch.tgt_out, pad_id, label_smoothing=label_smoothing)

    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98))
    scheduler = warmup_cosine_schedule(optimizer, warmup_steps=max(1, int(warmup_fraction * steps)),
                                       total_steps=steps)
    config = TrainerConfig(max_epochs=10**6, max_steps=steps, seed=seed, device=device,
                           grad_clip_norm=grad_clip_norm, eval_every_epoch=False, progress=False)
    trainer = Trainer(model, loss_fn, data.train_dataloader(), None, optimizer=optimizer,
                      scheduler=scheduler, config=config)
    start = time.process_time()
    trainer.fit()
    trainer.settings["cpu_seconds"] = time.process_time() - start
    return trainer


def expected_calibration_error(confidence: Tensor, correct: Tensor, num_bins: int = 10) -> float:
    """ECE: Σ_bins (n_bin / n) · |accuracy in the bin − mean confidence in the bin|.

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
