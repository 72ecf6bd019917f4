from . import Mutant

SHEET = "ch05_multihead_attention"

# the correct forward pass of q3, with one line changed in each mutant below
_MHA = '''
def multihead_attention(queries, keys, values, W_q, W_k, W_v, W_o, num_heads, valid_lens=None):
    B, L, _ = queries.shape
    S = keys.shape[1]
    N = W_q.shape[0]
    H = num_heads
    D = N // H
    q = (queries @ W_q.T).reshape(B, L, H, D).transpose(1, 2)
    k = (keys @ W_k.T).reshape(B, S, H, D).transpose(1, 2)
    v = (values @ W_v.T).reshape(B, S, H, D).transpose(1, 2)
    scores = q @ k.transpose(-2, -1) / math.sqrt(D)
    if valid_lens is not None:
        keep = torch.arange(S) < valid_lens.reshape(B, 1, -1, 1)
        scores = scores.masked_fill(~keep, float("-inf"))
    weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)
    out = (weights @ v).transpose(1, 2).reshape(B, L, N)
    return out @ W_o.T
'''


def _mha(old, new):
    assert old in _MHA, old
    return _MHA.replace(old, new)


MUTANTS = [
    Mutant(SHEET, "q1", "reshape-without-transpose", '''
def split_heads(X, num_heads):
    B, T, N = X.shape
    return X.reshape(B, num_heads, T, N // num_heads)
''', "reshaped to (B, H, T, D) without a transpose"),
    Mutant(SHEET, "q1", "features-cut-D-by-H", '''
def split_heads(X, num_heads):
    B, T, N = X.shape
    return X.reshape(B, T, N // num_heads, num_heads).permute(0, 3, 1, 2)
''', "features cut as (D, H) instead of (H, D)"),
    Mutant(SHEET, "q1", "heads-left-on-axis-2", '''
def split_heads(X, num_heads):
    B, T, N = X.shape
    return X.view(B, T, num_heads, N // num_heads)
''', "head axis not moved in front of the time axis"),
    Mutant(SHEET, "q2", "reshape-without-transpose", '''
def merge_heads(X):
    B, H, T, D = X.shape
    return X.reshape(B, T, H * D)
''', "reshaped without a transpose"),
    Mutant(SHEET, "q2", "heads-interleaved", '''
def merge_heads(X):
    B, H, T, D = X.shape
    return X.permute(0, 2, 3, 1).reshape(B, T, -1)
''', "heads interleaved instead of concatenated"),
    Mutant(SHEET, "q2", "view-after-transpose", '''
def merge_heads(X):
    B, H, T, D = X.shape
    return X.transpose(1, 2).view(B, T, H * D)
''', "Your code raised RuntimeError"),
    Mutant(SHEET, "q3", "scale-by-model-width",
           _mha("/ math.sqrt(D)", "/ math.sqrt(N)"),
           "scores scaled by 1/sqrt(N) instead of 1/sqrt(N/H)"),
    Mutant(SHEET, "q3", "lens-tiled-over-heads", _mha(
        '''        keep = torch.arange(S) < valid_lens.reshape(B, 1, -1, 1)
        scores = scores.masked_fill(~keep, float("-inf"))''',
        '''        # d2l layout: fold the heads into the batch axis
        folded = scores.reshape(B * H, L, S)
        lens = valid_lens.repeat(H) if valid_lens.dim() == 1 else valid_lens.repeat(H, 1)
        keep = torch.arange(S) < lens.reshape(B * H, -1, 1)
        scores = folded.masked_fill(~keep, float("-inf")).reshape(B, H, L, S)'''),
        "valid lengths given to the wrong heads"),
    Mutant(SHEET, "q3", "no-output-projection",
           _mha("    return out @ W_o.T", "    return out"),
           "output projection W_o missing"),
    Mutant(SHEET, "q3", "merge-without-transpose",
           _mha("(weights @ v).transpose(1, 2).reshape(B, L, N)", "(weights @ v).reshape(B, L, N)"),
           "heads merged without a transpose"),
    Mutant(SHEET, "q3", "nan-for-empty-rows",
           _mha("torch.softmax(scores, dim=-1).nan_to_num(0.0)", "torch.softmax(scores, dim=-1)"),
           "NaN for a query that sees no key"),
]
