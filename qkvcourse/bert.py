"""BERT: encoder-only pretraining (chapter 10).

Devlin, Chang, Lee and Toutanova (2019), "BERT: Pre-training of Deep Bidirectional
Transformers for Language Understanding". BERT is the encoder of the Transformer
(:mod:`qkvcourse.transformer`), fed with a pair of sentences and trained on two tasks
that need no labels: predicting masked tokens (masked LM) and telling whether the second
sentence follows the first (next-sentence prediction, NSP).

Shape legend: B batch, T sequence length, N = num_hiddens (the paper's H), F =
ffn_num_hiddens (4H in the paper), H heads (the paper's A; it must divide N), P
predicted positions per sequence, V vocabulary size. The paper's L, the number of
layers, is ``num_blks`` here.

The pieces:

- :class:`BERTEncoder`: token + segment + learned position embeddings (Figure 2), then a
  stack of post-norm :class:`~qkvcourse.TransformerEncoderBlock`.
- :class:`MaskLM`, :class:`NextSentencePred` and :class:`BERTModel`: the two pretraining
  heads (section 3.1) and the whole model, with d2l's signatures.
- :class:`BERTConfig` (with :meth:`BERTConfig.bert_base`), :func:`make_bert` and
  :func:`init_bert_weights`.

The rest of chapter 10 lives beside its kind: the input format and the pretraining examples
(:func:`~qkvcourse.data.bert_pretraining.get_tokens_and_segments`,
:class:`~qkvcourse.data.bert_pretraining.BERTPretrainingData`,
:func:`~qkvcourse.data.bert_pretraining.mask_tokens`) in :mod:`qkvcourse.data.bert_pretraining`,
the masked-LM + NSP loss (:func:`~qkvcourse.losses.bert_pretraining_loss`) in
:mod:`qkvcourse.losses`, and :func:`~qkvcourse.huggingface.bert_from_huggingface` (the weights
of a ``transformers`` BERT, in this model) in :mod:`qkvcourse.huggingface`.

BERT as released and as in d2l
------------------------------
d2l's BERT (section 15.8 of *Dive into Deep Learning*) simplifies the released one. The
options of :class:`BERTEncoder`, :class:`MaskLM` and :class:`BERTModel` select either:

===========================================  ======================  ============================
option                                       BERT and Hugging Face   d2l (:meth:`BERTConfig.d2l`)
===========================================  ======================  ============================
``activation`` (FFN and masked-LM head)      ``"gelu"`` (exact)      ``"relu"``
``layer_norm_eps``                           1e-12                   1e-5 (PyTorch's default)
``embedding_norm`` (LayerNorm of the sum)    True                    False
``tie_weights`` (output layer = embeddings)  True                    False
===========================================  ======================  ============================

Both feed the [CLS] vector through a dense layer + tanh (BERT's "pooler", d2l's
``hidden``) before the NSP classifier.

Next-sentence logits follow BERT's released code and Hugging Face: index 0
(:data:`~qkvcourse.data.bert_pretraining.IS_NEXT`) when sentence b follows a, index 1
(:data:`~qkvcourse.data.bert_pretraining.NOT_NEXT`) when it was drawn at random.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from ._aliases import field_aliases
from ._validate import (check_dim_match, check_dropout, check_flag, check_floating, check_hidden,
                        check_index_dtype, check_index_range, check_lengths, check_max_len,
                        check_nonempty, check_size, check_sizes, check_tensor, check_tokens,
                        shape_str)
# Re-exported: the grader's rules and the exercise sheets name qkvcourse.bert.mask_tokens and
# qkvcourse.bert.get_tokens_and_segments, and chapter 10 reads the next-sentence labels
# IS_NEXT / NOT_NEXT (NextSentencePred's classes) from here; all live with the pretraining data.
from .data.bert_pretraining import (IS_NEXT, NOT_NEXT, get_tokens_and_segments,  # noqa: F401
                                    mask_tokens)
from .multihead import is_linear
from .positional import LearnedPositionalEncoding
from .transformer import (StackNeedWeights, TransformerEncoderBlock, check_activation,
                          check_eps, check_heads_divide, make_activation)


def init_bert_weights(module: nn.Module, std: float = 0.02) -> None:
    """BERT's initialisation: weights ~ N(0, std²) cut at ±2 std, biases 0, LayerNorm (1, 0).

    The paper does not state it; this is the released code's (``initializer_range`` 0.02).
    It matters with tied weights: a unit-variance embedding matrix would also be an
    output layer with logits of standard deviation about sqrt(N).
    """
    for m in module.modules():
        if is_linear(m) or isinstance(m, nn.Embedding):
            nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, LearnedPositionalEncoding):
            nn.init.trunc_normal_(m.P, std=std, a=-2 * std, b=2 * std)


def _check_ids(name: str, ids: Tensor, like_name: str, like: Tensor, upper: int,
               what: str) -> None:
    """``ids`` must be an integer tensor of ``like``'s shape with values in ``[0, upper)``."""
    check_tensor(name, ids)
    check_index_dtype(name, ids, what)
    if ids.shape != like.shape:
        raise ValueError(f"{name} must have the shape of {like_name} {shape_str(like)}, got "
                         f"shape {shape_str(ids)}")
    check_index_range(name, ids, upper, what)


