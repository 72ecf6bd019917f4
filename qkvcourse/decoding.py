"""Generating from an encoder–decoder: greedy and beam search (chapters 4 and 7).

Shape legend: B batch, S source length, V target vocabulary size, K beam size.

Both searches work with any model following the contract of
:mod:`qkvcourse.encoder_decoder` (the RNN decoders of :mod:`qkvcourse.seq2seq`,
the Transformer decoder, or a hand-built one): they encode once, then feed the
decoder one token per step together with its state. Beam search additionally
uses ``decoder.reorder_state`` to follow the hypotheses that survive each step.

Conventions shared by both searches:

- ``max_len`` is the largest number of decoding steps, i.e. of generated tokens
  with the end-of-sequence token included. A hypothesis that has not produced
  ``eos_id`` after ``max_len`` steps is returned as it is, with ``finished`` False.
- ``tokens`` exclude ``bos_id`` and ``eos_id``; ``score`` is the sum of the
  log-probabilities of the generated tokens, eos included when it was generated.
- ``attention`` (with ``return_attention=True``) holds, per hypothesis, one entry
  per decoding step (so ``len(tokens) + 1`` entries when eos was generated): the
  batch row of whatever the decoder stored in ``decoder.attention_weights`` at
  that step, e.g. a ``(1, S)`` tensor for the Bahdanau decoder.

The outputs are scored by :mod:`qkvcourse.metrics` (BLEU, exact match, token accuracy).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ._validate import (check_flag, check_lengths, check_size, check_tensor,
                        check_token_ids, shape_str)
from .encoder_decoder import EncoderDecoder, map_state


@dataclass
class Hypothesis:
    """One generated sequence."""

    tokens: list[int]        # generated ids, without bos / eos
    score: float             # sum of log-probabilities, eos included when generated
    finished: bool           # True if eos was generated (False: stopped at max_len)
    attention: list | None = None  # one decoder attention record per step, or None


@dataclass
class Hypotheses:
    """The result of a search: one best hypothesis per source sentence.

    ``tokens[b]``, ``scores[b]``, ``finished[b]`` and ``attention[b]`` describe the
    best hypothesis for source row b. ``nbest[b]`` (beam search only) lists the
    ``n_best`` best hypotheses for row b, best first.
    """

    tokens: list[list[int]]
    scores: list[float]
    finished: list[bool]
    attention: list[list] | None = None
    nbest: list[list[Hypothesis]] | None = field(default=None, repr=False)

    @classmethod
    def from_best(cls, best: list[Hypothesis], return_attention: bool,
                  nbest: list[list[Hypothesis]] | None = None) -> "Hypotheses":
        return cls(tokens=[h.tokens for h in best], scores=[h.score for h in best],
                   finished=[h.finished for h in best],
                   attention=[h.attention for h in best] if return_attention else None,
                   nbest=nbest)


# -- shared machinery --------------------------------------------------------------------------

def _check_search_args(model, src, src_valid_lens, bos_id, eos_id, max_len,
                       return_attention) -> None:
    if not isinstance(model, EncoderDecoder):
        raise TypeError(f"model must be an EncoderDecoder (encoder + decoder), "
                        f"got {type(model).__name__}")
    check_tensor("src", src, ndim=2)
    check_token_ids("src", src)
    if src.shape[0] == 0:
        raise ValueError(f"src must hold at least one sequence, got shape {shape_str(src)}")
    if src_valid_lens is not None:
        check_lengths("src_valid_lens", src_valid_lens, "src", src)
    check_size("bos_id", bos_id, minimum=0)
    check_size("eos_id", eos_id, minimum=0)
    # bos_id is fed before any logits exist: checked against the decoder's vocab_size, where
    # it has one (the course's decoders do); eos_id against the logits of the first step
    vocab_size = getattr(model.decoder, "vocab_size", None)
    if isinstance(vocab_size, int) and not isinstance(vocab_size, bool) and bos_id >= vocab_size:
        raise ValueError(f"bos_id must be a token id in [0, {vocab_size}) (the decoder's "
                         f"vocab_size={vocab_size}), got {bos_id}")
    check_size("max_len", max_len)
    check_flag("return_attention", return_attention)


class _EvalMode:
    """``model.eval()`` inside a ``with`` block; every submodule's own mode restored after."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __enter__(self):
        self.modes = [(m, m.training) for m in self.model.modules()]
        self.model.eval()

    def __exit__(self, *exc):
        for module, training in self.modes:
            module.training = training


