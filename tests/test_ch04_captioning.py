"""Chapter 4's captioning section: the generated shape images (qkvcourse.data.images) and the
grid-attention captioner (qkvcourse.captioning)."""
from __future__ import annotations

import pytest
import torch

import qkvcourse as qc
from qkvcourse import captioning
from qkvcourse.data.images import COLOURS, SHAPES, ShapeCaptionData, draw_shapes

pytestmark = pytest.mark.usefixtures("one_thread")


def test_data_is_deterministic_and_captions_read_left_to_right():
    a, b = ShapeCaptionData(num_train=20, num_test=5, seed=2), ShapeCaptionData(num_train=20, num_test=5, seed=2)
    assert torch.equal(a.train.images, b.train.images) and a.train.captions == b.train.captions
    assert not torch.equal(a.train.images, ShapeCaptionData(num_train=20, num_test=5, seed=3).train.images)
    assert a.train.images.shape == (20, 3, 24, 24) and a.train.cells.shape == (20, 3)
    cols = a.train.cells % a.grid
    assert (cols[:, 1:] > cols[:, :-1]).all()  # distinct columns, in caption order
    for caption in a.train.captions:
        assert len(caption) == 6 and all(c in COLOURS for c in caption[::2])
        assert all(s in SHAPES for s in caption[1::2])
    assert a.decode(a.train.tgt_out) == a.train.captions
    assert (a.train.tgt_in[:, 0] == a.vocab.bos_id).all()


def test_objects_are_drawn_in_their_cells():
    image = draw_shapes([("red", "square", 1, 2)], image_size=24, grid=4, noise=0.0)
    red = image[0] > 0.5
    rows, cols = red.nonzero(as_tuple=True)
    assert rows.min() >= 6 and rows.max() < 12 and cols.min() >= 12 and cols.max() < 18
    assert red.sum() == 25  # the 5 x 5 filled square


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_objects"):
        ShapeCaptionData(num_train=1, num_test=1, num_objects=5)
    with pytest.raises(ValueError, match="image_size"):
        ShapeCaptionData(num_train=1, num_test=1, image_size=25)
    with pytest.raises(ValueError, match="images"):
        captioning.GridEncoder()(torch.zeros(2, 24, 24))


@pytest.mark.parametrize("attention", [False, True])
def test_captioner_shapes_and_greedy_matches_teacher_forcing(attention):
    data = ShapeCaptionData(num_train=4, num_test=2, seed=0)
    qc.seed_everything(0)
    model = captioning.make_captioner(len(data.vocab), attention, num_hiddens=16, embed_size=8).eval()
    z, state = model.encoder(data.train.images)
    assert z.shape == (4, 16, 16) and state.shape == (1, 4, 16)
    tokens, weights = captioning.greedy_caption(model, data.train.images, data.vocab.bos_id, max_len=7)
    assert tokens.shape == (4, 7)
    # feeding the greedy words back with teacher forcing reproduces them
    tgt = torch.cat([torch.full((4, 1), data.vocab.bos_id), tokens[:, :-1]], dim=1)
    with torch.no_grad():
        assert torch.equal(model(data.train.images, tgt).argmax(-1), tokens)
    if attention:
        assert weights.shape == (4, 7, 16)
        assert torch.allclose(weights.sum(-1), torch.ones(4, 7), atol=1e-5)
    else:
        assert weights is None


def test_weight_on_objects_picks_each_words_cell():
    weights = torch.zeros(1, 4, 16)
    weights[0, 0, 5] = weights[0, 1, 5] = 0.7  # object 1 in cell 5
    weights[0, 2, 9] = 0.4
    out = captioning.weight_on_objects(weights, torch.tensor([[5, 9]]))
    assert torch.allclose(out, torch.tensor([[0.7, 0.7, 0.4, 0.0]]))
    with pytest.raises(ValueError, match="disagree"):
        captioning.weight_on_objects(weights, torch.tensor([[5, 9, 1]]))


def test_attention_captioner_learns_to_use_the_image():
    """Below the loss of the best image-blind caption (6/7 · ln 4 ≈ 1.19: colour and shape
    guessed), the model must be reading the image."""
    data = ShapeCaptionData(num_train=1000, num_test=10, seed=0, batch_size=32)
    qc.seed_everything(0)
    model = captioning.make_captioner(len(data.vocab), True, num_hiddens=32, embed_size=16)
    trainer = captioning.train_captioner(model, data, max_steps=250, lr=1e-2)
    losses = trainer.history["train_loss"]
    assert sum(losses[-5:]) / 5 < 0.9
