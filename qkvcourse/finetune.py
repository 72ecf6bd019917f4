"""Fine-tuning GPT and BERT on labelled tasks (chapters 9 and 10).

A pretrained model becomes a task model by adding one small layer on top and training
the whole thing on labelled examples. The two papers differ in how the task's input is
laid out and which hidden state the new layer reads:

- **GPT** (Radford et al., 2018, sections 3.2 and 3.3): a decoder reads left to right,
  so its structured inputs become one sequence with special tokens,
  ``<start> a <delim> b <extract>`` (the "task-specific input transformations" of Figure
  1), and the new linear layer ``W_y`` reads the final state of the last token,
  ``<extract>``, the only one that has seen the whole input. The loss adds language
  modelling on the same inputs as an auxiliary objective, ``L3 = L2 + λ L1`` (eq. (5),
  λ = 0.5): :class:`GPTClassifier`, :func:`gpt_finetune_loss`.
- **BERT** (Devlin et al., 2019, section 4): an encoder reads everything at once. A
  sentence pair is ``<cls> a <sep> b <sep>`` with segment ids; a classifier reads the
  (pooled) final state of ``<cls>`` (:class:`BERTClassifier`, section 4.1); a span
  extractor (SQuAD, section 4.2) learns a start vector S and an end vector E and scores
  every passage token as the start and as the end of the answer
  (:class:`BERTSpanExtractor`, :func:`best_spans`; scored by
  :func:`~qkvcourse.metrics.span_f1`).

The input functions take the examples of :mod:`qkvcourse.data.tasks` (any objects with
the same fields work) and a vocabulary holding the special tokens
(:func:`~qkvcourse.data.tasks.task_vocab`). They pad to ``max_len`` (or to the longest
example if ``max_len`` is None) with ``<pad>``, and never cut an example: one that does
not fit is an error. The loss functions have the signature ``loss_fn(model, batch)`` of
:class:`~qkvcourse.Trainer`, and :func:`make_loader` makes the seeded loaders.

Shape legend: B batch, T sequence length (padded), N the model width (GPT's d_model,
BERT's num_hiddens), C number of classes, V vocabulary size.
"""
from __future__ import annotations

import numbers
from typing import Any, NamedTuple, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from ._validate import (check_dropout, check_flag, check_index_range, check_index_vector,
                        check_lengths, check_nonempty, check_real, check_seed, check_size,
                        check_tensor, check_token_ids, shape_str)
from .bert import BERTModel
from .data.bert_pretraining import get_tokens_and_segments
from .data.tasks import CLS, DELIM, EXTRACT, SEP, START
from .data.vocab import Vocab, pad_batch
from .decoding import _EvalMode
from .gpt import GPT
from .losses import IGNORE_INDEX, MASKED_LOGIT, _check_span_logits, lm_loss, span_loss
from .metrics import span_scores

__all__ = [
    "BERTClassifier", "BERTSpanExtractor", "GPTClassifier", "GPTFinetuneLoss", "SpanScores",
    "best_spans", "bert_classification_inputs", "bert_classification_loss", "bert_span_inputs",
    "bert_span_loss", "classification_labels", "evaluate_classifier", "evaluate_spans",
    "gpt_classification_inputs", "gpt_finetune_loss", "gpt_finetune_losses", "gpt_lm_targets",
    "make_loader", "passage_mask",
]



# -- checks ----------------------------------------------------------------------------------

def _check_examples(examples, fields: Sequence[str], kind: str) -> list:
    if isinstance(examples, (str, bytes)) or not isinstance(examples, Sequence):
        raise TypeError(f"examples must be a list of {kind}, got {type(examples).__name__}")
    if not examples:
        raise ValueError(f"examples must hold at least one {kind}, got an empty list")
    for i, example in enumerate(examples):
        missing = [f for f in fields if not hasattr(example, f)]
        if missing:
            raise TypeError(f"examples[{i}] must be a {kind} (with {', '.join(fields)}), got "
                            f"{type(example).__name__} without {', '.join(missing)}")
        for f in fields:
            value = getattr(example, f)
            if isinstance(value, str):
                raise TypeError(f"examples[{i}].{f} must be a list of tokens, got the string "
                                f"{value[:30]!r}; tokenise it first, e.g. text.split()")
    return list(examples)


