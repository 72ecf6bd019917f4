from . import Mutant

SHEET = "ch10_bert"

MUTANTS = [
    Mutant(SHEET, "q1", "first-sep-in-b", '''
def tokens_and_segments(tokens_a, tokens_b=None):
    tokens = ["<cls>", *tokens_a]
    segments = [0] * len(tokens)
    if tokens_b is None:
        return tokens + ["<sep>"], segments + [0]
    tokens += ["<sep>", *tokens_b, "<sep>"]
    segments += [1] * (len(tokens_b) + 2)
    return tokens, segments
''', "the first <sep> is in segment 1"),
    Mutant(SHEET, "q1", "last-sep-in-a", '''
def tokens_and_segments(tokens_a, tokens_b=None):
    tokens = ["<cls>", *tokens_a, "<sep>"]
    segments = [0] * len(tokens)
    if tokens_b is not None:
        tokens += [*tokens_b, "<sep>"]
        segments += [1] * len(tokens_b) + [0]
    return tokens, segments
''', "the last <sep> is in segment 0"),
    Mutant(SHEET, "q1", "extra-sep", '''
def tokens_and_segments(tokens_a, tokens_b=None):
    tokens = ["<cls>", *tokens_a, "<sep>", *(tokens_b or []), "<sep>"]
    segments = [0] * (len(tokens_a) + 2) + [1] * (len(tokens_b or []) + 1)
    return tokens, segments
''', "a single sentence gets a second <sep>"),
    Mutant(SHEET, "q2", "independent-argmax", '''
def best_span(start_logits, end_logits, max_answer_len):
    return start_logits.argmax(dim=-1), end_logits.argmax(dim=-1)
''', "start and end chosen independently"),
    Mutant(SHEET, "q2", "no-length-cap", '''
def best_span(start_logits, end_logits, max_answer_len):
    B, T = start_logits.shape
    scores = start_logits[:, :, None] + end_logits[:, None, :]
    scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).tril(-1), float("-inf"))
    best = scores.reshape(B, -1).argmax(dim=1)
    return best // T, best % T
''', "no cap on the answer length"),
    Mutant(SHEET, "q2", "cap-off-by-one", '''
def best_span(start_logits, end_logits, max_answer_len):
    B, T = start_logits.shape
    scores = start_logits[:, :, None] + end_logits[:, None, :]
    allowed = torch.ones(T, T, dtype=torch.bool).triu().tril(max_answer_len)
    best = scores.masked_fill(~allowed, float("-inf")).reshape(B, -1).argmax(dim=1)
    return best // T, best % T
''', "answer length cap off by one"),
    Mutant(SHEET, "q2", "axes-swapped", '''
def best_span(start_logits, end_logits, max_answer_len):
    B, T = start_logits.shape
    scores = start_logits[:, None, :] + end_logits[:, :, None]
    allowed = torch.ones(T, T, dtype=torch.bool).triu().tril(max_answer_len - 1)
    best = scores.masked_fill(~allowed, float("-inf")).reshape(B, -1).argmax(dim=1)
    return best // T, best % T
''', "start and end axes of the score table mixed up"),
    Mutant(SHEET, "q3", "always-mask", '''
def mlm_mask(ids, num_special, mask_id, vocab_size, mask_prob=0.15):
    selected = (torch.rand(ids.shape) < mask_prob) & (ids >= num_special)
    labels = torch.where(selected, ids, torch.full_like(ids, -100))
    return ids.masked_fill(selected, mask_id), labels
''', "80% / 10% / 10%"),
    Mutant(SHEET, "q3", "selects-specials", '''
def mlm_mask(ids, num_special, mask_id, vocab_size, mask_prob=0.15):
    selected = torch.rand(ids.shape) < mask_prob
    labels = torch.where(selected, ids, torch.full_like(ids, -100))
    u = torch.rand(ids.shape)
    inputs = ids.clone()
    inputs[selected & (u < 0.8)] = mask_id
    to_random = selected & (u >= 0.8) & (u < 0.9)
    inputs[to_random] = torch.randint(num_special, vocab_size, ids.shape)[to_random]
    return inputs, labels
''', "special position"),
    Mutant(SHEET, "q3", "random-share-of-rest", '''
def mlm_mask(ids, num_special, mask_id, vocab_size, mask_prob=0.15):
    selected = (torch.rand(ids.shape) < mask_prob) & (ids >= num_special)
    labels = torch.where(selected, ids, torch.full_like(ids, -100))
    inputs = ids.clone()
    masked = selected & (torch.rand(ids.shape) < 0.8)
    inputs[masked] = mask_id
    randomised = selected & ~masked & (torch.rand(ids.shape) < 0.1)
    inputs[randomised] = torch.randint(num_special, vocab_size, ids.shape)[randomised]
    return inputs, labels
''', "80% / 10% / 10%"),
    Mutant(SHEET, "q3", "random-from-whole-vocab", '''
def mlm_mask(ids, num_special, mask_id, vocab_size, mask_prob=0.15):
    selected = (torch.rand(ids.shape) < mask_prob) & (ids >= num_special)
    labels = torch.where(selected, ids, torch.full_like(ids, -100))
    u = torch.rand(ids.shape)
    inputs = ids.clone()
    inputs[selected & (u < 0.8)] = mask_id
    to_random = selected & (u >= 0.8) & (u < 0.9)
    inputs[to_random] = torch.randint(0, vocab_size, ids.shape)[to_random]
    return inputs, labels
''', "not ordinary tokens"),
    Mutant(SHEET, "q3", "labels-everywhere", '''
def mlm_mask(ids, num_special, mask_id, vocab_size, mask_prob=0.15):
    selected = (torch.rand(ids.shape) < mask_prob) & (ids >= num_special)
    u = torch.rand(ids.shape)
    inputs = ids.clone()
    inputs[selected & (u < 0.8)] = mask_id
    to_random = selected & (u >= 0.8) & (u < 0.9)
    inputs[to_random] = torch.randint(num_special, vocab_size, ids.shape)[to_random]
    return inputs, ids.clone()
''', "must have the label -100"),
    Mutant(SHEET, "q3", "labels-of-corrupted", '''
def mlm_mask(ids, num_special, mask_id, vocab_size, mask_prob=0.15):
    selected = (torch.rand(ids.shape) < mask_prob) & (ids >= num_special)
    u = torch.rand(ids.shape)
    inputs = ids.clone()
    inputs[selected & (u < 0.8)] = mask_id
    to_random = selected & (u >= 0.8) & (u < 0.9)
    inputs[to_random] = torch.randint(num_special, vocab_size, ids.shape)[to_random]
    return inputs, torch.where(selected, inputs, torch.full_like(ids, -100))
''', "not the original id"),
    Mutant(SHEET, "q3", "corrupts-unselected", '''
def mlm_mask(ids, num_special, mask_id, vocab_size, mask_prob=0.15):
    selected = (torch.rand(ids.shape) < mask_prob) & (ids >= num_special)
    labels = torch.where(selected, ids, torch.full_like(ids, -100))
    u = torch.rand(ids.shape)
    inputs = ids.clone()
    inputs[selected & (u < 0.8)] = mask_id
    to_random = (u >= 0.8) & (u < 0.9) & (ids >= num_special)
    inputs[to_random] = torch.randint(num_special, vocab_size, ids.shape)[to_random]
    return inputs, labels
''', "that are not predicted (label -100)"),
    Mutant(SHEET, "q3", "hardcoded-prob", '''
def mlm_mask(ids, num_special, mask_id, vocab_size, mask_prob=0.15):
    selected = (torch.rand(ids.shape) < 0.15) & (ids >= num_special)
    labels = torch.where(selected, ids, torch.full_like(ids, -100))
    u = torch.rand(ids.shape)
    inputs = ids.clone()
    inputs[selected & (u < 0.8)] = mask_id
    to_random = selected & (u >= 0.8) & (u < 0.9)
    inputs[to_random] = torch.randint(num_special, vocab_size, ids.shape)[to_random]
    return inputs, labels
''', "expected about mask_prob = 0.3"),
]
