"""Chapter 9 (GPT): the causal language-modelling loss, the sampling distribution with
temperature, top-k and top-p, and GPT's input transformation for sentence pairs."""
from __future__ import annotations

import torch
from torch.nn import functional as F

from ....finetune import gpt_lm_targets
from ....gpt import top_k_filter, top_p_filter
from ....losses import lm_loss
from ...core import Case
from ..registry import Mistake, Question, register


# --- causal_lm_loss ------------------------------------------------------------------------

def _causal_lm_loss(logits, idx, valid_lens):
    return lm_loss(logits, gpt_lm_targets(idx, valid_lens))


def _masked_mean(per_position, counted):
    """Mean of ``per_position (B, T')`` over the True entries of ``counted``; 0 if none."""
    counted = counted.float()
    return (per_position * counted).sum() / counted.sum().clamp(min=1)


def _per_position_ce(logits, targets):
    """(B, T', V), (B, T') -> (B, T') cross-entropies."""
    return F.cross_entropy(logits.transpose(1, 2).float(), targets, reduction="none")


def _lm_no_shift(logits, idx, valid_lens):
    """Each position predicts its own token."""
    T = idx.shape[1]
    counted = torch.arange(T)[None] < valid_lens[:, None]
    return _masked_mean(_per_position_ce(logits, idx), counted)


def _lm_shift_backwards(logits, idx, valid_lens):
    """Position t + 1 predicts token t (the targets shifted the other way)."""
    T = idx.shape[1]
    counted = torch.arange(1, T)[None] < valid_lens[:, None]
    return _masked_mean(_per_position_ce(logits[:, 1:], idx[:, :-1]), counted)


def _lm_padding_counted(logits, idx, valid_lens):
    """Shifted correctly, but every position counts, padding included."""
    return _per_position_ce(logits[:, :-1], idx[:, 1:]).mean() if idx.shape[1] > 1 \
        else logits.new_zeros(())


def _lm_one_past_end(logits, idx, valid_lens):
    """The last real token is asked to predict the first padding token."""
    T = idx.shape[1]
    counted = torch.arange(T - 1)[None] < valid_lens[:, None]
    return _masked_mean(_per_position_ce(logits[:, :-1], idx[:, 1:]), counted)


def _lm_row_means(logits, idx, valid_lens):
    """The mean of the rows' mean losses, instead of the mean over all counted tokens."""
    T = idx.shape[1]
    counted = (torch.arange(T - 1)[None] < valid_lens[:, None] - 1).float()
    ce = _per_position_ce(logits[:, :-1], idx[:, 1:])
    n = counted.sum(1)
    rows = n > 0
    if not rows.any():
        return logits.new_zeros(())
    return ((ce * counted).sum(1)[rows] / n[rows]).mean()


def _lm_softmax_first(logits, idx, valid_lens):
    """Probabilities (not logits) given to cross_entropy."""
    return _causal_lm_loss(logits.softmax(-1), idx, valid_lens)


def _lm_nan_when_empty(logits, idx, valid_lens):
    """A plain mean over the counted positions: 0 / 0 = NaN when nothing counts."""
    T = idx.shape[1]
    counted = (torch.arange(T - 1)[None] < valid_lens[:, None] - 1).float()
    ce = _per_position_ce(logits[:, :-1], idx[:, 1:])
    return (ce * counted).sum() / counted.sum()


def _lm_cases(rng, hidden):
    names = ("logits", "idx", "valid_lens")
    cases = []
    if not hidden:
        specs = [(2, 4, 6, [4, 2]), (3, 4, 5, [4, 1, 3])]
    else:
        specs = [(1, 6, 5, [6]), (4, 8, 11, None), (3, 7, 9, [7, 7, 7]), (2, 5, 4, [2, 5])]
    for B, T, V, lens in specs:
        if lens is None:
            lens = [rng.randint(1, T) for _ in range(B)]
        logits = torch.randn(B, T, V)
        idx = torch.randint(0, V, (B, T))
        lens_t = torch.tensor(lens)
        idx = idx.masked_fill(torch.arange(T)[None] >= lens_t[:, None], 0)  # padding id 0
        cases.append(Case(f"B={B}, T={T}, V={V}, valid_lens={lens}", (logits, idx, lens_t),
                          arg_names=names))
    if not hidden:
        B, T, V = 2, 3, 4
        logits, idx = torch.randn(B, T, V), torch.tensor([[2, 0, 0], [3, 0, 0]])
        cases.append(Case("every row holds one real token, so no position counts (loss 0)",
                          (logits, idx, torch.tensor([1, 1])), arg_names=names))
    else:
        logits, idx = torch.randn(2, 1, 6), torch.tensor([[4], [1]])
        cases.append(Case("T=1: no next token anywhere (loss 0)",
                          (logits, idx, torch.tensor([1, 1])), arg_names=names))
    return cases


