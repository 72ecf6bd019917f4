"""RNN encoder–decoders, with and without Bahdanau attention (chapter 4).

Bahdanau, Cho and Bengio (2014), "Neural machine translation by jointly
learning to align and translate". Section 2 describes the plain RNN
encoder–decoder, whose decoder sees the whole source only through one
fixed-length vector c; section 3 replaces c by a context vector c_i computed
afresh at every target step i by attending over all encoder states.

Shape legend: B batch, S source length, T target length, V vocabulary size,
E embedding size, N = num_hiddens (encoder and decoder width), L = num_layers.

Layout: batch first everywhere, ``(B, S, ...)``; only GRU hidden states are
``(L, B, N)``, as PyTorch's ``nn.GRU`` keeps them, so their batch axis is dimension 1.

The three models follow the ``Encoder`` / ``Decoder`` contract of
:mod:`qkvcourse.encoder_decoder`, so :func:`qkvcourse.decoding.greedy_search`
and :func:`qkvcourse.decoding.beam_search` decode with any of them.

Differences from the paper, all made for a small, readable model (d2l makes the same ones):
a unidirectional GRU encoder instead of a bidirectional one (section 3.2); the
decoder starts from the encoder's final state rather than from tanh(W_s h₁)
(appendix A.2.2); and the output layer is a linear map of the decoder's GRU
output rather than a maxout "deep output" of (s_i, y_{i-1}, c_i) (appendix A.2.2).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ._validate import (check_dropout, check_floating, check_index_range, check_index_vector,
                        check_lengths, check_size, check_sizes, check_tensor, check_tokens,
                        shape_str)
from ._validate import check_tokens as _check_token_ids  # the name the book's listings show
from .attention import AdditiveAttention
from .encoder_decoder import Decoder, Encoder, EncoderDecoder


# -- encoder -----------------------------------------------------------------------------------


def _check_rnn_sizes(vocab_size: int, embed_size: int, num_hiddens: int, num_layers: int,
                     dropout: float) -> None:
    check_sizes(vocab_size=vocab_size, embed_size=embed_size, num_hiddens=num_hiddens,
                num_layers=num_layers)
    check_dropout("dropout", dropout)


def _embedding_and_gru(vocab_size: int, embed_size: int, rnn_input_size: int, num_hiddens: int,
                       num_layers: int, dropout: float) -> tuple[nn.Embedding, nn.Dropout, nn.GRU]:
    """The token embedding, its dropout and the batch-first GRU every RNN model here uses."""
    # nn.GRU's own dropout acts between layers only (and warns when there is one layer)
    return (nn.Embedding(vocab_size, embed_size), nn.Dropout(dropout),
            nn.GRU(rnn_input_size, num_hiddens, num_layers, batch_first=True,
                   dropout=dropout if num_layers > 1 else 0.0))

class Seq2SeqEncoder(Encoder):
    """Embedding + multi-layer GRU (Bahdanau et al., 2014, sections 2 and 3.2).

    ``forward(src (B, S), src_valid_lens (B,) | None)`` returns
    ``(outputs (B, S, N), state (L, B, N))``: the annotations h_j of every source
    position (top layer) and the final hidden state of every layer.

    Padding: with ``src_valid_lens`` the padded batch is packed
    (``pack_padded_sequence``), so the GRU never reads a padding token and the
    final state of row b is taken at its last valid position ``src_valid_lens[b] - 1``.
    Outputs past the valid length are set to zero; they are irrelevant anyway,
    since the attention decoder masks them. A row of length 0 gets a zero state.

    Dropout is applied to the embeddings and, when ``num_layers > 1``, between GRU layers.
    """

    def __init__(self, vocab_size: int, embed_size: int, num_hiddens: int, num_layers: int,
                 dropout: float = 0.0):
        super().__init__()
        _check_rnn_sizes(vocab_size, embed_size, num_hiddens, num_layers, dropout)
        self.vocab_size, self.num_hiddens, self.num_layers = vocab_size, num_hiddens, num_layers
        self.embedding, self.dropout, self.rnn = _embedding_and_gru(
            vocab_size, embed_size, embed_size, num_hiddens, num_layers, dropout)

    def forward(self, src: Tensor, src_valid_lens: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Encode a padded batch.

        Args:
            src: ``(B, S)`` source token ids.
            src_valid_lens: ``(B,)`` number of real tokens per row, in ``[0, S]``;
                None means every row has length S.

        Returns:
            ``outputs (B, S, N)`` (h_1..h_S of the top layer, zero past the valid length)
            and ``state (L, B, N)`` (each layer's hidden state at the last valid position).
        """
        check_tokens("src", src, self.vocab_size)
        B, S = src.shape
        X = self.dropout(self.embedding(src))  # (B, S, E)
        if src_valid_lens is None:
            return self.rnn(X)  # (B, S, N), (L, B, N)
        check_lengths("src_valid_lens", src_valid_lens, "src", src)
        if src_valid_lens.device.type == "cpu" and not torch.compiler.is_compiling():
            outputs, state = self._packed(X, src_valid_lens)  # lengths readable for free
        else:  # packing would copy the lengths to the host and wait for the device
            outputs, state = self._stepped(X, src_valid_lens.to(src.device))
        lens = src_valid_lens.to(src.device)  # (B,)
        valid = torch.arange(S, device=src.device) < lens[:, None]  # (B, S)
        outputs = outputs * valid[..., None].to(outputs.dtype)  # (B, S, N)
        state = state * (lens > 0)[None, :, None].to(state.dtype)  # empty rows: zero state
        return outputs, state

    def _packed(self, X: Tensor, src_valid_lens: Tensor) -> tuple[Tensor, Tensor]:
        """The GRU over the packed batch: each row stops at its last valid position."""
        lens = src_valid_lens.to(device="cpu", dtype=torch.int64)  # packing wants CPU lengths
        # Packing rejects empty rows: run them for one (ignored) step, then zero their state.
        packed = pack_padded_sequence(X, lens.clamp(min=1), batch_first=True,
                                      enforce_sorted=False)
        outputs, state = self.rnn(packed)  # state (L, B, N), back in the batch's order
        outputs, _ = pad_packed_sequence(outputs, batch_first=True,
                                         total_length=X.shape[1])  # (B, S, N)
        return outputs, state

    def _stepped(self, X: Tensor, src_valid_lens: Tensor) -> tuple[Tensor, Tensor]:
        """What :meth:`_packed` computes, one position at a time, without reading the lengths
        on the host: row b's state stops changing after position ``src_valid_lens[b] - 1``."""
        B, S, _ = X.shape
        state = X.new_zeros(self.num_layers, B, self.num_hiddens)  # (L, B, N)
        outputs = []
        for t in range(S):
            out, new = self.rnn(X[:, t:t + 1], state)  # (B, 1, N), (L, B, N)
            state = torch.where((t < src_valid_lens)[None, :, None], new, state)
            outputs.append(out)
        return torch.cat(outputs, dim=1), state  # (B, S, N), (L, B, N)