def _step_log_probs(logits: Tensor, eos_id: int) -> Tensor:
    """``(B, 1, V)`` logits of one step -> ``(B, V)`` float32 log-probabilities."""
    if logits.dim() != 3 or logits.shape[1] != 1:
        raise ValueError(f"the decoder must return logits of shape (B, 1, V) for one input "
                         f"token per row, got shape {shape_str(logits)}")
    if eos_id >= logits.shape[-1]:
        raise ValueError(f"eos_id={eos_id} is not a token of the decoder's vocabulary "
                         f"(logits have shape {shape_str(logits)}, V={logits.shape[-1]})")
    return F.log_softmax(logits[:, -1].float(), dim=-1)  # (B, V)


def _recorded_attention(decoder: nn.Module) -> Any:
    weights = getattr(decoder, "attention_weights", None)
    if weights is None:
        raise ValueError(f"return_attention=True, but {type(decoder).__name__} records no "
                         "attention_weights")
    return weights


def _row(record: Any, row: int) -> Any:
    """Batch row ``row`` of every tensor of an attention record (any nesting)."""
    return map_state(record, lambda t: t[row])


# -- greedy search -----------------------------------------------------------------------------

def greedy_search(model: EncoderDecoder, src: Tensor, src_valid_lens: Tensor | None,
                  bos_id: int, eos_id: int, max_len: int,
                  return_attention: bool = False) -> Hypotheses:
    """Pick the most probable token at every step, for a whole batch at once.

    Runs under ``torch.no_grad`` with the model in eval mode (its modes are
    restored afterwards), feeding one token per step with the decoder's state.
    Stops when every row has generated ``eos_id``, or after ``max_len`` steps.

    Args:
        model: an :class:`~qkvcourse.encoder_decoder.EncoderDecoder`.
        src: ``(B, S)`` source token ids.
        src_valid_lens: ``(B,)`` source lengths, or None (all of length S).
        bos_id: the token fed at the first step.
        eos_id: the token that ends a hypothesis.
        max_len: at most this many steps (generated tokens, eos included).
        return_attention: also keep the decoder's ``attention_weights`` of every step.

    Returns:
        :class:`Hypotheses` with ``tokens``, ``scores`` (sum of log-probabilities),
        ``finished`` and, if asked for, ``attention``.
    """
    _check_search_args(model, src, src_valid_lens, bos_id, eos_id, max_len, return_attention)
    B = src.shape[0]
    with _EvalMode(model), torch.no_grad():
        decoder = model.decoder
        state = decoder.init_state(model.encoder(src, src_valid_lens), src_valid_lens)
        inputs = torch.full((B, 1), bos_id, dtype=torch.long, device=src.device)
        scores = torch.zeros(B, device=src.device)  # running sums of log-probabilities
        done = torch.zeros(B, dtype=torch.bool, device=src.device)
        steps, records = [], []  # (B,) chosen ids and (B,)-masks of live rows, per step
        for _ in range(max_len):
            logits, state = decoder(inputs, state)  # (B, 1, V)
            log_probs = _step_log_probs(logits, eos_id)  # (B, V)
            best_log_prob, best = log_probs.max(dim=-1)  # (B,), (B,); ties -> lowest id
            # Rows that are finished already keep emitting eos, at no cost
            scores = scores + torch.where(done, torch.zeros_like(best_log_prob), best_log_prob)
            best = torch.where(done, torch.full_like(best, eos_id), best)
            steps.append((best, ~done))
            if return_attention:
                records.append(_recorded_attention(decoder))
            done = done | (best == eos_id)
            if bool(done.all()):
                break
            inputs = best[:, None]  # (B, 1)

    ids = torch.stack([s for s, _ in steps], dim=1).tolist()  # (B, steps)
    live = torch.stack([a for _, a in steps], dim=1).tolist()  # (B, steps)
    best_hyps = []
    for b in range(B):
        tokens, attention, finished = [], [] if return_attention else None, False
        for t, (token, alive) in enumerate(zip(ids[b], live[b])):
            if not alive:
                break
            if return_attention:
                attention.append(_row(records[t], b))
            if token == eos_id:
                finished = True
                break
            tokens.append(token)
        best_hyps.append(Hypothesis(tokens, float(scores[b]), finished, attention))
    return Hypotheses.from_best(best_hyps, return_attention)


