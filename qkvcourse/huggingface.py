"""Pretrained weights from Hugging Face ``transformers``: GPT-2 and BERT (chapters 9, 10).

Two loaders, one behaviour:

- :func:`gpt_from_huggingface` (also :meth:`qkvcourse.GPT.from_huggingface`) copies a GPT-2
  into a :class:`~qkvcourse.GPT`, whose logits then equal ``GPT2LMHeadModel``'s;
- :func:`bert_from_huggingface` copies a BERT into a :class:`~qkvcourse.BERTModel`, whose
  encoder, pooler and both pretraining heads then equal ``BertForPreTraining``'s.

Each takes a ``transformers`` model, its state dict with its config (a config object or its
``to_dict()``; no ``transformers`` needed), or a Hub name such as ``"gpt2"`` or
``"bert-base-uncased"``. :func:`gpt_config_from_huggingface` and
:func:`bert_config_from_huggingface` translate the configs, and raise ``ValueError`` for an
option our models do not implement.

``transformers`` is imported only when a Hub name is given, and only inside the loader.
A name is looked up in the local Hugging Face cache first. When the weights are not there
and the Hub cannot be used, because ``HF_HUB_OFFLINE`` is set or ``huggingface.co`` does not
answer within a few seconds, the loader fails at once (``transformers`` alone would retry
for about half a minute) with :class:`HubDownloadError`. That error is a
:class:`~qkvcourse.data.DownloadError`, the package's error for anything that could not be
downloaded, and also an ``OSError``, which is what ``transformers`` raises; its message names
the model and says that the network is missing.
"""
from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ._validate import shape_str
from .bert import BERTConfig, BERTModel, make_bert
from .data.download import DownloadError
from .gpt import GPT, GPTConfig

__all__ = [
    "HUB_HOST", "HubDownloadError", "bert_config_from_huggingface", "bert_from_huggingface",
    "from_pretrained", "gpt_config_from_huggingface", "gpt_from_huggingface", "hub_reachable",
]

HUB_HOST = "huggingface.co"

# Hugging Face's names for a nonlinearity -> ours (transformer.ACTIVATIONS). "gelu_new" and
# "gelu_pytorch_tanh" are GELU's tanh approximation (GPT-2); BERT's "gelu" is the exact one.
HF_ACTIVATIONS = {"gelu": "gelu", "relu": "relu", "gelu_new": "gelu_tanh",
                  "gelu_pytorch_tanh": "gelu_tanh"}


# -- the Hub ---------------------------------------------------------------------------------

class HubDownloadError(DownloadError, OSError):
    """Pretrained weights could not be fetched from the Hugging Face Hub (no network,
    ``HF_HUB_OFFLINE`` set, unknown name, interrupted download)."""


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the Hub opens within ``timeout`` seconds."""
    try:
        with socket.create_connection((HUB_HOST, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _hub_error(name: str, cause: str) -> HubDownloadError:
    return HubDownloadError(
        f"Could not load {name!r} from the Hugging Face Hub: {cause}. Downloading pretrained "
        f"weights needs the network (and HF_HUB_OFFLINE unset), unless they are already in "
        f"the Hugging Face cache: run this once on a machine with network access (e.g. Colab) "
        f"to download them. Without them, the chapter continues with the locally trained model.")


def from_pretrained(model_class: Any, name: str, **kwargs) -> Any:
    """``model_class.from_pretrained(name)``: from the local cache if there, else downloaded.

    Raises :class:`HubDownloadError` at once when the weights are not cached and
    ``HF_HUB_OFFLINE`` is set or the Hub cannot be reached, and when the download fails.
    """
    try:
        return model_class.from_pretrained(name, local_files_only=True, **kwargs)
    except OSError:
        pass  # not in the cache
    if _hub_offline():
        raise _hub_error(name, "HF_HUB_OFFLINE is set and the weights are not in the local cache")
    if not hub_reachable():
        raise _hub_error(name, f"cannot reach {HUB_HOST} (no network?) and the weights are not "
                               f"in the local cache")
    try:
        return model_class.from_pretrained(name, **kwargs)
    except OSError as err:  # unknown name, interrupted download, HTTP error
        raise _hub_error(name, f"{type(err).__name__}: {err}") from err


def _load_by_name(class_name: str, loader: str, name: str, **kwargs) -> nn.Module:
    """``transformers.<class_name>`` with the weights of Hub name ``name``."""
    try:
        import transformers
    except ImportError as err:
        raise ImportError(f"{loader}({name!r}) loads weights by name with Hugging Face "
                          f"transformers, which qkvcourse does not install: "
                          f"pip install transformers") from err
    return from_pretrained(getattr(transformers, class_name), name, **kwargs)


# -- what both loaders share -----------------------------------------------------------------

def _config_value(config: Any, key: str, default: Any = None) -> Any:
    """``config.key``, for a ``transformers`` config object or its ``to_dict()``."""
    if isinstance(config, Mapping):
        return config.get(key, default)
    return getattr(config, key, default)


def _activation(config: Any, key: str, default: str) -> str:
    """Our name of the nonlinearity that ``config.key`` names."""
    name = _config_value(config, key, default)
    if name not in HF_ACTIVATIONS:
        raise ValueError(f"{key}={name!r} is not supported; expected one of "
                         f"{sorted(HF_ACTIVATIONS)}")
    return HF_ACTIVATIONS[name]


def _state_and_config(source: Any, config: Any, family: str, loader: str
                      ) -> tuple[Mapping[str, Tensor], Any]:
    """The state dict and the config of a model or of a state dict given with its config."""
    if isinstance(source, nn.Module):
        config = getattr(source, "config", None) if config is None else config
        if config is None:
            raise TypeError(f"source must be a transformers {family} model with a .config (or "
                            f"pass config=), got {type(source).__name__}")
        return source.state_dict(), config
    if isinstance(source, Mapping):
        if config is None:
            raise TypeError(f"config is required when source is a state dict: "
                            f"{loader}(state_dict, config=...) with the checkpoint's "
                            f"{family} config (or its to_dict())")
        return source, config
    raise TypeError(f"source must be a transformers {family} model, a state dict or a Hub "
                    f"name, got {type(source).__name__}")


def _check_shapes(model: nn.Module, weights: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The model's state dict; raises ``ValueError`` naming a parameter whose converted
    weight does not have the shape of the model built from the config."""
    target = model.state_dict()
    for name, value in weights.items():
        if name in target and tuple(value.shape) != tuple(target[name].shape):
            raise ValueError(f"{name} has shape {shape_str(target[name])} in the model built "
                             f"from the config, but the weights have shape {shape_str(value)}")
    return target


