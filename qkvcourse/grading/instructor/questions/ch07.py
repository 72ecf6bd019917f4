"""Chapter 7 (the Transformer): a pre-norm encoder block, the causal mask with a KV cache and
the warm-up learning rate of the paper."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ....masking import causal_mask
from ....multihead import MultiHeadAttention
from ....transformer import PositionWiseFFN, TransformerEncoderBlock
from ...core import Case
from ..registry import Mistake, Question, register


# --- PreNormEncoderBlock -------------------------------------------------------------------

class _PreNormBase(nn.Module):
    """The submodules the exercise names, so that the reference's state_dict loads."""

    def __init__(self, num_hiddens, ffn_num_hiddens, num_heads, dropout):
        super().__init__()
        self.ln1 = nn.LayerNorm(num_hiddens)
        self.attention = MultiHeadAttention(num_hiddens, num_heads, dropout)
        self.ln2 = nn.LayerNorm(num_hiddens)
        self.ffn = PositionWiseFFN(num_hiddens, ffn_num_hiddens, dropout)
        self.dropout = nn.Dropout(dropout)

    def attend(self, Y, valid_lens):
        return self.attention(Y, Y, Y, valid_lens)


class _PreNormEncoderBlock(_PreNormBase):
    """The reference: X + Dropout(Attention(LN1(X))), then X + Dropout(FFN(LN2(X)))."""

    def forward(self, X, valid_lens=None):
        X = X + self.dropout(self.attend(self.ln1(X), valid_lens))
        return X + self.dropout(self.ffn(self.ln2(X)))


class _PostNorm(_PreNormBase):
    def forward(self, X, valid_lens=None):
        X = self.ln1(X + self.dropout(self.attend(X, valid_lens)))
        return self.ln2(X + self.dropout(self.ffn(X)))


class _ResidualFromNormalised(_PreNormBase):
    def forward(self, X, valid_lens=None):
        X = self.ln1(X)
        X = X + self.dropout(self.attend(X, valid_lens))
        X = self.ln2(X)
        return X + self.dropout(self.ffn(X))


class _NoAttentionResidual(_PreNormBase):
    def forward(self, X, valid_lens=None):
        X = self.dropout(self.attend(self.ln1(X), valid_lens))
        return X + self.dropout(self.ffn(self.ln2(X)))


class _NoFFNResidual(_PreNormBase):
    def forward(self, X, valid_lens=None):
        X = X + self.dropout(self.attend(self.ln1(X), valid_lens))
        return self.dropout(self.ffn(self.ln2(X)))


class _NoPaddingMask(_PreNormBase):
    def forward(self, X, valid_lens=None):
        X = X + self.dropout(self.attend(self.ln1(X), None))
        return X + self.dropout(self.ffn(self.ln2(X)))


class _OneLayerNorm(_PreNormBase):
    def forward(self, X, valid_lens=None):
        X = X + self.dropout(self.attend(self.ln1(X), valid_lens))
        return X + self.dropout(self.ffn(self.ln1(X)))


class _DropoutAlwaysOn(_PreNormBase):
    def forward(self, X, valid_lens=None):
        p = self.dropout.p
        X = X + F.dropout(self.attend(self.ln1(X), valid_lens), p)
        return X + F.dropout(self.ffn(self.ln2(X)), p)


def _prenorm_state(N, F_, H):
    """The weights of ``qc.TransformerEncoderBlock(..., norm_first=True)`` under the exercise's
    names, with LayerNorm gains and biases moved away from 1 and 0 (so that every LayerNorm
    matters)."""
    ref = TransformerEncoderBlock(N, F_, H, 0.0, norm_first=True)
    with torch.no_grad():
        for ln in (ref.addnorm1.ln, ref.addnorm2.ln):
            ln.weight.copy_(1 + 0.5 * torch.randn(N))
            ln.bias.copy_(0.5 * torch.randn(N))
    parts = {"ln1": ref.addnorm1.ln, "attention": ref.attention.mha, "ln2": ref.addnorm2.ln,
             "ffn": ref.ffn}
    return {f"{prefix}.{k}": v.detach().clone() for prefix, module in parts.items()
            for k, v in module.state_dict().items()}