# -- beam search -------------------------------------------------------------------------------

def _normalized(score: float, length: int, alpha: float) -> float:
    """score / length^alpha (d2l, section "Beam Search"; alpha = 0 keeps the raw score)."""
    return score if alpha == 0 else score / max(length, 1) ** alpha


def beam_search(model: EncoderDecoder, src: Tensor, src_valid_lens: Tensor | None,
                bos_id: int, eos_id: int, max_len: int, beam_size: int = 4,
                length_penalty: float = 0.0, n_best: int = 1,
                return_attention: bool = False) -> Hypotheses:
    """Keep the ``beam_size`` most probable prefixes at every step, for a whole batch.

    The B sources are expanded to B·K decoder rows (row ``b*K + k`` is beam k of
    source b) and decoded together, one token per step; after each step the best
    K continuations of each source are chosen among its K·V candidates and the
    decoder state is gathered with ``decoder.reorder_state``.

    A candidate ending in ``eos_id`` is set aside as a finished hypothesis when it
    ranks among the K best candidates of its step (as in fairseq), and the K best
    candidates not ending in eos stay alive, so the beam never shrinks. A source
    is done once it has ``n_best`` finished hypotheses and no alive prefix can
    still beat the ``n_best``-th of them (log-probabilities are ≤ 0, so a
    prefix's score can only fall); after ``max_len`` steps the alive prefixes
    compete too, unfinished. With ``beam_size=1`` and ``length_penalty=0`` this is
    exactly :func:`greedy_search`.

    Hypotheses are ranked by score / len^α with α = ``length_penalty`` and len the
    number of generated tokens, eos included (the length normalisation of d2l's
    beam search section; α = 0 ranks by the raw sum of log-probabilities, which
    favours short outputs; α ≈ 0.75 is common). ``scores`` always reports the
    raw sum.

    Args:
        model, src, src_valid_lens, bos_id, eos_id, max_len, return_attention:
            as in :func:`greedy_search`.
        beam_size: K, the number of prefixes kept per source.
        length_penalty: α ≥ 0.
        n_best: how many hypotheses per source to return in ``nbest`` (≤ K).

    Returns:
        :class:`Hypotheses` of the best hypothesis per source, with ``nbest``
        holding the ``n_best`` best, best first.
    """
    _check_search_args(model, src, src_valid_lens, bos_id, eos_id, max_len, return_attention)
    check_size("beam_size", beam_size)
    if isinstance(length_penalty, bool) or not isinstance(length_penalty, (int, float)) \
            or not length_penalty >= 0 or math.isinf(length_penalty):
        raise ValueError(f"length_penalty must be a finite number ≥ 0, got {length_penalty!r}")
    check_size("n_best", n_best)
    if n_best > beam_size:
        raise ValueError(f"n_best={n_best} cannot exceed beam_size={beam_size}")
    alpha, K = float(length_penalty), beam_size
    B, device = src.shape[0], src.device
    # Upper bound of the normalised score an alive prefix of raw score s can reach:
    # s' <= s <= 0 and len' <= max_len give s' / len'^α <= s / max_len^α.
    bound_divisor = float(max_len) ** alpha

    with _EvalMode(model), torch.no_grad():
        decoder = model.decoder
        state = decoder.init_state(model.encoder(src, src_valid_lens), src_valid_lens)
        rows = torch.arange(B, device=device).repeat_interleave(K)  # (B*K,): b, b, .., b+1, ..
        state = decoder.reorder_state(state, rows)
        # Only beam 0 is real at the start; the others are copies that must never be chosen
        beam_scores = torch.full((B, K), float("-inf"), device=device)  # (B, K)
        beam_scores[:, 0] = 0.0
        inputs = torch.full((B * K, 1), bos_id, dtype=torch.long, device=device)
        prefixes = [[[] for _ in range(K)] for _ in range(B)]  # token ids of each alive beam
        parents: list[list[list[int]]] = []  # per step: the beam each new beam came from
        records = []  # per step: the decoder's attention record for the B*K rows
        finished: list[list[tuple]] = [[] for _ in range(B)]  # (norm, score, tokens, step, beam)
        done = [False] * B

        def prefix_attention(step: int, b: int, k: int) -> list:
            """Attention entries of steps 0..step for the beam fed as row b*K+k at ``step``."""
            entries = []
            for t in range(step, -1, -1):
                entries.append(_row(records[t], b * K + k))
                if t > 0:
                    k = parents[t - 1][b][k]
            return entries[::-1]

        for step in range(max_len):
            logits, state = decoder(inputs, state)  # (B*K, 1, V)
            log_probs = _step_log_probs(logits, eos_id)  # (B*K, V)
            V = log_probs.shape[-1]
            if return_attention:
                records.append(_recorded_attention(decoder))
            candidates = (beam_scores[:, :, None] + log_probs.view(B, K, V)).view(B, K * V)
            # A stable sort breaks ties towards the lower index, as max() does in greedy search
            num = min(2 * K, K * V)  # 2K candidates: at most K of them end in eos
            cand_scores, cand_index = torch.sort(candidates, dim=-1, descending=True,
                                                 stable=True)
            cand_scores, cand_index = cand_scores[:, :num].tolist(), cand_index[:, :num].tolist()

            new_parent = [[0] * K for _ in range(B)]
            new_token = [[eos_id] * K for _ in range(B)]
            new_score = [[float("-inf")] * K for _ in range(B)]
            new_prefixes = [[[] for _ in range(K)] for _ in range(B)]
            for b in range(B):
                if done[b]:
                    continue
                alive = 0
                for rank, (score, index) in enumerate(zip(cand_scores[b], cand_index[b])):
                    if score == float("-inf") or (alive == K and rank >= K):
                        break
                    beam, token = divmod(index, V)
                    if token == eos_id:
                        if rank < K:
                            tokens = prefixes[b][beam]
                            finished[b].append((_normalized(score, len(tokens) + 1, alpha),
                                                score, tokens, True, step, beam))
                        continue
                    if alive < K:
                        new_parent[b][alive], new_token[b][alive] = beam, token
                        new_score[b][alive] = score
                        new_prefixes[b][alive] = prefixes[b][beam] + [token]
                        alive += 1
                # Done once n_best finished hypotheses can no longer be beaten by any prefix
                if len(finished[b]) >= n_best:
                    kth = sorted((f[0] for f in finished[b]), reverse=True)[n_best - 1]
                    if max(new_score[b]) / bound_divisor <= kth:
                        done[b] = True

            parents.append(new_parent)
            prefixes = new_prefixes
            if all(done):
                break
            beam_scores = torch.tensor(new_score, device=device)  # (B, K)
            index = torch.tensor(new_parent, device=device)  # (B, K)
            index = (index + torch.arange(B, device=device)[:, None] * K).view(-1)  # (B*K,)
            state = decoder.reorder_state(state, index)
            inputs = torch.tensor(new_token, device=device).view(B * K, 1)  # (B*K, 1)

        last = len(parents) - 1  # the last step run
        nbest_all, best_all = [], []
        for b in range(B):
            pool = list(finished[b])
            if not done[b]:  # max_len reached: the alive prefixes compete, unfinished
                for k in range(K):
                    if new_score[b][k] > float("-inf"):
                        tokens = prefixes[b][k]
                        pool.append((_normalized(new_score[b][k], len(tokens), alpha),
                                     new_score[b][k], tokens, False, last, k))
            # sorted() is stable: among equal scores the earlier-found hypothesis wins
            ranked = sorted(pool, key=lambda f: f[0], reverse=True)[:n_best]
            hyps = []
            for _, score, tokens, is_finished, step, beam in ranked:
                attention = None
                if return_attention:
                    if is_finished:  # the eos step was fed from beam `beam` at `step`
                        attention = prefix_attention(step, b, beam)
                    else:  # alive beam k after the last step: its parent was fed at `step`
                        attention = prefix_attention(step, b, parents[step][b][beam])
                hyps.append(Hypothesis(list(tokens), float(score), is_finished, attention))
            nbest_all.append(hyps)
            best_all.append(hyps[0])
    return Hypotheses.from_best(best_all, return_attention, nbest=nbest_all)
