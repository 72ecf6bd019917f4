"""Chapter 6 (self-attention and positional encoding): the sinusoidal table, the similarity of
two positions in closed form, and rotary embeddings at arbitrary positions."""
from __future__ import annotations

import torch

from ....positional import sinusoidal_table
from ...core import Case
from ..registry import Mistake, Question, register


# --- sinusoidal_encoding -------------------------------------------------------------------

def _sinusoidal(max_len, num_hiddens, base=10000.0):
    return sinusoidal_table(max_len, num_hiddens, base)


def _angles(max_len, num_hiddens, base, exponents):
    positions = torch.arange(max_len, dtype=torch.float32)[:, None]
    return positions / base ** exponents  # (max_len, len(exponents))


def _pairs(num_hiddens):
    return torch.arange(0, num_hiddens, 2, dtype=torch.float32) / num_hiddens  # 2j/d


def _sin_cos_concatenated(max_len, num_hiddens, base=10000.0):
    """All sines in the first half, all cosines in the second."""
    a = _angles(max_len, num_hiddens, base, _pairs(num_hiddens))
    return torch.cat((torch.sin(a), torch.cos(a)), dim=1)


def _cos_sin_swapped(max_len, num_hiddens, base=10000.0):
    a = _angles(max_len, num_hiddens, base, _pairs(num_hiddens))
    return torch.stack((torch.cos(a), torch.sin(a)), dim=-1).flatten(1)