# -- GPT-2 -----------------------------------------------------------------------------------

def gpt_config_from_huggingface(hf_config: Any) -> GPTConfig:
    """A :class:`~qkvcourse.GPTConfig` from a ``transformers.GPT2Config`` (or its ``to_dict()``).

    The three dropouts of GPT-2 (``embd_pdrop``, ``attn_pdrop``, ``resid_pdrop``) become
    one, ``resid_pdrop`` (they are all 0.1 in the released models). Options that change
    the computation in ways :class:`~qkvcourse.GPT` does not implement raise ``ValueError``.
    """
    activation = _activation(hf_config, "activation_function", "gelu_new")
    supported = {"scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
                 "add_cross_attention": False, "tie_word_embeddings": True}
    for key, ours in supported.items():
        value = _config_value(hf_config, key, ours)
        if bool(value) != ours:
            raise ValueError(f"{key}={value!r} is not supported (GPT implements {key}={ours})")
    d_model = _config_value(hf_config, "n_embd")
    if d_model is None:
        raise TypeError(f"config must be a GPT2Config or its dict (with n_embd, n_layer, "
                        f"n_head, n_positions, vocab_size), got {type(hf_config).__name__}")
    return GPTConfig(vocab_size=_config_value(hf_config, "vocab_size"),
                     max_len=_config_value(hf_config, "n_positions"),
                     num_layers=_config_value(hf_config, "n_layer"),
                     num_heads=_config_value(hf_config, "n_head"),
                     d_model=d_model,
                     ffn_num_hiddens=_config_value(hf_config, "n_inner"),
                     dropout=float(_config_value(hf_config, "resid_pdrop", 0.1)),
                     bias=True,
                     layer_norm_eps=float(_config_value(hf_config, "layer_norm_epsilon", 1e-5)),
                     activation=activation)