class BERTEncoder(nn.Module):
    """BERT's encoder: summed embeddings, then ``num_blks`` post-norm encoder blocks.

    Section 3, Figure 2: the input representation of a token is the sum of its token
    embedding, its segment embedding (sentence a or b) and a learned embedding of its
    position. In the released BERT (``embedding_norm=True``) the sum is normalised by a
    LayerNorm; dropout follows. The blocks are the Transformer's
    (:class:`~qkvcourse.TransformerEncoderBlock`, post-norm, biases in every projection),
    with a GELU in the feed-forward network (Appendix A.2).

    Args:
        vocab_size: V.
        num_hiddens: N, the paper's H (768 in BERT_BASE).
        ffn_num_hiddens: F, the FFN's hidden width (4H in the paper).
        num_heads: H, the paper's A (12 in BERT_BASE); must divide N.
        num_blks: the number of blocks, the paper's L (12 in BERT_BASE).
        dropout: dropout on the embeddings, attention weights, FFN and residuals.
        max_len: the longest sequence, the number of position embeddings (512 in BERT).
        num_segments: the number of segment embeddings (2: sentences a and b).
        activation: the FFN's nonlinearity, ``"gelu"`` (BERT) or ``"relu"`` (d2l).
        layer_norm_eps: epsilon of every LayerNorm (1e-12 in BERT, 1e-5 in PyTorch / d2l).
        embedding_norm: LayerNorm after summing the embeddings (BERT: yes, d2l: no).

    ``forward(tokens (B, T), segments (B, T), valid_lens (B,) | None)`` returns
    ``(B, T, N)``. ``valid_lens`` masks the padding keys; padded positions still get
    (meaningless) outputs. Set ``need_weights = True`` to keep ``attention_weights``, one
    ``(B, H, T, T)`` tensor per block.
    """

    def __init__(self, vocab_size: int, num_hiddens: int, ffn_num_hiddens: int, num_heads: int,
                 num_blks: int, dropout: float, max_len: int = 1000, *, num_segments: int = 2,
                 activation: str = "gelu", layer_norm_eps: float = 1e-12,
                 embedding_norm: bool = True):
        super().__init__()
        check_sizes(vocab_size=vocab_size, num_hiddens=num_hiddens, ffn_num_hiddens=ffn_num_hiddens,
                    num_heads=num_heads, num_blks=num_blks, max_len=max_len,
                    num_segments=num_segments)
        check_dropout("dropout", dropout)
        check_eps("layer_norm_eps", layer_norm_eps)
        check_flag("embedding_norm", embedding_norm)
        self.vocab_size, self.num_hiddens, self.max_len = vocab_size, num_hiddens, max_len
        self.num_segments = num_segments
        self.token_embedding = nn.Embedding(vocab_size, num_hiddens)
        self.segment_embedding = nn.Embedding(num_segments, num_hiddens)
        # .P (1, max_len, N); its dropout is off, since dropout follows the LayerNorm
        self.pos_embedding = LearnedPositionalEncoding(num_hiddens, 0.0, max_len)
        self.embedding_ln = nn.LayerNorm(num_hiddens, eps=layer_norm_eps) if embedding_norm \
            else None
        self.dropout = nn.Dropout(dropout)
        self.blks = nn.ModuleList(
            TransformerEncoderBlock(num_hiddens, ffn_num_hiddens, num_heads, dropout, True,
                                    activation=activation, layer_norm_eps=layer_norm_eps)
            for _ in range(num_blks))
        self.attention_weights: list[Tensor | None] = [None] * num_blks
        init_bert_weights(self)

    need_weights = StackNeedWeights()

    def embed(self, tokens: Tensor, segments: Tensor) -> Tensor:
        """The input representation of Figure 2 (checked arguments): ``(B, T, N)``."""
        X = self.token_embedding(tokens) + self.segment_embedding(segments)  # (B, T, N)
        X = self.pos_embedding(X)  # + position embeddings 0..T-1, (B, T, N)
        if self.embedding_ln is not None:
            X = self.embedding_ln(X)
        return self.dropout(X)

    def forward(self, tokens: Tensor, segments: Tensor,
                valid_lens: Tensor | None = None) -> Tensor:
        self._check_inputs(tokens, segments, valid_lens)
        X = self.embed(tokens, segments)  # (B, T, N)
        for blk in self.blks:
            X = blk(X, valid_lens)  # (B, T, N)
        self.attention_weights = [blk.attention.attention_weights for blk in self.blks]
        return X

    def _check_inputs(self, tokens: Tensor, segments: Tensor, valid_lens: Tensor | None) -> None:
        check_tokens("tokens", tokens, self.vocab_size)
        _check_ids("segments", segments, "tokens", tokens, self.num_segments,
                   f"segment ids, num_segments={self.num_segments}")
        check_max_len("tokens", tokens, 0, self.max_len)
        if valid_lens is not None:
            check_lengths("valid_lens", valid_lens, "tokens", tokens)