def _prenorm_cases(rng, hidden):
    names = ("X", "valid_lens")
    if not hidden:
        # (B, S, N, F, H, dropout, valid_lens)
        configs = [(2, 3, 4, 8, 2, 0.0, None), (2, 3, 4, 8, 2, 0.0, [3, 1]),
                   (2, 3, 8, 12, 4, 0.2, [3, 2])]
    else:
        configs = [(1, 5, 8, 16, 1, 0.0, None), (3, 6, 12, 24, 3, 0.1, [6, 2, 4]),
                   (2, 7, 16, 32, 4, 0.5, [1, 7]), (3, 4, 12, 8, 6, 0.0, [0, 4, 2]),
                   (4, 2, 4, 8, 2, 0.3, None)]
    cases = []
    for B, S, N, F_, H, p, lens in configs:
        X = torch.randn(B, S, N)
        state = _prenorm_state(N, F_, H)
        init = {"num_hiddens": N, "ffn_num_hiddens": F_, "num_heads": H, "dropout": p}
        args = (X,) if lens is None else (X, torch.tensor(lens))
        what = "valid_lens None" if lens is None else f"valid_lens = {lens}"
        cases.append(Case(f"X {(B, S, N)}, {H} heads, dropout {p}, {what}", args, init=init,
                          state=state, seed=rng.randrange(10_000), arg_names=names))
    return cases


register(Question(
    qid="ch07.prenorm_encoder_block", name="PreNormEncoderBlock", kind="module",
    title="Pre-norm encoder block", reference=_PreNormEncoderBlock, cases=_prenorm_cases,
    mistakes=[
        Mistake("post-norm instead of pre-norm",
                "Pre-norm normalises what each sub-layer reads and leaves the residual sum "
                "unnormalised; normalising after the sum is the paper's post-norm.", _PostNorm),
        Mistake("residual added to the normalised input",
                "The residual path must carry X itself: LayerNorm only changes what the "
                "sub-layer reads, not the tensor the sub-layer's output is added to.",
                _ResidualFromNormalised),
        Mistake("missing residual connection around the attention",
                "The attention sub-layer's output is added to its input X, not used in its place.",
                _NoAttentionResidual),
        Mistake("missing residual connection around the feed-forward network",
                "The FFN's output is added to its input, as for the attention sub-layer.",
                _NoFFNResidual),
        Mistake("padding mask ignored",
                "valid_lens must reach the attention, so that padded keys get no weight.",
                _NoPaddingMask),
        Mistake("the same LayerNorm used for both sub-layers",
                "Each sub-layer has its own LayerNorm with its own gain and bias (ln1 before "
                "the attention, ln2 before the FFN).", _OneLayerNorm),
        Mistake("dropout active in evaluation mode",
                "torch.nn.functional.dropout drops values unless told it is not training; "
                "the nn.Dropout module follows model.eval() by itself.", _DropoutAlwaysOn),
    ]))


# --- cached_causal_mask ----------------------------------------------------------------------

def _cached_causal_mask(num_cached, num_new):
    return causal_mask(num_cached + num_new)[num_cached:]


def _diagonal_excluded(num_cached, num_new):
    i = torch.arange(num_cached + num_new)
    j = torch.arange(num_new)[:, None]
    return i < num_cached + j


def _one_ahead(num_cached, num_new):
    i = torch.arange(num_cached + num_new)
    j = torch.arange(num_new)[:, None]
    return i <= num_cached + j + 1


def _top_left(num_cached, num_new):
    return torch.ones(num_new, num_cached + num_new, dtype=torch.bool).tril()


def _inverted(num_cached, num_new):
    return ~_cached_causal_mask(num_cached, num_new)