# -- decoder states ----------------------------------------------------------------------------

class Seq2SeqState(NamedTuple):
    """State of :class:`Seq2SeqDecoder`."""

    hidden: Tensor   # (L, B, N) GRU state s_{i-1}, started from the encoder's final state
    context: Tensor  # (B, N) the fixed context c: the encoder's final top-layer state


class Seq2SeqAttentionState(NamedTuple):
    """State of :class:`Seq2SeqAttentionDecoder`."""

    hidden: Tensor                 # (L, B, N) GRU state s_{i-1}
    enc_outputs: Tensor            # (B, S, N) annotations h_j: the keys and values
    src_valid_lens: Tensor | None  # (B,) source lengths, which mask the attention


def _check_encoder_outputs(enc_outputs, num_hiddens: int, num_layers: int) -> tuple[Tensor, Tensor]:
    if not isinstance(enc_outputs, (tuple, list)) or len(enc_outputs) != 2:
        raise TypeError("enc_outputs must be the (outputs (B, S, N), state (L, B, N)) pair "
                        f"returned by Seq2SeqEncoder, got {type(enc_outputs).__name__}")
    outputs, state = enc_outputs
    check_tensor("enc_outputs[0] (outputs)", outputs, ndim=3)
    check_tensor("enc_outputs[1] (state)", state, ndim=3)
    check_floating("enc_outputs[0] (outputs)", outputs)
    B = outputs.shape[0]
    if outputs.shape[-1] != num_hiddens or tuple(state.shape) != (num_layers, B, num_hiddens):
        raise ValueError(
            f"the decoder has num_layers={num_layers}, num_hiddens={num_hiddens}, so enc_outputs "
            f"must be (outputs (B, S, {num_hiddens}), state ({num_layers}, B, {num_hiddens})), "
            f"got outputs of shape {shape_str(outputs)} and state of shape {shape_str(state)}")
    return outputs, state


