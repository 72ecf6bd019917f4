from . import Mutant

SHEET = "ch08_efficient_attention"

MUTANTS = [
    Mutant(SHEET, "q1", "sum-not-rescaled", '''
def blockwise_attention(query, key, value, block_size, is_causal=False):
    L, S = query.shape[-2], key.shape[-2]
    scale = 1.0 / math.sqrt(query.shape[-1])
    m = torch.full(query.shape[:-1], -math.inf)
    l = torch.zeros_like(m)
    acc = query.new_zeros(*query.shape[:-1], value.shape[-1])
    for start in range(0, S, block_size):
        s = (query @ key[..., start:start + block_size, :].transpose(-2, -1)) * scale
        if is_causal:
            cols = start + torch.arange(s.shape[-1])
            s = s.masked_fill(cols[None, :] > torch.arange(L)[:, None], -math.inf)
        m_new = torch.maximum(m, s.amax(-1))
        p = torch.exp(s - m_new[..., None])
        l = l + p.sum(-1)
        acc = torch.exp(m - m_new)[..., None] * acc + p @ value[..., start:start + block_size, :]
        m = m_new
    return acc / l[..., None]
''', "running sum not rescaled when the maximum changes"),
    Mutant(SHEET, "q1", "block-local-causal", '''
def blockwise_attention(query, key, value, block_size, is_causal=False):
    L, S = query.shape[-2], key.shape[-2]
    scale = 1.0 / math.sqrt(query.shape[-1])
    m = torch.full(query.shape[:-1], -math.inf)
    l = torch.zeros_like(m)
    acc = query.new_zeros(*query.shape[:-1], value.shape[-1])
    for start in range(0, S, block_size):
        k_blk = key[..., start:start + block_size, :]
        s = (query * scale) @ k_blk.transpose(-2, -1)
        if is_causal:
            s = s.masked_fill(~torch.ones(L, k_blk.shape[-2], dtype=torch.bool).tril(), -math.inf)
        m_new = torch.maximum(m, s.amax(-1))
        c = torch.exp(m - m_new)
        p = torch.exp(s - m_new[..., None])
        l = c * l + p.sum(-1)
        acc = c[..., None] * acc + p @ value[..., start:start + block_size, :]
        m = m_new
    return acc / l[..., None]
''', "causal mask built from the key's index inside its block"),
    Mutant(SHEET, "q1", "full-blocks-only", '''
def blockwise_attention(query, key, value, block_size, is_causal=False):
    L, S = query.shape[-2], key.shape[-2]
    scale = 1.0 / math.sqrt(query.shape[-1])
    m = torch.full(query.shape[:-1], -math.inf)
    l = torch.zeros_like(m)
    acc = query.new_zeros(*query.shape[:-1], value.shape[-1])
    for blk in range(S // block_size):
        start = blk * block_size
        k_blk = key[..., start:start + block_size, :]
        s = (query * scale) @ k_blk.transpose(-2, -1)
        if is_causal:
            cols = start + torch.arange(block_size)
            s = s.masked_fill(cols[None, :] > torch.arange(L)[:, None], -math.inf)
        m_new = torch.maximum(m, s.amax(-1))
        c = torch.exp(m - m_new)
        p = torch.exp(s - m_new[..., None])
        l = c * l + p.sum(-1)
        acc = c[..., None] * acc + p @ value[..., start:start + block_size, :]
        m = m_new
    return acc / l[..., None]
''', "last, shorter block of keys skipped"),
    Mutant(SHEET, "q1", "no-max", '''
def blockwise_attention(query, key, value, block_size, is_causal=False):
    L, S = query.shape[-2], key.shape[-2]
    scale = 1.0 / math.sqrt(query.shape[-1])
    l = query.new_zeros(query.shape[:-1])
    acc = query.new_zeros(*query.shape[:-1], value.shape[-1])
    for start in range(0, S, block_size):
        s = (query * scale) @ key[..., start:start + block_size, :].transpose(-2, -1)
        if is_causal:
            cols = start + torch.arange(s.shape[-1])
            s = s.masked_fill(cols[None, :] > torch.arange(L)[:, None], -math.inf)
        p = torch.exp(s)
        l = l + p.sum(-1)
        acc = acc + p @ value[..., start:start + block_size, :]
    return acc / l[..., None]
''', "no running maximum"),
    Mutant(SHEET, "q1", "bottom-right", '''
def blockwise_attention(query, key, value, block_size, is_causal=False):
    L, S = query.shape[-2], key.shape[-2]
    scale = 1.0 / math.sqrt(query.shape[-1])
    m = torch.full(query.shape[:-1], -math.inf)
    l = torch.zeros_like(m)
    acc = query.new_zeros(*query.shape[:-1], value.shape[-1])
    for start in range(0, S, block_size):
        k_blk = key[..., start:start + block_size, :]
        s = (query * scale) @ k_blk.transpose(-2, -1)
        if is_causal:
            cols = start + torch.arange(k_blk.shape[-2])
            s = s.masked_fill(cols[None, :] > torch.arange(L)[:, None] + (S - L), -math.inf)
        m_new = torch.maximum(m, s.amax(-1))
        c = torch.exp(m - m_new)
        p = torch.exp(s - m_new[..., None])
        l = c * l + p.sum(-1)
        acc = c[..., None] * acc + p @ value[..., start:start + block_size, :]
        m = m_new
    return acc / l[..., None]
''', "causal mask aligned at the bottom-right corner"),
    Mutant(SHEET, "q2", "causal-band", '''
def local_global_mask(n, window, global_positions):
    i = torch.arange(n)
    d = i[:, None] - i[None, :]
    mask = (d >= 0) & (d <= window)
    for p in global_positions:
        mask[p, :] = True
        mask[:, p] = True
    return mask
''', "one-sided (causal) window"),
    Mutant(SHEET, "q2", "strict-window", '''
def local_global_mask(n, window, global_positions):
    i = torch.arange(n)
    mask = (i[:, None] - i[None, :]).abs() < window
    for p in global_positions:
        mask[p, :] = True
        mask[:, p] = True
    return mask
''', "window one position too narrow"),
    Mutant(SHEET, "q2", "global-rows-only", '''
def local_global_mask(n, window, global_positions):
    i = torch.arange(n)
    mask = (i[:, None] - i[None, :]).abs() <= window
    mask[global_positions] = True
    return mask
''', "global tokens see everyone but are not seen"),
    Mutant(SHEET, "q3", "repeat", '''
def grouped_query_attention(query, key, value, is_causal=False):
    H, G = query.shape[1], key.shape[1]
    if H % G:
        raise ValueError("G must divide H")
    key = key.repeat(1, H // G, 1, 1)
    value = value.repeat(1, H // G, 1, 1)
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])
    if is_causal:
        L, S = scores.shape[-2:]
        scores = scores.masked_fill(torch.ones(L, S, dtype=torch.bool).triu(1), float("-inf"))
    return torch.softmax(scores, dim=-1) @ value
''', "query heads grouped in the wrong order"),
    Mutant(SHEET, "q3", "group-axis-swapped", '''
def grouped_query_attention(query, key, value, is_causal=False):
    B, H, L, D = query.shape
    G = key.shape[1]
    q = query.reshape(B, H // G, G, L, D)  # groups along the wrong axis
    scores = q @ key[:, None].transpose(-2, -1) / math.sqrt(D)
    if is_causal:
        S = key.shape[2]
        scores = scores.masked_fill(torch.ones(L, S, dtype=torch.bool).triu(1), float("-inf"))
    out = torch.softmax(scores, dim=-1) @ value[:, None]
    return out.reshape(B, H, L, -1)
''', "query heads grouped in the wrong order"),
    Mutant(SHEET, "q3", "unscaled", '''
def grouped_query_attention(query, key, value, is_causal=False):
    H, G = query.shape[1], key.shape[1]
    key = key.repeat_interleave(H // G, dim=1)
    value = value.repeat_interleave(H // G, dim=1)
    scores = query @ key.transpose(-2, -1)
    if is_causal:
        L, S = scores.shape[-2:]
        scores = scores.masked_fill(torch.ones(L, S, dtype=torch.bool).triu(1), float("-inf"))
    return torch.softmax(scores, dim=-1) @ value
''', "missing 1/sqrt(d) scaling"),
]
