from . import Mutant

SHEET = "ch04_bahdanau_attention"

MUTANTS = [
    Mutant(SHEET, "q1", "masked-scores-returned", '''
def bahdanau_step(s_prev, enc_outputs, src_valid_lens, W_q, W_k, w_v):
    e = torch.tanh((s_prev @ W_q.T).unsqueeze(1) + enc_outputs @ W_k.T) @ w_v
    mask = torch.arange(e.shape[1]) < src_valid_lens.unsqueeze(1)
    e = e.masked_fill(~mask, float("-inf"))
    alpha = torch.softmax(e, dim=-1)
    return e, alpha, torch.bmm(alpha.unsqueeze(1), enc_outputs).squeeze(1)
''', "raw scores e returned after masking"),
    Mutant(SHEET, "q1", "zero-after-softmax", '''
def bahdanau_step(s_prev, enc_outputs, src_valid_lens, W_q, W_k, w_v):
    e = torch.tanh((s_prev @ W_q.T).unsqueeze(1) + enc_outputs @ W_k.T) @ w_v
    mask = torch.arange(e.shape[1]) < src_valid_lens.unsqueeze(1)
    alpha = torch.softmax(e, dim=-1) * mask
    return e, alpha, torch.bmm(alpha.unsqueeze(1), enc_outputs).squeeze(1)
''', "weights zeroed after the softmax"),
    Mutant(SHEET, "q1", "mask-off-by-one", '''
def bahdanau_step(s_prev, enc_outputs, src_valid_lens, W_q, W_k, w_v):
    e = torch.tanh((s_prev @ W_q.T).unsqueeze(1) + enc_outputs @ W_k.T) @ w_v
    mask = torch.arange(e.shape[1]) <= src_valid_lens.unsqueeze(1)
    alpha = torch.softmax(e.masked_fill(~mask, -1e9), dim=-1)
    return e, alpha, torch.bmm(alpha.unsqueeze(1), enc_outputs).squeeze(1)
''', "valid length off by one"),
    Mutant(SHEET, "q1", "projections-swapped", '''
def bahdanau_step(s_prev, enc_outputs, src_valid_lens, W_q, W_k, w_v):
    e = torch.tanh((s_prev @ W_k.T).unsqueeze(1) + enc_outputs @ W_q.T) @ w_v
    mask = torch.arange(e.shape[1]) < src_valid_lens.unsqueeze(1)
    alpha = torch.softmax(e.masked_fill(~mask, float("-inf")), dim=-1)
    return e, alpha, torch.bmm(alpha.unsqueeze(1), enc_outputs).squeeze(1)
''', "W_q and W_k swapped"),
    Mutant(SHEET, "q1", "no-mask", '''
def bahdanau_step(s_prev, enc_outputs, src_valid_lens, W_q, W_k, w_v):
    e = torch.tanh((s_prev @ W_q.T).unsqueeze(1) + enc_outputs @ W_k.T) @ w_v
    alpha = torch.softmax(e, dim=-1)
    return e, alpha, torch.bmm(alpha.unsqueeze(1), enc_outputs).squeeze(1)
''', "padding positions not masked"),
    Mutant(SHEET, "q2", "context-first", '''
def fixed_context_inputs(embedded, context):
    T = embedded.shape[1]
    return torch.cat([context.unsqueeze(1).repeat(1, T, 1), embedded], dim=-1)
''', "context placed before the embedding"),
    Mutant(SHEET, "q2", "repeat-mixes-rows", '''
def fixed_context_inputs(embedded, context):
    B, T, E = embedded.shape
    tiled = context.repeat(T, 1).view(B, T, -1)
    return torch.cat([embedded, tiled], dim=-1)
''', "contexts of different batch rows mixed"),
    Mutant(SHEET, "q3", "softmax-per-row", '''
def grid_attention(feature_map, query):
    B, C, H, W = feature_map.shape
    scores = (feature_map * query[:, :, None, None]).sum(1) / math.sqrt(C)  # (B, H, W)
    weights = torch.softmax(scores, dim=-1)
    context = (weights[:, None] * feature_map).sum((2, 3))
    return weights, context
''', "softmax over each grid row separately"),
    Mutant(SHEET, "q3", "unscaled", '''
def grid_attention(feature_map, query):
    B, C, H, W = feature_map.shape
    cells = feature_map.flatten(2).transpose(1, 2)  # (B, HW, C)
    weights = torch.softmax(torch.bmm(cells, query.unsqueeze(2)).squeeze(2), dim=1)
    context = torch.bmm(weights.unsqueeze(1), cells).squeeze(1)
    return weights.view(B, H, W), context
''', "missing 1/sqrt(C) scaling"),
    Mutant(SHEET, "q3", "flattened-w-first", '''
def grid_attention(feature_map, query):
    B, C, H, W = feature_map.shape
    cells = feature_map.transpose(2, 3).reshape(B, C, W * H)
    weights = torch.softmax(torch.einsum("bc,bcn->bn", query, cells) / math.sqrt(C), dim=1)
    context = torch.einsum("bn,bcn->bc", weights, cells)
    return weights.reshape(B, H, W), context
''', "weights reshaped in the wrong cell order"),
]
