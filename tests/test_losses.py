"""qkvcourse.losses: the losses accept token ids of either integer dtype that the package
allows (int64, int32) and give the same numbers for both; narrower, float and bool ids are
rejected with an error naming the argument (cross-entropy itself accepts only int64 and uint8)."""
from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from qkvcourse.losses import IGNORE_INDEX, bert_pretraining_loss, lm_loss, sequence_loss
from helpers import raises


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 7, generator=g)
    targets = torch.randint(1, 7, (2, 5), generator=g)
    targets[1, 3:] = 0  # padding for sequence_loss
    return logits, targets


def test_sequence_loss_int32_targets_equal_int64(batch):
    logits, targets = batch
    expected = F.cross_entropy(logits[targets != 0], targets[targets != 0])  # independent
    torch.testing.assert_close(sequence_loss(logits, targets, pad_id=0), expected)
    torch.testing.assert_close(sequence_loss(logits, targets.int(), pad_id=0), expected)


def test_lm_loss_int32_targets_equal_int64(batch):
    logits, targets = batch
    targets = targets.masked_fill(targets == 0, IGNORE_INDEX)
    kept = targets != IGNORE_INDEX
    expected = F.cross_entropy(logits[kept], targets[kept])
    torch.testing.assert_close(lm_loss(logits, targets), expected)
    torch.testing.assert_close(lm_loss(logits, targets.int()), expected)


def test_bert_pretraining_loss_int32_labels_equal_int64():
    g = torch.Generator().manual_seed(1)
    mlm, nsp = torch.randn(2, 3, 6, generator=g), torch.randn(2, 2, generator=g)
    weights = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    labels, nsp_labels = torch.randint(0, 6, (2, 3), generator=g), torch.tensor([0, 1])
    ref = bert_pretraining_loss(mlm, nsp, weights, labels, nsp_labels)
    got = bert_pretraining_loss(mlm, nsp, weights, labels.int(), nsp_labels.int())
    for a, b in zip(ref, got):
        torch.testing.assert_close(a, b)
    expected_mlm = F.cross_entropy(mlm[weights > 0], labels[weights > 0])
    torch.testing.assert_close(ref.mlm, expected_mlm)
    torch.testing.assert_close(ref.loss, expected_mlm + F.cross_entropy(nsp, nsp_labels))


@pytest.mark.parametrize("dtype", [torch.int16, torch.uint8, torch.float32, torch.bool])
@pytest.mark.parametrize("loss", ["sequence_loss", "lm_loss"])
def test_other_target_dtypes_are_rejected_by_name(batch, loss, dtype):
    logits, targets = batch
    call = {"sequence_loss": lambda t: sequence_loss(logits, t, pad_id=0),
            "lm_loss": lambda t: lm_loss(logits, t)}[loss]
    with raises(TypeError, "targets", str(dtype), "(2, 5)"):
        call(targets.to(dtype))