def _cache_hidden(num_cached, num_new):
    mask = _cached_causal_mask(num_cached, num_new).clone()
    mask[:, :num_cached] = False
    return mask


def _mask_cases(rng, hidden):
    sizes = [(0, 3), (2, 3), (4, 1)] if not hidden else \
        [(0, 1), (1, 1), (5, 2), (1, 6), (3, 4), (7, 7), (rng.randint(8, 20), rng.randint(2, 5))]
    return [Case(f"num_cached={P}, num_new={T}", (P, T), arg_names=("num_cached", "num_new"))
            for P, T in sizes]


register(Question(
    qid="ch07.cached_causal_mask", name="cached_causal_mask", kind="function",
    title="Causal mask with a KV cache", reference=_cached_causal_mask, cases=_mask_cases,
    mistakes=[
        Mistake("diagonal excluded",
                "A new token may attend to itself: key i is allowed when i <= its absolute "
                "position, equality included.", _diagonal_excluded),
        Mistake("one position too far (the next token is visible)",
                "A token at absolute position p sees keys 0..p and nothing after it.", _one_ahead),
        Mistake("mask aligned at the top-left corner",
                "Row j is the new token at absolute position num_cached + j, not position j: "
                "every new token sees all the cached keys.", _top_left),
        Mistake("mask inverted",
                "True means 'may attend': the allowed keys are the past and the present, "
                "not the future.", _inverted),
        Mistake("cached keys hidden",
                "The cache holds the keys of earlier tokens, which every new token may "
                "attend to.", _cache_hidden),
    ]))


# --- noam_rate -------------------------------------------------------------------------------

def _noam_rate(step, d_model, warmup_steps):
    return d_model ** -0.5 * min(step ** -0.5, step * warmup_steps ** -1.5)


def _noam_shifted(step, d_model, warmup_steps):
    return _noam_rate(step + 1, d_model, warmup_steps)


def _noam_no_dmodel(step, d_model, warmup_steps):
    return min(step ** -0.5, step * warmup_steps ** -1.5)


def _noam_max(step, d_model, warmup_steps):
    return d_model ** -0.5 * max(step ** -0.5, step * warmup_steps ** -1.5)


def _noam_wrong_warmup_power(step, d_model, warmup_steps):
    return d_model ** -0.5 * min(step ** -0.5, step * warmup_steps ** -0.5)


def _noam_cases(rng, hidden):
    if not hidden:
        values = [(1, 512, 4000), (4000, 512, 4000), (10_000, 512, 4000), (50, 64, 100)]
    else:
        w = rng.randint(200, 2000)
        values = [(1, 16, 1), (2, 16, 1), (w - 1, 128, w), (w, 128, w), (w + 1, 128, w),
                  (10 ** 6, 1024, 4000), (3, 32, 10), (rng.randint(20, 100), 256, 10)]
    return [Case(f"step={s}, d_model={d}, warmup_steps={w}", (s, d, w),
                 arg_names=("step", "d_model", "warmup_steps")) for s, d, w in values]


register(Question(
    qid="ch07.noam_rate", name="noam_rate", kind="function",
    title="The Transformer's warm-up learning rate", reference=_noam_rate, cases=_noam_cases,
    atol=0.0, rtol=1e-9,
    mistakes=[
        Mistake("step shifted by one",
                "The paper counts optimiser steps from 1 and the function receives that number "
                "directly; only LambdaLR's counter starts at 0.", _noam_shifted),
        Mistake("missing d_model^-0.5 factor",
                "The whole curve is scaled by d_model^-0.5, so wider models get smaller rates.",
                _noam_no_dmodel),
        Mistake("max instead of min",
                "The rate follows the smaller of the two terms: the linear ramp during the "
                "warm-up, the inverse square root afterwards.", _noam_max),
        Mistake("warm-up slope uses warmup_steps^-0.5",
                "The ramp's slope must make both terms equal at step == warmup_steps, which "
                "needs warmup_steps to the power -1.5.", _noam_wrong_warmup_power),
    ]))
