"""Vocabularies and padding: tokens to ids and back (chapters 4, 7, 9, 10).

A :class:`Vocab` maps tokens (characters, words, ...) to integer ids. Four special
tokens are always present, at fixed ids, so that every model and decoding loop in
the course can rely on them:

====  =========  ====================================================
id    token      meaning
====  =========  ====================================================
0     ``<pad>``  fills a sequence up to the batch's length
1     ``<bos>``  beginning of sequence: the decoder's first input
2     ``<eos>``  end of sequence: generation stops here
3     ``<unk>``  any token the vocabulary does not know
====  =========  ====================================================

The other ids are given in a reproducible order (reserved tokens first, then by
frequency, most frequent first, ties broken alphabetically), so the same corpus
always gives the same ids, whatever the order of iteration of a ``dict``.

Shape legend: B batch, T sequence length (of the longest sequence, or ``max_len``).
"""
from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence

import torch
from torch import Tensor

from .._validate import check_flag, check_size

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)  # ids 0, 1, 2, 3, in this order


def _flatten(tokens_or_token_lists) -> list:
    """One flat list of tokens from a list of tokens or a list of token lists."""
    flat = []
    for item in tokens_or_token_lists:
        if isinstance(item, (list, tuple)):
            flat.extend(item)
        else:
            flat.append(item)
    return flat


def _as_id_list(ids, name: str) -> list[int]:
    """A Python list of ints from an int, a sequence of ints or a 0-/1-D integer tensor."""
    if isinstance(ids, Tensor):
        if ids.dim() > 1:
            raise ValueError(f"{name} must be 0-D or 1-D, got shape {tuple(ids.shape)}")
        if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
            raise TypeError(f"{name} must hold integer ids, got dtype {ids.dtype} "
                            f"with shape {tuple(ids.shape)}")
        return ids.reshape(-1).tolist()
    import numbers

    def whole(i) -> bool:
        return isinstance(i, numbers.Integral) and not isinstance(i, bool)

    if whole(ids):
        return [int(ids)]
    ids = list(ids)
    bad = next((i for i in ids if not whole(i)), None)
    if bad is not None:
        raise TypeError(f"{name} must hold integer ids, got {bad!r} ({type(bad).__name__})")
    return [int(i) for i in ids]


