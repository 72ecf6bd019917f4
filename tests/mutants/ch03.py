from . import Mutant

SHEET = "ch03_scoring_functions"

MUTANTS = [
    Mutant(SHEET, "q1", "softmax-over-queries", '''
def masked_softmax_lens(X, valid_lens):
    if valid_lens is None:
        return torch.softmax(X, dim=-2)
    mask = torch.arange(X.shape[-1]) < valid_lens.reshape(X.shape[0], -1, 1)
    return torch.softmax(X.masked_fill(~mask, float("-inf")), dim=-2).nan_to_num(0.0)
''', "softmax over the wrong axis"),
    Mutant(SHEET, "q1", "d2l-fill", '''
def masked_softmax_lens(X, valid_lens):
    if valid_lens is None:
        return torch.softmax(X, dim=-1)
    mask = torch.arange(X.shape[-1]) < valid_lens.reshape(X.shape[0], -1, 1)
    return torch.softmax(X.masked_fill(~mask, -1e6), dim=-1)
''', "fully masked rows filled with a large negative number"),
    Mutant(SHEET, "q1", "off-by-one", '''
def masked_softmax_lens(X, valid_lens):
    if valid_lens is None:
        return torch.softmax(X, dim=-1)
    mask = torch.arange(X.shape[-1]) <= valid_lens.reshape(X.shape[0], -1, 1)
    w = torch.softmax(X.masked_fill(~mask, float("-inf")), dim=-1)
    return w
''', "valid length off by one"),
    Mutant(SHEET, "q2", "no-tanh", '''
def additive_scores(queries, keys, W_q, W_k, w_v):
    return ((queries @ W_q.T).unsqueeze(2) + (keys @ W_k.T).unsqueeze(1)) @ w_v
''', "missing tanh"),
    Mutant(SHEET, "q3", "unscaled", '''
def sdpa(query, key, value, attn_mask=None, scale=None):
    scores = query @ key.transpose(-2, -1) * (1.0 if scale is None else scale)
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    return torch.softmax(scores, dim=-1).nan_to_num(0.0) @ value
''', "missing 1/sqrt(d) scaling"),
    Mutant(SHEET, "q3", "nan-rows", '''
def sdpa(query, key, value, attn_mask=None, scale=None):
    scale = 1 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = query @ key.transpose(-2, -1) * scale
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ value
''', "NaN for a query that sees no key"),
    Mutant(SHEET, "q3", "transposed-output", '''
def sdpa(query, key, value, attn_mask=None, scale=None):
    scale = 1 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = query @ key.transpose(-2, -1) * scale
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    return (torch.softmax(scores, dim=-1).nan_to_num(0.0) @ value).transpose(-2, -1)
''', "has shape"),
]
