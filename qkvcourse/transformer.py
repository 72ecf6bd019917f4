"""The Transformer (chapter 7), Vaswani et al. (2017), "Attention Is All You Need", section 3.

Shape legend: B batch, S source length, T target length (in incremental decoding:
the number of *new* target tokens), P number of cached positions (tokens already
decoded), N = num_hiddens (``d_model``), F = ffn_num_hiddens (``d_ff``), H heads,
D = N / H per-head size (``d_k``), V vocabulary size.

The pieces, in the order of section 3:

- :class:`PositionWiseFFN`, section 3.3: ``FFN(x) = max(0, x W_1 + b_1) W_2 + b_2``.
- :class:`Residual`, section 3.1: the residual connection and layer normalisation
  around every sub-layer, ``LayerNorm(x + Sublayer(x))``, as one module that calls the
  sub-layer (:class:`AddNorm` keeps d2l's form, which takes the sub-layer's output).
- The three ways the model uses attention, section 3.2.3:
  :class:`GlobalSelfAttention` (encoder: every position sees every valid position),
  :class:`CausalSelfAttention` (decoder: position i sees 0..i; with a KV cache) and
  :class:`CrossAttention` (queries from the decoder, keys = values = encoder outputs).
- :class:`TransformerEncoderBlock` and :class:`TransformerEncoder`, section 3.1, with
  the scaled embeddings of section 3.4 and the sinusoidal positions of section 3.5.
- :class:`TransformerDecoderBlock` and :class:`TransformerDecoder`, section 3.1.
- :class:`TransformerConfig` and :func:`make_transformer`, with the base model of
  Table 3 as :meth:`TransformerConfig.paper_base`.

Post-norm and pre-norm
----------------------
The paper normalises *after* the residual sum: ``LayerNorm(X + Dropout(Sublayer(X)))``
("post-norm"). Most later models normalise the sub-layer's *input* instead:
``X + Dropout(Sublayer(LayerNorm(X)))`` ("pre-norm", Xiong et al., 2020), which trains
without a learning-rate warm-up; the residual stream is then never normalised, so the
encoder and the decoder end with one more LayerNorm. ``norm_first=True`` selects
pre-norm, with the same meaning as in ``torch.nn.TransformerEncoderLayer``.

Masks
-----
Every mask goes through :class:`qkvcourse.MultiHeadAttention`, with the package's one
convention (boolean True = may attend): padding as d2l-style ``valid_lens``, the causal
mask as a boolean ``(T, P + T)`` mask. The fused kernel runs unless attention weights
are requested (``need_weights``).

Argument checks
---------------
The models (:class:`TransformerEncoder`, :class:`TransformerDecoder`) check their
arguments once, at entry, and so does :class:`~qkvcourse.MultiHeadAttention` called on
its own. The pieces they are built from (blocks, :class:`Residual`, the FFN and the three
attention roles) run bare: a wrong shape given to them directly fails inside PyTorch.

Dropout
-------
Where ``torch.nn.TransformerEncoderLayer`` puts it, so that the two agree in eval mode
and have the same structure in training: on the attention weights (inside
:class:`~qkvcourse.MultiHeadAttention`), after the ReLU of the FFN, on every sub-layer's
output before the residual sum (section 5.4, "residual dropout") and on the sum of
embeddings and positional encodings (section 5.4).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ._aliases import field_aliases
from ._validate import (check_dim_match, check_dropout, check_flag, check_floating, check_hidden,
                        check_index_range, check_index_vector, check_kv_cache, check_lengths,
                        check_max_len, check_real, check_size, check_sizes, check_tensor,
                        check_tokens, shape_str)
from .attention import use_fused_path
from .encoder_decoder import Decoder, Encoder, EncoderDecoder
from .masking import tril_mask
from .multihead import MultiHeadAttention, _merge
from .positional import PositionalEncoding

KVCache = tuple[Tensor, Tensor]  # (keys (B, H, P, D), values (B, H, P, D)), projected


# -- sub-layers ------------------------------------------------------------------------------

ACTIVATIONS = ("relu", "gelu", "gelu_tanh")


def check_eps(name: str, eps) -> None:
    """A LayerNorm's epsilon: a finite number > 0 (0 or less divides by zero on a constant row)."""
    check_real(name, eps, minimum=0.0, strict=True, what="the LayerNorm's epsilon")