# -- the pretraining heads (section 3.1) -----------------------------------------------------

class MaskLM(nn.Module):
    """The masked-LM head, section 3.1 ("Task #1: Masked LM").

    "The final hidden vectors corresponding to the mask tokens are fed into an output
    softmax over the vocabulary." In the released BERT (and d2l) that vector first goes
    through a dense layer, the activation and a LayerNorm (the "transform"); the output
    layer, ``decoder``, has a bias per token and, in BERT, shares its weight matrix with
    the token embeddings (:class:`BERTModel` ties them).

    Args:
        vocab_size: V.
        num_hiddens: N.
        activation: ``"gelu"`` (BERT) or ``"relu"`` (d2l).
        layer_norm_eps: the LayerNorm's epsilon (1e-12 in BERT, 1e-5 in d2l).

    ``forward(X (B, T, N), pred_positions (B, P))`` returns the logits ``(B, P, V)`` at the
    P positions of each row (integers in ``[0, T)``).
    """

    def __init__(self, vocab_size: int, num_hiddens: int, *, activation: str = "gelu",
                 layer_norm_eps: float = 1e-12):
        super().__init__()
        check_sizes(vocab_size=vocab_size, num_hiddens=num_hiddens)
        check_eps("layer_norm_eps", layer_norm_eps)
        self.vocab_size, self.num_hiddens = vocab_size, num_hiddens
        self.dense = nn.Linear(num_hiddens, num_hiddens)
        self.activation = make_activation(activation)
        self.ln = nn.LayerNorm(num_hiddens, eps=layer_norm_eps)
        self.decoder = nn.Linear(num_hiddens, vocab_size)
        init_bert_weights(self)

    def forward(self, X: Tensor, pred_positions: Tensor) -> Tensor:
        self._check_inputs(X, pred_positions)
        index = pred_positions.to(X.device)[:, :, None].expand(-1, -1, X.shape[-1])  # (B, P, N)
        masked_X = X.gather(1, index)  # (B, P, N): row b, slot p is X[b, pred_positions[b, p]]
        return self.decoder(self.ln(self.activation(self.dense(masked_X))))  # (B, P, V)

    def _check_inputs(self, X: Tensor, pred_positions: Tensor) -> None:
        check_hidden("X", X, self.num_hiddens)
        check_tensor("pred_positions", pred_positions, ndim=2)
        check_index_dtype("pred_positions", pred_positions, "positions")
        check_dim_match("X", X, 0, "pred_positions", pred_positions, 0, "batch sizes")
        check_index_range("pred_positions", pred_positions, X.shape[1],
                           f"the length of X, shape {shape_str(X)}")