def _check_vocab(vocab, tokens: Sequence[str], recipe: str) -> None:
    if not isinstance(vocab, Vocab):
        raise TypeError(f"vocab must be a qkvcourse Vocab, got {type(vocab).__name__}")
    missing = [t for t in tokens if t not in vocab]
    if missing:
        raise ValueError(f"vocab has no {', '.join(map(repr, missing))} token, needed by "
                         f"{recipe}; build it with qkvcourse.data.tasks.task_vocab(...)")


def _check_max_len(max_len) -> None:
    if max_len is not None:  # None: no limit
        check_size("max_len", max_len)


def _check_int_field(examples: list, field: str) -> None:
    """``examples[i].<field>`` must be an integer (a Python or NumPy int, or an integer 0-dim
    tensor), not a float that would be truncated nor a bool."""
    for i, e in enumerate(examples):
        value = getattr(e, field)
        if isinstance(value, Tensor):
            ok = value.dim() == 0 and value.dtype != torch.bool \
                and not value.is_floating_point() and not value.is_complex()
        else:
            ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        if not ok:
            raise TypeError(f"examples[{i}].{field} must be an integer, got {value!r}")


def _check_fits(sequences: list[list], max_len: int | None, layout: str) -> None:
    if max_len is None:
        return
    for i, seq in enumerate(sequences):
        if len(seq) > max_len:
            raise ValueError(f"examples[{i}] gives {len(seq)} tokens as {layout}, more than "
                             f"max_len={max_len}; raise max_len (nothing is cut)")


# -- shared helpers --------------------------------------------------------------------------

def classification_labels(examples) -> Tensor:
    """The labels of classification examples as a ``(B,)`` long tensor."""
    examples = _check_examples(examples, ("label",), "ClassificationExample")
    _check_int_field(examples, "label")
    return torch.tensor([int(e.label) for e in examples], dtype=torch.long)


def make_loader(tensors: Sequence[Tensor], batch_size: int = 32, shuffle: bool = True,
                seed: int = 0, **kwargs: Any) -> DataLoader:
    """A ``DataLoader`` of tuples of rows of ``tensors``, shuffled by a generator seeded
    with ``seed``, so that two runs see the same batches.

    Args:
        tensors: tensors with the same first dimension B (e.g. ``(idx, valid_lens,
            labels)``).
        batch_size: rows per batch.
        shuffle: reshuffle every epoch (training) or keep the order (evaluation).
        seed: the seed of the shuffle.
        kwargs: passed to ``DataLoader`` (e.g. ``pin_memory=True``).
    """
    if isinstance(tensors, Tensor) or not isinstance(tensors, Sequence) or not tensors:
        raise TypeError(f"tensors must be a non-empty tuple of tensors, got "
                        f"{type(tensors).__name__}")
    for i, t in enumerate(tensors):
        check_tensor(f"tensors[{i}]", t)
        if t.dim() == 0 or t.shape[0] != tensors[0].shape[0]:
            raise ValueError(f"tensors must share their first dimension B: tensors[0] has "
                             f"shape {shape_str(tensors[0])}, tensors[{i}] has shape "
                             f"{shape_str(t)}")
    check_size("batch_size", batch_size)
    check_flag("shuffle", shuffle)
    check_seed("seed", seed)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(TensorDataset(*tensors), batch_size=batch_size, shuffle=shuffle,
                      generator=generator, **kwargs)


def _model_device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


@torch.no_grad()
def evaluate_classifier(model: nn.Module, loader) -> float:
    """Accuracy of a classifier over a loader of ``(*inputs, labels)`` batches.

    The model is called as ``model(*inputs)`` in eval mode (the modes are restored
    afterwards): ``(idx, valid_lens, labels)`` batches for :class:`GPTClassifier`,
    ``(tokens, segments, valid_lens, labels)`` for :class:`BERTClassifier`.
    """
    device = _model_device(model)
    correct = torch.zeros((), dtype=torch.long, device=device)  # read once, at the end
    total = 0
    with _EvalMode(model):
        for batch in loader:
            *inputs, labels = (t.to(device) for t in batch)
            correct += (model(*inputs).argmax(dim=-1) == labels).sum()
            total += labels.shape[0]
    if total == 0:
        raise ValueError("loader yielded no example")
    return int(correct) / total


