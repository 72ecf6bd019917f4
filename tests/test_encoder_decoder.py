"""The encoder-decoder contract helpers: sequence_loss, map_state, EncoderDecoder."""
import pytest
import torch
from torch.nn import functional as F

from qkvcourse.encoder_decoder import Decoder, Encoder, EncoderDecoder, map_state
from qkvcourse.losses import sequence_loss


def test_sequence_loss_ignores_padding_exactly():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 7)
    targets = torch.randint(1, 7, (3, 5))
    targets[0, 3:] = 0
    targets[2, 1:] = 0
    keep = targets != 0
    manual = -(F.log_softmax(logits, -1).gather(-1, targets[..., None])[..., 0] * keep).sum() / keep.sum()
    torch.testing.assert_close(sequence_loss(logits, targets, pad_id=0), manual)
    # changing the logits at padded positions changes nothing
    logits2 = logits.clone()
    logits2[~keep] = 100 * torch.randn(int((~keep).sum()), 7)
    torch.testing.assert_close(sequence_loss(logits2, targets, pad_id=0), manual)


def test_sequence_loss_bad_shapes():
    with pytest.raises(ValueError, match=r"logits has shape \(2, 4, 5\), targets has shape \(2, 3\)"):
        sequence_loss(torch.randn(2, 4, 5), torch.zeros(2, 3, dtype=torch.long), pad_id=0)
    with pytest.raises(ValueError, match=r"logits must be 3-D, got shape \(2, 5\)"):
        sequence_loss(torch.randn(2, 5), torch.zeros(2, 3, dtype=torch.long), pad_id=0)


def test_map_state_and_default_reorder_keep_structure():
    state = {"h": torch.arange(6).view(3, 2), "list": [torch.arange(3), None], "n": 4}
    out = Decoder().reorder_state(state, torch.tensor([2, 2, 0]))
    assert out["h"].tolist() == [[4, 5], [4, 5], [0, 1]]
    assert out["list"][0].tolist() == [2, 2, 0] and out["list"][1] is None and out["n"] == 4
    assert map_state((torch.ones(2),), lambda t: t * 3)[0].tolist() == [3.0, 3.0]


def test_encoder_decoder_composes_encoder_and_decoder():
    class AddEncoder(Encoder):
        def forward(self, src, src_valid_lens=None):
            return src.float() + 1

    class EchoDecoder(Decoder):
        def init_state(self, enc_outputs, src_valid_lens=None):
            return enc_outputs.sum(1, keepdim=True)  # (B, 1)

        def forward(self, tgt, state):
            return (tgt.float() * state)[..., None], state  # (B, T, 1)

    model = EncoderDecoder(AddEncoder(), EchoDecoder())
    src = torch.tensor([[1, 2], [0, 0]])
    tgt = torch.tensor([[1, 1, 2], [3, 0, 1]])
    out = model(src, tgt)
    assert out.shape == (2, 3, 1)
    assert out[..., 0].tolist() == [[5.0, 5.0, 10.0], [6.0, 0.0, 2.0]]


def test_map_state_handles_named_tuples():
    from typing import NamedTuple

    class State(NamedTuple):
        hidden: torch.Tensor
        lengths: torch.Tensor

    out = Decoder().reorder_state(State(torch.arange(3), torch.tensor([5, 6, 7])),
                                  torch.tensor([1, 1]))
    assert isinstance(out, State)
    assert out.hidden.tolist() == [1, 1] and out.lengths.tolist() == [6, 6]


def test_sequence_loss_of_padding_only_is_zero_not_nan():
    logits = torch.randn(2, 3, 5, requires_grad=True)
    loss = sequence_loss(logits, torch.zeros(2, 3, dtype=torch.long), pad_id=0)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.all(logits.grad == 0)


def test_sequence_loss_label_smoothing_matches_pytorch_mean():
    torch.manual_seed(1)
    logits, targets = torch.randn(2, 4, 6), torch.randint(1, 6, (2, 4))
    targets[1, 2:] = 0
    keep = targets.reshape(-1) != 0
    expected = F.cross_entropy(logits.reshape(-1, 6)[keep], targets.reshape(-1)[keep],
                               label_smoothing=0.1)
    torch.testing.assert_close(sequence_loss(logits, targets, pad_id=0, label_smoothing=0.1),
                               expected)