def _convert_gpt2_state_dict(hf_state: Mapping[str, Tensor], config: GPTConfig
                             ) -> dict[str, Tensor]:
    """Rename (and reshape) a GPT-2 state dict into :class:`~qkvcourse.GPT`'s.

    GPT-2 stores its linear layers as ``Conv1D``, ``y = x W + b`` with ``W`` of shape
    ``(in, out)``, the transpose of ``nn.Linear``'s ``(out, in)``; and its attention
    projects queries, keys and values with one packed ``c_attn`` of ``3N`` outputs,
    which is split into ``W_q``, ``W_k``, ``W_v`` (in that order).
    """
    state = {(k[len("transformer."):] if k.startswith("transformer.") else k): v
             for k, v in hf_state.items()}
    head = state.pop("lm_head.weight", None)
    N, L = config.d_model, config.num_layers
    out: dict[str, Tensor] = {}
    used: set[str] = set()

    def take(key: str) -> Tensor:
        if key not in state:
            raise KeyError(f"the GPT-2 state dict has no {key!r} (expected {L} layers "
                           f"h.0 ... h.{L - 1}, wte, wpe, ln_f)")
        used.add(key)
        return state[key]

    out["token_embedding.weight"] = take("wte.weight")  # (V, N)
    out["pos_embedding.P"] = take("wpe.weight")[None]  # (1, max_len, N)
    for i in range(L):
        h, ours = f"h.{i}.", f"blks.{i}."
        for hf_ln, our_ln in (("ln_1", "addnorm1.ln"), ("ln_2", "addnorm2.ln")):
            out[ours + our_ln + ".weight"] = take(h + hf_ln + ".weight")
            out[ours + our_ln + ".bias"] = take(h + hf_ln + ".bias")
        W = take(h + "attn.c_attn.weight").t()  # (3N, N) after the Conv1D transpose
        b = take(h + "attn.c_attn.bias")  # (3N,)
        for j, name in enumerate(("W_q", "W_k", "W_v")):
            out[ours + f"attention.mha.{name}.weight"] = W[j * N:(j + 1) * N]  # (N, N)
            out[ours + f"attention.mha.{name}.bias"] = b[j * N:(j + 1) * N]  # (N,)
        out[ours + "attention.mha.W_o.weight"] = take(h + "attn.c_proj.weight").t()  # (N, N)
        out[ours + "attention.mha.W_o.bias"] = take(h + "attn.c_proj.bias")
        out[ours + "ffn.dense1.weight"] = take(h + "mlp.c_fc.weight").t()  # (F, N)
        out[ours + "ffn.dense1.bias"] = take(h + "mlp.c_fc.bias")
        out[ours + "ffn.dense2.weight"] = take(h + "mlp.c_proj.weight").t()  # (N, F)
        out[ours + "ffn.dense2.bias"] = take(h + "mlp.c_proj.bias")
    out["norm.weight"], out["norm.bias"] = take("ln_f.weight"), take("ln_f.bias")
    # Older checkpoints also store the causal mask as buffers h.i.attn.bias / masked_bias
    buffers = {f"h.{i}.attn.{name}" for i in range(L) for name in ("bias", "masked_bias")}
    unknown = sorted(set(state) - used - buffers)
    if unknown:
        raise ValueError(f"unexpected entries in the GPT-2 state dict (is it a GPT-2 with "
                         f"{L} layers?): {unknown[:5]}{' ...' if len(unknown) > 5 else ''}")
    if head is not None and not (head.shape == out["token_embedding.weight"].shape
                                 and torch.equal(head, out["token_embedding.weight"])):
        raise ValueError("lm_head.weight differs from the token embedding wte.weight; GPT "
                         "ties the two (as GPT-2 does), so an untied head cannot be loaded")
    out["lm_head.weight"] = out["token_embedding.weight"]
    return out


def gpt_from_huggingface(source: Any, config: Any = None, *, dtype: torch.dtype | None = None,
                         cache_dir: str | None = None) -> GPT:
    """A :class:`~qkvcourse.GPT` with the weights of a Hugging Face GPT-2.

    Args:
        source: one of

            - a ``transformers.GPT2LMHeadModel`` or ``GPT2Model`` (its ``config`` is used);
            - a GPT-2 state dict (of either), with ``config`` given;
            - a Hub name such as ``"gpt2"`` (124M), ``"gpt2-medium"``: downloaded once with
              ``transformers`` (which must be installed; needs the network; offline it raises
              :class:`HubDownloadError`).
        config: the ``GPT2Config`` (or its dict) when ``source`` is a state dict.
        dtype: the parameters' dtype (e.g. ``torch.bfloat16``); None keeps the source's.
        cache_dir: where ``transformers`` caches downloads (Hub names only).

    Returns:
        A :class:`~qkvcourse.GPT` in eval mode on the source's device, whose logits equal
        those of ``GPT2LMHeadModel`` on the same weights.
    """
    if isinstance(source, str):
        source = _load_by_name("GPT2LMHeadModel", "gpt_from_huggingface", source,
                               cache_dir=cache_dir)
    hf_state, config = _state_and_config(source, config, "GPT-2", "gpt_from_huggingface")
    gpt_config = gpt_config_from_huggingface(config)
    state = _convert_gpt2_state_dict(hf_state, gpt_config)
    wte = state["token_embedding.weight"]
    model = GPT(gpt_config)
    _check_shapes(model, state)
    model.load_state_dict(state)
    return model.to(device=wte.device, dtype=dtype or wte.dtype).eval()