def _check_reorder_index(index, batch_size: int) -> None:
    check_index_vector("index", index, what="row numbers of the state")
    check_index_range("index", index, batch_size, f"the state's batch size {batch_size}")


def _check_state_batch(tgt: Tensor, hidden: Tensor, num_layers: int, num_hiddens: int) -> None:
    if tuple(hidden.shape) != (num_layers, tgt.shape[0], num_hiddens):
        raise ValueError(f"state.hidden must have shape ({num_layers}, {tgt.shape[0]}, "
                         f"{num_hiddens}) (L, B, N) for tgt of shape {shape_str(tgt)}, "
                         f"got shape {shape_str(hidden)}")


# -- decoders ----------------------------------------------------------------------------------

class Seq2SeqDecoder(Decoder):
    """The attention-free RNN decoder (Bahdanau et al., 2014, section 2; Cho et al., 2014).

    The whole source reaches the decoder through one fixed-length vector c, the
    encoder's final top-layer state, which is concatenated to the embedding of
    every input token: s_i = GRU([e(y_{i-1}); c], s_{i-1}), logits_i = W_o s_i.
    That single vector is the bottleneck the attention decoder removes.

    ``init_state((outputs, state), src_valid_lens)`` returns a :class:`Seq2SeqState`;
    ``forward(tgt (B, T), state)`` returns ``(logits (B, T, V), state)``.
    ``attention_weights`` is always None (there is no attention).
    """

    def __init__(self, vocab_size: int, embed_size: int, num_hiddens: int, num_layers: int,
                 dropout: float = 0.0):
        super().__init__()
        _check_rnn_sizes(vocab_size, embed_size, num_hiddens, num_layers, dropout)
        self.vocab_size, self.num_hiddens, self.num_layers = vocab_size, num_hiddens, num_layers
        self.embedding, self.dropout, self.rnn = _embedding_and_gru(
            vocab_size, embed_size, embed_size + num_hiddens, num_hiddens, num_layers, dropout)
        self.dense = nn.Linear(num_hiddens, vocab_size)
        self.attention_weights = None

    def init_state(self, enc_outputs, src_valid_lens: Tensor | None = None) -> Seq2SeqState:
        """Start from the encoder's final state; c is its top layer, ``(B, N)``."""
        _, state = _check_encoder_outputs(enc_outputs, self.num_hiddens, self.num_layers)
        return Seq2SeqState(hidden=state, context=state[-1])

    def forward(self, tgt: Tensor, state: Seq2SeqState) -> tuple[Tensor, Seq2SeqState]:
        """Decode ``tgt (B, T)`` (teacher forcing, or one step with T = 1).

        Returns:
            ``logits (B, T, V)`` and the state after the last step.
        """
        _check_token_ids("tgt", tgt, self.vocab_size)
        if not isinstance(state, Seq2SeqState):
            raise TypeError("state must be the Seq2SeqState returned by init_state, "
                            f"got {type(state).__name__}")
        _check_state_batch(tgt, state.hidden, self.num_layers, self.num_hiddens)
        T = tgt.shape[1]
        X = self.dropout(self.embedding(tgt))  # (B, T, E)
        context = state.context[:, None, :].expand(-1, T, -1)  # (B, T, N): the same c each step
        outputs, hidden = self.rnn(torch.cat([X, context], dim=-1), state.hidden)  # (B, T, N)
        return self.dense(outputs), state._replace(hidden=hidden)  # (B, T, V)

    def reorder_state(self, state: Seq2SeqState, index: Tensor) -> Seq2SeqState:
        """Select rows ``index (B',)``: dimension 1 of ``hidden``, dimension 0 of ``context``."""
        _check_reorder_index(index, state.context.shape[0])
        index = index.to(state.context.device)
        return Seq2SeqState(hidden=state.hidden.index_select(1, index),
                            context=state.context.index_select(0, index))


