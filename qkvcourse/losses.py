"""The training losses of the models, in one place (chapters 4, 7, 9, 10).

- :func:`sequence_loss`: the encoder–decoder models' masked cross-entropy over the target
  tokens, padding excluded, with optional label smoothing (chapters 4 and 7).
- :func:`lm_loss`: GPT's next-token cross-entropy (Radford et al., 2018, eq. (1)), over the
  positions whose target is not ``ignore_index`` (chapter 9).
- :func:`bert_pretraining_loss` (a :class:`BERTLoss` of three scalars) and
  :func:`bert_batch_loss`: BERT's masked-LM plus next-sentence loss (Devlin et al., 2019,
  Appendix A.2; chapter 10).
- :func:`span_loss`: BERT's span-extraction loss, the cross-entropies of the answer's start
  and end over the passage (Devlin et al., 2019, section 4.2; chapter 10).

Each checks its arguments at entry (shapes and dtypes always; target ranges and weights where
reading them costs nothing, see :func:`~qkvcourse.value_checks`), computes in float32 whatever
the logits' dtype, and returns 0 rather than NaN when no position counts (an empty batch
or sequence is an error, not a NaN or a silent 0). The
``loss_fn(model, batch)`` of each fine-tuning head (which runs the head, then one of these)
stays beside its head in :mod:`qkvcourse.finetune`.

Shape legend: B batch, T sequence length, V vocabulary size, P predicted positions.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor
from torch.nn import functional as F

from ._validate import (check_dim_match, check_floating, check_index_range, check_index_vector,
                        check_nonempty, check_real, check_size, check_tensor, check_token_ids,
                        shape_str, value_checks_enabled, value_range)

if TYPE_CHECKING:
    from .bert import BERTModel
    from .data.bert_pretraining import BERTBatch

__all__ = ["BERTLoss", "IGNORE_INDEX", "MASKED_LOGIT", "bert_batch_loss", "bert_pretraining_loss",
           "lm_loss", "sequence_loss", "span_loss"]

IGNORE_INDEX = -100  # targets equal to this do not count in the loss (PyTorch's default)
MASKED_LOGIT = torch.finfo(torch.float32).min  # the span logit of a non-passage position


def _check_logits_and_targets(logits: Tensor, targets: Tensor) -> None:
    """``logits (B, T, V)`` floating, ``targets (B, T)``, with B, T and V >= 1 (an empty batch
    or sequence is an error, not a silent 0)."""
    check_tensor("logits", logits, ndim=3)
    check_floating("logits", logits)
    check_tensor("targets", targets, ndim=2)
    check_token_ids("targets", targets)
    if logits.shape[:2] != targets.shape:
        raise ValueError(f"logits (B, T, V) and targets (B, T) disagree: logits has shape "
                         f"{shape_str(logits)}, targets has shape {shape_str(targets)}")
    check_nonempty("targets", targets, 0, "batch")
    check_nonempty("targets", targets, 1, "sequence")
    check_nonempty("logits", logits, 2, "vocabulary")


def _check_target_range(targets: Tensor, skipped: Tensor, logits: Tensor, skip_name: str,
                        skip_id: int) -> None:
    """The targets that count (not ``skipped``) lie in ``[0, V)``."""
    if value_checks_enabled(targets):  # (skip the masked copy where it cannot be read)
        check_index_range("targets", targets.masked_fill(skipped, 0), logits.shape[-1],
                          f"the vocabulary of the logits, shape {shape_str(logits)}; or equal "
                          f"{skip_name}={skip_id}")


def sequence_loss(logits: Tensor, targets: Tensor, pad_id: int,
                  label_smoothing: float = 0.0) -> Tensor:
    """Mean cross-entropy over the non-padding target tokens.

    Args:
        logits: ``(B, T, V)``.
        targets: ``(B, T)`` token ids; positions equal to ``pad_id`` do not count.
        pad_id: the padding id.
        label_smoothing: as in ``F.cross_entropy`` (0.1 in the Transformer, section 5.4).

    Returns:
        A 0-dim float32 loss; 0 (not NaN) when every target is padding.
    """
    _check_logits_and_targets(logits, targets)
    check_size("pad_id", pad_id, minimum=None)
    check_real("label_smoothing", label_smoothing, minimum=0, maximum=1)
    padding = targets == pad_id  # (B, T)
    _check_target_range(targets, padding, logits, "pad_id", pad_id)
    losses = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                             targets.reshape(-1).long(), ignore_index=pad_id,
                             label_smoothing=label_smoothing, reduction="none")  # (B*T,)
    # Sum over the counted tokens / their number; a batch of padding only gives 0, not 0/0
    return losses.sum() / (~padding).sum().clamp_min(1)


def lm_loss(logits: Tensor, targets: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Mean next-token cross-entropy (GPT, eq. (1)) over the positions that count.

    Args:
        logits: ``(B, T, V)``.
        targets: ``(B, T)`` token ids in ``[0, V)``, or ``ignore_index`` for positions that
            do not count (padding, the prompt part of a fine-tuning example...).
        ignore_index: the id of the positions that do not count.

    Returns:
        A 0-dim float32 loss; 0 (with zero gradients, not NaN) if no position counts.
    """
    _check_logits_and_targets(logits, targets)
    check_size("ignore_index", ignore_index, minimum=None)
    counted = targets != ignore_index  # (B, T)
    _check_target_range(targets, ~counted, logits, "ignore_index", ignore_index)
    total = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                            targets.reshape(-1).long(), ignore_index=ignore_index,
                            reduction="sum")
    return total / counted.sum().clamp(min=1)  # the mean over counted positions