def check_activation(name: str) -> None:
    """The FFN's nonlinearity: one of :data:`ACTIVATIONS`."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")


def check_heads_divide(d_model: int, num_heads: int) -> None:
    """The configs' heads split the width evenly: D = d_model / num_heads."""
    if d_model % num_heads:
        raise ValueError(f"num_heads must divide d_model (d2l's num_hiddens), got d_model="
                         f"{d_model}, num_heads={num_heads}")


def make_activation(name: str) -> nn.Module:
    """The FFN's nonlinearity by name: ``"relu"``, ``"gelu"`` (exact) or ``"gelu_tanh"``.

    GELU (Hendrycks & Gimpel, 2016) is ``x Φ(x)``, Φ the standard normal CDF; BERT uses it
    exactly (with erf), GPT-2 through its tanh approximation.
    """
    check_activation(name)
    if name == "relu":
        return nn.ReLU()
    return nn.GELU(approximate="tanh" if name == "gelu_tanh" else "none")


class PositionWiseFFN(nn.Module):
    """Position-wise feed-forward network, section 3.3, eq. (2).

    ``FFN(x) = max(0, x W_1 + b_1) W_2 + b_2``, the same two-layer MLP applied to every
    position separately: ``dense1`` maps N to F (``d_ff``), ``dense2`` maps back to N.
    Dropout is applied after the ReLU, where ``torch.nn.TransformerEncoderLayer`` has it
    (the paper does not say; d2l has none, which is the same thing in eval mode).

    Args:
        num_hiddens: N, the model width (``d_model``).
        ffn_num_hiddens: F, the hidden width (``d_ff``; 4N in the paper).
        dropout: dropout probability after the ReLU.
        activation: the nonlinearity in place of max(0, ·): ``"relu"`` (the paper),
            ``"gelu"`` (exact, erf-based, as in BERT) or ``"gelu_tanh"`` (the tanh
            approximation, as in GPT-2); see :func:`make_activation`.

    ``forward(X (B, T, N))`` returns ``(B, T, N)``.
    """

    def __init__(self, num_hiddens: int, ffn_num_hiddens: int, dropout: float = 0.0, *,
                 activation: str = "relu"):
        super().__init__()
        check_sizes(num_hiddens=num_hiddens, ffn_num_hiddens=ffn_num_hiddens)
        check_dropout("dropout", dropout)
        self.num_hiddens = num_hiddens
        self.dense1 = nn.Linear(num_hiddens, ffn_num_hiddens)  # W_1, b_1
        self.relu = make_activation(activation)  # named after the paper's ReLU, whatever it is
        self.dropout = nn.Dropout(dropout)
        self.dense2 = nn.Linear(ffn_num_hiddens, num_hiddens)  # W_2, b_2

    def forward(self, X: Tensor) -> Tensor:
        return self.dense2(self.dropout(self.relu(self.dense1(X))))  # (B, T, N)


class Residual(nn.Module):
    """A sub-layer inside its residual connection and layer normalisation, section 3.1.

    ``forward(X, sublayer, *args)`` calls ``sublayer`` once and returns

    - post-norm (the paper): ``LayerNorm(X + Dropout(sublayer(X, *args)))``;
    - pre-norm (``norm_first=True``): ``X + Dropout(sublayer(LayerNorm(X), *args))``.

    A sub-layer that also returns a state, as the causal self-attention returns its KV
    cache, returns ``(Y, state)``; ``forward`` then returns ``(new X, state)``. A sub-layer
    may answer for the last positions only (``Y`` shorter than ``X``, as a language model's
    last block does when only the next token is wanted): the residual then keeps those
    positions of ``X``.

    Args:
        num_hiddens: N, the normalised feature size.
        dropout: residual dropout on the sub-layer's output (section 5.4).
        norm_first: pre-norm instead of the paper's post-norm.
        eps: the LayerNorm's epsilon (PyTorch's 1e-5 by default; BERT uses 1e-12).
    """

    def __init__(self, num_hiddens: int, dropout: float = 0.0, *, norm_first: bool = False,
                 eps: float = 1e-5):
        super().__init__()
        check_size("num_hiddens", num_hiddens)
        check_dropout("dropout", dropout)
        check_flag("norm_first", norm_first)
        check_eps("eps", eps)
        self.num_hiddens, self.norm_first = num_hiddens, norm_first
        self.dropout = nn.Dropout(dropout)
        self.ln = nn.LayerNorm(num_hiddens, eps=eps)

    def forward(self, X: Tensor, sublayer, *args):
        out = sublayer(self.ln(X) if self.norm_first else X, *args)
        Y, state = (out[0], out[1:]) if isinstance(out, tuple) else (out, ())
        if Y.shape[1] != X.shape[1]:
            X = X[:, -Y.shape[1]:]  # the positions the sub-layer answered for
        if self.norm_first:
            X = X + self.dropout(Y)  # pre-norm: X + Dropout(Sublayer(LN(X)))
        else:
            X = self.ln(X + self.dropout(Y))  # post-norm: LN(X + Dropout(Sublayer(X)))
        return (X, *state) if state else X  # (B, T, N)