class Vocab:
    """Token <-> id mapping with ``<pad>``, ``<bos>``, ``<eos>``, ``<unk>`` at ids 0..3.

    Args:
        tokens_or_token_lists: the corpus to count: a list of tokens
            (``["a", "b", "a"]``) or a list of token lists (``[["a", "b"], ["a"]]``).
            For a character vocabulary pass ``[list(s) for s in strings]``.
        min_freq: tokens seen fewer than ``min_freq`` times are left out (and map to
            ``<unk>``). 0 and 1 keep every token.
        reserved_tokens: extra tokens given the ids right after the special ones, in
            this order, whether or not they occur in the corpus (e.g. ``["<sep>"]``).

    Example:
        >>> vocab = Vocab([list("hello"), list("world")])
        >>> vocab.decode(vocab.encode(list("hold"), add_eos=True))
        ['h', 'o', 'l', 'd']
    """

    def __init__(self, tokens_or_token_lists: Iterable = (), min_freq: int = 0,
                 reserved_tokens: Sequence[str] | None = None):
        if isinstance(tokens_or_token_lists, str):
            raise TypeError("tokens_or_token_lists must be a list of tokens or of token lists, "
                            f"got the string {tokens_or_token_lists[:30]!r}; for characters "
                            "pass list(text)")
        if not isinstance(tokens_or_token_lists, Iterable):
            raise TypeError("tokens_or_token_lists must be a list of tokens or of token lists, "
                            f"got {type(tokens_or_token_lists).__name__} "
                            f"({tokens_or_token_lists!r:.40})")
        check_size("min_freq", min_freq, minimum=0)  # a count: no float, bool or str
        if isinstance(reserved_tokens, str) or not all(
                isinstance(t, str) for t in (reserved_tokens or [])):
            raise TypeError(f"reserved_tokens must be a list of token strings, got "
                            f"{reserved_tokens!r}" + (f"; for one token write [{reserved_tokens!r}]"
                                                      if isinstance(reserved_tokens, str) else ""))
        reserved = list(reserved_tokens or [])
        self.token_freqs: Counter = Counter(_flatten(tokens_or_token_lists))
        self.min_freq = min_freq
        self.idx_to_token: list[str] = []
        for token in [*SPECIAL_TOKENS, *reserved]:
            if token not in self.idx_to_token:
                self.idx_to_token.append(token)
        fixed = set(self.idx_to_token)
        # Most frequent first, ties alphabetically: the ids depend on the counts only.
        counted = sorted(self.token_freqs.items(), key=lambda kv: (-kv[1], str(kv[0])))
        self.idx_to_token += [tok for tok, freq in counted
                              if freq >= min_freq and tok not in fixed]
        self.token_to_idx: dict[str, int] = {tok: i for i, tok in enumerate(self.idx_to_token)}

    # --- the special ids -------------------------------------------------------------------
    @property
    def pad_id(self) -> int:
        return self.token_to_idx[PAD]

    @property
    def bos_id(self) -> int:
        return self.token_to_idx[BOS]

    @property
    def eos_id(self) -> int:
        return self.token_to_idx[EOS]

    @property
    def unk_id(self) -> int:
        return self.token_to_idx[UNK]

    @property
    def special_ids(self) -> tuple[int, ...]:
        """Ids of ``<pad>``, ``<bos>``, ``<eos>``, ``<unk>``: ``(0, 1, 2, 3)``."""
        return tuple(self.token_to_idx[t] for t in SPECIAL_TOKENS)

    # --- lookups ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.idx_to_token)

    def __contains__(self, token) -> bool:
        return token in self.token_to_idx

    def __getitem__(self, tokens):
        """The id of one token, or a list of ids for a list/tuple of tokens (unknown -> unk_id)."""
        if isinstance(tokens, (list, tuple)):
            lookup, unk = self.token_to_idx.get, self.unk_id
            return [lookup(tok, unk) for tok in tokens]
        return self.token_to_idx.get(tokens, self.unk_id)

    def to_tokens(self, ids):
        """The token of one id, or a list of tokens for a list (or 1-D tensor) of ids."""
        single = isinstance(ids, int) or (isinstance(ids, Tensor) and ids.dim() == 0)
        id_list = _as_id_list(ids, "ids")
        for i in id_list:
            if not 0 <= i < len(self):
                raise IndexError(f"ids contains {i}, outside the vocabulary's range "
                                 f"[0, {len(self) - 1}]")
        tokens = [self.idx_to_token[i] for i in id_list]
        return tokens[0] if single else tokens

    def encode(self, tokens: Sequence[str], add_bos: bool = False,
               add_eos: bool = False) -> list[int]:
        """Ids of ``tokens``, optionally framed by ``<bos>`` ... ``<eos>``."""
        check_flag("add_bos", add_bos)
        check_flag("add_eos", add_eos)
        if isinstance(tokens, str):
            raise TypeError(f"tokens must be a list of tokens, got the string {tokens[:30]!r}; "
                            "tokenise it first (e.g. list(text) or text.split())")
        if not isinstance(tokens, Iterable):
            raise TypeError(f"tokens must be a list of tokens, got {type(tokens).__name__}")
        ids = self[list(tokens)]
        return ([self.bos_id] if add_bos else []) + ids + ([self.eos_id] if add_eos else [])

    def decode(self, ids, strip_special: bool = True) -> list[str]:
        """Tokens of ``ids`` (a list or 1-D tensor).

        With ``strip_special`` (the default) decoding stops at the first ``<eos>`` and
        ``<pad>`` and ``<bos>`` are dropped, which turns a generated sequence into its
        text; ``<unk>`` is kept, so unknown words stay visible. Without it, every id is
        turned into its token.
        """
        check_flag("strip_special", strip_special)
        tokens = self.to_tokens(_as_id_list(ids, "ids"))
        if not strip_special:
            return tokens
        out = []
        for tok in tokens:
            if tok == EOS:
                break
            if tok not in (PAD, BOS):
                out.append(tok)
        return out

    def __repr__(self) -> str:
        shown = ", ".join(repr(t) for t in self.idx_to_token[4:12])
        more = ", ..." if len(self) > 12 else ""
        return f"Vocab(size={len(self)}, specials={list(SPECIAL_TOKENS)}, tokens=[{shown}{more}])"


def pad_batch(sequences_of_ids: Sequence[Sequence[int]], pad_id: int,
              max_len: int | None = None) -> tuple[Tensor, Tensor]:
    """Stack id sequences of different lengths into one padded batch.

    Args:
        sequences_of_ids: B sequences of token ids (lists or 1-D tensors).
        pad_id: the id that fills positions past each sequence's end.
        max_len: T, the padded length; by default the longest sequence's length. A
            sequence longer than ``max_len`` is an error (nothing is cut silently: a
            truncated target would lose its ``<eos>``).

    Returns:
        ``(ids (B, T) long, valid_lens (B,) long)``: ``ids[b, :valid_lens[b]]`` is
        sequence b and the rest is ``pad_id``. ``valid_lens`` is what the attention
        layers take to ignore the padding.
    """
    if isinstance(sequences_of_ids, (str, bytes)) or not isinstance(sequences_of_ids, Iterable):
        raise TypeError(f"sequences_of_ids must be a list of id sequences, got "
                        f"{type(sequences_of_ids).__name__} ({sequences_of_ids!r:.40})")
    # An integer: no float (it was truncated), bool or str. Negative ids are allowed, as in
    # label rows padded with IGNORE_INDEX (-100), which the losses skip.
    check_size("pad_id", pad_id, minimum=None)
    if max_len is not None:
        check_size("max_len", max_len, minimum=0)
    lists = [_as_id_list(seq, f"sequences_of_ids[{b}]") for b, seq in enumerate(sequences_of_ids)]
    lengths = [len(seq) for seq in lists]
    longest = max(lengths, default=0)
    if max_len is None:
        max_len = longest
    elif longest > max_len:
        b = lengths.index(longest)
        raise ValueError(f"sequences_of_ids[{b}] has {longest} ids, more than max_len={max_len}")
    padded = [seq + [pad_id] * (max_len - len(seq)) for seq in lists]
    ids = torch.tensor(padded, dtype=torch.long).reshape(len(lists), max_len)  # (B, T)
    return ids, torch.tensor(lengths, dtype=torch.long)