# -- BERT ------------------------------------------------------------------------------------

def bert_config_from_huggingface(hf_config: Any) -> BERTConfig:
    """A :class:`~qkvcourse.BERTConfig` from a ``transformers.BertConfig`` (or its ``to_dict()``).

    ``hidden_dropout_prob`` becomes ``dropout``; this model has one dropout rate, so
    BERT's separate ``attention_probs_dropout_prob`` (equal to it in BERT) is not kept.
    """
    activation = _activation(hf_config, "hidden_act", "gelu")
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
        activation=activation,
        layer_norm_eps=_config_value(hf_config, "layer_norm_eps", 1e-12),
        embedding_norm=True,
        tie_weights=bool(_config_value(hf_config, "tie_word_embeddings", True)))


def _bert_name_map(num_blks: int) -> dict[str, str]:
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


_BERT_POOLER_MAP = {
    "hidden.0.weight": "pooler.dense.weight",
    "hidden.0.bias": "pooler.dense.bias",
}
_BERT_HEADS_MAP = {  # keys under "cls."
    "mlm.dense.weight": "predictions.transform.dense.weight",
    "mlm.dense.bias": "predictions.transform.dense.bias",
    "mlm.ln.weight": "predictions.transform.LayerNorm.weight",
    "mlm.ln.bias": "predictions.transform.LayerNorm.bias",
    "mlm.decoder.weight": "predictions.decoder.weight",
    "mlm.decoder.bias": "predictions.decoder.bias",  # what the forward pass adds
    "nsp.output.weight": "seq_relationship.weight",
    "nsp.output.bias": "seq_relationship.bias",
}


def bert_from_huggingface(source: Any, config: Any = None, *,
                          cache_dir: str | None = None) -> BERTModel:
    """A :class:`~qkvcourse.BERTModel` holding the weights of a Hugging Face BERT.

    Args:
        source: one of

            - a ``transformers`` ``BertForPreTraining`` (encoder, pooler and both heads),
              ``BertModel`` (encoder and pooler) or another ``Bert*`` model;
            - a state dict of one of them, with ``config`` (no ``transformers`` needed);
            - a Hub name such as ``"bert-base-uncased"``: downloaded by ``transformers``
              (needs the network once; offline it raises :class:`HubDownloadError`).
        config: the ``transformers.BertConfig`` (or a dict of its fields) of a state dict;
            a model's own ``config`` is used when None.
        cache_dir: where ``transformers`` caches downloads (Hub names only).

    Returns:
        A :class:`~qkvcourse.BERTModel` in eval mode whose encoder output, pooled output,
        masked-LM logits and NSP logits equal the Hugging Face model's (with
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
        source = _load_by_name("BertForPreTraining", "bert_from_huggingface", source,
                               cache_dir=cache_dir)
    state, config = _state_and_config(source, config, "BERT", "bert_from_huggingface")
    cfg = bert_config_from_huggingface(config)
    model = make_bert(cfg)
    encoder_state = {k[len("bert."):] if k.startswith("bert.") else k: v
                     for k, v in state.items()}
    loaded: dict[str, Tensor] = {}
    for ours, theirs in _bert_name_map(cfg.num_blks).items():
        if theirs not in encoder_state:
            raise KeyError(f"the state dict has no {theirs!r} (nor 'bert.{theirs}'); is it a "
                           f"BERT with {cfg.num_blks} layers?")
        loaded[ours] = encoder_state[theirs]
    for ours, theirs in _BERT_POOLER_MAP.items():
        if theirs in encoder_state:
            loaded[ours] = encoder_state[theirs]
    for ours, theirs in _BERT_HEADS_MAP.items():
        if "cls." + theirs in state:
            loaded[ours] = state["cls." + theirs]
    if "mlm.decoder.bias" not in loaded and "cls.predictions.bias" in state:
        # checkpoint files store the output bias once, as cls.predictions.bias, which
        # transformers ties to the decoder's bias when it loads them
        loaded["mlm.decoder.bias"] = state["cls.predictions.bias"]
    if cfg.tie_weights:  # one matrix: the token embeddings are also the MLM output layer
        loaded["mlm.decoder.weight"] = loaded["encoder.token_embedding.weight"]
    loaded["encoder.pos_embedding.P"] = loaded["encoder.pos_embedding.P"][None]  # (1, max_len, N)
    target = _check_shapes(model, loaded)
    model.load_state_dict({**target, **loaded})
    return model.eval()