class BERTLoss(NamedTuple):
    loss: Tensor  # mlm + nsp, the quantity minimised (section 3.1, Appendix A.2)
    mlm: Tensor  # mean cross-entropy over the real predictions
    nsp: Tensor  # mean cross-entropy over the examples


def bert_pretraining_loss(mlm_Y_hat: Tensor, nsp_Y_hat: Tensor, mlm_weights: Tensor,
                          mlm_labels: Tensor, nsp_labels: Tensor) -> BERTLoss:
    """BERT's pretraining loss: "the sum of the mean masked LM likelihood and the mean next
    sentence prediction likelihood" (Appendix A.2), as negative log-likelihoods.

    Args:
        mlm_Y_hat: ``(B, P, V)`` masked-LM logits.
        nsp_Y_hat: ``(B, 2)`` next-sentence logits.
        mlm_weights: ``(B, P)`` finite and ``>= 0``: 1 for a real prediction, 0 for a padding
            slot; the masked-LM loss is the weighted mean (0 when every weight is 0, never
            NaN).
        mlm_labels: ``(B, P)`` integer ids to predict.
        nsp_labels: ``(B,)`` integer labels, ``IS_NEXT`` (0) or ``NOT_NEXT`` (1)
            (:mod:`qkvcourse.data.bert_pretraining`).

    Returns:
        :class:`BERTLoss` ``(loss, mlm, nsp)``, three scalars.
    """
    check_tensor("mlm_Y_hat", mlm_Y_hat, ndim=3)
    check_tensor("nsp_Y_hat", nsp_Y_hat, ndim=2)
    check_tensor("mlm_weights", mlm_weights, ndim=2)
    check_tensor("mlm_labels", mlm_labels, ndim=2)
    check_tensor("nsp_labels", nsp_labels, ndim=1)
    for name, t in (("mlm_weights", mlm_weights), ("mlm_labels", mlm_labels)):
        if t.shape != mlm_Y_hat.shape[:2]:
            raise ValueError(f"{name} must be (B, P) = {tuple(mlm_Y_hat.shape[:2])} like "
                             f"mlm_Y_hat {shape_str(mlm_Y_hat)}, got shape {shape_str(t)}")
    if nsp_Y_hat.shape[-1] != 2 or nsp_labels.shape[0] != nsp_Y_hat.shape[0]:
        raise ValueError(f"nsp_Y_hat must be (B, 2) and nsp_labels (B,), got shapes "
                         f"{shape_str(nsp_Y_hat)} and {shape_str(nsp_labels)}")
    check_dim_match("mlm_Y_hat", mlm_Y_hat, 0, "nsp_Y_hat", nsp_Y_hat, 0, "batch sizes")
    check_nonempty("mlm_Y_hat", mlm_Y_hat, 0, "batch")
    check_nonempty("mlm_Y_hat", mlm_Y_hat, 2, "vocabulary")
    for name, t in (("mlm_Y_hat", mlm_Y_hat), ("nsp_Y_hat", nsp_Y_hat),
                    ("mlm_weights", mlm_weights)):
        check_floating(name, t)
    check_token_ids("mlm_labels", mlm_labels)
    check_index_vector("nsp_labels", nsp_labels, what="IS_NEXT or NOT_NEXT, one per example",
                       indexes=True)
    V = mlm_Y_hat.shape[-1]
    check_index_range("mlm_labels", mlm_labels, V,
                      f"the vocabulary of mlm_Y_hat, shape {shape_str(mlm_Y_hat)}")
    check_index_range("nsp_labels", nsp_labels, 2, "IS_NEXT or NOT_NEXT")
    bounds = value_range(mlm_weights)  # (min, max); NaN if any weight is NaN
    if bounds is not None and not (math.isfinite(bounds[0]) and math.isfinite(bounds[1])
                                   and bounds[0] >= 0):
        raise ValueError(f"mlm_weights must be finite and >= 0 (1 for a prediction, 0 for "
                         f"padding), got values from {bounds[0]} to {bounds[1]} in shape "
                         f"{shape_str(mlm_weights)}")
    per_token = F.cross_entropy(mlm_Y_hat.reshape(-1, V).float(), mlm_labels.reshape(-1).long(),
                                reduction="none")  # (B*P,)
    weights = mlm_weights.reshape(-1).to(per_token.dtype)  # (B*P,)
    total = weights.sum()
    # The weighted mean; all weights 0 give 0 / 1 = 0, not 0/0 (and tiny weights still divide
    # by their own sum, which a clamp to eps would replace)
    mlm = (per_token * weights).sum() / torch.where(total > 0, total, 1)
    nsp = F.cross_entropy(nsp_Y_hat.float(), nsp_labels.long())
    return BERTLoss(mlm + nsp, mlm, nsp)