class Seq2SeqAttentionDecoder(Decoder):
    """The RNN decoder with Bahdanau attention (Bahdanau et al., 2014, section 3.1).

    At target step i, with s_{i-1} the previous top-layer decoder state and
    h_1..h_S the encoder outputs (annotations):

    - alignment scores  e_ij = a(s_{i-1}, h_j) = w_vᵀ tanh(W_q s_{i-1} + W_k h_j)   (eq. 6)
    - weights           α_ij = exp(e_ij) / Σ_k exp(e_ik), over the valid source positions (eq. 6)
    - context           c_i = Σ_j α_ij h_j                                       (eq. 5)
    - state update      s_i = GRU([e(y_{i-1}); c_i], s_{i-1})                        (eq. 4)
    - output            logits_i = W_o s_i (a linear layer; the paper uses a maxout layer)

    The score function is :class:`qkvcourse.AdditiveAttention` (queries s_{i-1},
    keys = values = h_j, masked by ``src_valid_lens``). The weights α of the last
    call are kept in ``attention_weights`` ``(B, T, S)`` and the contexts c in
    ``contexts`` ``(B, T, N)``; a step-by-step call records ``(B, 1, S)`` per step.

    ``init_state((outputs, state), src_valid_lens)`` returns a
    :class:`Seq2SeqAttentionState`; ``forward(tgt (B, T), state)`` returns
    ``(logits (B, T, V), state)``, the same logits whether ``tgt`` is given whole
    or one token at a time.
    """

    def __init__(self, vocab_size: int, embed_size: int, num_hiddens: int, num_layers: int,
                 dropout: float = 0.0):
        super().__init__()
        _check_rnn_sizes(vocab_size, embed_size, num_hiddens, num_layers, dropout)
        self.vocab_size, self.num_hiddens, self.num_layers = vocab_size, num_hiddens, num_layers
        self.attention = AdditiveAttention(num_hiddens, dropout, query_size=num_hiddens,
                                           key_size=num_hiddens)
        self.embedding, self.dropout, self.rnn = _embedding_and_gru(
            vocab_size, embed_size, embed_size + num_hiddens, num_hiddens, num_layers, dropout)
        self.dense = nn.Linear(num_hiddens, vocab_size)
        self.attention_weights: Tensor | None = None  # α, (B, T, S)
        self.contexts: Tensor | None = None  # c, (B, T, N)

    def init_state(self, enc_outputs, src_valid_lens: Tensor | None = None
                   ) -> Seq2SeqAttentionState:
        """Keep the annotations and lengths; start from the encoder's final state."""
        outputs, state = _check_encoder_outputs(enc_outputs, self.num_hiddens, self.num_layers)
        if src_valid_lens is not None:
            check_lengths("src_valid_lens", src_valid_lens, "enc_outputs[0] (outputs)", outputs)
            src_valid_lens = src_valid_lens.to(outputs.device)
        return Seq2SeqAttentionState(hidden=state, enc_outputs=outputs,
                                     src_valid_lens=src_valid_lens)

    def forward(self, tgt: Tensor, state: Seq2SeqAttentionState
                ) -> tuple[Tensor, Seq2SeqAttentionState]:
        """Decode ``tgt (B, T)``, one attention step per target position.

        Returns:
            ``logits (B, T, V)`` and the state after the last step.
        """
        _check_token_ids("tgt", tgt, self.vocab_size)
        if not isinstance(state, Seq2SeqAttentionState):
            raise TypeError("state must be the Seq2SeqAttentionState returned by init_state, "
                            f"got {type(state).__name__}")
        _check_state_batch(tgt, state.hidden, self.num_layers, self.num_hiddens)
        if state.enc_outputs.shape[0] != tgt.shape[0]:
            raise ValueError(f"state.enc_outputs has shape {shape_str(state.enc_outputs)} but tgt "
                             f"has shape {shape_str(tgt)}: their batch sizes differ")
        X = self.dropout(self.embedding(tgt))  # (B, T, E)
        hidden, h = state.hidden, state.enc_outputs  # (L, B, N), (B, S, N)
        outputs, weights, contexts = [], [], []
        # Step by step: the query of step i is s_{i-1}, which only exists after step i-1.
        for i in range(tgt.shape[1]):
            query = hidden[-1].unsqueeze(1)  # (B, 1, N): s_{i-1}, top layer
            context = self.attention(query, h, h, state.src_valid_lens)  # (B, 1, N): c_i
            out, hidden = self.rnn(torch.cat([X[:, i:i + 1], context], dim=-1), hidden)
            outputs.append(out)  # (B, 1, N)
            weights.append(self.attention.attention_weights)  # (B, 1, S): α_i
            contexts.append(context)
        self.attention_weights = torch.cat(weights, dim=1)  # (B, T, S)
        self.contexts = torch.cat(contexts, dim=1)  # (B, T, N)
        logits = self.dense(torch.cat(outputs, dim=1))  # (B, T, V)
        return logits, state._replace(hidden=hidden)

    def reorder_state(self, state: Seq2SeqAttentionState, index: Tensor
                      ) -> Seq2SeqAttentionState:
        """Select rows ``index (B',)``: dimension 1 of ``hidden``, dimension 0 of the rest."""
        _check_reorder_index(index, state.enc_outputs.shape[0])
        index = index.to(state.enc_outputs.device)
        lens = state.src_valid_lens
        return Seq2SeqAttentionState(
            hidden=state.hidden.index_select(1, index),
            enc_outputs=state.enc_outputs.index_select(0, index),
            src_valid_lens=None if lens is None else lens.index_select(0, index))