register(Question(
    qid="ch09.causal_lm_loss", name="causal_lm_loss", kind="function",
    title="Causal language-modelling loss", reference=_causal_lm_loss, cases=_lm_cases,
    atol=1e-5, rtol=1e-4,
    mistakes=[
        Mistake("targets not shifted",
                "The logits at position t are a prediction of the NEXT token, idx[:, t + 1]; "
                "a model that is scored on its own input token learns to copy.", _lm_no_shift),
        Mistake("targets shifted the wrong way",
                "Position t has seen tokens 0..t and predicts token t + 1; pairing the logits "
                "of position t + 1 with token t asks the model for a token it has already seen.",
                _lm_shift_backwards),
        Mistake("padding counted in the loss",
                "Only predictions of real tokens count: position t counts when t + 1 < "
                "valid_lens[b], so padding never appears as a target.", _lm_padding_counted),
        Mistake("the last real token predicts the padding",
                "Row b has valid_lens[b] - 1 targets: the last real token has no next token, "
                "so its prediction must not count.", _lm_one_past_end),
        Mistake("mean of the rows' means",
                "The loss is the mean over all counted tokens of the batch; averaging each "
                "row first gives the tokens of short rows more weight.", _lm_row_means),
        Mistake("softmax applied before cross-entropy",
                "F.cross_entropy expects raw logits (it applies log-softmax itself); passing "
                "probabilities applies the softmax twice.", _lm_softmax_first),
        Mistake("NaN when no position counts",
                "With nothing to predict the sum is 0 and so is the count; the exercise asks "
                "for a loss of 0 in that case, not 0 / 0.", _lm_nan_when_empty),
    ]))


# --- sampling_probs --------------------------------------------------------------------------

def _sampling_probs(logits, temperature=1.0, top_k=None, top_p=None):
    logits = logits / temperature
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    return torch.softmax(logits, -1)


def _nucleus_strict(logits, p, keep_first):
    """Drop a token when the mass up to and including it exceeds p."""
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    cum = torch.softmax(sorted_logits, -1).cumsum(-1)
    drop = cum > p
    if keep_first:
        drop[..., 0] = False
    drop = drop.scatter(-1, order, drop)
    return logits.masked_fill(drop, float("-inf"))


def _sp_k_plus_one(logits, temperature=1.0, top_k=None, top_p=None):
    if top_k is not None:
        return _sampling_probs(logits, temperature, min(top_k + 1, logits.shape[-1]), top_p)
    return _sampling_probs(logits, temperature, top_k, top_p)


def _sp_crossing_dropped(logits, temperature=1.0, top_k=None, top_p=None):
    logits = logits / temperature
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = _nucleus_strict(logits, top_p, keep_first=True)
    return torch.softmax(logits, -1)


def _sp_crossing_dropped_nan(logits, temperature=1.0, top_k=None, top_p=None):
    logits = logits / temperature
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = _nucleus_strict(logits, top_p, keep_first=False)
    return torch.softmax(logits, -1)


def _sp_not_renormalised(logits, temperature=1.0, top_k=None, top_p=None):
    probs = torch.softmax(logits / temperature, -1)
    kept = _sampling_probs(logits, temperature, top_k, top_p) > 0
    return probs * kept


def _sp_temperature_last(logits, temperature=1.0, top_k=None, top_p=None):
    """Filters on the untempered logits, then divides by the temperature."""
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    return torch.softmax(logits / temperature, -1)


def _sp_temperature_multiplied(logits, temperature=1.0, top_k=None, top_p=None):
    return _sampling_probs(logits, 1.0 / temperature, top_k, top_p)


def _sp_top_p_before_top_k(logits, temperature=1.0, top_k=None, top_p=None):
    logits = logits / temperature
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    return torch.softmax(logits, -1)


