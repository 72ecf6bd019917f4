from . import Mutant

SHEET = "ch09_gpt"

MUTANTS = [
    Mutant(SHEET, "q1", "no-shift", '''
def causal_lm_loss(logits, idx, valid_lens):
    B, T, V = logits.shape
    counted = torch.arange(T) < valid_lens[:, None]
    losses = F.cross_entropy(logits.reshape(-1, V), idx.reshape(-1), reduction="none")
    counted = counted.reshape(-1).float()
    return (losses * counted).sum() / counted.sum().clamp(min=1)
''', "targets not shifted"),
    Mutant(SHEET, "q1", "shift-backwards", '''
def causal_lm_loss(logits, idx, valid_lens):
    B, T, V = logits.shape
    counted = torch.arange(1, T) < valid_lens[:, None]
    losses = F.cross_entropy(logits[:, 1:].reshape(-1, V), idx[:, :-1].reshape(-1),
                             reduction="none")
    counted = counted.reshape(-1).float()
    return (losses * counted).sum() / counted.sum().clamp(min=1)
''', "targets shifted the wrong way"),
    Mutant(SHEET, "q1", "padding-counted", '''
def causal_lm_loss(logits, idx, valid_lens):
    V = logits.shape[-1]
    if logits.shape[1] < 2:
        return torch.tensor(0.0)
    return F.cross_entropy(logits[:, :-1].reshape(-1, V), idx[:, 1:].reshape(-1))
''', "padding counted in the loss"),
    Mutant(SHEET, "q1", "nan-when-empty", '''
def causal_lm_loss(logits, idx, valid_lens):
    V = logits.shape[-1]
    targets = idx[:, 1:].clone()
    targets[torch.arange(1, idx.shape[1]) >= valid_lens[:, None]] = -100
    return F.cross_entropy(logits[:, :-1].reshape(-1, V), targets.reshape(-1), ignore_index=-100)
''', "NaN when no position counts"),
    Mutant(SHEET, "q1", "row-means", '''
def causal_lm_loss(logits, idx, valid_lens):
    total, rows = 0.0, 0
    for b in range(idx.shape[0]):
        n = int(valid_lens[b]) - 1
        if n > 0:
            total = total + F.cross_entropy(logits[b, :n], idx[b, 1:n + 1])
            rows += 1
    return torch.as_tensor(total / max(rows, 1), dtype=torch.float32)
''', "mean of the rows' means"),
    Mutant(SHEET, "q2", "k-plus-one", '''
def sampling_probs(logits, temperature=1.0, top_k=None, top_p=None):
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k + 1, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        drop_sorted = probs.cumsum(-1) - probs >= top_p
        logits = logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), float("-inf"))
    return torch.softmax(logits, dim=-1)
''', "top-k keeps k + 1 tokens"),
    Mutant(SHEET, "q2", "nucleus-strict", '''
def sampling_probs(logits, temperature=1.0, top_k=None, top_p=None):
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(-1)
        drop_sorted = cumulative > top_p
        logits = logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), float("-inf"))
    return torch.softmax(logits, dim=-1)
''', "nucleus stops before the token that crosses p"),
    Mutant(SHEET, "q2", "not-renormalised", '''
def sampling_probs(logits, temperature=1.0, top_k=None, top_p=None):
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_k is not None and top_k < probs.shape[-1]:
        kth = torch.topk(probs, top_k, dim=-1).values[..., -1:]
        probs = probs.masked_fill(probs < kth, 0.0)
    if top_p is not None:
        sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
        drop_sorted = sorted_probs.cumsum(-1) - sorted_probs >= top_p
        probs = probs.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), 0.0)
    return probs
''', "filtered probabilities not renormalised"),
    Mutant(SHEET, "q2", "temperature-times", '''
def sampling_probs(logits, temperature=1.0, top_k=None, top_p=None):
    logits = logits * temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        drop_sorted = probs.cumsum(-1) - probs >= top_p
        logits = logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), float("-inf"))
    return torch.softmax(logits, dim=-1)
''', "temperature multiplied instead of divided"),
    Mutant(SHEET, "q2", "topk-crash-when-k-exceeds-V", '''
def sampling_probs(logits, temperature=1.0, top_k=None, top_p=None):
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        drop_sorted = probs.cumsum(-1) - probs >= top_p
        logits = logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), float("-inf"))
    return torch.softmax(logits, dim=-1)
''', "Your code raised RuntimeError"),
    Mutant(SHEET, "q3", "no-extract", '''
def gpt_pair_inputs(pairs, start_id, delim_id, extract_id, pad_id):
    rows = [[start_id, *a] + ([] if b is None else [delim_id, *b]) for a, b in pairs]
    T = max(map(len, rows))
    idx = torch.tensor([r + [pad_id] * (T - len(r)) for r in rows])
    return idx, torch.tensor([len(r) for r in rows])
''', "no <extract> token at the end"),
    Mutant(SHEET, "q3", "delim-always", '''
def gpt_pair_inputs(pairs, start_id, delim_id, extract_id, pad_id):
    rows = [[start_id, *a, delim_id, *(b or []), extract_id] for a, b in pairs]
    T = max(map(len, rows))
    idx = torch.tensor([r + [pad_id] * (T - len(r)) for r in rows])
    return idx, torch.tensor([len(r) for r in rows])
''', "delimiter added to a single sentence"),
    Mutant(SHEET, "q3", "left-padding", '''
def gpt_pair_inputs(pairs, start_id, delim_id, extract_id, pad_id):
    rows = [[start_id, *a] + ([] if b is None else [delim_id, *b]) + [extract_id] for a, b in pairs]
    T = max(map(len, rows))
    idx = torch.tensor([[pad_id] * (T - len(r)) + r for r in rows])
    return idx, torch.tensor([len(r) for r in rows])
''', "padded on the left"),
]