# -- construction ------------------------------------------------------------------------------

@dataclass
class RNNSeq2SeqConfig:
    """Sizes of an RNN encoder–decoder; the defaults train in seconds on a CPU."""

    embed_size: int = 32    # E, token embedding size (encoder and decoder)
    num_hiddens: int = 64   # N, GRU width, shared by encoder, decoder and attention
    num_layers: int = 2     # L, stacked GRU layers in encoder and decoder
    dropout: float = 0.1    # on embeddings, between GRU layers and on attention weights


def make_rnn_seq2seq(src_vocab_size: int, tgt_vocab_size: int, attention: bool = True,
                     config: RNNSeq2SeqConfig | None = None) -> EncoderDecoder:
    """An :class:`~qkvcourse.encoder_decoder.EncoderDecoder` of a GRU encoder and a GRU decoder.

    Args:
        src_vocab_size: source vocabulary size.
        tgt_vocab_size: target vocabulary size V.
        attention: True for :class:`Seq2SeqAttentionDecoder` (section 3),
            False for the fixed-context :class:`Seq2SeqDecoder` (section 2).
        config: sizes; :class:`RNNSeq2SeqConfig` defaults when None.
    """
    config = RNNSeq2SeqConfig() if config is None else config
    if not isinstance(config, RNNSeq2SeqConfig):
        raise TypeError(f"config must be an RNNSeq2SeqConfig, got {type(config).__name__}")
    sizes = (config.embed_size, config.num_hiddens, config.num_layers, config.dropout)
    decoder_cls = Seq2SeqAttentionDecoder if attention else Seq2SeqDecoder
    return EncoderDecoder(Seq2SeqEncoder(src_vocab_size, *sizes),
                          decoder_cls(tgt_vocab_size, *sizes))


# -- training and evaluation on a translation data set (chapter 4's harness) -------------------