class AddNorm(Residual):
    """d2l's ``AddNorm``: :class:`Residual` given the sub-layer's output instead of the sub-layer.

    ``forward(X, Y)`` with ``Y = Sublayer(addnorm.sublayer_input(X))``: post-norm
    ``LayerNorm(X + Dropout(Y))``, pre-norm ``X + Dropout(Y)``. The blocks use
    :class:`Residual`; this form is kept for code written against d2l.
    """

    def sublayer_input(self, X: Tensor) -> Tensor:
        """What the sub-layer reads: ``LayerNorm(X)`` in pre-norm, ``X`` itself in post-norm."""
        return self.ln(X) if self.norm_first else X

    def forward(self, X: Tensor, Y: Tensor) -> Tensor:
        """``X (B, T, N)`` the sub-layer's input (the residual), ``Y (B, T, N)`` its output."""
        check_hidden("X", X, self.num_hiddens)
        check_tensor("Y", Y)
        check_floating("Y", Y)
        if X.shape != Y.shape:
            raise ValueError(f"X and Y must have the same shape, got X {shape_str(X)} "
                             f"and Y {shape_str(Y)}")
        if self.norm_first:
            return X + self.dropout(Y)  # (B, T, N)
        return self.ln(X + self.dropout(Y))  # (B, T, N)


# -- the three attention flavours (section 3.2.3) --------------------------------------------

class _Attention(nn.Module):
    """A :class:`~qkvcourse.MultiHeadAttention` (``self.mha``) with a role.

    ``need_weights`` and ``attention_weights`` ``(B, H, L, S)`` pass through to it.
    """

    def __init__(self, num_hiddens: int, num_heads: int, dropout: float = 0.0,
                 bias: bool = False, *, need_weights: bool = False):
        super().__init__()
        self.num_hiddens, self.num_heads = num_hiddens, num_heads
        self.mha = MultiHeadAttention(num_hiddens, num_heads, dropout, bias,
                                      need_weights=need_weights)

    @property
    def need_weights(self) -> bool:
        return self.mha.need_weights

    @need_weights.setter
    def need_weights(self, value: bool) -> None:
        self.mha.need_weights = value

    @property
    def attention_weights(self) -> Tensor | None:
        """``(B, H, L, S)`` from the last forward pass when weights were requested, else None."""
        return self.mha.attention_weights


class GlobalSelfAttention(_Attention):
    """Encoder self-attention: every position attends to every valid position.

    Section 3.2.3: "all of the keys, values and queries come from the same place, in this
    case, the output of the previous layer in the encoder".

    Args:
        num_hiddens: N, the model width (``d_model``).
        num_heads: H, which must divide N.
        dropout: dropout on the attention weights.
        bias: whether the four projections have biases.
        need_weights: keep the weights in ``attention_weights`` (explicit path).

    ``forward(X (B, T, N), valid_lens=None, attn_mask=None)`` returns ``(B, T, N)``;
    ``valid_lens`` ``(B,)`` or ``(B, T)`` masks padding keys; ``attn_mask`` is boolean,
    True = attend, broadcastable to ``(B, H, T, T)``.
    """

    def forward(self, X: Tensor, valid_lens: Tensor | None = None,
                attn_mask: Tensor | None = None) -> Tensor:
        return self.mha.attend(X, X, X, valid_lens, attn_mask)  # (B, T, N)