def _sampling_cases(rng, hidden):
    names = ("logits",)
    cases = []

    def add(label, logits, **kwargs):
        cases.append(Case(label, (logits,), dict(kwargs), arg_names=names))

    if not hidden:
        logits = torch.randn(2, 6) * 2
        add("logits (2, 6), temperature 1, no filter", logits)
        add("logits (2, 6), top_k=3", logits, top_k=3)
        add("logits (2, 6), top_p=0.6", logits, top_p=0.6)
        add("logits (2, 6), temperature=0.5, top_p=0.8", logits, temperature=0.5, top_p=0.8)
        add("logits (2, 6), temperature=2.0, top_k=3, top_p=0.6", logits, temperature=2.0,
            top_k=3, top_p=0.6)
        peaked = torch.tensor([[4.0, 1.0, 0.5, 0.0, -1.0], [0.3, 0.2, 0.1, 0.0, -0.1]])
        add("a row whose most probable token alone has more than p (top_p=0.5)", peaked,
            top_p=0.5)
    else:
        logits = torch.randn(2, 3, 7) * 2
        add("logits (2, 3, 7), temperature=0.7, top_k=2", logits, temperature=0.7, top_k=2)
        add("logits (2, 3, 7), temperature=1.5, top_p=0.9", logits, temperature=1.5, top_p=0.9)
        add("logits (2, 3, 7), top_k=7 (= V), top_p=1.0: nothing filtered", logits, top_k=7,
            top_p=1.0)
        add("logits (2, 3, 7), top_k=12 (> V)", logits, top_k=12)
        one = torch.randn(1, 9) * 3
        add("logits (1, 9), top_k=1", one, top_k=1)
        add("logits (1, 9), temperature=0.3, top_k=5, top_p=0.3", one, temperature=0.3,
            top_k=5, top_p=0.3)
        add("logits (1, 9), temperature=3.0, top_k=6, top_p=0.75", one, temperature=3.0,
            top_k=6, top_p=0.75)
        add("1-D logits (9,), top_p=0.05", one[0], top_p=0.05)
    return cases


register(Question(
    qid="ch09.sampling_probs", name="sampling_probs", kind="function",
    title="Sampling distribution: temperature, top-k, top-p", reference=_sampling_probs,
    cases=_sampling_cases, atol=1e-6, rtol=1e-4,
    mistakes=[
        Mistake("top-k keeps k + 1 tokens",
                "top_k=k keeps exactly the k largest logits of each row; check the comparison "
                "with the k-th largest value (and which value that is).", _sp_k_plus_one),
        Mistake("nucleus stops before the token that crosses p",
                "Top-p keeps the smallest set of most probable tokens whose total probability "
                "is at least p: a token is kept when the mass of the tokens ranked above it is "
                "still below p, so the token that crosses p is kept and the most probable token "
                "is never removed.", _sp_crossing_dropped),
        Mistake("nucleus stops before the token that crosses p",
                "Top-p keeps the smallest set of most probable tokens whose total probability "
                "is at least p: a token is kept when the mass of the tokens ranked above it is "
                "still below p, so the token that crosses p is kept and the most probable token "
                "is never removed (here every token was removed, hence NaN).",
                _sp_crossing_dropped_nan),
        Mistake("filtered probabilities not renormalised",
                "After removing tokens, the probabilities of the survivors must sum to 1 again: "
                "filter the logits (-inf) before the softmax, or divide by the kept mass.",
                _sp_not_renormalised),
        Mistake("temperature applied after filtering",
                "Divide the logits by the temperature first: the nucleus is a set of the "
                "distribution that is actually sampled, and it changes with the temperature.",
                _sp_temperature_last),
        Mistake("temperature multiplied instead of divided",
                "Temperature divides the logits: T < 1 sharpens the distribution, T > 1 "
                "flattens it.", _sp_temperature_multiplied),
        Mistake("top-p applied before top-k",
                "The exercise applies top-k first and then the nucleus on the distribution of "
                "the k survivors (as GPT.generate does).", _sp_top_p_before_top_k),
    ]))


# --- gpt_pair_inputs --------------------------------------------------------------------------

def _gpt_pair_inputs(pairs, start_id, delim_id, extract_id, pad_id):
    rows = []
    for a, b in pairs:
        middle = list(a) if b is None else [*a, delim_id, *b]
        rows.append([start_id, *middle, extract_id])
    T = max(len(r) for r in rows)
    idx = torch.tensor([r + [pad_id] * (T - len(r)) for r in rows], dtype=torch.long)
    return idx, torch.tensor([len(r) for r in rows], dtype=torch.long)


def _pad(rows, pad_id, left=False):
    T = max(len(r) for r in rows)
    padded = [([pad_id] * (T - len(r)) + r) if left else (r + [pad_id] * (T - len(r)))
              for r in rows]
    return torch.tensor(padded, dtype=torch.long), torch.tensor([len(r) for r in rows])


