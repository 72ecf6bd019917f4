from . import Mutant

SHEET = "ch06_self_attention_positional"

_ROPE = '''
def apply_rotary(x, positions, base=10000.0):
    D = x.shape[-1]
    theta = base ** (-torch.arange(0, D, 2, dtype=torch.float32) / D)
    angles = positions.float()[:, None] * theta
    cos, sin = torch.cos(angles), torch.sin(angles)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    r1 = x1 * cos - x2 * sin
    r2 = x1 * sin + x2 * cos
    return torch.stack((r1, r2), dim=-1).flatten(-2)
'''


def _rope(old, new):
    assert old in _ROPE, old
    return _ROPE.replace(old, new)


MUTANTS = [
    Mutant(SHEET, "q1", "sin-cos-concatenated", '''
def sinusoidal_encoding(max_len, num_hiddens, base=10000.0):
    pos = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)
    freqs = base ** (-torch.arange(0, num_hiddens, 2, dtype=torch.float32) / num_hiddens)
    return torch.cat([torch.sin(pos * freqs), torch.cos(pos * freqs)], dim=1)
''', "sines and cosines concatenated instead of interleaved"),
    Mutant(SHEET, "q1", "cos-in-even-columns", '''
def sinusoidal_encoding(max_len, num_hiddens, base=10000.0):
    P = torch.zeros(max_len, num_hiddens)
    pos = torch.arange(max_len, dtype=torch.float32)[:, None]
    angles = pos / base ** (torch.arange(0, num_hiddens, 2) / num_hiddens)
    P[:, 0::2] = torch.cos(angles)
    P[:, 1::2] = torch.sin(angles)
    return P
''', "sine and cosine swapped"),
    Mutant(SHEET, "q1", "exponent-j-over-d", '''
def sinusoidal_encoding(max_len, num_hiddens, base=10000.0):
    P = torch.zeros(max_len, num_hiddens)
    pos = torch.arange(max_len, dtype=torch.float32)[:, None]
    j = torch.arange(num_hiddens // 2, dtype=torch.float32)
    angles = pos / base ** (j / num_hiddens)
    P[:, 0::2] = torch.sin(angles)
    P[:, 1::2] = torch.cos(angles)
    return P
''', "exponent j/d instead of 2j/d"),
    Mutant(SHEET, "q1", "base-hard-coded", '''
def sinusoidal_encoding(max_len, num_hiddens, base=10000.0):
    P = torch.zeros(max_len, num_hiddens)
    pos = torch.arange(max_len, dtype=torch.float32)[:, None]
    angles = pos / 10000 ** (torch.arange(0, num_hiddens, 2) / num_hiddens)
    P[:, 0::2] = torch.sin(angles)
    P[:, 1::2] = torch.cos(angles)
    return P
''', "base argument ignored"),
    Mutant(SHEET, "q1", "per-column-frequency", '''
def sinusoidal_encoding(max_len, num_hiddens, base=10000.0):
    P = torch.zeros(max_len, num_hiddens)
    for i in range(max_len):
        for c in range(num_hiddens):
            angle = i / base ** (c / num_hiddens)
            P[i, c] = math.sin(angle) if c % 2 == 0 else math.cos(angle)
    return P
''', "each column given its own frequency"),
    Mutant(SHEET, "q2", "sine-terms", '''
def position_similarity(offsets, num_hiddens, base=10000.0):
    omega = base ** (-torch.arange(0, num_hiddens, 2, dtype=torch.float64) / num_hiddens)
    return torch.sin(offsets[..., None] * omega).sum(-1)
''', "sine of the offset angle instead of cosine"),
    Mutant(SHEET, "q2", "one-term-per-column", '''
def position_similarity(offsets, num_hiddens, base=10000.0):
    omega = base ** (-torch.arange(num_hiddens, dtype=torch.float64) / num_hiddens)
    return torch.cos(offsets[..., None] * omega).sum(-1)
''', "one term per column instead of one per pair"),
    Mutant(SHEET, "q2", "mean-over-pairs", '''
def position_similarity(offsets, num_hiddens, base=10000.0):
    omega = base ** (-torch.arange(0, num_hiddens, 2, dtype=torch.float64) / num_hiddens)
    return torch.cos(offsets[..., None] * omega).mean(-1)
''', "average instead of a sum"),
    Mutant(SHEET, "q3", "rotate-half-layout", '''
def apply_rotary(x, positions, base=10000.0):
    # the rotate_half convention: feature j is paired with feature j + D/2
    D = x.shape[-1]
    theta = base ** (-torch.arange(0, D, 2).float() / D)
    angles = positions.float()[:, None] * theta
    angles = torch.cat((angles, angles), dim=-1)
    x1, x2 = x[..., : D // 2], x[..., D // 2:]
    rotated = torch.cat((-x2, x1), dim=-1)
    return x * angles.cos() + rotated * angles.sin()
''', "pairs taken from the two halves"),
    Mutant(SHEET, "q3", "sign-flipped", _rope(
        "    r1 = x1 * cos - x2 * sin\n    r2 = x1 * sin + x2 * cos",
        "    r1 = x1 * cos + x2 * sin\n    r2 = -x1 * sin + x2 * cos"),
        "rotation in the wrong direction"),
    Mutant(SHEET, "q3", "pairs-not-interleaved-back", _rope(
        "torch.stack((r1, r2), dim=-1).flatten(-2)", "torch.cat((r1, r2), dim=-1)"),
        "rotated pairs not put back in place"),
    Mutant(SHEET, "q3", "consecutive-positions-assumed", _rope(
        "positions.float()[:, None]", "torch.arange(x.shape[-2]).float()[:, None]"),
        "positions ignored (0, 1, 2, ... used instead)"),
]
