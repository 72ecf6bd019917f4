"""Transferring a pretrained GPT to a task: new special tokens, k of L blocks (chapter 9).

Fine-tuning starts from the pretrained weights, but not all of them fit the task
unchanged:

- the task's input transformations need tokens the pretraining text never had
  (``<start>``, ``<delim>``, ``<extract>``, Radford et al., 2018, section 3.3). Their
  embeddings are new rows, "randomly initialized"; the rows of the tokens the model
  already knows are copied;
- the paper's layer-transfer analysis (section 5, Figure 2 left) transfers the
  embeddings and only the first k of the L blocks, and initialises the others afresh,
  to see how much each pretrained layer contributes.

:func:`transfer_gpt` does both: it builds a freshly initialised :class:`~qkvcourse.gpt.GPT`
of the task's vocabulary size (from the current torch random state, so seed first) and
copies into it what is transferred. :func:`char_token_map` gives the row mapping when a
character-level pretraining tokenizer meets a task vocabulary.
"""
from __future__ import annotations

import dataclasses
import numbers
from typing import Iterable, Sequence

import torch
from torch import Tensor

from ._validate import check_integer
from .gpt import GPT

__all__ = ["char_token_map", "transfer_gpt"]


def char_token_map(vocab, tokenizer) -> list[int]:
    """For each id of the task vocabulary ``vocab``, the id of the same character in the
    pretraining ``tokenizer`` (a :class:`~qkvcourse.data.text.CharTokenizer`), or -1 for a
    token that is not one of its characters (``<start>``, ``<pad>``, ...): a new row."""
    for name, obj, attr in (("vocab", vocab, "idx_to_token"), ("tokenizer", tokenizer, "chars")):
        if not hasattr(obj, attr):
            raise TypeError(f"{name} must be a {'Vocab' if name == 'vocab' else 'CharTokenizer'} "
                            f"(with .{attr}), got {type(obj).__name__}")
    out = []
    for token in vocab.idx_to_token:
        known = isinstance(token, str) and len(token) == 1 and token in tokenizer.chars
        out.append(tokenizer.encode(token)[0] if known else -1)
    return out


def _check_token_map(token_map, V: int) -> list[int]:
    """``token_map`` as a list of Python ints, each a source id in ``[0, V)`` or -1."""
    if isinstance(token_map, Tensor):
        if token_map.dim() != 1:
            raise ValueError(f"token_map must be 1-D, got shape {tuple(token_map.shape)}")
        check_integer("token_map", token_map, "source ids, or -1")
        token_map = token_map.tolist()
    elif hasattr(token_map, "tolist") and getattr(token_map, "ndim", None) == 1:
        token_map = token_map.tolist()  # a 1-D NumPy array
    elif isinstance(token_map, Iterable) and \
            not isinstance(token_map, (str, bytes, dict, Sequence)):
        token_map = list(token_map)  # a generator, a set...
    if isinstance(token_map, (str, bytes)) or not isinstance(token_map, Sequence):
        raise TypeError(f"token_map must be a list of source ids (or -1), got "
                        f"{type(token_map).__name__}")
    if not token_map:
        raise ValueError("token_map must hold at least one id (one per token of the new "
                         "vocabulary), got an empty list")
    for i, j in enumerate(token_map):
        if isinstance(j, bool) or not isinstance(j, numbers.Integral):
            raise TypeError(f"token_map[{i}] must be an integer source id (or -1), got {j!r}")
        if not -1 <= j < V:
            raise ValueError(f"token_map[{i}] must be a source id in [0, {V}) or -1 (a new "
                             f"token), got {j}")
    return [int(j) for j in token_map]


def transfer_gpt(source: GPT, token_map: Sequence[int] | None = None,
                 num_blocks: int | None = None) -> GPT:
    """A new GPT that starts from ``source``'s weights where they are transferred.

    The new model has ``source``'s configuration, except its vocabulary size
    ``len(token_map)``. Its weights are first initialised as any fresh GPT (GPT-2's
    initialisation, from the current torch random state), then these are copied:

    - token embedding row ``i`` (tied with the output layer) from ``source`` row
      ``token_map[i]`` when that is ``>= 0``; rows with ``-1`` keep their fresh values;
    - the position embeddings;
    - blocks ``0 .. num_blocks - 1`` (all by default);
    - the final LayerNorm, when every block is transferred (it normalises the output of
      the last block, so it belongs with it).

    Args:
        source: the pretrained GPT (unchanged).
        token_map: ``(V_new,)`` source ids, ``-1`` for new tokens; None keeps the
            vocabulary (``token_map = range(V)``).
        num_blocks: k, the number of blocks transferred, ``0 <= k <= L``; None: all L.

    Returns:
        The new GPT, on ``source``'s device, in training mode.
    """
    if not isinstance(source, GPT):
        raise TypeError(f"source must be a qkvcourse GPT, got {type(source).__name__}")
    V, L = source.config.vocab_size, source.config.num_layers
    token_map = list(range(V)) if token_map is None else _check_token_map(token_map, V)
    k = L if num_blocks is None else num_blocks
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= L:
        raise ValueError(f"num_blocks must be None or an integer in [0, {L}], got {num_blocks!r}")
    config = dataclasses.replace(source.config, vocab_size=len(token_map))
    device = source.token_embedding.weight.device
    target = GPT(config).to(device)
    with torch.no_grad():
        index = torch.tensor(token_map, device=device)  # (V_new,)
        known = index >= 0
        target.token_embedding.weight[known] = source.token_embedding.weight[index[known]]
        target.pos_embedding.P.copy_(source.pos_embedding.P)
        for layer in range(k):
            target.blks[layer].load_state_dict(source.blks[layer].state_dict())
        if k == L:
            target.norm.load_state_dict(source.norm.state_dict())
    return target