def bert_batch_loss(model: BERTModel, batch: BERTBatch) -> Tensor:
    """``loss_fn(model, batch)`` for :class:`~qkvcourse.Trainer`: the total pretraining loss
    of a :class:`~qkvcourse.data.bert_pretraining.BERTBatch`."""
    tokens, segments, valid_lens, pred_positions, mlm_weights, mlm_labels, nsp_labels = batch
    _, mlm_Y_hat, nsp_Y_hat = model(tokens, segments, valid_lens, pred_positions)
    return bert_pretraining_loss(mlm_Y_hat, nsp_Y_hat, mlm_weights, mlm_labels,
                                 nsp_labels).loss


def _check_span_logits(start_logits, end_logits) -> None:
    check_tensor("start_logits", start_logits, ndim=2)
    check_tensor("end_logits", end_logits, ndim=2)
    check_floating("start_logits", start_logits)
    check_floating("end_logits", end_logits)
    if start_logits.shape != end_logits.shape:
        raise ValueError(f"start_logits and end_logits must have one shape (B, T), got "
                         f"{shape_str(start_logits)} and {shape_str(end_logits)}")


def _check_positions(name: str, positions, like: Tensor) -> None:
    check_index_vector(name, positions, like.shape[0], indexes=True)
    check_index_range(name, positions, like.shape[1],
                      f"the sequence length, shape {shape_str(like)}")


def span_loss(start_logits: Tensor, end_logits: Tensor, start: Tensor, end: Tensor) -> Tensor:
    """The span-extraction loss of section 4.2: "the sum of the log-likelihoods of the
    correct start and end positions" (negated): ``CE(start) + CE(end)``, each a batch
    mean. (Hugging Face's ``BertForQuestionAnswering`` takes half of it.)

    Args:
        start_logits, end_logits: ``(B, T)``.
        start, end: ``(B,)`` the answer's first and last positions; they must be scored
            positions (inside the passage), not masked ones.

    Returns:
        A 0-dim float32 loss.
    """
    _check_span_logits(start_logits, end_logits)
    check_nonempty("start_logits", start_logits, 0, "batch")
    check_nonempty("start_logits", start_logits, 1, "sequence")
    _check_positions("start", start, start_logits)
    _check_positions("end", end, end_logits)
    # (int32 positions are allowed; cross_entropy takes int64 targets only)
    start, end = start.to(start_logits.device).long(), end.to(start_logits.device).long()
    for name, logits, pos in (("start", start_logits, start), ("end", end_logits, end)):
        if not value_checks_enabled(logits):  # reading the logits would stall a GPU
            continue
        picked = logits.float().gather(1, pos[:, None])  # (B, 1)
        if bool((picked <= MASKED_LOGIT / 2).any()):
            row = int((picked[:, 0] <= MASKED_LOGIT / 2).nonzero()[0])
            raise ValueError(f"{name}[{row}] = {int(pos[row])} is a masked position (outside "
                             f"the passage) of {name}_logits, shape {shape_str(logits)}")
    return F.cross_entropy(start_logits.float(), start) + F.cross_entropy(end_logits.float(), end)