class CausalSelfAttention(_Attention):
    """Decoder self-attention: position i attends to positions 0..i only, with a KV cache.

    Section 3.2.3: "We need to prevent leftward information flow in the decoder to preserve
    the auto-regressive property", done by masking the scores of later positions.

    The cache holds the *projected* keys and values of the positions seen so far, per head:
    ``(K, V)``, each ``(B, H, P, D)``. With a cache of length P, ``X`` holds only the T new
    positions P..P+T-1; their keys and values are projected once, appended, and new
    position j (absolute position P + j) attends to keys 0..P+j: the causal mask is the
    last T rows of the ``(P + T, P + T)`` lower-triangular mask. Generation then costs
    one projection per new token instead of re-projecting the whole prefix.

    The arguments are those of :class:`GlobalSelfAttention`.

    ``forward(X (B, T, N), cache=None)`` returns ``(out (B, T, N), new_cache)``, where
    ``new_cache`` covers all P + T positions. The weights, when kept, are ``(B, H, T, P + T)``.
    With ``last_only=True`` only the last position queries (``out`` is ``(B, 1, N)``); the
    keys and values of all T positions are still computed and cached.
    """

    def forward(self, X: Tensor, cache: KVCache | None = None,
                last_only: bool = False) -> tuple[Tensor, KVCache]:
        mha = self.mha
        # (B, H, T, D) each, in one product with [W_q; W_k; W_v]; with last_only only the last
        # position asks (q is (B, H, 1, D)) and, like one new token, it sees every key
        q, k, v = mha.project(X[:, -1:] if last_only else X, X, X)
        T = q.shape[2]
        if cache is not None:
            k = torch.cat((cache[0], k), dim=2)  # (B, H, P+T, D)
            v = torch.cat((cache[1], v), dim=2)  # (B, H, P+T, D)
        P = k.shape[2] - T
        if (P == 0 or T == 1) and use_fused_path(mha.need_weights):
            # No cache: plain causal attention, straight to PyTorch's kernel, which skips the
            # masked half (FlashAttention on CUDA) instead of reading an explicit mask. One new
            # token after a cache: it sees every key, so no mask at all.
            p = mha.attention.dropout.p if self.training else 0.0
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=P == 0)
            mha.attention.attention_weights = None
        else:
            mask = tril_mask(P + T, P + T, X.device)[P:]  # (T, P+T): row j sees keys 0..P+j
            out = mha.attention.attend(q, k, v, attn_mask=mask)  # (B, H, T, D)
        return mha.W_o(_merge(out)), (k, v)  # (B, T, N)


class CrossAttention(_Attention):
    """Encoder–decoder attention: decoder queries, keys = values = encoder outputs.

    Section 3.2.3: "the queries come from the previous decoder layer, and the memory keys
    and values come from the output of the encoder", so every decoder position can attend
    over all valid positions of the source. (The projections of the encoder outputs are
    recomputed at every call; they could be cached too, at the cost of a larger state.)

    The arguments are those of :class:`GlobalSelfAttention`.

    ``forward(X (B, T, N), enc_outputs (B, S, N), enc_valid_lens=None)`` returns
    ``(B, T, N)``; ``enc_valid_lens`` ``(B,)`` masks the source padding. Weights, when
    kept, are ``(B, H, T, S)``.
    """

    def forward(self, X: Tensor, enc_outputs: Tensor, enc_valid_lens: Tensor | None = None,
                attn_mask: Tensor | None = None) -> Tensor:
        return self.mha.attend(X, enc_outputs, enc_outputs, enc_valid_lens,
                               attn_mask)  # (B, T, N)


# -- encoder ---------------------------------------------------------------------------------

class TransformerEncoderBlock(nn.Module):
    """One encoder layer, section 3.1: global self-attention, then the FFN.

    Each sub-layer sits inside a :class:`Residual` (post-norm as in the paper, or pre-norm
    with ``norm_first=True``). d2l's signature; ``use_bias`` concerns the attention
    projections only (the FFN and LayerNorms always have biases).

    Args:
        num_hiddens: N, the model width (``d_model``).
        ffn_num_hiddens: F, the FFN's hidden width (``d_ff``).
        num_heads: H, which must divide N.
        dropout: attention, FFN and residual dropout.
        use_bias: biases in the attention projections.
        norm_first: pre-norm instead of post-norm.
        activation: the FFN's nonlinearity (``"relu"``, ``"gelu"``, ``"gelu_tanh"``).
        layer_norm_eps: the LayerNorms' epsilon (1e-5; BERT uses 1e-12).

    ``forward(X (B, S, N), valid_lens=None)`` returns ``(B, S, N)``; ``valid_lens`` ``(B,)``
    or ``(B, S)`` masks padding keys (padded query positions are still computed).
    """

    def __init__(self, num_hiddens: int, ffn_num_hiddens: int, num_heads: int, dropout: float,
                 use_bias: bool = False, *, norm_first: bool = False, activation: str = "relu",
                 layer_norm_eps: float = 1e-5):
        super().__init__()
        check_flag("use_bias", use_bias)
        check_eps("layer_norm_eps", layer_norm_eps)
        self.num_hiddens, self.norm_first = num_hiddens, norm_first
        self.attention = GlobalSelfAttention(num_hiddens, num_heads, dropout, use_bias)
        self.addnorm1 = Residual(num_hiddens, dropout, norm_first=norm_first, eps=layer_norm_eps)
        self.ffn = PositionWiseFFN(num_hiddens, ffn_num_hiddens, dropout, activation=activation)
        self.addnorm2 = Residual(num_hiddens, dropout, norm_first=norm_first, eps=layer_norm_eps)

    def forward(self, X: Tensor, valid_lens: Tensor | None = None) -> Tensor:
        X = self.addnorm1(X, self.attention, valid_lens)  # self-attention sub-layer
        return self.addnorm2(X, self.ffn)  # (B, S, N)


