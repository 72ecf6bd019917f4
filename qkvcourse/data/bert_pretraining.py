"""BERT's pretraining data: masked-LM and next-sentence examples (chapter 10).

Devlin, Chang, Lee and Toutanova (2019), section 3 and Appendix A.1. The model they feed is
:mod:`qkvcourse.bert`; the loss is :func:`~qkvcourse.losses.bert_pretraining_loss`.

- :func:`get_tokens_and_segments`: ``<cls> a <sep> b <sep>`` and its segment ids (section 3,
  "Input/Output Representations").
- :func:`bert_vocab`: a :class:`~qkvcourse.data.Vocab` with ``<cls>``, ``<sep>``, ``<mask>``.
- :func:`next_sentence_pairs` (section 3.1, "Task #2") and :func:`mask_tokens` (section 3.1,
  "Task #1", and Appendix A.1): the two kinds of example, seeded.
- :class:`BERTPretrainingData`: both, padded into :class:`BERTBatch` tensors, with a seeded
  loader.

Special tokens follow the package's ``<...>`` spelling and d2l's: ``<cls>``, ``<sep>``,
``<mask>``, with :class:`~qkvcourse.data.Vocab`'s ``<pad>`` and ``<unk>``. Next-sentence
labels follow BERT's released code and Hugging Face, so that real weights read them
the same way: 0 (:data:`IS_NEXT`) when sentence b follows a, 1 (:data:`NOT_NEXT`) when it
was drawn at random.
"""
from __future__ import annotations

import random
from typing import NamedTuple, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from .._validate import check_flag, check_real, check_seed, check_size
from .vocab import BOS, EOS, PAD, UNK, Vocab

__all__ = [
    "BERTBatch", "BERTPretrainingData", "BERT_RESERVED_TOKENS", "CLS", "IS_NEXT", "MASK",
    "NOT_NEXT", "SEP", "bert_vocab", "get_tokens_and_segments", "mask_tokens",
    "next_sentence_pairs",
]

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


# -- pretraining examples (section 3.1, Appendix A.1) ----------------------------------------

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


def _check_rng(rng) -> None:
    """``rng`` must be a random source with ``random.Random``'s methods (not a seed, not None)."""
    methods = ("random", "randrange", "choice", "sample")
    if not all(callable(getattr(rng, m, None)) for m in methods):
        raise TypeError(f"rng must be a random.Random (e.g. random.Random(0)), got "
                        f"{type(rng).__name__} ({rng!r:.40})")


def _check_mask_prob(mask_prob) -> None:
    check_real("mask_prob", mask_prob, what="the fraction of the real tokens to predict")
    if not 0.0 < mask_prob < 1.0:
        raise ValueError(f"mask_prob must lie in (0, 1), got {mask_prob}")


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
    check_size("max_len", max_len, minimum=None)
    _check_rng(rng)
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
    if isinstance(tokens, str):
        raise TypeError(f"tokens must be a list of tokens, got the string {tokens[:30]!r}")
    if not isinstance(vocab, Vocab):
        raise TypeError(f"vocab must be a qkvcourse Vocab (bert_vocab(...)), got "
                        f"{type(vocab).__name__}")
    if MASK not in vocab:
        raise ValueError(f"vocab has no {MASK!r} token; build it with bert_vocab(...)")
    _check_rng(rng)
    _check_mask_prob(mask_prob)
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
        check_size("max_len", max_len, minimum=None)  # (next_sentence_pairs: >= 5)
        _check_mask_prob(mask_prob)
        check_seed("seed", seed)
        if vocab is None:
            vocab = bert_vocab([s for p in paragraphs for s in p], min_freq)
        elif not isinstance(vocab, Vocab):
            raise TypeError(f"vocab must be a qkvcourse Vocab (bert_vocab(...)) or None, got "
                            f"{type(vocab).__name__}")
        for tok in BERT_RESERVED_TOKENS:
            if tok not in vocab:
                raise ValueError(f"vocab has no {tok!r} token; build it with bert_vocab(...)")
        self.vocab = vocab
        rng = random.Random(seed)
        pairs = next_sentence_pairs(paragraphs, max_len, rng)
        if not pairs:
            longest = max((sum(1 for s in p if len(s)) for p in paragraphs), default=0)
            raise ValueError(f"paragraphs gave no example: a next-sentence pair needs a "
                             f"paragraph of at least 2 sentences, but the {len(paragraphs)} "
                             f"paragraphs hold at most {longest} (non-empty) sentence(s) each")
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
        check_size("batch_size", batch_size)
        check_flag("shuffle", shuffle)
        check_flag("trim", trim)
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(self, batch_size=batch_size, shuffle=shuffle, generator=generator,
                          collate_fn=_collate_trimmed if trim else _collate)

    def __repr__(self) -> str:
        return (f"BERTPretrainingData({len(self)} examples, max_len={self.max_len}, "
                f"{self.max_num_preds} predictions each, vocab size {len(self.vocab)})")
