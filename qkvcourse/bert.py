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

- :func:`get_tokens_and_segments`: ``<cls> a <sep> b <sep>`` and its segment ids (section 3,
  "Input/Output Representations").
- :class:`BERTEncoder`: token + segment + learned position embeddings (Figure 2), then a
  stack of post-norm :class:`~qkvcourse.TransformerEncoderBlock`.
- :class:`MaskLM`, :class:`NextSentencePred` and :class:`BERTModel`: the two pretraining
  heads (section 3.1) and the whole model, with d2l's signatures.
- :class:`BERTConfig` (with :meth:`BERTConfig.bert_base`) and :func:`make_bert`.
- :func:`bert_from_huggingface`: the weights of a ``transformers`` BERT, in this model.
- :class:`BERTPretrainingData`, :func:`next_sentence_pairs`, :func:`mask_tokens`: the
  pretraining examples of section 3.1 and Appendix A.1, seeded.
- :func:`bert_pretraining_loss` and :func:`bert_batch_loss`: masked-LM + NSP loss.

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

Special tokens follow the package's ``<...>`` spelling and d2l's: ``<cls>``, ``<sep>``,
``<mask>``, with :class:`~qkvcourse.data.Vocab`'s ``<pad>`` and ``<unk>``. Next-sentence
labels follow BERT's released code and Hugging Face, so that real weights read them
the same way: 0 (:data:`IS_NEXT`) when sentence b follows a, 1 (:data:`NOT_NEXT`) when it
was drawn at random.
"""
from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from ._validate import (value_range, value_checks_enabled, check_size, check_token_ids, check_dim_match, check_floating, check_index_range, check_tensor,
                        shape_str)
from .data.download import DownloadError
from .data.vocab import BOS, EOS, PAD, UNK, Vocab
from .multihead import is_linear
from .positional import LearnedPositionalEncoding
from .transformer import (StackNeedWeights, TransformerEncoderBlock, _check_hidden, _check_lens,
                          _check_length, _check_tokens, _is_integer, make_activation)

CLS, SEP, MASK = "<cls>", "<sep>", "<mask>"
BERT_RESERVED_TOKENS = (CLS, SEP, MASK)  # given ids 4, 5, 6 by bert_vocab, after Vocab's four
IS_NEXT, NOT_NEXT = 0, 1  # next-sentence labels, as in BERT's code and Hugging Face


# -- input representation (section 3, Figure 2) ----------------------------------------------

def get_tokens_and_segments(tokens_a: Sequence[str], tokens_b: Sequence[str] | None = None, *,
                            cls: str = CLS, sep: str = SEP) -> tuple[list[str], list[int]]:
    """BERT's input for one sentence or a pair: ``<cls> a <sep>`` or ``<cls> a <sep> b <sep>``.

    Section 3, "Input/Output Representations": the first token is always [CLS], whose
    final hidden state represents the whole sequence; the sentences are separated by
    [SEP] and told apart by a segment embedding, 0 for sentence a (with [CLS] and its
    [SEP]) and 1 for sentence b (with the last [SEP]).

    Args:
        tokens_a: the first sentence, a list of tokens.
        tokens_b: the second sentence, or None for a single sentence.
        cls, sep: the spelling of the special tokens (``"[CLS]"``, ``"[SEP]"`` for a
            Hugging Face tokenizer's vocabulary).

    Returns:
        ``(tokens, segments)``, two lists of the same length.
    """
    for name, toks in (("tokens_a", tokens_a), ("tokens_b", tokens_b)):
        if isinstance(toks, str):
            raise TypeError(f"{name} must be a list of tokens, got the string {toks[:30]!r}")
    tokens = [cls, *tokens_a, sep]
    segments = [0] * len(tokens)
    if tokens_b is not None:
        tokens += [*tokens_b, sep]
        segments += [1] * (len(tokens_b) + 1)
    return tokens, segments


def bert_vocab(sentences: Sequence[Sequence[str]], min_freq: int = 0) -> Vocab:
    """A :class:`~qkvcourse.data.Vocab` with ``<cls>``, ``<sep>``, ``<mask>`` reserved.

    Ids: 0 ``<pad>``, 1 ``<bos>``, 2 ``<eos>``, 3 ``<unk>`` (every Vocab has them; BERT
    uses the first and the last), 4 ``<cls>``, 5 ``<sep>``, 6 ``<mask>``, then the tokens
    of ``sentences`` (lists of tokens), most frequent first.
    """
    return Vocab(sentences, min_freq=min_freq, reserved_tokens=list(BERT_RESERVED_TOKENS))


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
    if not _is_integer(ids):
        raise TypeError(f"{name} must hold integer {what}, got dtype {ids.dtype} with shape "
                        f"{shape_str(ids)}")
    if ids.shape != like.shape:
        raise ValueError(f"{name} must have the shape of {like_name} {shape_str(like)}, got "
                         f"shape {shape_str(ids)}")
    bounds = value_range(ids)
    if bounds is not None:
        lo, hi = bounds
        if lo < 0 or hi >= upper:
            raise ValueError(f"{name} must lie in [0, {upper}) ({what}), got values from {lo} "
                             f"to {hi} in shape {shape_str(ids)}")


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
        for name, size in dict(vocab_size=vocab_size, num_hiddens=num_hiddens,
                               ffn_num_hiddens=ffn_num_hiddens, num_heads=num_heads,
                               num_blks=num_blks, max_len=max_len, num_segments=num_segments).items():
            check_size(name, size)
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
        _check_tokens("tokens", tokens, self.vocab_size)
        _check_ids("segments", segments, "tokens", tokens, self.num_segments,
                   f"segment ids, num_segments={self.num_segments}")
        _check_length("tokens", tokens, 0, self.max_len)
        if valid_lens is not None:
            _check_lens("valid_lens", valid_lens, "tokens", tokens)
        X = self.embed(tokens, segments)  # (B, T, N)
        for blk in self.blks:
            X = blk(X, valid_lens)  # (B, T, N)
        self.attention_weights = [blk.attention.attention_weights for blk in self.blks]
        return X


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
        self.vocab_size, self.num_hiddens = vocab_size, num_hiddens
        self.dense = nn.Linear(num_hiddens, num_hiddens)
        self.activation = make_activation(activation)
        self.ln = nn.LayerNorm(num_hiddens, eps=layer_norm_eps)
        self.decoder = nn.Linear(num_hiddens, vocab_size)
        init_bert_weights(self)

    def forward(self, X: Tensor, pred_positions: Tensor) -> Tensor:
        _check_hidden("X", X, self.num_hiddens)
        check_tensor("pred_positions", pred_positions, ndim=2)
        if not _is_integer(pred_positions):
            raise TypeError(f"pred_positions must hold integer positions, got dtype "
                            f"{pred_positions.dtype} with shape {shape_str(pred_positions)}")
        check_dim_match("X", X, 0, "pred_positions", pred_positions, 0, "batch sizes")
        check_index_range("pred_positions", pred_positions, X.shape[1],
                           f"the length of X, shape {shape_str(X)}")
        index = pred_positions.to(X.device)[:, :, None].expand(-1, -1, X.shape[-1])  # (B, P, N)
        masked_X = X.gather(1, index)  # (B, P, N): row b, slot p is X[b, pred_positions[b, p]]
        return self.decoder(self.ln(self.activation(self.dense(masked_X))))  # (B, P, V)


class NextSentencePred(nn.Module):
    """The next-sentence-prediction classifier, section 3.1 ("Task #2").

    A linear layer from the pooled [CLS] vector to two logits: index 0 (:data:`IS_NEXT`)
    "sentence b follows sentence a", index 1 (:data:`NOT_NEXT`) "b is a random sentence".
    d2l's ``NextSentencePred()`` infers its input size (``LazyLinear``); here it is given.

    ``forward(X (B, N))`` returns ``(B, 2)``.
    """

    def __init__(self, num_hiddens: int):
        super().__init__()
        self.num_hiddens = num_hiddens
        self.output = nn.Linear(num_hiddens, 2)
        init_bert_weights(self)

    def forward(self, X: Tensor) -> Tensor:
        check_tensor("X", X, ndim=2)
        check_floating("X", X)
        if X.shape[-1] != self.num_hiddens:
            raise ValueError(f"X must have num_hiddens={self.num_hiddens} features (last "
                             f"dimension), got shape {shape_str(X)}")
        return self.output(X)  # (B, 2)


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
        _check_hidden("encoded_X", encoded_X, self.encoder.num_hiddens)
        return self.hidden(encoded_X[:, 0, :])  # (B, N)

    def forward(self, tokens: Tensor, segments: Tensor, valid_lens: Tensor | None = None,
                pred_positions: Tensor | None = None
                ) -> tuple[Tensor, Tensor | None, Tensor]:
        encoded_X = self.encoder(tokens, segments, valid_lens)  # (B, T, N)
        mlm_Y_hat = None if pred_positions is None else self.mlm(encoded_X, pred_positions)
        nsp_Y_hat = self.nsp(self.pool(encoded_X))  # (B, 2)
        return encoded_X, mlm_Y_hat, nsp_Y_hat


# -- configuration ---------------------------------------------------------------------------

@dataclass
class BERTConfig:
    """Sizes and options of a :class:`BERTModel`; the defaults are the course's small BERT.

    :meth:`bert_base` and :meth:`bert_large` give the two models of section 3; :meth:`d2l`
    gives d2l's simplified variant (ReLU, no embedding LayerNorm, untied output layer).
    """

    vocab_size: int  # V, the size of the (word-piece) vocabulary (BERT: 30522)
    num_hiddens: int = 128  # H in the paper (BERT_BASE: 768); d2l's chapter uses 128
    ffn_num_hiddens: int = 256  # the FFN's hidden width (paper: 4H)
    num_heads: int = 2  # A in the paper (BERT_BASE: 12); must divide num_hiddens
    num_blks: int = 2  # L in the paper (BERT_BASE: 12)
    dropout: float = 0.1  # on embeddings, attention weights, FFN, residuals (paper: 0.1)
    max_len: int = 128  # number of position embeddings (BERT: 512)
    num_segments: int = 2  # segment (token-type) embeddings: sentence a and sentence b
    activation: str = "gelu"  # "gelu" (exact, erf-based) as in BERT, or "relu" as in d2l
    layer_norm_eps: float = 1e-12  # LayerNorm epsilon (BERT: 1e-12; PyTorch/d2l: 1e-5)
    embedding_norm: bool = True  # LayerNorm the summed embeddings (BERT: yes; d2l: no)
    tie_weights: bool = True  # masked-LM output layer = token embeddings (BERT: yes; d2l: no)

    @classmethod
    def bert_base(cls, vocab_size: int = 30522) -> "BERTConfig":
        """BERT_BASE, section 3: L=12, H=768, A=12, 4H=3072, 512 positions (110M parameters)."""
        return cls(vocab_size, num_hiddens=768, ffn_num_hiddens=3072, num_heads=12,
                   num_blks=12, dropout=0.1, max_len=512)

    @classmethod
    def bert_large(cls, vocab_size: int = 30522) -> "BERTConfig":
        """BERT_LARGE, section 3: L=24, H=1024, A=16, 4H=4096, 512 positions (340M parameters)."""
        return cls(vocab_size, num_hiddens=1024, ffn_num_hiddens=4096, num_heads=16,
                   num_blks=24, dropout=0.1, max_len=512)

    @classmethod
    def tiny(cls, vocab_size: int) -> "BERTConfig":
        """The course's default small BERT (the dataclass defaults), for a CPU in minutes."""
        return cls(vocab_size)

    @classmethod
    def d2l(cls, vocab_size: int, max_len: int = 1000) -> "BERTConfig":
        """d2l's BERT (section 15.8 of *Dive into Deep Learning*): its sizes and simplifications."""
        return cls(vocab_size, num_hiddens=128, ffn_num_hiddens=256, num_heads=2, num_blks=2,
                   dropout=0.2, max_len=max_len, activation="relu", layer_norm_eps=1e-5,
                   embedding_norm=False, tie_weights=False)


def make_bert(config: BERTConfig) -> BERTModel:
    """A :class:`BERTModel` built from ``config``."""
    c = config
    return BERTModel(c.vocab_size, c.num_hiddens, c.ffn_num_hiddens, c.num_heads, c.num_blks,
                     c.dropout, c.max_len, num_segments=c.num_segments, activation=c.activation,
                     layer_norm_eps=c.layer_norm_eps, embedding_norm=c.embedding_norm,
                     tie_weights=c.tie_weights)


# -- loading Hugging Face weights ------------------------------------------------------------

_HF_ACTIVATIONS = {"gelu": "gelu", "relu": "relu", "gelu_new": "gelu_tanh",
                   "gelu_pytorch_tanh": "gelu_tanh"}
_OFFLINE_HINT = ("Loading pretrained weights by name needs the network (or a copy already in "
                 "the Hugging Face cache). Without it, the chapter continues with the locally "
                 "trained model.")


def _config_value(config: Any, name: str, default: Any = None) -> Any:
    if isinstance(config, Mapping):
        return config.get(name, default)
    return getattr(config, name, default)


def config_from_huggingface(hf_config: Any) -> BERTConfig:
    """A :class:`BERTConfig` from a ``transformers.BertConfig`` (or a dict of its fields).

    ``hidden_dropout_prob`` becomes ``dropout``; this model has one dropout rate, so
    BERT's separate ``attention_probs_dropout_prob`` (equal to it in BERT) is not kept.
    """
    act = _config_value(hf_config, "hidden_act", "gelu")
    if act not in _HF_ACTIVATIONS:
        raise ValueError(f"hidden_act={act!r} is not supported; expected one of "
                         f"{sorted(_HF_ACTIVATIONS)}")
    position_type = _config_value(hf_config, "position_embedding_type", "absolute")
    if position_type not in (None, "absolute"):
        raise ValueError(f"position_embedding_type={position_type!r} is not supported; only "
                         f"BERT's learned absolute positions are")
    if _config_value(hf_config, "is_decoder", False):
        raise ValueError("is_decoder=True is a causal BERT; BERTModel is bidirectional")
    return BERTConfig(
        vocab_size=_config_value(hf_config, "vocab_size"),
        num_hiddens=_config_value(hf_config, "hidden_size"),
        ffn_num_hiddens=_config_value(hf_config, "intermediate_size"),
        num_heads=_config_value(hf_config, "num_attention_heads"),
        num_blks=_config_value(hf_config, "num_hidden_layers"),
        dropout=_config_value(hf_config, "hidden_dropout_prob", 0.1),
        max_len=_config_value(hf_config, "max_position_embeddings"),
        num_segments=_config_value(hf_config, "type_vocab_size", 2),
        activation=_HF_ACTIVATIONS[act],
        layer_norm_eps=_config_value(hf_config, "layer_norm_eps", 1e-12),
        embedding_norm=True,
        tie_weights=bool(_config_value(hf_config, "tie_word_embeddings", True)))


def _from_hub(name: str):
    try:
        from transformers import BertForPreTraining
    except ImportError as err:
        raise ImportError(f"bert_from_huggingface({name!r}) needs the transformers package: "
                          f"pip install transformers") from err
    try:
        from ._hub import from_pretrained

        return from_pretrained(BertForPreTraining, name)
    except Exception as err:  # offline, unknown name, interrupted download: one message
        raise DownloadError(f"could not load {name!r} from the Hugging Face Hub "
                            f"({type(err).__name__}: {err}). {_OFFLINE_HINT}") from err


def _hf_name_map(num_blks: int) -> dict[str, str]:
    """Our parameter names -> Hugging Face's (without the ``bert.`` prefix of the encoder)."""
    names = {
        "encoder.token_embedding.weight": "embeddings.word_embeddings.weight",
        "encoder.segment_embedding.weight": "embeddings.token_type_embeddings.weight",
        "encoder.pos_embedding.P": "embeddings.position_embeddings.weight",
        "encoder.embedding_ln.weight": "embeddings.LayerNorm.weight",
        "encoder.embedding_ln.bias": "embeddings.LayerNorm.bias",
    }
    layer_parts = {
        "attention.mha.W_q": "attention.self.query",
        "attention.mha.W_k": "attention.self.key",
        "attention.mha.W_v": "attention.self.value",
        "attention.mha.W_o": "attention.output.dense",
        "addnorm1.ln": "attention.output.LayerNorm",
        "ffn.dense1": "intermediate.dense",
        "ffn.dense2": "output.dense",
        "addnorm2.ln": "output.LayerNorm",
    }
    for i in range(num_blks):
        for ours, theirs in layer_parts.items():
            for p in ("weight", "bias"):
                names[f"encoder.blks.{i}.{ours}.{p}"] = f"encoder.layer.{i}.{theirs}.{p}"
    return names


_HF_HEAD_MAP = {
    "hidden.0.weight": "pooler.dense.weight",
    "hidden.0.bias": "pooler.dense.bias",
}
_HF_CLS_MAP = {  # keys under "cls."
    "mlm.dense.weight": "predictions.transform.dense.weight",
    "mlm.dense.bias": "predictions.transform.dense.bias",
    "mlm.ln.weight": "predictions.transform.LayerNorm.weight",
    "mlm.ln.bias": "predictions.transform.LayerNorm.bias",
    "mlm.decoder.weight": "predictions.decoder.weight",
    "mlm.decoder.bias": "predictions.decoder.bias",  # what the forward pass adds
    "nsp.output.weight": "seq_relationship.weight",
    "nsp.output.bias": "seq_relationship.bias",
}


def bert_from_huggingface(source: Any, config: Any = None) -> BERTModel:
    """A :class:`BERTModel` holding the weights of a Hugging Face ``transformers`` BERT.

    Args:
        source: one of

            - a ``transformers`` ``BertForPreTraining`` (encoder, pooler and both heads),
              ``BertModel`` (encoder and pooler) or another ``Bert*`` model;
            - a state dict of one of them, with ``config`` (no ``transformers`` needed);
            - a Hub name such as ``"bert-base-uncased"``: downloaded by ``transformers``
              (needs the network once; offline it raises
              :class:`~qkvcourse.data.DownloadError` saying so).
        config: the ``transformers.BertConfig`` (or a dict of its fields) of a state dict;
            ignored for a model or a name, which carry their own.

    Returns:
        A :class:`BERTModel` in eval mode whose encoder output, pooled output, masked-LM
        logits and NSP logits equal the Hugging Face model's (with
        ``attention_mask[b, t] = t < valid_lens[b]`` and ``token_type_ids = segments``).
        Parts the source does not have (the heads of a ``BertModel``, the pooler of a
        model built without one) keep their fresh initialisation.

    Parameter names are mapped as follows (``bert.`` prefix optional, layer i):
    ``embeddings.{word,token_type,position}_embeddings`` ->
    ``encoder.{token,segment,pos}_embedding``,
    ``embeddings.LayerNorm`` -> ``encoder.embedding_ln``,
    ``encoder.layer.i.attention.self.{query,key,value}`` and ``attention.output.dense`` ->
    ``encoder.blks.i.attention.mha.W_{q,k,v,o}``, ``attention.output.LayerNorm`` ->
    ``addnorm1.ln``, ``intermediate.dense`` / ``output.dense`` -> ``ffn.dense1`` / ``dense2``,
    ``output.LayerNorm`` -> ``addnorm2.ln``, ``pooler.dense`` -> ``hidden.0``,
    ``cls.predictions.transform.{dense,LayerNorm}`` -> ``mlm.{dense,ln}``,
    ``cls.predictions.decoder`` (its bias, or ``cls.predictions.bias``) -> ``mlm.decoder``,
    ``cls.seq_relationship`` -> ``nsp.output``.
    """
    if isinstance(source, str):
        source = _from_hub(source)
    if isinstance(source, nn.Module):
        if not hasattr(source, "config"):
            raise TypeError(f"source must be a transformers BERT model (with a .config), got "
                            f"{type(source).__name__}")
        state, config = source.state_dict(), source.config
    elif isinstance(source, Mapping):
        if config is None:
            raise ValueError("a state dict needs its config: bert_from_huggingface(state_dict, "
                             "config=bert_config)")
        state = source
    else:
        raise TypeError(f"source must be a transformers BERT model, a state dict or a Hub "
                        f"name, got {type(source).__name__}")

    cfg = config_from_huggingface(config)
    model = make_bert(cfg)
    encoder_state = {k[len("bert."):] if k.startswith("bert.") else k: v
                     for k, v in state.items()}
    target = model.state_dict()
    loaded: dict[str, Tensor] = {}
    for ours, theirs in _hf_name_map(cfg.num_blks).items():
        if theirs not in encoder_state:
            raise KeyError(f"the state dict has no {theirs!r} (nor 'bert.{theirs}'); is it a "
                           f"BERT with {cfg.num_blks} layers?")
        loaded[ours] = encoder_state[theirs]
    for ours, theirs in _HF_HEAD_MAP.items():
        if theirs in encoder_state:
            loaded[ours] = encoder_state[theirs]
    for ours, theirs in _HF_CLS_MAP.items():
        if "cls." + theirs in state:
            loaded[ours] = state["cls." + theirs]
    if "mlm.decoder.bias" not in loaded and "cls.predictions.bias" in state:
        # checkpoint files store the output bias once, as cls.predictions.bias, which
        # transformers ties to the decoder's bias when it loads them
        loaded["mlm.decoder.bias"] = state["cls.predictions.bias"]
    if cfg.tie_weights:  # one matrix: the token embeddings are also the MLM output layer
        loaded["mlm.decoder.weight"] = loaded["encoder.token_embedding.weight"]
    loaded["encoder.pos_embedding.P"] = loaded["encoder.pos_embedding.P"][None]  # (1, max_len, N)
    for name, value in loaded.items():
        if tuple(value.shape) != tuple(target[name].shape):
            raise ValueError(f"{name} has shape {shape_str(target[name])} in the model built "
                             f"from the config, but the weights have shape {shape_str(value)}")
    model.load_state_dict({**target, **loaded})
    return model.eval()


# -- pretraining data (section 3.1, Appendix A.1) --------------------------------------------

def _truncate_pair(tokens_a: list, tokens_b: list, max_num_tokens: int) -> None:
    """Shorten the longer sentence, one token at a time from its end, until both fit.

    The released BERT also cuts the longer one of the pair (from a random end); cutting
    the end is simpler and keeps the examples deterministic given the pairs.
    """
    while len(tokens_a) + len(tokens_b) > max_num_tokens:
        (tokens_a if len(tokens_a) >= len(tokens_b) else tokens_b).pop()


def _check_paragraphs(paragraphs) -> None:
    """Paragraphs must be lists of sentences that are lists of tokens, not strings."""
    if isinstance(paragraphs, str):
        raise TypeError(f"paragraphs must be a list of paragraphs, got the string "
                        f"{paragraphs[:30]!r}")
    for i, paragraph in enumerate(paragraphs):
        if isinstance(paragraph, str):
            raise TypeError(f"paragraphs[{i}] must be a list of sentences, got the string "
                            f"{paragraph[:30]!r}")
        for j, sentence in enumerate(paragraph):
            if isinstance(sentence, str):
                raise TypeError(f"paragraphs[{i}][{j}] must be a list of tokens, got the string "
                                f"{sentence[:30]!r}; tokenise it first, e.g. sentence.split()")


def next_sentence_pairs(paragraphs: Sequence[Sequence[Sequence[str]]], max_len: int,
                        rng: random.Random) -> list[tuple[list[str], list[int], int]]:
    """Next-sentence-prediction examples, section 3.1 ("Task #2").

    For every two consecutive sentences a, b of a paragraph: "50% of the time B is the
    actual next sentence that follows A (labeled as IsNext), and 50% of the time it is a
    random sentence from the corpus (labeled as NotNext)". The random sentence is drawn
    from another paragraph, so it is never the true next sentence. The pair is then cut
    to fit ``max_len`` with its three special tokens: the longer sentence loses tokens
    from its end until the pair fits.

    Args:
        paragraphs: a list of paragraphs, each a list of sentences, each a list of tokens.
            At least two paragraphs are needed.
        max_len: the longest example, special tokens included (at least 5).
        rng: the random source (``random.Random(seed)``), for reproducible examples.

    Returns:
        A list of ``(tokens, segments, nsp_label)``, from :func:`get_tokens_and_segments`,
        ``nsp_label`` :data:`IS_NEXT` (0) or :data:`NOT_NEXT` (1).
    """
    _check_paragraphs(paragraphs)
    if max_len < 5:
        raise ValueError(f"max_len must be at least 5 (<cls> a <sep> b <sep> with one token "
                         f"in each sentence), got {max_len}")
    paragraphs = [[list(s) for s in p if len(s)] for p in paragraphs]  # no empty sentences
    nonempty = [j for j, p in enumerate(paragraphs) if p]
    if len(nonempty) < 2:
        raise ValueError(f"paragraphs must hold at least 2 non-empty paragraphs (random next "
                         f"sentences come from another paragraph), got {len(nonempty)}")
    examples = []
    for k_self, i in enumerate(nonempty):
        paragraph = paragraphs[i]
        for a, b in zip(paragraph, paragraph[1:]):
            if rng.random() < 0.5:
                label = IS_NEXT
            else:
                k = rng.randrange(len(nonempty) - 1)
                k += k >= k_self  # any non-empty paragraph but this one
                b, label = rng.choice(paragraphs[nonempty[k]]), NOT_NEXT
            tokens_a, tokens_b = list(a), list(b)
            _truncate_pair(tokens_a, tokens_b, max_len - 3)
            tokens, segments = get_tokens_and_segments(tokens_a, tokens_b)
            examples.append((tokens, segments, label))
    return examples


_NOT_PREDICTED = frozenset({PAD, BOS, EOS, CLS, SEP, MASK})


def mask_tokens(tokens: Sequence[str], vocab: Vocab, rng: random.Random,
                mask_prob: float = 0.15) -> tuple[list[int], list[int], list[int]]:
    """Masked-LM inputs and targets for one sequence, section 3.1 and Appendix A.1.

    ``round(mask_prob · C)`` positions (at least one; none if C = 0) are drawn at random
    from the C positions that hold a real token (not ``<cls>``, ``<sep>``, ``<pad>``, ``<mask>``;
    ``<unk>`` counts as a real, if unknown, word). Each chosen token is replaced by
    ``<mask>`` 80% of the time, by a random token 10% of the time and kept 10% of the
    time ("The training data generator chooses 15% of the token positions at random for
    prediction. If the i-th token is chosen, we replace the i-th token with (1) the
    [MASK] token 80% of the time (2) a random token 10% of the time (3) the unchanged
    i-th token 10% of the time."). Random tokens are drawn among the vocabulary's
    ordinary tokens (never a special one).

    Args:
        tokens: the sequence, special tokens included.
        vocab: a vocabulary with ``<mask>`` (:func:`bert_vocab`).
        rng: the random source (``random.Random(seed)``).
        mask_prob: the fraction of positions to predict (0.15 in BERT).

    Returns:
        ``(input_ids, pred_positions, labels)``: the ids of the corrupted sequence, the
        chosen positions (increasing) and the original ids there.
    """
    if MASK not in vocab:
        raise ValueError(f"vocab has no {MASK!r} token; build it with bert_vocab(...)")
    if not 0.0 < mask_prob < 1.0:
        raise ValueError(f"mask_prob must lie in (0, 1), got {mask_prob}")
    ids = vocab[list(tokens)]
    candidates = [i for i, tok in enumerate(tokens) if tok not in _NOT_PREDICTED]
    if not candidates:
        return ids, [], []
    special_ids = {vocab[t] for t in (*_NOT_PREDICTED, UNK) if t in vocab}
    if len(vocab) <= len(special_ids):
        raise ValueError(f"vocab has no ordinary token to draw as a random replacement "
                         f"(it holds only {vocab.idx_to_token})")
    num_preds = max(1, round(mask_prob * len(candidates)))
    pred_positions = sorted(rng.sample(candidates, num_preds))
    labels = [ids[i] for i in pred_positions]
    input_ids = list(ids)
    for i in pred_positions:
        u = rng.random()
        if u < 0.8:
            input_ids[i] = vocab[MASK]
        elif u < 0.9:
            replacement = rng.randrange(len(vocab))
            while replacement in special_ids:  # a handful of ids: rejection is cheap
                replacement = rng.randrange(len(vocab))
            input_ids[i] = replacement
        # else: the token stays unchanged (but is still predicted)
    return input_ids, pred_positions, labels


class BERTBatch(NamedTuple):
    """Pretraining tensors, in d2l's order (B examples, T = max_len, P predictions)."""

    tokens: Tensor  # (B, T) long, corrupted input ids, <pad> after valid_lens
    segments: Tensor  # (B, T) long, 0 for <cls> a <sep>, 1 for b <sep>, 0 on padding
    valid_lens: Tensor  # (B,) long, number of real tokens (d2l: float32)
    pred_positions: Tensor  # (B, P) long, positions to predict, 0 on padding slots
    mlm_weights: Tensor  # (B, P) float32, 1 for a real prediction, 0 for a padding slot
    mlm_labels: Tensor  # (B, P) long, original ids at pred_positions, 0 on padding slots
    nsp_labels: Tensor  # (B,) long, IS_NEXT (0) or NOT_NEXT (1)


def _collate(rows: list[BERTBatch]) -> BERTBatch:
    return BERTBatch(*(torch.stack(column) for column in zip(*rows)))


def _collate_trimmed(rows: list[BERTBatch]) -> BERTBatch:
    """Stack the rows and cut the padding columns that no row of the batch needs: the
    tokens and segments end at the longest ``valid_len`` of the batch (positions past it
    are padding in every row, so the loss and every real position's output are unchanged)."""
    batch = _collate(rows)
    T = int(batch.valid_lens.max())
    return batch._replace(tokens=batch.tokens[:, :T], segments=batch.segments[:, :T])


class BERTPretrainingData(Dataset):
    """Masked-LM and next-sentence examples from a corpus of paragraphs, seeded.

    The examples are built once: sentence pairs (:func:`next_sentence_pairs`), then
    masking (:func:`mask_tokens`), then padding to ``max_len`` tokens and
    ``round(mask_prob · max_len)`` predictions. BERT itself re-masks nothing either: its
    generator writes each example's masks to disk once (``dupe_factor`` copies with
    different masks); use a new seed for a new set of masks.

    Args:
        paragraphs: a list of paragraphs, each a list of sentences, each a list of tokens.
        max_len: T, the length of every example (BERT: 128 for 90% of the pretraining
            steps, then 512, Appendix A.2; d2l: 64).
        vocab: the vocabulary (must contain ``<mask>``, ``<cls>``, ``<sep>``); by default
            :func:`bert_vocab` of the corpus with ``min_freq``.
        min_freq: for the default vocabulary: rarer tokens become ``<unk>``.
        mask_prob: fraction of the real tokens to predict (BERT: 0.15).
        seed: seeds the pairs, the masks and the loader's shuffling.

    Item ``i`` is a :class:`BERTBatch` of row tensors; ``self.tensors`` holds all rows,
    :meth:`dataloader` batches them.
    """

    def __init__(self, paragraphs: Sequence[Sequence[Sequence[str]]], max_len: int = 64, *,
                 vocab: Vocab | None = None, min_freq: int = 0, mask_prob: float = 0.15,
                 seed: int = 0):
        self.max_len, self.mask_prob, self.seed = max_len, mask_prob, seed
        _check_paragraphs(paragraphs)
        if vocab is None:
            vocab = bert_vocab([s for p in paragraphs for s in p], min_freq)
        for tok in BERT_RESERVED_TOKENS:
            if tok not in vocab:
                raise ValueError(f"vocab has no {tok!r} token; build it with bert_vocab(...)")
        self.vocab = vocab
        rng = random.Random(seed)
        pairs = next_sentence_pairs(paragraphs, max_len, rng)
        self.max_num_preds = max(1, round(mask_prob * max_len))  # P
        rows = [mask_tokens(tokens, vocab, rng, mask_prob) + (segments, label)
                for tokens, segments, label in pairs]
        self.tensors = self._pad(rows)

    def _pad(self, rows) -> BERTBatch:
        T, P, pad = self.max_len, self.max_num_preds, self.vocab.pad_id
        B = len(rows)
        tokens = torch.full((B, T), pad, dtype=torch.long)
        segments = torch.zeros(B, T, dtype=torch.long)
        valid_lens = torch.zeros(B, dtype=torch.long)
        pred_positions = torch.zeros(B, P, dtype=torch.long)
        mlm_weights = torch.zeros(B, P, dtype=torch.float32)
        mlm_labels = torch.zeros(B, P, dtype=torch.long)
        nsp_labels = torch.zeros(B, dtype=torch.long)
        for b, (ids, positions, labels, segs, label) in enumerate(rows):
            n, p = len(ids), len(positions)
            tokens[b, :n] = torch.tensor(ids)
            segments[b, :n] = torch.tensor(segs)
            valid_lens[b] = n
            pred_positions[b, :p] = torch.tensor(positions, dtype=torch.long)
            mlm_weights[b, :p] = 1.0
            mlm_labels[b, :p] = torch.tensor(labels, dtype=torch.long)
            nsp_labels[b] = label
        return BERTBatch(tokens, segments, valid_lens, pred_positions, mlm_weights, mlm_labels,
                         nsp_labels)

    def __len__(self) -> int:
        return self.tensors.tokens.shape[0]

    def __getitem__(self, row: int) -> BERTBatch:
        return BERTBatch(*(t[row] for t in self.tensors))

    def dataloader(self, batch_size: int = 32, shuffle: bool = True, trim: bool = True
                   ) -> DataLoader:
        """Batches of :class:`BERTBatch`, shuffled by a generator seeded with ``seed``.

        With ``trim`` (the default) a batch is only as long as its longest example: most
        pairs are much shorter than ``max_len``, and the padding columns would cost
        compute for nothing. ``trim=False`` gives ``(B, max_len)`` batches.
        """
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(self, batch_size=batch_size, shuffle=shuffle, generator=generator,
                          collate_fn=_collate_trimmed if trim else _collate)

    def __repr__(self) -> str:
        return (f"BERTPretrainingData({len(self)} examples, max_len={self.max_len}, "
                f"{self.max_num_preds} predictions each, vocab size {len(self.vocab)})")


# -- the pretraining loss --------------------------------------------------------------------

class BERTLoss(NamedTuple):
    loss: Tensor  # mlm + nsp, the quantity minimised (section 3.1, Appendix A.2)
    mlm: Tensor  # mean cross-entropy over the real predictions
    nsp: Tensor  # mean cross-entropy over the examples


def bert_pretraining_loss(mlm_Y_hat: Tensor, nsp_Y_hat: Tensor, mlm_weights: Tensor,
                          mlm_labels: Tensor, nsp_labels: Tensor) -> BERTLoss:
    """The pretraining loss: "the sum of the mean masked LM likelihood and the mean next
    sentence prediction likelihood" (Appendix A.2), as negative log-likelihoods.

    Args:
        mlm_Y_hat: ``(B, P, V)`` masked-LM logits.
        nsp_Y_hat: ``(B, 2)`` next-sentence logits.
        mlm_weights: ``(B, P)``, 1 for a real prediction, 0 for a padding slot; the
            masked-LM loss is the weighted mean (0 when every weight is 0, never NaN).
        mlm_labels: ``(B, P)`` integer ids to predict.
        nsp_labels: ``(B,)`` integer labels, :data:`IS_NEXT` (0) or :data:`NOT_NEXT` (1).

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
    for name, t in (("mlm_Y_hat", mlm_Y_hat), ("nsp_Y_hat", nsp_Y_hat), ("mlm_weights", mlm_weights)):
        check_floating(name, t)
    check_token_ids("mlm_labels", mlm_labels)
    check_token_ids("nsp_labels", nsp_labels)
    V = mlm_Y_hat.shape[-1]
    for name, t, upper in (("mlm_labels", mlm_labels, V), ("nsp_labels", nsp_labels, 2)):
        bounds = value_range(t)
        if bounds is not None and (bounds[0] < 0 or bounds[1] >= upper):
            raise ValueError(f"{name} must lie in [0, {upper}), got values from {bounds[0]} to "
                             f"{bounds[1]}")
    if value_checks_enabled(mlm_weights) and mlm_weights.numel() and bool((mlm_weights < 0).any()):
        raise ValueError(f"mlm_weights must be >= 0 (1 for a prediction, 0 for padding), got a "
                         f"minimum of {mlm_weights.min().item()} in shape {shape_str(mlm_weights)}")
    per_token = F.cross_entropy(mlm_Y_hat.reshape(-1, V).float(), mlm_labels.reshape(-1),
                                reduction="none")  # (B*P,)
    weights = mlm_weights.reshape(-1).to(per_token.dtype)  # (B*P,)
    mlm = (per_token * weights).sum() / weights.sum().clamp_min(torch.finfo(weights.dtype).eps)
    nsp = F.cross_entropy(nsp_Y_hat.float(), nsp_labels)
    return BERTLoss(mlm + nsp, mlm, nsp)


def bert_batch_loss(model: BERTModel, batch: BERTBatch) -> Tensor:
    """``loss_fn(model, batch)`` for :class:`~qkvcourse.Trainer`: the total pretraining loss."""
    tokens, segments, valid_lens, pred_positions, mlm_weights, mlm_labels, nsp_labels = batch
    _, mlm_Y_hat, nsp_Y_hat = model(tokens, segments, valid_lens, pred_positions)
    return bert_pretraining_loss(mlm_Y_hat, nsp_Y_hat, mlm_weights, mlm_labels,
                                 nsp_labels).loss