def _gpi_no_extract(pairs, start_id, delim_id, extract_id, pad_id):
    return _pad([[start_id, *a] + ([] if b is None else [delim_id, *b]) for a, b in pairs],
                pad_id)


def _gpi_no_start(pairs, start_id, delim_id, extract_id, pad_id):
    return _pad([[*a] + ([] if b is None else [delim_id, *b]) + [extract_id] for a, b in pairs],
                pad_id)


def _gpi_delim_for_single(pairs, start_id, delim_id, extract_id, pad_id):
    return _pad([[start_id, *a, delim_id, *(b or []), extract_id] for a, b in pairs], pad_id)


def _gpi_left_padding(pairs, start_id, delim_id, extract_id, pad_id):
    return _pad([[start_id, *a] + ([] if b is None else [delim_id, *b]) + [extract_id]
                 for a, b in pairs], pad_id, left=True)


def _gpi_lens_without_specials(pairs, start_id, delim_id, extract_id, pad_id):
    idx, _ = _gpt_pair_inputs(pairs, start_id, delim_id, extract_id, pad_id)
    return idx, torch.tensor([len(a) + len(b or []) for a, b in pairs])


def _gpi_extract_after_padding(pairs, start_id, delim_id, extract_id, pad_id):
    rows = [[start_id, *a] + ([] if b is None else [delim_id, *b]) for a, b in pairs]
    T = max(len(r) for r in rows) + 1
    idx = torch.tensor([r + [pad_id] * (T - 1 - len(r)) + [extract_id] for r in rows])
    return idx, torch.tensor([len(r) + 1 for r in rows])


def _gpi_cases(rng, hidden):
    names = ("pairs", "start_id", "delim_id", "extract_id", "pad_id")
    specials = (1, 2, 3, 0)  # start, delim, extract, pad

    def sentence(n):
        return [rng.randint(4, 30) for _ in range(n)]

    cases = []
    if not hidden:
        pairs = [(sentence(3), sentence(2)), (sentence(2), sentence(1))]
        cases.append(Case("two pairs of different lengths", (pairs, *specials), arg_names=names))
        pairs = [(sentence(4), None), (sentence(1), sentence(2))]
        cases.append(Case("a single sentence (b is None) and a pair", (pairs, *specials),
                          arg_names=names))
        pairs = [(sentence(2), sentence(3))]
        cases.append(Case("one pair", (pairs, 7, 8, 9, 6), arg_names=names))
    else:
        pairs = [(sentence(rng.randint(1, 5)), sentence(rng.randint(1, 5))) for _ in range(4)]
        pairs[2] = (pairs[2][0], None)
        cases.append(Case("four examples, one without b", (pairs, *specials), arg_names=names))
        cases.append(Case("one single sentence", ([(sentence(3), None)], 40, 41, 42, 43),
                          arg_names=names))
        pairs = [(sentence(2), sentence(2)), (sentence(2), sentence(2)), (sentence(1), None)]
        cases.append(Case("pairs of equal length and a short single sentence",
                          (pairs, 5, 3, 1, 2), arg_names=names))
    return cases


register(Question(
    qid="ch09.gpt_pair_inputs", name="gpt_pair_inputs", kind="function",
    title="GPT's input transformation for sentence pairs", reference=_gpt_pair_inputs,
    cases=_gpi_cases,
    mistakes=[
        Mistake("no <extract> token at the end",
                "The classifier reads the final state of the last token; GPT ends every "
                "input with an extract token so that this token is the same learned symbol "
                "in every example.", _gpi_no_extract),
        Mistake("no <start> token",
                "Every input begins with the start token (GPT's randomly initialised start "
                "symbol).", _gpi_no_start),
        Mistake("delimiter added to a single sentence",
                "The delimiter separates a from b; an example without b is just start, a, "
                "extract.", _gpi_delim_for_single),
        Mistake("padded on the left",
                "Pad on the right, after the extract token, so that row b's real tokens are "
                "idx[b, :valid_lens[b]].", _gpi_left_padding),
        Mistake("valid_lens does not count the special tokens",
                "valid_lens[b] is the length of the whole transformed row (special tokens "
                "included), so that the extract token sits at valid_lens[b] - 1.",
                _gpi_lens_without_specials),
        Mistake("<extract> placed after the padding",
                "The extract token directly follows the last real token; padding comes "
                "after it.", _gpi_extract_after_padding),
    ]))