class NextSentencePred(nn.Module):
    """The next-sentence-prediction classifier, section 3.1 ("Task #2").

    A linear layer from the pooled [CLS] vector to two logits: index 0 (``IS_NEXT``)
    "sentence b follows sentence a", index 1 (``NOT_NEXT``) "b is a random sentence".
    d2l's ``NextSentencePred()`` infers its input size (``LazyLinear``); here it is given.

    ``forward(X (B, N))`` returns ``(B, 2)``.
    """

    def __init__(self, num_hiddens: int):
        super().__init__()
        check_size("num_hiddens", num_hiddens)
        self.num_hiddens = num_hiddens
        self.output = nn.Linear(num_hiddens, 2)
        init_bert_weights(self)

    def forward(self, X: Tensor) -> Tensor:
        self._check_inputs(X)
        return self.output(X)  # (B, 2)

    def _check_inputs(self, X: Tensor) -> None:
        check_tensor("X", X, ndim=2)
        check_floating("X", X)
        if X.shape[-1] != self.num_hiddens:
            raise ValueError(f"X must have num_hiddens={self.num_hiddens} features (last "
                             f"dimension), got shape {shape_str(X)}")


class BERTModel(nn.Module):
    """BERT with its two pretraining heads (section 3), d2l's signature and outputs.

    The encoder's output at [CLS] (position 0) goes through ``hidden``, a dense layer and
    a tanh (BERT's "pooler"), then :class:`NextSentencePred`; the outputs at the
    predicted positions go to :class:`MaskLM`. With ``tie_weights`` (BERT) the masked-LM
    output layer *is* the token embedding matrix (``mlm.decoder.weight`` and
    ``encoder.token_embedding.weight`` are one parameter).

    The arguments are those of :class:`BERTEncoder`, plus ``tie_weights``.

    ``forward(tokens (B, T), segments (B, T), valid_lens (B,) | None, pred_positions (B, P)
    | None)`` returns ``(encoded_X (B, T, N), mlm_Y_hat (B, P, V) or None, nsp_Y_hat (B, 2))``.
    """

    def __init__(self, vocab_size: int, num_hiddens: int, ffn_num_hiddens: int, num_heads: int,
                 num_blks: int, dropout: float, max_len: int = 1000, *, num_segments: int = 2,
                 activation: str = "gelu", layer_norm_eps: float = 1e-12,
                 embedding_norm: bool = True, tie_weights: bool = True):
        super().__init__()
        check_flag("tie_weights", tie_weights)
        self.encoder = BERTEncoder(vocab_size, num_hiddens, ffn_num_hiddens, num_heads,
                                   num_blks, dropout, max_len, num_segments=num_segments,
                                   activation=activation, layer_norm_eps=layer_norm_eps,
                                   embedding_norm=embedding_norm)
        self.hidden = nn.Sequential(nn.Linear(num_hiddens, num_hiddens), nn.Tanh())  # pooler
        self.mlm = MaskLM(vocab_size, num_hiddens, activation=activation,
                          layer_norm_eps=layer_norm_eps)
        self.nsp = NextSentencePred(num_hiddens)
        init_bert_weights(self.hidden)
        self.tie_weights = tie_weights
        if tie_weights:
            self.mlm.decoder.weight = self.encoder.token_embedding.weight  # (V, N), shared

    def pool(self, encoded_X: Tensor) -> Tensor:
        """The pooled representation of the sequence: ``tanh(W C + b)``, C the [CLS] output.

        ``encoded_X (B, T, N)`` -> ``(B, N)``.
        """
        check_hidden("encoded_X", encoded_X, self.encoder.num_hiddens)
        check_nonempty("encoded_X", encoded_X, 1, "sequence (it has no [CLS] position)")
        return self.hidden(encoded_X[:, 0, :])  # (B, N)

    def forward(self, tokens: Tensor, segments: Tensor, valid_lens: Tensor | None = None,
                pred_positions: Tensor | None = None
                ) -> tuple[Tensor, Tensor | None, Tensor]:
        encoded_X = self.encoder(tokens, segments, valid_lens)  # (B, T, N)
        mlm_Y_hat = None if pred_positions is None else self.mlm(encoded_X, pred_positions)
        nsp_Y_hat = self.nsp(self.pool(encoded_X))  # (B, 2)
        return encoded_X, mlm_Y_hat, nsp_Y_hat


# -- configuration ---------------------------------------------------------------------------