def train_seq2seq(model: EncoderDecoder, data, num_epochs: int = 1, max_steps: int | None = None,
                  lr: float = 5e-3, warmup_fraction: float = 0.05,
                  grad_clip_norm: float | None = 1.0, seed: int = 0, callbacks=(),
                  validate: bool = True, steps: int | None = None,
                  betas: tuple[float, float] = (0.9, 0.999), label_smoothing: float = 0.0,
                  device=None, loss_fn=None):
    """Train ``model`` on ``data`` with teacher forcing; return the finished ``Trainer``.

    The recipe of chapters 4 and 7: the masked cross-entropy :func:`qkvcourse.sequence_loss`
    (with label smoothing ε = ``label_smoothing``, Vaswani et al. section 5.4) of
    ``model(src, tgt_in, src_valid_lens)`` against ``tgt_out``, AdamW with a linear warm-up
    over ``warmup_fraction`` of the steps and a cosine decay, and gradient clipping.
    ``data.generator`` (which shuffles the training set) is reseeded with ``data.seed``
    first, so two models trained on the same ``data`` see the same batches in the same order.
    The process CPU seconds of the loop are stored in ``trainer.settings["cpu_seconds"]``.

    Args:
        model: an :class:`~qkvcourse.encoder_decoder.EncoderDecoder` for ``data``'s vocabularies.
        data: a :class:`~qkvcourse.data.translation.TranslationData`.
        num_epochs: passes over the training set (the run stops earlier at ``max_steps``).
        max_steps: at most this many optimiser steps (None: ``num_epochs`` full passes).
        lr: peak learning rate.
        seed: seeds the trainer (dropout); the initial weights are the caller's.
        callbacks: trainer callbacks, e.g. :class:`qkvcourse.LossCurve`.
        validate: compute the validation loss after each epoch.
        steps: exactly this many optimiser steps, as many passes as that takes (replaces
            ``num_epochs`` and ``max_steps``): the fixed budget of a comparison.
        betas: AdamW's betas (the Transformer paper, section 5.3, uses (0.9, 0.98)).
        label_smoothing: ε in [0, 1).
        device: where to train (None: :func:`qkvcourse.get_device`).
        loss_fn: ``loss_fn(model, batch)`` for batches of another format (the captioner of
            chapter 4 reads images); None: the translation loss above.
    """
    from .losses import sequence_loss  # the trainer module imports nothing of ours
    from .schedules import warmup_cosine_schedule
    from .trainer import Trainer, TrainerConfig

    if steps is not None:
        check_size("steps", steps)
    check_dropout("label_smoothing", label_smoothing)
    if loss_fn is None:
        pad_id = data.tgt_vocab.pad_id

        def loss_fn(model, batch):
            logits = model(batch.src, batch.tgt_in, batch.src_valid_lens)  # (B, T, V)
            return sequence_loss(logits, batch.tgt_out, pad_id, label_smoothing=label_smoothing)

    data.generator.manual_seed(data.seed)
    loader = data.train_dataloader()
    if steps is not None:
        num_epochs, total_steps = -(-steps // len(loader)), steps
    else:
        total_steps = num_epochs * len(loader) if max_steps is None \
            else min(max_steps, num_epochs * len(loader))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=betas)
    scheduler = warmup_cosine_schedule(optimizer, warmup_steps=max(1, int(warmup_fraction * total_steps)),
                                       total_steps=total_steps)
    trainer = Trainer(model, loss_fn, loader, data.val_dataloader() if validate else None,
                      optimizer=optimizer, scheduler=scheduler, callbacks=list(callbacks),
                      config=TrainerConfig(max_epochs=num_epochs, max_steps=total_steps,
                                           grad_clip_norm=grad_clip_norm, seed=seed,
                                           eval_every_epoch=validate, device=device))
    start = time.process_time()
    trainer.fit()
    trainer.settings["cpu_seconds"] = time.process_time() - start
    return trainer


def translate_sources(model: EncoderDecoder, data, sources, beam_size: int = 1,
              max_len: int | None = None) -> list[str]:
    """Translate source strings with greedy search (or beam search when ``beam_size > 1``).

    ``max_len`` (default: the longest test target + 1, room for ``<eos>``) caps the output.
    """
    from .decoding import beam_search, greedy_search

    device = next(model.parameters()).device
    src, src_valid_lens = data.encode_sources(list(sources))
    src, src_valid_lens = src.to(device), src_valid_lens.to(device)
    if max_len is None:
        max_len = data.test_tensors.tgt_out.shape[1] + 1
    search = dict(bos_id=data.tgt_vocab.bos_id, eos_id=data.tgt_vocab.eos_id, max_len=max_len)
    model.eval()
    if beam_size == 1:
        hyps = greedy_search(model, src, src_valid_lens, **search)
    else:
        hyps = beam_search(model, src, src_valid_lens, beam_size=beam_size, **search)
    return data.decode_targets(hyps.tokens)
