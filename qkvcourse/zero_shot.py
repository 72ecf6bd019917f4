"""Zero-shot use of a language model: score candidate answers by their likelihood (chapter 9).

A pretrained language model can answer a multiple-choice question with no fine-tuning
and no new parameter: write the question as a prompt, and ask how probable each
candidate answer is as its continuation,

    log P(c | prompt) = sum_j log P(c_j | prompt, c_1, ..., c_{j-1}),

the chain rule of the language model (GPT, eq. (1)) over the candidate's tokens. The
answer is the candidate with the highest score. Radford et al. (2018, section 5,
"Zero-shot behaviors") scored tasks this way to see what pretraining alone had taught
the model; GPT-2 (2019) made it the main way of using the model.

Candidates of different lengths compare unfairly under the sum (every extra token can
only lower it); ``reduction="mean"`` divides by the candidate's length instead.

Shape legend: B candidates scored together, T the longest prompt + candidate, V vocabulary.
"""
from __future__ import annotations

import numbers
from typing import Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

from ._validate import check_integer
from .decoding import _EvalMode
from .gpt import GPT

__all__ = ["choose_continuation", "continuation_log_probs"]


def _id_list(name: str, ids, vocab_size: int) -> list[int]:
    """Token ids as a list of Python ints in ``[0, vocab_size)``: integers only (a float id
    would be truncated, a bool is not an id)."""
    if isinstance(ids, Tensor):
        if ids.dim() != 1:
            raise ValueError(f"{name} must be 1-D, got shape {tuple(ids.shape)}")
        check_integer(name, ids, "token ids")
        ids = ids.tolist()
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence):
        raise TypeError(f"{name} must be a list of token ids, got {type(ids).__name__}")
    for j, i in enumerate(ids):
        if isinstance(i, bool) or not isinstance(i, numbers.Integral):
            raise TypeError(f"{name}[{j}] must be an integer token id, got {i!r}")
        if not 0 <= i < vocab_size:
            raise ValueError(f"{name}[{j}] must lie in [0, {vocab_size}) (the model's "
                             f"vocab_size), got {i}")
    return [int(i) for i in ids]


@torch.no_grad()
def continuation_log_probs(model: GPT, prompts: Sequence, continuations: Sequence,
                           reduction: str = "sum") -> Tensor:
    """The log-probability that the model continues ``prompts[b]`` with ``continuations[b]``.

    All B pairs run through the model in one padded batch (the causal mask makes the
    padding after a row's last token irrelevant to it). Runs in eval mode, without
    gradients, on the model's device.

    Args:
        model: a :class:`~qkvcourse.gpt.GPT`.
        prompts: B token-id lists (or 1-D tensors), each with at least one token.
        continuations: B token-id lists, each with at least one token; prompt plus
            continuation must fit in ``model.config.max_len``.
        reduction: ``"sum"`` (the log-probability of the whole continuation) or ``"mean"``
            (per token).

    Returns:
        ``(B,)`` float32 on the CPU.
    """
    if not isinstance(model, GPT):
        raise TypeError(f"model must be a qkvcourse GPT, got {type(model).__name__}")
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    for name, seq in (("prompts", prompts), ("continuations", continuations)):
        if isinstance(seq, (str, bytes)) or not isinstance(seq, Sequence):
            raise TypeError(f"{name} must be a list of token-id lists, got {type(seq).__name__}")
    if len(prompts) != len(continuations) or len(prompts) == 0:
        raise ValueError(f"prompts and continuations must be non-empty and as many, got "
                         f"{len(prompts)} and {len(continuations)}")
    rows, starts, ends = [], [], []
    for b, (p, c) in enumerate(zip(prompts, continuations)):
        V = model.config.vocab_size
        p, c = _id_list(f"prompts[{b}]", p, V), _id_list(f"continuations[{b}]", c, V)
        if not p or not c:
            raise ValueError(f"prompts[{b}] and continuations[{b}] must each hold a token")
        rows.append(p + c)
        starts.append(len(p))
        ends.append(len(p) + len(c))
    T = max(ends)
    if T > model.config.max_len:
        raise ValueError(f"a prompt with its continuation has {T} tokens, more than the "
                         f"model's max_len={model.config.max_len}")
    device = next(model.parameters()).device
    idx = torch.zeros(len(rows), T, dtype=torch.long)  # (B, T), padded with token 0
    for b, row in enumerate(rows):
        idx[b, :len(row)] = torch.tensor(row)
    with _EvalMode(model):
        log_probs = F.log_softmax(model(idx.to(device)).float(), dim=-1).cpu()  # (B, T, V)
    # Position t predicts token t + 1: the continuation's tokens are read at start-1..end-2
    token_lp = log_probs[:, :-1].gather(2, idx[:, 1:, None])[:, :, 0]  # (B, T - 1)
    positions = torch.arange(T - 1)  # (T - 1,)
    starts_t, ends_t = torch.tensor(starts), torch.tensor(ends)
    counted = (positions[None] >= starts_t[:, None] - 1) & (positions[None] < ends_t[:, None] - 1)
    total = (token_lp * counted).sum(dim=1)  # (B,)
    return total / (ends_t - starts_t) if reduction == "mean" else total


def choose_continuation(model: GPT, prompt, candidates: Sequence,
                        reduction: str = "sum") -> tuple[int, Tensor]:
    """Zero-shot multiple choice: the index of the most probable candidate continuation
    of ``prompt``, and the ``(K,)`` scores of the K candidates
    (:func:`continuation_log_probs`)."""
    if isinstance(candidates, (str, bytes, Tensor)) or not isinstance(candidates, Sequence):
        raise TypeError(f"candidates must be a list of token-id lists, got "
                        f"{type(candidates).__name__}")
    if len(candidates) == 0:
        raise ValueError("candidates must hold at least one continuation")
    scores = continuation_log_probs(model, [prompt] * len(candidates), candidates, reduction)
    return int(scores.argmax()), scores