@field_aliases(num_hiddens="d_model", num_blks="num_layers")
@dataclass
class BERTConfig:
    """Sizes and options of a :class:`BERTModel`; the defaults are the course's small BERT.

    :meth:`bert_base` and :meth:`bert_large` give the two models of section 3; :meth:`d2l`
    gives d2l's simplified variant (ReLU, no embedding LayerNorm, untied output layer).
    The fields are named as in :class:`~qkvcourse.GPTConfig` and
    :class:`~qkvcourse.TransformerConfig`; d2l's ``num_hiddens`` and ``num_blks`` are
    accepted for ``d_model`` and ``num_layers``.
    """

    vocab_size: int  # V, the size of the (word-piece) vocabulary (BERT: 30522)
    d_model: int = 128  # the width, H in the paper (BERT_BASE: 768); d2l's chapter uses 128
    ffn_num_hiddens: int = 256  # the FFN's hidden width (paper: 4H)
    num_heads: int = 2  # A in the paper (BERT_BASE: 12); must divide d_model
    num_layers: int = 2  # L in the paper (BERT_BASE: 12)
    dropout: float = 0.1  # on embeddings, attention weights, FFN, residuals (paper: 0.1)
    max_len: int = 128  # number of position embeddings (BERT: 512)
    num_segments: int = 2  # segment (token-type) embeddings: sentence a and sentence b
    activation: str = "gelu"  # "gelu" (exact, erf-based) as in BERT, or "relu" as in d2l
    layer_norm_eps: float = 1e-12  # LayerNorm epsilon (BERT: 1e-12; PyTorch/d2l: 1e-5)
    embedding_norm: bool = True  # LayerNorm the summed embeddings (BERT: yes; d2l: no)
    tie_weights: bool = True  # masked-LM output layer = token embeddings (BERT: yes; d2l: no)

    def __post_init__(self):
        check_sizes(**{"vocab_size": self.vocab_size, "d_model (d2l: num_hiddens)": self.d_model,
                       "ffn_num_hiddens": self.ffn_num_hiddens, "num_heads": self.num_heads,
                       "num_layers (d2l: num_blks)": self.num_layers, "max_len": self.max_len,
                       "num_segments": self.num_segments})
        check_heads_divide(self.d_model, self.num_heads)
        check_dropout("dropout", self.dropout)
        check_activation(self.activation)
        check_eps("layer_norm_eps", self.layer_norm_eps)
        check_flag("embedding_norm", self.embedding_norm)
        check_flag("tie_weights", self.tie_weights)

    @classmethod
    def bert_base(cls, vocab_size: int = 30522) -> "BERTConfig":
        """BERT_BASE, section 3: L=12, H=768, A=12, 4H=3072, 512 positions (110M parameters)."""
        return cls(vocab_size, d_model=768, ffn_num_hiddens=3072, num_heads=12,
                   num_layers=12, dropout=0.1, max_len=512)

    @classmethod
    def bert_large(cls, vocab_size: int = 30522) -> "BERTConfig":
        """BERT_LARGE, section 3: L=24, H=1024, A=16, 4H=4096, 512 positions (340M parameters)."""
        return cls(vocab_size, d_model=1024, ffn_num_hiddens=4096, num_heads=16,
                   num_layers=24, dropout=0.1, max_len=512)

    @classmethod
    def tiny(cls, vocab_size: int) -> "BERTConfig":
        """The course's default small BERT (the dataclass defaults), for a CPU in minutes."""
        return cls(vocab_size)

    @classmethod
    def d2l(cls, vocab_size: int, max_len: int = 1000) -> "BERTConfig":
        """d2l's BERT (section 15.8 of *Dive into Deep Learning*): its sizes and simplifications."""
        return cls(vocab_size, d_model=128, ffn_num_hiddens=256, num_heads=2, num_layers=2,
                   dropout=0.2, max_len=max_len, activation="relu", layer_norm_eps=1e-5,
                   embedding_norm=False, tie_weights=False)


def make_bert(config: BERTConfig) -> BERTModel:
    """A :class:`BERTModel` built from ``config``."""
    if not isinstance(config, BERTConfig):
        raise TypeError(f"config must be a BERTConfig, got {type(config).__name__}")
    c = config
    return BERTModel(c.vocab_size, c.d_model, c.ffn_num_hiddens, c.num_heads, c.num_layers,
                     c.dropout, c.max_len, num_segments=c.num_segments, activation=c.activation,
                     layer_norm_eps=c.layer_norm_eps, embedding_norm=c.embedding_norm,
                     tie_weights=c.tie_weights)