def _exponent_j_over_d(max_len, num_hiddens, base=10000.0):
    """Exponent j/d (the pair index) instead of 2j/d."""
    exps = torch.arange(num_hiddens // 2, dtype=torch.float32) / num_hiddens
    a = _angles(max_len, num_hiddens, base, exps)
    return torch.stack((torch.sin(a), torch.cos(a)), dim=-1).flatten(1)


def _exponent_column(max_len, num_hiddens, base=10000.0):
    """Each column c uses the exponent c/d, so a cosine column is one step slower than its sine."""
    a = _angles(max_len, num_hiddens, base,
                torch.arange(num_hiddens, dtype=torch.float32) / num_hiddens)
    out = torch.sin(a)
    out[:, 1::2] = torch.cos(a[:, 1::2])
    return out


def _base_ignored(max_len, num_hiddens, base=10000.0):
    return sinusoidal_table(max_len, num_hiddens, 10000.0)


def _multiplied(max_len, num_hiddens, base=10000.0):
    """i * base^(2j/d) instead of i / base^(2j/d)."""
    a = _angles(max_len, num_hiddens, base, -_pairs(num_hiddens))
    return torch.stack((torch.sin(a), torch.cos(a)), dim=-1).flatten(1)


def _sinusoidal_cases(rng, hidden):
    names = ("max_len", "num_hiddens", "base")
    sizes = [(3, 4, 10000.0), (4, 6, 10000.0), (5, 4, 100.0)] if not hidden else \
        [(1, 2, 10000.0), (50, 16, 10000.0), (7, 10, 10000.0), (20, 8, 10.0), (128, 64, 10000.0)]
    return [Case(f"max_len={L}, num_hiddens={d}, base={base}", (L, d, base), arg_names=names)
            for L, d, base in sizes]


register(Question(
    qid="ch06.sinusoidal_encoding", name="sinusoidal_encoding", kind="function",
    title="Sinusoidal positional encoding table", reference=_sinusoidal, cases=_sinusoidal_cases,
    atol=1e-4, rtol=1e-4,
    mistakes=[
        Mistake("sines and cosines concatenated instead of interleaved",
                "Column pair (2j, 2j+1) holds the sine and the cosine of the same angle side by "
                "side; putting all sines first and all cosines after is another table.",
                _sin_cos_concatenated),
        Mistake("sine and cosine swapped",
                "Even columns (2j) hold the sine, odd columns (2j+1) the cosine.", _cos_sin_swapped),
        Mistake("exponent j/d instead of 2j/d",
                "The frequency of pair j is base^(-2j/d), where 2j is the index of the pair's "
                "even column; with j/d the frequencies only fall to base^(-1/2) instead of "
                "nearly 1/base.", _exponent_j_over_d),
        Mistake("each column given its own frequency",
                "Both columns of a pair share one frequency (the exponent uses the even column "
                "index 2j for the cosine too), so the pair moves round a circle.",
                _exponent_column),
        Mistake("base argument ignored",
                "The frequencies are powers of the base that is passed in; 10000 is only the "
                "default.", _base_ignored),
        Mistake("position multiplied by base^(2j/d) instead of divided",
                "The angular frequencies base^(-2j/d) fall from 1 towards 1/base, so the later "
                "columns change slowly with the position.", _multiplied),
    ]))


# --- position_similarity -------------------------------------------------------------------

def _omegas(num_hiddens, base, exps=None):
    exps = _pairs(num_hiddens).double() if exps is None else exps
    return base ** -exps  # (d/2,)


def _similarity(offsets, num_hiddens, base=10000.0, *, exps=None, fn=torch.cos, factor=1.0):
    angles = offsets.double()[..., None] * _omegas(num_hiddens, base, exps)
    return (fn(angles).sum(-1) * factor).float()


def _position_similarity(offsets, num_hiddens, base=10000.0):
    return _similarity(offsets, num_hiddens, base)


def _sim_sine(offsets, num_hiddens, base=10000.0):
    return _similarity(offsets, num_hiddens, base, fn=torch.sin)


def _sim_j_over_d(offsets, num_hiddens, base=10000.0):
    exps = torch.arange(num_hiddens // 2, dtype=torch.float64) / num_hiddens
    return _similarity(offsets, num_hiddens, base, exps=exps)


def _sim_all_columns(offsets, num_hiddens, base=10000.0):
    """One cosine per column, with the column's own exponent c/d: d terms instead of d/2."""
    exps = torch.arange(num_hiddens, dtype=torch.float64) / num_hiddens
    return _similarity(offsets, num_hiddens, base, exps=exps)


def _sim_doubled(offsets, num_hiddens, base=10000.0):
    return _similarity(offsets, num_hiddens, base, factor=2.0)


def _sim_mean(offsets, num_hiddens, base=10000.0):
    return _similarity(offsets, num_hiddens, base, factor=2.0 / num_hiddens)


def _similarity_cases(rng, hidden):
    names = ("offsets", "num_hiddens", "base")
    cases = []
    if not hidden:
        cases.append(Case("offsets [0, 1, 2, 3], num_hiddens=4",
                          (torch.tensor([0, 1, 2, 3]), 4, 10000.0), arg_names=names))
        cases.append(Case("offsets [-2, -1, 0, 1, 2] (negative offsets), num_hiddens=6",
                          (torch.tensor([-2, -1, 0, 1, 2]), 6, 10000.0), arg_names=names))
        off = torch.tensor([[0, 3, 7], [-5, 10, 1]])
        cases.append(Case("offsets of shape (2, 3), num_hiddens=8, base=100.0",
                          (off, 8, 100.0), arg_names=names))
    else:
        cases.append(Case("a single offset 0 (a 0-d tensor), num_hiddens=32",
                          (torch.tensor(0), 32, 10000.0), arg_names=names))
        idx = torch.arange(12)
        cases.append(Case("the (12, 12) matrix of offsets j - i, num_hiddens=16",
                          (idx[None, :] - idx[:, None], 16, 10000.0), arg_names=names))
        off = torch.tensor([rng.randint(-300, 300) for _ in range(10)])
        cases.append(Case(f"offsets {off.tolist()}, num_hiddens=64", (off, 64, 10000.0),
                          arg_names=names))
        cases.append(Case("offsets [-3, ..., 3], num_hiddens=2, base=10.0",
                          (torch.arange(-3, 4), 2, 10.0), arg_names=names))
        cases.append(Case("offsets of shape (2, 2, 3), num_hiddens=10, base=500.0",
                          (torch.randint(-40, 40, (2, 2, 3)), 10, 500.0), arg_names=names))
    return cases


register(Question(
    qid="ch06.position_similarity", name="position_similarity", kind="function",
    title="Similarity of two positions in closed form", reference=_position_similarity,
    cases=_similarity_cases, atol=1e-3, rtol=1e-4,
    mistakes=[
        Mistake("sine of the offset angle instead of cosine",
                "Each pair contributes sin a sin b + cos a cos b, which is an even function of "
                "the offset (simplify it with an angle-difference identity); at offset 0 the "
                "similarity is the squared norm of a row, d/2, not 0.",
                _sim_sine),
        Mistake("exponent j/d instead of 2j/d",
                "Pair j turns at the frequency base^(-2j/d), the same as in the table.",
                _sim_j_over_d),
        Mistake("one term per column instead of one per pair",
                "The two columns of a pair combine into a single cosine term, so the sum has "
                "d/2 terms, all at the pairs' frequencies.", _sim_all_columns),
        Mistake("every pair counted twice",
                "A pair contributes sin*sin + cos*cos, which is one cosine, not two; at offset "
                "0 the similarity equals d/2, the squared norm of a row of the table.",
                _sim_doubled),
        Mistake("average instead of a sum",
                "The dot product sums the contributions of the d/2 pairs; it is not divided by "
                "their number.", _sim_mean),
    ]))


# --- apply_rotary ---------------------------------------------------------------------------

def _rotary(x, positions, base=10000.0, *, layout="interleaved", sign=1.0, out="interleaved",
            use_positions=True, exps=None):
    D = x.shape[-1]
    exps = torch.arange(0, D, 2, dtype=torch.float32) / D if exps is None else exps
    inv_freq = base ** -exps  # (D/2,)
    pos = positions.to(torch.float32) if use_positions else \
        torch.arange(x.shape[-2], dtype=torch.float32)
    theta = pos[:, None] * inv_freq  # (T, D/2)
    cos, sin = theta.cos(), sign * theta.sin()
    if layout == "interleaved":
        even, odd = x[..., 0::2], x[..., 1::2]
    else:  # "halves": pair j = (x[j], x[j + D/2])
        even, odd = x[..., : D // 2], x[..., D // 2:]
    first, second = even * cos - odd * sin, even * sin + odd * cos
    if layout == "halves" or out == "halves":
        return torch.cat((first, second), dim=-1)
    return torch.stack((first, second), dim=-1).flatten(-2)


def _apply_rotary(x, positions, base=10000.0):
    return _rotary(x, positions, base)


def _rotary_variant(**switches):
    def impl(x, positions, base=10000.0):
        return _rotary(x, positions, base, **switches)
    return impl


def _rotary_cases(rng, hidden):
    names = ("x", "positions", "base")
    cases = []

    def add(shape, positions, base=10000.0, note=""):
        x = torch.randn(*shape)
        pos = torch.tensor(positions)
        cases.append(Case(f"x {shape}, positions {positions}, base={base}{note}", (x, pos, base),
                          arg_names=names))

    if not hidden:
        add((3, 4), [0, 1, 2])
        add((2, 3, 4), [2, 0, 5], base=10.0)
        add((1, 2, 2, 6), [3, 7], base=100.0)
    else:
        add((1, 2), [0], note=" (position 0: nothing turns)")
        add((2, 4, 2), [1, 2, 3, 4], base=10.0)
        add((2, 5, 8), [rng.randint(0, 60) for _ in range(5)])
        add((2, 3, 4, 6), [9, 4, 2, 0], base=50.0)
        add((6, 4), [-3, -1, 0, 2, 5, 40], base=10.0, note=" (negative positions)")
    return cases


register(Question(
    qid="ch06.apply_rotary", name="apply_rotary", kind="function",
    title="Rotary embedding at arbitrary positions", reference=_apply_rotary, cases=_rotary_cases,
    atol=1e-4, rtol=1e-4,
    mistakes=[
        Mistake("pairs taken from the two halves",
                "The pairs are neighbouring features (x[2j], x[2j+1]); pairing feature j with "
                "feature j + D/2 (the split-in-halves convention of some libraries) rotates "
                "different numbers.", _rotary_variant(layout="halves")),
        Mistake("rotation in the wrong direction",
                "A positive angle turns a pair anticlockwise, (1, 0) towards (0, 1); the output "
                "matches a rotation by minus the angle, so check the signs of the sine terms.",
                _rotary_variant(sign=-1.0)),
        Mistake("rotated pairs not put back in place",
                "After the rotation, pair j must sit again in features 2j and 2j+1; writing all "
                "first components and then all second components reorders the features.",
                _rotary_variant(out="halves")),
        Mistake("positions ignored (0, 1, 2, ... used instead)",
                "Row t must be rotated as the token at positions[t], which need not be t.",
                _rotary_variant(use_positions=False)),
        Mistake("exponent j/D instead of 2j/D",
                "Pair j turns at base^(-2j/D), where 2j is the index of the pair's first feature.",
                lambda x, positions, base=10000.0: _rotary(
                    x, positions, base,
                    exps=torch.arange(x.shape[-1] // 2, dtype=torch.float32) / x.shape[-1])),
    ]))
