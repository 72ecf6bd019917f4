"""Image captioning with attention over a CNN feature grid (chapter 4, after Xu et al., 2015).

"Show, attend and tell" (Xu et al., 2015) captions an image with the Bahdanau decoder of
chapter 4: the annotations are not the states of a recurrent encoder but the feature vectors
of a convolutional network's last feature map, one per cell of its spatial grid. This module
builds a tiny version for :class:`qkvcourse.data.images.ShapeCaptionData`:

- :class:`GridEncoder`: two convolutions with pooling turn a ``(B, 3, P, P)`` image into a
  ``G × G`` grid of N-dimensional features, flattened to the L = G·G annotations
  ``z (B, L, N)``; a learned embedding of each cell's position is added (our network is too
  shallow for its features to know where they are). The decoder's initial state is
  ``W_init · flatten(z) + b``, a dense layer over the whole grid.
- the decoder is chapter 4's own :class:`~qkvcourse.seq2seq.Seq2SeqAttentionDecoder`
  (the query is s_{t-1}, keys and values are the L cells), or, for comparison, the
  fixed-context :class:`~qkvcourse.seq2seq.Seq2SeqDecoder`, whose single context vector is
  that same initial state.

Shape legend: B batch, P pixels per side, G grid cells per side, L = G·G annotations,
N = num_hiddens, T caption length (words + ``<eos>``), V vocabulary size.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .encoder_decoder import Encoder, EncoderDecoder
from .losses import sequence_loss
from .seq2seq import Seq2SeqAttentionDecoder, Seq2SeqDecoder

__all__ = ["GridEncoder", "make_captioner", "greedy_caption", "train_captioner", "weight_on_objects"]


class GridEncoder(Encoder):
    """A two-layer CNN: image ``(B, 3, P, P)`` -> annotations ``z (B, G·G, N)`` and state ``(1, B, N)``.

    conv 3×3 (3 -> channels) + ReLU + 2×2 max-pool, then conv 3×3 (channels -> N) + ReLU +
    max-pool down to the ``G × G`` grid (adaptive), then a learned position embedding
    per cell. ``forward(images, src_valid_lens=None)`` follows the :class:`Encoder`
    contract (there are no lengths: every image has all L cells).
    """

    def __init__(self, num_hiddens: int = 64, grid: int = 4, channels: int = 32):
        super().__init__()
        self.num_hiddens, self.grid = num_hiddens, grid
        self.cnn = nn.Sequential(
            nn.Conv2d(3, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(channels, num_hiddens, 3, padding=1), nn.ReLU(),
            nn.AdaptiveMaxPool2d(grid))
        self.position = nn.Parameter(0.02 * torch.randn(grid * grid, num_hiddens))  # (L, N)
        self.init_state = nn.Linear(grid * grid * num_hiddens, num_hiddens)

    def forward(self, images: Tensor, src_valid_lens: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must have shape (B, 3, P, P), got {tuple(images.shape)}")
        features = self.cnn(images)  # (B, N, G, G): one N-vector per grid cell
        z = features.flatten(2).transpose(1, 2) + self.position  # (B, L, N): the annotations z_j
        # s_0 from the whole grid: a plain dense layer (a tanh here saturated and kept the
        # fixed-context captioner from ever reading the image in our runs)
        state = self.init_state(z.flatten(1))  # (B, N)
        return z, state[None]  # (B, L, N), (1, B, N)


def make_captioner(vocab_size: int, attention: bool = True, num_hiddens: int = 64,
                   embed_size: int = 32, grid: int = 4) -> EncoderDecoder:
    """A :class:`GridEncoder` with chapter 4's attention decoder (or the fixed-context one)."""
    decoder_cls = Seq2SeqAttentionDecoder if attention else Seq2SeqDecoder
    return EncoderDecoder(GridEncoder(num_hiddens, grid),
                          decoder_cls(vocab_size, embed_size, num_hiddens, num_layers=1))


@torch.no_grad()
def greedy_caption(model: EncoderDecoder, images: Tensor, bos_id: int, max_len: int
                   ) -> tuple[Tensor, Tensor | None]:
    """Caption ``images (B, 3, P, P)`` greedily for ``max_len`` steps.

    Returns:
        ``tokens (B, max_len)`` (every step's most probable word, ``<eos>`` included) and the
        attention weights ``(B, max_len, L)`` used for each word (None without attention).
    """
    model.eval()
    decoder = model.decoder
    state = decoder.init_state(model.encoder(images))
    word = torch.full((images.shape[0], 1), bos_id, dtype=torch.long, device=images.device)
    tokens, weights = [], []
    for _ in range(max_len):
        logits, state = decoder(word, state)  # (B, 1, V)
        word = logits.argmax(-1)  # (B, 1)
        tokens.append(word)
        if decoder.attention_weights is not None:
            weights.append(decoder.attention_weights)  # (B, 1, L)
    return torch.cat(tokens, 1), (torch.cat(weights, 1) if weights else None)


def train_captioner(model: EncoderDecoder, data, max_steps: int, lr: float = 5e-3,
                    seed: int = 0, grad_clip_norm: float = 1.0):
    """Teacher-forced training on ``data`` (a ShapeCaptionData) for ``max_steps`` steps.

    The recipe of the translation models, :func:`~qkvcourse.seq2seq.train_seq2seq` (AdamW, a
    warm-up over 5% of the steps and a cosine decay, the training order reseeded from
    ``data.seed``), with a loss that reads ``(images, tgt_in, tgt_out)`` batches. Returns the
    finished ``Trainer``.
    """
    from .seq2seq import train_seq2seq

    pad_id = data.vocab.pad_id

    def loss_fn(model, batch):
        images, tgt_in, tgt_out = batch
        return sequence_loss(model(images, tgt_in), tgt_out, pad_id)  # logits (B, T, V)

    return train_seq2seq(model, data, steps=max_steps, lr=lr, seed=seed,
                         grad_clip_norm=grad_clip_norm, validate=False, loss_fn=loss_fn)


def weight_on_objects(weights: Tensor, cells: Tensor, words_per_object: int = 2) -> Tensor:
    """The attention weight each caption word puts on the grid cell of the object it names.

    Args:
        weights: ``(B, K * words_per_object, L)`` attention weights of the words that name
            K objects, in caption order (``<eos>`` excluded).
        cells: ``(B, K)`` the grid cell (row * G + column) of each object, in caption order.

    Returns:
        ``(B, K * words_per_object)``: ``weights[b, t, cell of the object word t names]``.
    """
    if weights.dim() != 3 or cells.dim() != 2 or weights.shape[:2] != (cells.shape[0], cells.shape[1] * words_per_object):
        raise ValueError(f"weights (B, K*{words_per_object}, L) and cells (B, K) disagree: got "
                         f"{tuple(weights.shape)} and {tuple(cells.shape)}")
    index = cells.to(weights.device).repeat_interleave(words_per_object, dim=1)  # (B, K*w)
    return weights.gather(2, index[..., None]).squeeze(-1)
