"""GPT: decoder-only pretraining (chapter 9).

Radford et al. (2018), "Improving Language Understanding by Generative Pre-Training"
(GPT), with the layer layout of Radford et al. (2019), "Language Models are
Unsupervised Multitask Learners" (GPT-2), so that real GPT-2 weights load unchanged.

Shape legend: B batch, T number of (new) tokens, P number of cached positions (tokens
already processed), N = d_model, F = ffn_num_hiddens, H heads, D = N / H per-head size,
V vocabulary size, L number of layers.

The model is the Transformer decoder of chapter 7 without cross-attention (there is no
encoder): token embeddings plus learned position embeddings (GPT, section 3.1), a
stack of blocks (:class:`GPTBlock`) and a linear map to the vocabulary. GPT-2 changed
three things, all kept here (GPT-2, section 2.3):

- *pre-norm*: LayerNorm moved to the input of each sub-layer,
  ``X + Sublayer(LayerNorm(X))`` (:class:`~qkvcourse.transformer.Residual` with
  ``norm_first=True``);
- a final LayerNorm after the last block;
- residual projections initialised with std ``0.02 / sqrt(2 L)``, since L blocks add
  2 L sub-layer outputs to the residual stream.

Both use the GELU nonlinearity (tanh approximation) in the FFN, and both tie the output
layer to the token embedding (the "weight tying" of Press & Wolf, 2017): the logits
are ``h W_eᵀ`` (GPT, eq. (2)), so the model has one ``(V, N)`` matrix, not two.

Training objective (GPT, eq. (1)): maximise ``Σ_i log P(u_i | u_{i-k}, ..., u_{i-1})``,
i.e. the cross-entropy of every next token, computed in one pass thanks to the causal
mask. Generation: :meth:`GPT.generate` with greedy decoding or sampling (temperature,
:func:`top_k_filter`, :func:`top_p_filter`), with the KV cache of
:class:`~qkvcourse.transformer.CausalSelfAttention`.

Loading GPT-2 weights from Hugging Face: :meth:`GPT.from_huggingface` (a
``transformers`` model, a state dict and its config, or a hub name such as ``"gpt2"``,
which needs the network), from :mod:`qkvcourse.huggingface`, where ``transformers`` is
imported when a hub name is given. The training loss, :func:`~qkvcourse.losses.lm_loss`, is
in :mod:`qkvcourse.losses`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ._aliases import field_aliases
from ._validate import (check_dim_match, check_dropout, check_flag, check_floating,
                        check_kv_cache, check_max_len, check_size, check_sizes, check_tensor,
                        check_tokens, shape_str)
from .decoding import _EvalMode
# (qkvcourse.gpt.lm_loss is also the path that the grader's rules and exercise sheets name)
from .losses import lm_loss
from .multihead import is_linear
from .positional import LearnedPositionalEncoding
from .transformer import (CausalSelfAttention, KVCache, PositionWiseFFN, Residual,
                          StackNeedWeights, check_activation, check_eps, check_heads_divide)

GPTCache = list[KVCache]  # one (K, V) pair per block, each (B, H, P, D)
# Below this temperature generate shifts each row's logits by their maximum before dividing,
# so that the division cannot overflow to inf (1e-45 would): the same softmax, other last bits
TINY_TEMPERATURE = 1e-6



# -- configuration ---------------------------------------------------------------------------

@field_aliases(num_hiddens="d_model", num_blks="num_layers", use_bias="bias")
@dataclass
class GPTConfig:
    """Sizes of a GPT; the defaults are the course's small model, which trains on a CPU.

    :meth:`gpt2_small` gives the smallest GPT-2 of Radford et al. (2019), Table 2 (reported
    there as 117M parameters; 124,439,808 counted exactly), the size of the original GPT.
    The fields are named as in :class:`~qkvcourse.TransformerConfig` and
    :class:`~qkvcourse.BERTConfig`; d2l's ``num_hiddens``, ``num_blks`` and ``use_bias`` are
    accepted for ``d_model``, ``num_layers`` and ``bias``.
    """

    vocab_size: int  # V: 50257 BPE tokens for GPT-2; a few dozen characters in the course
    max_len: int = 128  # the context ("block size"): the number of learned positions
    num_layers: int = 4  # L blocks (GPT and GPT-2 small: 12)
    num_heads: int = 4  # H (GPT-2 small: 12), so D = d_model / num_heads = 32
    d_model: int = 128  # N, the width of the residual stream, d2l's num_hiddens (GPT-2: 768)
    ffn_num_hiddens: int | None = None  # F, the FFN's hidden width; None: 4 * d_model
    dropout: float = 0.1  # embedding, attention and residual dropout (GPT and GPT-2: 0.1)
    bias: bool = True  # biases in the attention projections (the FFN and LayerNorms always
    #                    have theirs), as in GPT-2
    layer_norm_eps: float = 1e-5  # the LayerNorms' epsilon (GPT-2: 1e-5)
    activation: str = "gelu_tanh"  # the FFN's nonlinearity: GELU, tanh approximation (GPT-2)

    def __post_init__(self):
        check_sizes(vocab_size=self.vocab_size, max_len=self.max_len,
                    num_layers=self.num_layers, num_heads=self.num_heads, d_model=self.d_model)
        check_heads_divide(self.d_model, self.num_heads)
        if self.ffn_num_hiddens is None:
            self.ffn_num_hiddens = 4 * self.d_model  # GPT, section 4.1: 3072 = 4 * 768
        check_size("ffn_num_hiddens", self.ffn_num_hiddens)
        check_dropout("dropout", self.dropout)
        check_flag("bias", self.bias)
        check_eps("layer_norm_eps", self.layer_norm_eps)
        check_activation(self.activation)

    @classmethod
    def tiny(cls, vocab_size: int) -> "GPTConfig":
        """The course's default: 4 layers, 4 heads, width 128, context 128 (about 0.8M
        parameters besides the embeddings), trainable on a laptop CPU in minutes."""
        return cls(vocab_size)

    @classmethod
    def gpt2_small(cls) -> "GPTConfig":
        """GPT-2 small (124M): V = 50257, 1024 positions, 12 layers, 12 heads, width 768."""
        return cls(vocab_size=50257, max_len=1024, num_layers=12, num_heads=12, d_model=768,
                   ffn_num_hiddens=3072, dropout=0.1, bias=True, layer_norm_eps=1e-5,
                   activation="gelu_tanh")


# -- sampling filters --------------------------------------------------------------------------

def _check_logits(logits) -> None:
    check_tensor("logits", logits)
    check_floating("logits", logits)
    if logits.dim() < 1 or logits.shape[-1] == 0:
        raise ValueError(f"logits must be (..., V) with V >= 1, got shape {shape_str(logits)}")


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Keep the k largest logits of every row and set the others to -inf.

    Top-k sampling (Fan et al., 2018) then samples among the k most probable tokens
    only, with their probabilities renormalised. Tokens tied with the k-th largest logit
    are all kept, so a row may keep more than k tokens; ``k >= V`` keeps everything.

    Args:
        logits: ``(..., V)`` unnormalised scores.
        k: a positive integer.

    Returns:
        ``(..., V)``, a new tensor.
    """
    _check_logits(logits)
    check_size("top_k", k)
    return _top_k(logits, k)