# -- GPT: task-specific input transformations (Radford et al., 2018, section 3.3) -------------

def gpt_classification_inputs(examples, vocab: Vocab, max_len: int | None
                              ) -> tuple[Tensor, Tensor]:
    """GPT's input for classification and entailment: ``<start> a <delim> b <extract>``.

    Section 3.3: "we convert structured inputs into an ordered sequence that our
    pre-trained model can process"; for entailment, "we concatenate the premise p and
    hypothesis h token sequences, with a delimiter token ($) in between", and every
    sequence is framed by randomly initialised start and end (extract) tokens. An example
    without ``tokens_b`` becomes ``<start> a <extract>``.

    Args:
        examples: B objects with ``tokens_a`` and ``tokens_b`` (a list or None), e.g.
            :class:`~qkvcourse.data.tasks.ClassificationExample`.
        vocab: holds ``<start>``, ``<delim>``, ``<extract>`` (and ``<pad>``).
        max_len: T, the padded length; None pads to the longest sequence.

    Returns:
        ``(idx (B, T) long, valid_lens (B,) long)``; the ``<extract>`` token of row b is
        at ``valid_lens[b] - 1``, the padding after it is ``<pad>``.
    """
    examples = _check_examples(examples, ("tokens_a", "tokens_b"), "ClassificationExample")
    _check_vocab(vocab, (START, DELIM, EXTRACT), "GPT's input transformation")
    _check_max_len(max_len)
    sequences = []
    for e in examples:
        middle = list(e.tokens_a) if e.tokens_b is None \
            else [*e.tokens_a, DELIM, *e.tokens_b]
        sequences.append([START, *middle, EXTRACT])
    _check_fits(sequences, max_len, "<start> a <delim> b <extract>")
    return pad_batch([vocab[s] for s in sequences], vocab.pad_id, max_len)