class StackNeedWeights:
    """The ``need_weights`` switch of a stack of blocks (``self.blks``), one for all blocks.

    Reading it says whether every block's ``attention`` keeps its weights; setting it
    sets them all. Used as a class attribute: ``need_weights = StackNeedWeights()``.
    """

    def __get__(self, stack, owner=None):
        if stack is None:
            return self
        return all(blk.attention.need_weights for blk in stack.blks)

    def __set__(self, stack, value: bool) -> None:
        for blk in stack.blks:
            blk.attention.need_weights = value


def _scaled_embedding(vocab_size: int, num_hiddens: int) -> nn.Embedding:
    """An embedding table whose entries start with standard deviation N^-1/2.

    The encoder and decoder multiply embeddings by sqrt(N) before adding the sinusoidal
    positional encoding (entries in [-1, 1], RMS about 0.7). In the paper the embedding
    matrix is shared with the output layer, so its entries are of order N^-1/2 and the scaled
    embedding has RMS about 1. ``nn.Embedding``'s default (standard normal) would instead
    give RMS sqrt(N), which drowns the positions: on chapter 7's date task it took exact
    match from 99% to 13%.
    """
    embedding = nn.Embedding(vocab_size, num_hiddens)
    nn.init.normal_(embedding.weight, mean=0.0, std=num_hiddens ** -0.5)
    return embedding


class TransformerEncoder(Encoder):
    """The encoder, section 3.1: embeddings, positions, a stack of encoder blocks.

    The token embeddings start with standard deviation N^-1/2 and are multiplied by
    sqrt(N) (section 3.4), so that they and the sinusoidal positional encodings, whose
    entries lie in [-1, 1] (section 3.5), have comparable sizes; dropout follows their sum
    (section 5.4). In pre-norm, a final
    LayerNorm normalises the residual stream.

    Args:
        vocab_size: V, the source vocabulary size.
        num_hiddens: N, the model width (``d_model``).
        ffn_num_hiddens: F, the FFN's hidden width (``d_ff``).
        num_heads: H, which must divide N.
        num_blks: the number of blocks (6 in the paper).
        dropout: attention, FFN, residual and embedding dropout.
        use_bias: biases in the attention projections.
        max_len: the longest source the positional encoding accepts.
        norm_first: pre-norm (with a final LayerNorm) instead of post-norm.

    ``forward(src (B, S) token ids, src_valid_lens (B,) | None)`` returns ``(B, S, N)``.
    Set ``need_weights = True`` to keep ``attention_weights``, a list with one
    ``(B, H, S, S)`` tensor per block (None entries otherwise).
    """

    def __init__(self, vocab_size: int, num_hiddens: int, ffn_num_hiddens: int, num_heads: int,
                 num_blks: int, dropout: float, use_bias: bool = False, *, max_len: int = 1000,
                 norm_first: bool = False):
        super().__init__()
        check_sizes(vocab_size=vocab_size, num_hiddens=num_hiddens, ffn_num_hiddens=ffn_num_hiddens,
                     num_heads=num_heads, num_blks=num_blks, max_len=max_len)
        check_dropout("dropout", dropout)
        check_flag("use_bias", use_bias)
        check_flag("norm_first", norm_first)
        self.vocab_size, self.num_hiddens, self.max_len = vocab_size, num_hiddens, max_len
        self.embedding = _scaled_embedding(vocab_size, num_hiddens)
        self.pos_encoding = PositionalEncoding(num_hiddens, dropout, max_len)
        self.blks = nn.ModuleList(
            TransformerEncoderBlock(num_hiddens, ffn_num_hiddens, num_heads, dropout, use_bias,
                                    norm_first=norm_first) for _ in range(num_blks))
        self.norm = nn.LayerNorm(num_hiddens) if norm_first else None
        self.attention_weights: list[Tensor | None] = [None] * num_blks

    need_weights = StackNeedWeights()

    def forward(self, src: Tensor, src_valid_lens: Tensor | None = None) -> Tensor:
        self._check_inputs(src, src_valid_lens)
        X = self.pos_encoding(self.embedding(src) * math.sqrt(self.num_hiddens))  # (B, S, N)
        for blk in self.blks:
            X = blk(X, src_valid_lens)  # (B, S, N)
        self.attention_weights = [blk.attention.attention_weights for blk in self.blks]
        return self.norm(X) if self.norm is not None else X  # (B, S, N)

    def _check_inputs(self, src: Tensor, src_valid_lens: Tensor | None) -> None:
        check_tokens("src", src, self.vocab_size)
        check_max_len("src", src, 0, self.max_len)
        if src_valid_lens is not None:
            check_lengths("src_valid_lens", src_valid_lens, "src", src)