def _top_k(logits: Tensor, k: int) -> Tensor:
    if k >= logits.shape[-1]:
        return logits.clone()
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (..., 1): the k-th largest
    return logits.masked_fill(logits < kth, float("-inf"))  # (..., V)


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """Nucleus filtering (Holtzman et al., 2020): keep the smallest set of most probable
    tokens whose total probability is at least p; set the others' logits to -inf.

    The tokens are sorted by probability; a token is kept when the mass of the tokens
    before it is still below p. The most probable token is therefore always kept, and
    ``p = 1`` keeps every token (of non-zero probability).

    Args:
        logits: ``(..., V)`` unnormalised scores (already divided by the temperature, if
            any: the nucleus is a set of the distribution that is sampled).
        p: the nucleus mass, in ``(0, 1]``.

    Returns:
        ``(..., V)``, a new tensor.
    """
    _check_logits(logits)
    _check_top_p(p)
    return _top_p(logits, p)


def _check_top_p(p) -> None:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 < p <= 1.0:
        raise ValueError(f"top_p must lie in (0, 1], got {p!r}")


def _top_p(logits: Tensor, p: float) -> Tensor:
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (..., V) each
    # (..., V) probabilities, in float32 at least (logits may be bf16 under autocast)
    probs = F.softmax(sorted_logits, dim=-1, dtype=torch.promote_types(logits.dtype, torch.float32))
    mass_before = torch.cumsum(probs, dim=-1) - probs  # (..., V): mass of the better tokens
    drop_sorted = mass_before >= p  # (..., V); the first token has mass_before 0 < p: kept
    drop = drop_sorted.scatter(-1, order, drop_sorted)  # (..., V), back to the vocabulary order
    return logits.masked_fill(drop, float("-inf"))  # (..., V)