def gpt_lm_targets(idx: Tensor, valid_lens: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """The next-token targets of the auxiliary language-modelling loss.

    ``targets[b, t] = idx[b, t + 1]`` for ``t + 1 < valid_lens[b]``, else ``ignore_index``:
    every token of the input but the first is predicted from the ones before it, and
    nothing is predicted from or into the padding.

    Args:
        idx: ``(B, T)`` token ids.
        valid_lens: ``(B,)`` the number of real tokens of each row.

    Returns:
        ``(B, T)`` long.
    """
    check_tensor("idx", idx, ndim=2)
    check_token_ids("idx", idx)
    check_lengths("valid_lens", valid_lens, "idx", idx)
    check_size("ignore_index", ignore_index, minimum=None)
    T = idx.shape[1]
    next_tokens = torch.cat((idx[:, 1:], idx[:, :1]), dim=1)  # (B, T); the last column is junk
    positions = torch.arange(T, device=idx.device)  # (T,)
    counted = positions[None, :] < valid_lens.to(idx.device)[:, None] - 1  # (B, T)
    return next_tokens.masked_fill(~counted, ignore_index).long()  # (B, T)


class GPTClassifier(nn.Module):
    """A GPT with a linear classifier on the final state of its ``<extract>`` token.

    Section 3.2: "the inputs are passed through our pre-trained model to obtain the final
    transformer block's activation h_l^m, which is then fed into an added linear output
    layer with parameters W_y to predict y: P(y | x^1, ..., x^m) = softmax(h_l^m W_y)"
    (eq. (3)). With the causal mask, the last real token of a row (``<extract>``, at
    ``valid_lens - 1``) is the only one that has seen the whole input; the padding after
    it changes nothing. Dropout (rate 0.1, section 4.1) is applied before ``W_y``.

    Args:
        gpt: a (pretrained) :class:`~qkvcourse.gpt.GPT`; its vocabulary must hold the
            special tokens.
        num_classes: C.
        dropout: the classifier's dropout.

    ``forward(idx (B, T), valid_lens (B,))`` returns the class logits ``(B, C)``; with
    ``with_lm=True`` also the language model's ``(B, T, V)``, from the same pass (through
    ``forward``, so that a ``DistributedDataParallel`` or ``torch.compile`` wrapper sees it).
    :meth:`lm_logits` gives the language model's logits alone.
    """

    def __init__(self, gpt: GPT, num_classes: int, dropout: float = 0.1):
        super().__init__()
        if not isinstance(gpt, GPT):
            raise TypeError(f"gpt must be a qkvcourse GPT, got {type(gpt).__name__}")
        check_size("num_classes", num_classes)
        check_dropout("dropout", dropout)
        self.gpt = gpt
        self.num_classes = num_classes
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(gpt.config.d_model, num_classes)  # W_y
        with torch.no_grad():  # GPT's initialisation, N(0, 0.02), for the new layer too
            self.classifier.weight.normal_(0.0, 0.02)
            self.classifier.bias.zero_()

    def _classify(self, h: Tensor, valid_lens: Tensor) -> Tensor:
        last = (valid_lens.to(h.device) - 1)[:, None, None].expand(-1, 1, h.shape[-1])  # (B,1,N)
        h_extract = h.gather(1, last)[:, 0]  # (B, N): row b's state at valid_lens[b] - 1
        return self.classifier(self.dropout(h_extract))  # (B, C)

    def forward_with_lm(self, idx: Tensor, valid_lens: Tensor) -> tuple[Tensor, Tensor]:
        """``(class_logits (B, C), lm_logits (B, T, V))`` from one pass through the GPT."""
        return self(idx, valid_lens, with_lm=True)

    def forward(self, idx: Tensor, valid_lens: Tensor, with_lm: bool = False
                ) -> Tensor | tuple[Tensor, Tensor]:
        check_tensor("idx", idx, ndim=2)
        check_lengths("valid_lens", valid_lens, "idx", idx, minimum=1,
                      why="every row needs its last token")
        check_flag("with_lm", with_lm)
        h = self.gpt.features(idx)  # (B, T, N)
        class_logits = self._classify(h, valid_lens)  # (B, C)
        return (class_logits, self.gpt.lm_head(h)) if with_lm else class_logits

    def lm_logits(self, idx: Tensor) -> Tensor:
        """The language model's next-token logits ``(B, T, V)``, for the auxiliary loss."""
        return self.gpt(idx)


class GPTFinetuneLoss(NamedTuple):
    loss: Tensor  # L3 = L2 + lm_weight * L1, the quantity minimised (eq. (5))
    classification: Tensor  # L2, the mean cross-entropy of the labels (eq. (4))
    lm: Tensor  # L1, the mean next-token cross-entropy of the inputs (eq. (1))


def _check_labels(labels: Tensor, logits: Tensor) -> None:
    check_index_range("labels", labels, logits.shape[-1],
                      f"the number of classes of the logits, shape {shape_str(logits)}")


def _unwrap(model: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel`` (``.module``) or ``torch.compile``
    (``._orig_mod``) wrapper, however they are nested."""
    while isinstance(model, nn.parallel.DistributedDataParallel) or hasattr(model, "_orig_mod"):
        model = model.module if isinstance(model, nn.parallel.DistributedDataParallel) \
            else model._orig_mod
    return model


def gpt_finetune_losses(model: GPTClassifier, batch, lm_weight: float = 0.5) -> GPTFinetuneLoss:
    """GPT's fine-tuning objective and its two parts, section 3.2, eq. (5).

    ``L3(C) = L2(C) + λ L1(C)``: the classification loss plus λ times the language-model
    loss on the same (fine-tuning) inputs, which "(a) improv[es] generalization of the
    supervised model, and (b) accelerat[es] convergence"; λ = 0.5 in the paper. The LM
    loss counts the tokens of each input after the first (:func:`gpt_lm_targets`),
    never the padding.

    Args:
        model: a :class:`GPTClassifier`.
        batch: ``(idx (B, T), valid_lens (B,), labels (B,))``.
        lm_weight: λ (0 turns the auxiliary objective off).

    Returns:
        :class:`GPTFinetuneLoss` ``(loss, classification, lm)``, three 0-dim tensors.
    """
    if not isinstance(_unwrap(model), GPTClassifier):
        raise TypeError(f"model must be a GPTClassifier, got {type(model).__name__}")
    if not isinstance(batch, (list, tuple)) or len(batch) != 3:
        raise TypeError("batch must be (idx, valid_lens, labels), got "
                        + (f"{len(batch)} items" if isinstance(batch, (list, tuple))
                           else type(batch).__name__))
    check_real("lm_weight", lm_weight, minimum=0)
    idx, valid_lens, labels = batch
    check_tensor("idx", idx, ndim=2)
    check_nonempty("idx", idx)
    check_index_vector("labels", labels, idx.shape[0], indexes=True)
    # Through the model's own call (not forward_with_lm), so a DDP or compiled wrapper runs it
    class_logits, lm_logits = model(idx, valid_lens, with_lm=True)
    _check_labels(labels, class_logits)
    classification = F.cross_entropy(class_logits.float(), labels.long())
    lm = lm_loss(lm_logits, gpt_lm_targets(idx, valid_lens))
    return GPTFinetuneLoss(classification + lm_weight * lm, classification, lm)


def gpt_finetune_loss(model: GPTClassifier, batch, lm_weight: float = 0.5) -> Tensor:
    """``loss_fn(model, batch)`` for :class:`~qkvcourse.Trainer`: ``L2 + lm_weight · L1``
    (:func:`gpt_finetune_losses`); for another λ use ``functools.partial``."""
    return gpt_finetune_losses(model, batch, lm_weight).loss


# -- BERT: sentence-pair classification (Devlin et al., 2019, section 4.1) -------------------

def _bert_pairs(vocab: Vocab, max_len: int | None, pairs: list, layout: str):
    """Token and segment lists -> ``(tokens, segments, valid_lens)``, padded."""
    rows = [get_tokens_and_segments(a, b) for a, b in pairs]
    _check_fits([tokens for tokens, _ in rows], max_len, layout)
    tokens, valid_lens = pad_batch([vocab[t] for t, _ in rows], vocab.pad_id, max_len)
    segments, _ = pad_batch([s for _, s in rows], 0, max_len)  # padding: segment 0
    return tokens, segments, valid_lens


def bert_classification_inputs(examples, vocab: Vocab, max_len: int | None
                               ) -> tuple[Tensor, Tensor, Tensor]:
    """BERT's input for a sentence (pair): ``<cls> a <sep> b <sep>`` with segment ids.

    Section 3 ("Input/Output Representations") and Figure 4 (a), (b): the pair is packed
    into one sequence; segment 0 for ``<cls> a <sep>``, 1 for ``b <sep>``. Without
    ``tokens_b``: ``<cls> a <sep>``, all segment 0.

    Args:
        examples: B objects with ``tokens_a`` and ``tokens_b`` (a list or None).
        vocab: holds ``<cls>`` and ``<sep>``.
        max_len: T; None pads to the longest sequence.

    Returns:
        ``(tokens (B, T), segments (B, T), valid_lens (B,))``, long; padding has token
        ``<pad>`` and segment 0.
    """
    examples = _check_examples(examples, ("tokens_a", "tokens_b"), "ClassificationExample")
    _check_vocab(vocab, (CLS, SEP), "BERT's input")
    _check_max_len(max_len)
    pairs = [(e.tokens_a, e.tokens_b) for e in examples]
    return _bert_pairs(vocab, max_len, pairs, "<cls> a <sep> b <sep>")


def _check_bert(bert) -> None:
    if not isinstance(bert, BERTModel):
        raise TypeError(f"bert must be a qkvcourse BERTModel, got {type(bert).__name__}")


class BERTClassifier(nn.Module):
    """A BERT with a classification layer on the pooled ``<cls>`` representation.

    Section 4.1: "we use the final hidden vector C ∈ R^H corresponding to the first input
    token ([CLS]) as the aggregate representation. The only new parameters introduced
    during fine-tuning are classification layer weights W ∈ R^{K×H}", the loss being
    ``log(softmax(C Wᵀ))``. As in the released BERT (and d2l), C first goes through the
    pretrained pooler (dense + tanh, :meth:`~qkvcourse.bert.BERTModel.pool`), then dropout
    (0.1, as in pretraining), then W.

    Args:
        bert: a (pretrained) :class:`~qkvcourse.bert.BERTModel`; its masked-LM and NSP
            heads are kept as submodules but not used.
        num_classes: C (the paper's K).
        dropout: the classifier's dropout.

    ``forward(tokens (B, T), segments (B, T), valid_lens (B,))`` returns ``(B, C)``.
    """

    def __init__(self, bert: BERTModel, num_classes: int, dropout: float = 0.1):
        super().__init__()
        _check_bert(bert)
        check_size("num_classes", num_classes)
        check_dropout("dropout", dropout)
        self.bert = bert
        self.num_classes = num_classes
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(bert.encoder.num_hiddens, num_classes)  # W
        nn.init.trunc_normal_(self.classifier.weight, std=0.02, a=-0.04, b=0.04)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, tokens: Tensor, segments: Tensor, valid_lens: Tensor | None = None
                ) -> Tensor:
        encoded = self.bert.encoder(tokens, segments, valid_lens)  # (B, T, N)
        return self.classifier(self.dropout(self.bert.pool(encoded)))  # (B, C)


def bert_classification_loss(model: BERTClassifier, batch) -> Tensor:
    """``loss_fn(model, batch)`` for :class:`~qkvcourse.Trainer`: the mean cross-entropy,
    with ``batch = (tokens, segments, valid_lens, labels)``."""
    if not isinstance(batch, (list, tuple)) or len(batch) != 4:
        raise TypeError("batch must be (tokens, segments, valid_lens, labels), got "
                        + (f"{len(batch)} items" if isinstance(batch, (list, tuple))
                           else type(batch).__name__))
    tokens, segments, valid_lens, labels = batch
    check_tensor("tokens", tokens, ndim=2)
    check_nonempty("tokens", tokens)
    check_index_vector("labels", labels, tokens.shape[0], indexes=True)
    logits = model(tokens, segments, valid_lens)  # (B, C)
    _check_labels(labels, logits)
    return F.cross_entropy(logits.float(), labels.long())


# -- BERT: span extraction (Devlin et al., 2019, section 4.2, SQuAD v1.1) --------------------

def bert_span_inputs(examples, vocab: Vocab, max_len: int | None
                     ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """BERT's input for question answering: ``<cls> question <sep> passage <sep>``.

    Section 4.2: "we represent the input question and passage as a single packed sequence,
    with the question using the A embedding and the passage using the B embedding". The
    answer positions are moved from the passage into the packed sequence.

    Args:
        examples: B objects with ``question``, ``passage`` (token lists), ``answer_start``
            and ``answer_end`` (inclusive indices into the passage), e.g.
            :class:`~qkvcourse.data.tasks.SpanExample`.
        vocab: holds ``<cls>`` and ``<sep>``.
        max_len: T; None pads to the longest sequence.

    Returns:
        ``(tokens, segments, valid_lens, passage_offset, start, end)``: ``(B, T)``,
        ``(B, T)``, then four ``(B,)``, all long. ``passage_offset = len(question) + 2``
        is where the passage begins; ``start`` and ``end`` are the answer's first and last
        positions in the packed sequence (``answer_start + passage_offset``...).
    """
    examples = _check_examples(examples, ("question", "passage", "answer_start", "answer_end"),
                               "SpanExample")
    _check_vocab(vocab, (CLS, SEP), "BERT's input")
    _check_max_len(max_len)
    _check_int_field(examples, "answer_start")
    _check_int_field(examples, "answer_end")
    for i, e in enumerate(examples):
        if not 0 <= e.answer_start <= e.answer_end < len(e.passage):
            raise ValueError(f"examples[{i}] has the answer span [{e.answer_start}, "
                             f"{e.answer_end}], not inside its passage of {len(e.passage)} "
                             f"tokens (0 <= answer_start <= answer_end < len(passage))")
    pairs = [(e.question, e.passage) for e in examples]
    tokens, segments, valid_lens = _bert_pairs(vocab, max_len, pairs,
                                               "<cls> question <sep> passage <sep>")
    offset = torch.tensor([len(e.question) + 2 for e in examples], dtype=torch.long)
    start = torch.tensor([e.answer_start for e in examples], dtype=torch.long) + offset
    end = torch.tensor([e.answer_end for e in examples], dtype=torch.long) + offset
    return tokens, segments, valid_lens, offset, start, end


def passage_mask(segments: Tensor, valid_lens: Tensor | None = None) -> Tensor:
    """True at the passage tokens of ``<cls> question <sep> passage <sep>`` inputs.

    The passage is segment 1 without its closing ``<sep>``: the positions with segment 1
    before ``valid_lens - 1``; without ``valid_lens``, before the last position of
    segment 1.

    Args:
        segments: ``(B, T)`` segment ids.
        valid_lens: ``(B,)`` the number of real tokens, or None.

    Returns:
        ``(B, T)`` boolean.
    """
    check_tensor("segments", segments, ndim=2)
    is_b = segments == 1  # (B, T)
    positions = torch.arange(segments.shape[1], device=segments.device)  # (T,)
    if valid_lens is None:
        last = torch.where(is_b, positions, -1).amax(dim=1, keepdim=True)  # (B, 1): the <sep>
    else:
        check_lengths("valid_lens", valid_lens, "segments", segments)
        last = valid_lens.to(segments.device)[:, None] - 1  # (B, 1)
    return is_b & (positions < last)  # (B, T)


class BERTSpanExtractor(nn.Module):
    """A BERT with a start vector S and an end vector E for span extraction (section 4.2).

    "We only introduce a start vector S ∈ R^H and an end vector E ∈ R^H during
    fine-tuning. The probability of word i being the start of the answer span is computed
    as a dot product between T_i and S followed by a softmax over all of the words in the
    paragraph: P_i = e^{S·T_i} / Σ_j e^{S·T_j}"; the same with E for the end. S and E are
    the two rows of one ``Linear(N, 2)``, ``qa_outputs`` (its bias, as in the released
    code, adds the same number to every position and cancels in the softmax).

    The softmax runs over the passage only: the logits of every other position (``<cls>``,
    the question, the ``<sep>`` tokens, the padding) are set to
    :data:`~qkvcourse.losses.MASKED_LOGIT`, the most negative float32, so their probability
    is exactly 0 and nothing is ever NaN (a row without passage would get uniform probabilities).

    Args:
        bert: a (pretrained) :class:`~qkvcourse.bert.BERTModel`.

    ``forward(tokens (B, T), segments (B, T), valid_lens (B,))`` returns ``(start_logits
    (B, T), end_logits (B, T))`` in float32.
    """

    def __init__(self, bert: BERTModel):
        super().__init__()
        _check_bert(bert)
        self.bert = bert
        self.qa_outputs = nn.Linear(bert.encoder.num_hiddens, 2)  # rows: S and E
        nn.init.trunc_normal_(self.qa_outputs.weight, std=0.02, a=-0.04, b=0.04)
        nn.init.zeros_(self.qa_outputs.bias)

    @property
    def S(self) -> Tensor:
        """The start vector, ``(N,)``."""
        return self.qa_outputs.weight[0]

    @property
    def E(self) -> Tensor:
        """The end vector, ``(N,)``."""
        return self.qa_outputs.weight[1]

    def forward(self, tokens: Tensor, segments: Tensor, valid_lens: Tensor | None = None
                ) -> tuple[Tensor, Tensor]:
        encoded = self.bert.encoder(tokens, segments, valid_lens)  # (B, T, N)
        logits = self.qa_outputs(encoded).float()  # (B, T, 2): S·T_i, E·T_i
        keep = passage_mask(segments, valid_lens)  # (B, T)
        logits = logits.masked_fill(~keep[:, :, None], MASKED_LOGIT)  # (B, T, 2)
        return logits[..., 0], logits[..., 1]  # (B, T) each


def best_spans(start_logits: Tensor, end_logits: Tensor, max_answer_len: int = 30
               ) -> tuple[Tensor, Tensor]:
    """The best span of every row: ``argmax S·T_i + E·T_j`` over ``i <= j < i + max_answer_len``.

    Section 4.2: "The score of a candidate span from position i to position j is defined
    as S·T_i + E·T_j, and the maximum scoring span where j ≥ i is used as a prediction."
    The released code (and Hugging Face's pipeline) also caps the length, here at
    ``max_answer_len`` tokens. Every allowed pair is scored at once, in float64 (so that
    two masked logits add up to a finite number); ties go to the smallest start, then the
    smallest end.

    Args:
        start_logits, end_logits: ``(B, T)``.
        max_answer_len: the longest answer, in tokens.

    Returns:
        ``(start (B,), end (B,))``, long.
    """
    _check_span_logits(start_logits, end_logits)
    check_size("max_answer_len", max_answer_len)
    B, T = start_logits.shape
    if T == 0:
        raise ValueError(f"start_logits must hold at least one position, got shape "
                         f"{shape_str(start_logits)}")
    scores = start_logits.double()[:, :, None] + end_logits.double()[:, None, :]  # (B, T, T)
    i = torch.arange(T, device=start_logits.device)
    length = i[None, :] - i[:, None]  # (T, T): j - i
    allowed = (length >= 0) & (length < max_answer_len)  # (T, T)
    best = scores.masked_fill(~allowed, float("-inf")).reshape(B, T * T).argmax(dim=1)  # (B,)
    return best // T, best % T


def bert_span_loss(model: BERTSpanExtractor, batch) -> Tensor:
    """``loss_fn(model, batch)`` for :class:`~qkvcourse.Trainer`:
    :func:`~qkvcourse.losses.span_loss`, with ``batch = (tokens, segments, valid_lens,
    passage_offset, start, end)`` as :func:`bert_span_inputs` gives it."""
    if not isinstance(batch, (list, tuple)) or len(batch) != 6:
        raise TypeError("batch must be (tokens, segments, valid_lens, passage_offset, start, "
                        "end), got " + (f"{len(batch)} items" if isinstance(batch, (list, tuple))
                                        else type(batch).__name__))
    tokens, segments, valid_lens, _, start, end = batch
    check_tensor("tokens", tokens, ndim=2)
    check_nonempty("tokens", tokens)
    start_logits, end_logits = model(tokens, segments, valid_lens)
    return span_loss(start_logits, end_logits, start, end)


class SpanScores(NamedTuple):
    exact_match: float  # fraction of predicted spans equal to the answer
    f1: float  # mean SQuAD F1


@torch.no_grad()
def evaluate_spans(model: nn.Module, loader, max_answer_len: int = 30) -> SpanScores:
    """Exact match and F1 (by tokens, as SQuAD) of a span extractor over a loader of
    ``(tokens, segments, valid_lens, passage_offset, start, end)`` batches, in eval mode."""
    check_size("max_answer_len", max_answer_len)
    device = _model_device(model)
    exact = f1 = 0.0
    total = 0
    with _EvalMode(model):
        for batch in loader:
            tokens, segments, valid_lens, _, start, end = (t.to(device) for t in batch)
            pred_start, pred_end = best_spans(*model(tokens, segments, valid_lens),
                                              max_answer_len)
            B = tokens.shape[0]
            batch_exact, batch_f1 = span_scores(pred_start, pred_end, start, end, tokens)
            exact, f1, total = exact + B * batch_exact, f1 + B * batch_f1, total + B
    if total == 0:
        raise ValueError("loader yielded no example")
    return SpanScores(exact / total, f1 / total)