# -- decoder ---------------------------------------------------------------------------------

class TransformerDecoderBlock(nn.Module):
    """One decoder layer, section 3.1: causal self-attention, cross-attention, FFN.

    Each of the three sub-layers sits inside a :class:`Residual` (post- or pre-norm). In
    pre-norm the encoder outputs enter the cross-attention as they are (the encoder's
    final LayerNorm has already normalised them), as in ``torch.nn.TransformerDecoderLayer``.

    The arguments are those of :class:`TransformerEncoderBlock`.

    ``forward(X (B, T, N), enc_outputs (B, S, N), enc_valid_lens (B,) | None, cache=None)``
    returns ``(out (B, T, N), new_cache)``; ``cache`` is this block's
    :class:`CausalSelfAttention` cache (None for a fresh sequence).
    """

    def __init__(self, num_hiddens: int, ffn_num_hiddens: int, num_heads: int, dropout: float,
                 use_bias: bool = False, *, norm_first: bool = False):
        super().__init__()
        check_flag("use_bias", use_bias)
        self.num_hiddens, self.norm_first = num_hiddens, norm_first
        self.self_attention = CausalSelfAttention(num_hiddens, num_heads, dropout, use_bias)
        self.addnorm1 = Residual(num_hiddens, dropout, norm_first=norm_first)
        self.cross_attention = CrossAttention(num_hiddens, num_heads, dropout, use_bias)
        self.addnorm2 = Residual(num_hiddens, dropout, norm_first=norm_first)
        self.ffn = PositionWiseFFN(num_hiddens, ffn_num_hiddens, dropout)
        self.addnorm3 = Residual(num_hiddens, dropout, norm_first=norm_first)

    def forward(self, X: Tensor, enc_outputs: Tensor, enc_valid_lens: Tensor | None = None,
                cache: KVCache | None = None) -> tuple[Tensor, KVCache]:
        X, cache = self.addnorm1(X, self.self_attention, cache)  # (B, T, N)
        X = self.addnorm2(X, self.cross_attention, enc_outputs, enc_valid_lens)  # (B, T, N)
        return self.addnorm3(X, self.ffn), cache  # (B, T, N)


_STATE_KEYS = ("enc_outputs", "enc_valid_lens", "caches", "num_decoded")