# -- the model ---------------------------------------------------------------------------------

class GPTBlock(nn.Module):
    """One GPT-2 block: pre-norm causal self-attention, then a pre-norm FFN.

    ``X = X + Dropout(Attention(LN_1(X)))``, ``X = X + Dropout(FFN(LN_2(X)))``, built
    from the pieces of chapter 7 (:class:`~qkvcourse.transformer.CausalSelfAttention` with
    its KV cache, :class:`~qkvcourse.transformer.PositionWiseFFN` with GELU,
    :class:`~qkvcourse.transformer.Residual` in pre-norm). Dropout sits on the attention
    weights and on each sub-layer's output (GPT-2's ``attn_pdrop`` and ``resid_pdrop``),
    not inside the FFN.

    ``forward(X (B, T, N), cache=None)`` returns ``(out (B, T, N), new_cache)``, the cache
    being ``(K, V)``, each ``(B, H, P + T, D)``. With ``last_only=True`` only the last
    position queries the attention and goes through the FFN, and ``out`` is ``(B, 1, N)``:
    the keys and values of every position are still computed (and cached), so the last
    position's output is unchanged.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
        c = config
        self.d_model = c.d_model
        self.addnorm1 = Residual(c.d_model, c.dropout, norm_first=True, eps=c.layer_norm_eps)
        self.attention = CausalSelfAttention(c.d_model, c.num_heads, c.dropout, c.bias)
        self.addnorm2 = Residual(c.d_model, c.dropout, norm_first=True, eps=c.layer_norm_eps)
        self.ffn = PositionWiseFFN(c.d_model, c.ffn_num_hiddens, 0.0, activation=c.activation)

    def forward(self, X: Tensor, cache: KVCache | None = None, *,
                last_only: bool = False) -> tuple[Tensor, KVCache]:
        # X + Dropout(Attention(LN_1(X))); with last_only, for the last position only
        X, cache = self.addnorm1(X, self.attention, cache, last_only)  # (B, T | 1, N)
        return self.addnorm2(X, self.ffn), cache  # X + Dropout(FFN(LN_2(X))): (B, T | 1, N)


class GPT(nn.Module):
    """A decoder-only Transformer language model, GPT (Radford et al., 2018) with GPT-2's
    layout (pre-norm, final LayerNorm, tied output layer).

    ``h_0 = U W_e + W_p`` (GPT, eq. (2)): token embeddings plus one learned vector per
    position; ``h_l = block(h_{l-1})``; ``P(u) = softmax(LN(h_L) W_eᵀ)``.

    Args:
        config: a :class:`GPTConfig`.

    Calling conventions:

    - ``model(idx)``: ``idx (B, T)`` integer token ids -> logits ``(B, T, V)``, where row t
      predicts token t + 1;
    - ``model(idx, targets)``: ``targets (B, T)`` the next tokens (ids, or ``-100`` for
      positions that do not count) -> ``(logits, loss)``, the mean cross-entropy (GPT,
      eq. (1));
    - :meth:`forward_with_cache` for incremental decoding with a KV cache;
    - :meth:`features` for the final hidden states ``(B, T, N)`` (fine-tuning heads);
    - :meth:`generate` to continue prompts.

    Attention runs on the fused kernel; set ``need_weights = True`` to run the explicit
    path and keep ``attention_weights``, one ``(B, H, T, P + T)`` tensor per block.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
        self.config = c = config
        self.token_embedding = nn.Embedding(c.vocab_size, c.d_model)  # W_e (V, N)
        self.pos_embedding = LearnedPositionalEncoding(c.d_model, c.dropout, c.max_len)  # W_p
        self.blks = nn.ModuleList(GPTBlock(c) for _ in range(c.num_layers))
        self.norm = nn.LayerNorm(c.d_model, eps=c.layer_norm_eps)  # GPT-2's final LayerNorm
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self.lm_head.weight = self.token_embedding.weight  # weight tying: logits = h W_eᵀ
        self.attention_weights: list[Tensor | None] = [None] * c.num_layers
        self._init_weights()

    # -- initialisation and sizes --------------------------------------------------------------

    def _init_weights(self) -> None:
        """GPT, section 4.1: N(0, 0.02) weights, zero biases; GPT-2, section 2.3: the
        projections that write into the residual stream scaled by 1 / sqrt(2 L)."""
        with torch.no_grad():
            for module in self.modules():
                if is_linear(module) or isinstance(module, nn.Embedding):
                    module.weight.normal_(0.0, 0.02)
                if is_linear(module) and module.bias is not None:
                    module.bias.zero_()
            self.pos_embedding.P.normal_(0.0, 0.02)
            residual_std = 0.02 / math.sqrt(2 * self.config.num_layers)
            for blk in self.blks:
                blk.attention.mha.W_o.weight.normal_(0.0, residual_std)
                blk.ffn.dense2.weight.normal_(0.0, residual_std)

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        """The number of parameters, the tied embedding / output matrix counted once.

        With ``exclude_embeddings=True``, without the token and position embeddings (the
        "non-embedding" count of Kaplan et al., 2020, and of Hugging Face's
        ``num_parameters(exclude_embeddings=True)``).
        """
        total = sum(p.numel() for p in self.parameters())  # parameters() yields a tied one once
        if exclude_embeddings:
            total -= self.token_embedding.weight.numel() + self.pos_embedding.P.numel()
        return total

    # -- attention weights ---------------------------------------------------------------------

    need_weights = StackNeedWeights()

    # -- forward passes ------------------------------------------------------------------------

    def _check_past(self, past, idx: Tensor) -> int:
        """Validate a cache from :meth:`forward_with_cache`; return P, its length."""
        if past is None:
            return 0
        L = self.config.num_layers
        if not isinstance(past, (list, tuple)) or len(past) != L:
            got = f"{type(past).__name__} of length {len(past)}" \
                if isinstance(past, (list, tuple)) else type(past).__name__
            raise TypeError(f"past must be the list of {L} (keys, values) pairs returned by "
                            f"forward_with_cache (one per block), got {got}")
        lengths = set()
        H = self.config.num_heads
        for layer, pair in enumerate(past):
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2
                    and all(isinstance(t, Tensor) and t.dim() == 4 for t in pair)):
                raise TypeError(f"past[{layer}] must be a pair (keys, values) of (B, H, P, D) "
                                f"tensors, got {type(pair).__name__}")
            check_dim_match("idx", idx, 0, f"past[{layer}] keys", pair[0], 0, "batch sizes")
            lengths.add(check_kv_cache(f"past[{layer}]", pair, idx.shape[0], H,
                                     self.config.d_model // H))
        if len(lengths) != 1:
            raise ValueError(f"every block's cache must hold the same number of positions, "
                             f"got lengths {sorted(lengths)}")
        return lengths.pop()

    def _run(self, idx: Tensor, past=None, last_only: bool = False) -> tuple[Tensor, GPTCache]:
        """``idx (B, T)`` at positions P..P+T-1 -> (final hidden states (B, T, N), cache);
        ``(B, 1, N)``, the last position's, with ``last_only``."""
        check_tokens("idx", idx, self.config.vocab_size)
        P = self._check_past(past, idx)
        check_max_len("idx", idx, P, self.config.max_len)
        return self._stack(idx, P, past, last_only)

    def _stack(self, idx: Tensor, P: int, past, last_only: bool = False
               ) -> tuple[Tensor, GPTCache]:
        """:meth:`_run` without its checks (``generate`` checks the prompt once)."""
        # The new tokens sit at positions P..P+T-1, so they take those position vectors
        X = self.pos_embedding.add(self.token_embedding(idx), offset=P)  # (B, T, N)
        present = []
        last = len(self.blks) - 1
        for layer, blk in enumerate(self.blks):
            X, cache = blk(X, None if past is None else past[layer],
                           last_only=last_only and layer == last)  # (B, T, N)
            present.append(cache)
        self.attention_weights = [blk.attention.attention_weights for blk in self.blks]
        return self.norm(X), present  # (B, T, N)

    def features(self, idx: Tensor) -> Tensor:
        """``idx (B, T)`` -> the last block's outputs after the final LayerNorm, ``(B, T, N)``.

        GPT's fine-tuning (sections 3.2 and 3.3) feeds the state of the last ("extract")
        token to a new linear layer: ``model.features(idx)[:, -1]``.
        """
        return self._run(idx)[0]

    def next_token_logits(self, idx: Tensor) -> Tensor:
        """``idx (B, T)`` -> ``(B, V)``, the logits of the token that follows each row.

        The same numbers as ``model(idx)[:, -1]`` up to rounding, with less work: the last
        block needs the keys and values of every position but its FFN, the final LayerNorm
        and the output layer run on the last position only. Use it under
        ``torch.no_grad()`` (or ``torch.inference_mode()``) to predict or score continuations.
        """
        return self.lm_head(self._run(idx, last_only=True)[0][:, -1])  # (B, V)

    def forward(self, idx: Tensor, targets: Tensor | None = None):
        """Next-token logits for every position, and the loss when targets are given.

        Args:
            idx: ``(B, T)`` integer token ids, ``T <= max_len``.
            targets: ``(B, T)`` the token that follows each position (``idx`` shifted by
                one), or ``-100`` where the position does not count; or None.

        Returns:
            ``logits (B, T, V)``, or ``(logits, loss)`` with ``loss`` the mean cross-entropy
            over the counted positions (0 if none counts), computed in float32.
        """
        logits = self.lm_head(self._run(idx)[0])  # (B, T, V)
        if targets is None:
            return logits
        return logits, lm_loss(logits, targets)

    def forward_with_cache(self, idx: Tensor, past: GPTCache | None = None
                           ) -> tuple[Tensor, GPTCache]:
        """Incremental forward pass: feed only the new tokens, reuse the cached keys/values.

        Args:
            idx: ``(B, T)`` the new token ids, at positions P..P+T-1 (``P + T <= max_len``).
            past: the cache returned by the previous call, or None for a fresh sequence
                (P = 0).

        Returns:
            ``(logits (B, T, V), present)``, ``present`` covering all P + T positions: a
            list with one ``(K, V)`` pair per block, each ``(B, H, P + T, D)``. The logits
            equal those of ``model(full sequence)`` at the new positions.
        """
        X, present = self._run(idx, past)
        return self.lm_head(X), present  # (B, T, V)

    # -- generation ----------------------------------------------------------------------------

    @torch.no_grad()
    def generate(self, idx: Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, *,
                 do_sample: bool = True, use_cache: bool = True,
                 generator: torch.Generator | None = None, eos_id: int | None = None) -> Tensor:
        """Continue the prompts ``idx`` one token at a time.

        Each step takes the logits of the last position, divides them by ``temperature``,
        keeps the ``top_k`` best and the ``top_p`` nucleus (in that order) and samples from
        the softmax; ``temperature=0`` or ``do_sample=False`` picks the arg max instead
        (greedy decoding, ties going to the lowest id). Runs in eval mode (the modules'
        modes are restored afterwards) and without gradients.

        With ``use_cache`` the prompt is processed once and every later step feeds one token
        with the KV cache; without it every step re-reads the whole sequence. Both give the
        same tokens. When the sequence outgrows ``max_len``, the model sees its last
        ``max_len`` tokens only (positions restart at 0, so the cache is rebuilt each step).

        Args:
            idx: ``(B, T)`` prompt token ids (``T >= 1``).
            max_new_tokens: the number of tokens to append (fewer if every row ends).
            temperature: > 0 to sample (< 1 sharpens, > 1 flattens), 0 for greedy.
            top_k: sample among the k most probable tokens only (:func:`top_k_filter`).
            top_p: sample within the nucleus of mass p (:func:`top_p_filter`).
            do_sample: False for greedy decoding whatever the temperature.
            use_cache: use the KV cache.
            generator: a ``torch.Generator`` on the model's device, for reproducible samples.
            eos_id: a row that produces this token is finished: it gets ``eos_id`` from then
                on, and generation stops when every row is finished.

        Returns:
            ``(B, T + n)`` the prompts followed by the n generated tokens.
        """
        check_tokens("idx", idx, self.config.vocab_size)
        check_size("max_new_tokens", max_new_tokens, minimum=0)
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
                or not (temperature >= 0 and math.isfinite(temperature)):
            raise ValueError(f"temperature must be a finite number >= 0 (0: greedy), "
                             f"got {temperature!r}")
        check_flag("do_sample", do_sample)
        check_flag("use_cache", use_cache)
        if top_k is not None:
            check_size("top_k", top_k)
        if top_p is not None:
            _check_top_p(top_p)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, "
                            f"got {type(generator).__name__}")
        if eos_id is not None and (isinstance(eos_id, bool) or not isinstance(eos_id, int)
                                   or not 0 <= eos_id < self.config.vocab_size):
            raise ValueError(f"eos_id must be None or a token id in [0, "
                             f"{self.config.vocab_size}), got {eos_id!r}")
        greedy = not do_sample or temperature == 0
        max_len = self.config.max_len
        out = idx
        finished = torch.zeros(idx.shape[0], dtype=torch.bool, device=idx.device)  # (B,)
        with _EvalMode(self):
            past = None
            for _ in range(max_new_tokens):
                # The prompt was checked above and every new token is a valid id: run bare.
                # Only the last position's logits are used: the last block runs on it alone
                # (last_only), and still caches the keys and values of every position.
                cached = 0 if past is None else past[0][0].shape[2]
                if use_cache and past is not None and cached < max_len:
                    X, past = self._stack(out[:, -1:], cached, past)  # (B, 1, N): the new token
                else:
                    X, past = self._stack(out[:, -max_len:], 0, None, last_only=True)  # (B, 1, N)
                logits = self.lm_head(X[:, -1]).float()  # (B, V)
                if greedy:
                    next_id = logits.argmax(dim=-1)  # (B,)
                else:
                    if temperature < TINY_TEMPERATURE:  # the largest becomes 0: no overflow
                        logits = logits - logits.amax(dim=-1, keepdim=True)
                    logits = logits / temperature
                    if top_k is not None:
                        logits = _top_k(logits, top_k)
                    if top_p is not None:
                        logits = _top_p(logits, top_p)
                    probs = F.softmax(logits, dim=-1)  # (B, V)
                    next_id = torch.multinomial(probs, 1, generator=generator)[:, 0]  # (B,)
                if eos_id is not None:
                    next_id = next_id.masked_fill(finished, eos_id)
                    finished = finished | (next_id == eos_id)
                out = torch.cat((out, next_id[:, None].to(out.dtype)), dim=1)  # (B, T' + 1)
                if eos_id is not None and bool(finished.all()):
                    break
        return out

    # -- loading GPT-2 weights -----------------------------------------------------------------

    @classmethod
    def from_huggingface(cls, source: Any, config: Any = None, *, dtype: torch.dtype | None = None,
                         cache_dir: str | None = None) -> "GPT":
        """Build a :class:`GPT` holding Hugging Face GPT-2 weights; see
        :func:`~qkvcourse.huggingface.gpt_from_huggingface`."""
        from .huggingface import gpt_from_huggingface  # imported here: it imports this module

        return gpt_from_huggingface(source, config, dtype=dtype, cache_dir=cache_dir)