class TransformerDecoder(Decoder):
    """The decoder, section 3.1, following the contract of :mod:`qkvcourse.encoder_decoder`.

    Embeddings scaled by sqrt(N) plus sinusoidal positions (sections 3.4, 3.5), a stack of
    decoder blocks, a final LayerNorm in pre-norm, and a linear layer to the vocabulary
    logits (the "pre-softmax linear transformation" of section 3.4, untied here).

    The decoding state is a dict, which ``reorder_state`` (beam search) indexes row by row:

    - ``"enc_outputs"`` ``(B, S, N)`` and ``"enc_valid_lens"`` ``(B,)`` or None;
    - ``"caches"``: one :class:`CausalSelfAttention` cache per block, ``(K, V)`` each
      ``(B, H, P, D)``, or None before the first call;
    - ``"num_decoded"``: P, the number of target tokens already fed, which is the
      position of the next token (its positional encoding starts there).

    ``forward`` returns a new state and leaves its argument unchanged, so feeding the
    target whole (teacher forcing) or one token at a time gives the same logits.

    The arguments are those of :class:`TransformerEncoder`, with ``vocab_size`` the
    target vocabulary size and ``max_len`` the longest target.

    Set ``need_weights = True`` to keep ``attention_weights``: ``{"self": [...],
    "cross": [...]}``, one tensor per block from the last call, ``(B, H, T, P + T)`` and
    ``(B, H, T, S)``.
    """

    def __init__(self, vocab_size: int, num_hiddens: int, ffn_num_hiddens: int, num_heads: int,
                 num_blks: int, dropout: float, use_bias: bool = False, *, max_len: int = 1000,
                 norm_first: bool = False):
        super().__init__()
        check_sizes(vocab_size=vocab_size, num_hiddens=num_hiddens, ffn_num_hiddens=ffn_num_hiddens,
                     num_heads=num_heads, num_blks=num_blks, max_len=max_len)
        check_dropout("dropout", dropout)
        check_flag("use_bias", use_bias)
        check_flag("norm_first", norm_first)
        self.vocab_size, self.num_hiddens, self.max_len = vocab_size, num_hiddens, max_len
        self.num_blks = num_blks
        self.embedding = _scaled_embedding(vocab_size, num_hiddens)
        self.pos_encoding = PositionalEncoding(num_hiddens, dropout, max_len)
        self.blks = nn.ModuleList(
            TransformerDecoderBlock(num_hiddens, ffn_num_hiddens, num_heads, dropout, use_bias,
                                    norm_first=norm_first) for _ in range(num_blks))
        self.norm = nn.LayerNorm(num_hiddens) if norm_first else None
        self.dense = nn.Linear(num_hiddens, vocab_size)
        self.attention_weights: dict[str, list[Tensor | None]] = {
            "self": [None] * num_blks, "cross": [None] * num_blks}

    @property
    def need_weights(self) -> bool:
        return all(blk.self_attention.need_weights and blk.cross_attention.need_weights
                   for blk in self.blks)

    @need_weights.setter
    def need_weights(self, value: bool) -> None:
        for blk in self.blks:
            blk.self_attention.need_weights = blk.cross_attention.need_weights = value

    def init_state(self, enc_outputs: Tensor,
                   src_valid_lens: Tensor | None = None) -> dict[str, Any]:
        """The state before the first target token: encoder outputs, no cache, P = 0.

        Args:
            enc_outputs: ``(B, S, N)``, the encoder's output.
            src_valid_lens: ``(B,)`` integer lengths of the sources, or None.
        """
        check_hidden("enc_outputs", enc_outputs, self.num_hiddens)
        if src_valid_lens is not None:
            check_lengths("src_valid_lens", src_valid_lens, "enc_outputs", enc_outputs)
        return {"enc_outputs": enc_outputs, "enc_valid_lens": src_valid_lens,
                "caches": [None] * self.num_blks, "num_decoded": 0}

    def _check_state(self, state, tgt: Tensor) -> None:
        if not (isinstance(state, dict) and all(key in state for key in _STATE_KEYS)):
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise TypeError(f"state must be the dict returned by init_state (keys "
                            f"{list(_STATE_KEYS)}), got {got}")
        check_dim_match("tgt", tgt, 0, "state['enc_outputs']", state["enc_outputs"], 0,
                        "batch sizes")
        caches, P = state["caches"], state["num_decoded"]
        if len(caches) != self.num_blks:
            raise ValueError(f"state['caches'] must hold one cache per block "
                             f"({self.num_blks}), got {len(caches)}")
        H = self.blks[0].self_attention.mha.num_heads
        for i, cache in enumerate(caches):
            cached = 0 if cache is None else check_kv_cache(
                f"state['caches'][{i}]", cache, tgt.shape[0], H, self.num_hiddens // H)
            if cached != P:
                raise ValueError(f"state['num_decoded']={P} disagrees with the cache, which "
                                 f"holds {cached} positions")

    def forward(self, tgt: Tensor, state: dict[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        """``tgt (B, T)`` token ids at positions P..P+T-1 -> ``(logits (B, T, V), new state)``."""
        self._check_inputs(tgt, state)
        P, T = state["num_decoded"], tgt.shape[1]
        X = self.embedding(tgt) * math.sqrt(self.num_hiddens)  # (B, T, N)
        # The new tokens sit at positions P..P+T-1, so they take those rows of the table
        X = self.pos_encoding.add(X, offset=P)  # (B, T, N): positions checked above
        enc_outputs, enc_valid_lens = state["enc_outputs"], state["enc_valid_lens"]
        caches = []
        for blk, cache in zip(self.blks, state["caches"]):
            X, cache = blk(X, enc_outputs, enc_valid_lens, cache)  # (B, T, N)
            caches.append(cache)
        self.attention_weights = {
            "self": [blk.self_attention.attention_weights for blk in self.blks],
            "cross": [blk.cross_attention.attention_weights for blk in self.blks]}
        if self.norm is not None:
            X = self.norm(X)
        new_state = {**state, "caches": caches, "num_decoded": P + T}
        return self.dense(X), new_state  # (B, T, V)

    def _check_inputs(self, tgt: Tensor, state) -> None:
        check_tokens("tgt", tgt, self.vocab_size)
        self._check_state(state, tgt)
        check_max_len("tgt", tgt, state["num_decoded"], self.max_len)

    def reorder_state(self, state: dict[str, Any], index: Tensor) -> dict[str, Any]:
        """Select (and repeat) batch rows: ``index (B',)`` integer row numbers in ``[0, B)``."""
        check_index_vector("index", index, what="row numbers of the state")
        B = state["enc_outputs"].shape[0]
        check_index_range("index", index, B, f"the state's batch size {B}")
        return super().reorder_state(state, index.to(state["enc_outputs"].device))


# -- the whole model -------------------------------------------------------------------------

@field_aliases(num_hiddens="d_model", num_enc_blks="num_enc_layers",
               num_dec_blks="num_dec_layers", use_bias="bias")
@dataclass
class TransformerConfig:
    """Sizes of an encoder–decoder Transformer; the defaults are the course's small model.

    :meth:`paper_base` gives the base model of Vaswani et al. (2017), Table 3. The fields
    are named as in :class:`~qkvcourse.GPTConfig` and :class:`~qkvcourse.BERTConfig`;
    d2l's names are accepted too (``num_hiddens`` for ``d_model``, ``num_enc_blks`` and
    ``num_dec_blks`` for the layer counts, ``use_bias`` for ``bias``).
    """

    src_vocab_size: int  # source vocabulary size V_src
    tgt_vocab_size: int  # target vocabulary size V_tgt
    d_model: int = 64  # the model width (paper: 512); small enough to train on a CPU in minutes
    ffn_num_hiddens: int = 128  # d_ff, the FFN's hidden width (paper: 2048 = 4 d_model)
    num_heads: int = 4  # h (paper: 8), so d_k = d_v = d_model / num_heads = 16
    num_enc_layers: int = 2  # encoder layers N (paper: 6)
    num_dec_layers: int = 2  # decoder layers N (paper: 6)
    dropout: float = 0.1  # P_drop, section 5.4 (paper: 0.1)
    bias: bool = False  # biases in the attention projections (the paper writes none)
    max_len: int = 1000  # longest sequence the positional encodings cover
    norm_first: bool = False  # False: post-norm as in the paper; True: pre-norm

    def __post_init__(self):
        check_sizes(**{"src_vocab_size": self.src_vocab_size,
                        "tgt_vocab_size": self.tgt_vocab_size,
                        "d_model (d2l: num_hiddens)": self.d_model,
                        "ffn_num_hiddens": self.ffn_num_hiddens, "num_heads": self.num_heads,
                        "num_enc_layers (d2l: num_enc_blks)": self.num_enc_layers,
                        "num_dec_layers (d2l: num_dec_blks)": self.num_dec_layers,
                        "max_len": self.max_len})
        check_flag("bias (d2l: use_bias)", self.bias)
        check_flag("norm_first", self.norm_first)
        check_heads_divide(self.d_model, self.num_heads)
        check_dropout("dropout", self.dropout)

    @classmethod
    def paper_base(cls, src_vocab_size: int, tgt_vocab_size: int) -> "TransformerConfig":
        """The base model of Table 3: d_model 512, 8 heads, d_ff 2048, 6 + 6 layers, dropout 0.1."""
        return cls(src_vocab_size, tgt_vocab_size, d_model=512, ffn_num_hiddens=2048,
                   num_heads=8, num_enc_layers=6, num_dec_layers=6, dropout=0.1)


def make_transformer(config: TransformerConfig) -> EncoderDecoder:
    """``EncoderDecoder(TransformerEncoder, TransformerDecoder)`` built from ``config``."""
    if not isinstance(config, TransformerConfig):
        raise TypeError(f"config must be a TransformerConfig, got {type(config).__name__}")
    c = config
    encoder = TransformerEncoder(c.src_vocab_size, c.d_model, c.ffn_num_hiddens, c.num_heads,
                                 c.num_enc_layers, c.dropout, c.bias, max_len=c.max_len,
                                 norm_first=c.norm_first)
    decoder = TransformerDecoder(c.tgt_vocab_size, c.d_model, c.ffn_num_hiddens, c.num_heads,
                                 c.num_dec_layers, c.dropout, c.bias, max_len=c.max_len,
                                 norm_first=c.norm_first)
    return EncoderDecoder(encoder, decoder)
