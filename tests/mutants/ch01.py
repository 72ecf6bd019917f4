from . import Mutant

SHEET = "ch01_queries_keys_values"

MUTANTS = [
    Mutant(SHEET, "q1", "no-max-shift", '''
def attention_by_hand(Q, K, V, scale=None):
    if scale is None:
        scale = 1.0 / math.sqrt(Q.shape[-1])
    exp = torch.exp(Q @ K.T * scale)
    weights = exp / exp.sum(dim=1, keepdim=True)
    return weights @ V, weights
''', "exponentiated without subtracting the row maximum"),
    Mutant(SHEET, "q1", "global-max-shift", '''
def attention_by_hand(Q, K, V, scale=None):
    if scale is None:
        scale = 1.0 / math.sqrt(Q.shape[-1])
    scores = Q @ K.T * scale
    exp = torch.exp(scores - scores.max())
    weights = exp / exp.sum(dim=1, keepdim=True)
    return weights @ V, weights
''', "subtracted the overall maximum instead of each row's"),
    Mutant(SHEET, "q1", "normalise-columns", '''
def attention_by_hand(Q, K, V, scale=None):
    if scale is None:
        scale = 1.0 / math.sqrt(Q.shape[-1])
    scores = Q @ K.T * scale
    exp = torch.exp(scores - scores.max(dim=0, keepdim=True).values)
    weights = exp / exp.sum(dim=0, keepdim=True)
    return weights @ V, weights
''', "softmax over the wrong axis"),
    Mutant(SHEET, "q1", "scale-as-divisor", '''
def attention_by_hand(Q, K, V, scale=None):
    if scale is None:
        scale = math.sqrt(Q.shape[-1])
    scores = Q @ K.T / scale
    scores = scores - scores.max(dim=1, keepdim=True).values
    weights = torch.exp(scores) / torch.exp(scores).sum(dim=1, keepdim=True)
    return weights @ V, weights
''', "scores divided by scale"),
    Mutant(SHEET, "q1", "one-over-d", '''
def attention_by_hand(Q, K, V, scale=None):
    d = Q.shape[-1]
    scores = Q @ K.T * (1 / d if scale is None else scale)
    scores = scores - scores.max(dim=1, keepdim=True).values
    weights = torch.exp(scores) / torch.exp(scores).sum(dim=1, keepdim=True)
    return weights @ V, weights
''', "scaled by 1/d instead of 1/sqrt(d)"),
    Mutant(SHEET, "q2", "context-ignored", '''
class SingleHeadAttention(nn.Module):
    def __init__(self, d_model, d_k, d_v):
        super().__init__()
        self.W_q = nn.Linear(d_model, d_k, bias=False)
        self.W_k = nn.Linear(d_model, d_k, bias=False)
        self.W_v = nn.Linear(d_model, d_v, bias=False)

    def forward(self, x, context=None):
        q, k, v = self.W_q(x), self.W_k(x), self.W_v(x)
        self.attention_weights = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(q.shape[-1]), dim=-1)
        return self.attention_weights @ v
''', "context ignored"),
    Mutant(SHEET, "q2", "scaled-by-d-model", '''
class SingleHeadAttention(nn.Module):
    def __init__(self, d_model, d_k, d_v):
        super().__init__()
        self.d_model = d_model
        self.W_q = nn.Linear(d_model, d_k, bias=False)
        self.W_k = nn.Linear(d_model, d_k, bias=False)
        self.W_v = nn.Linear(d_model, d_v, bias=False)

    def forward(self, x, context=None):
        c = x if context is None else context
        scores = self.W_q(x) @ self.W_k(c).transpose(1, 2) / math.sqrt(self.d_model)
        self.attention_weights = torch.softmax(scores, dim=-1)
        return self.attention_weights @ self.W_v(c)
''', "scaled by 1/sqrt(d_model) instead of 1/sqrt(d_k)"),
    Mutant(SHEET, "q2", "linear-with-bias", '''
class SingleHeadAttention(nn.Module):
    def __init__(self, d_model, d_k, d_v):
        super().__init__()
        self.W_q = nn.Linear(d_model, d_k)
        self.W_k = nn.Linear(d_model, d_k)
        self.W_v = nn.Linear(d_model, d_v)

    def forward(self, x, context=None):
        c = x if context is None else context
        scores = self.W_q(x) @ self.W_k(c).transpose(1, 2) / math.sqrt(self.W_q.out_features)
        self.attention_weights = torch.softmax(scores, dim=-1)
        return self.attention_weights @ self.W_v(c)
''', "the module's parameters are not the ones the exercise names"),
    Mutant(SHEET, "q2", "queries-from-context", '''
class SingleHeadAttention(nn.Module):
    def __init__(self, d_model, d_k, d_v):
        super().__init__()
        self.W_q = nn.Linear(d_model, d_k, bias=False)
        self.W_k = nn.Linear(d_model, d_k, bias=False)
        self.W_v = nn.Linear(d_model, d_v, bias=False)

    def forward(self, x, context=None):
        if context is None:
            context = x
        q, k, v = self.W_q(context), self.W_k(x), self.W_v(x)
        self.attention_weights = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(q.shape[-1]), dim=-1)
        return self.attention_weights @ v
''', "queries and keys/values swapped"),
    Mutant(SHEET, "q2", "returns-weights-too", '''
class SingleHeadAttention(nn.Module):
    def __init__(self, d_model, d_k, d_v):
        super().__init__()
        self.W_q = nn.Linear(d_model, d_k, bias=False)
        self.W_k = nn.Linear(d_model, d_k, bias=False)
        self.W_v = nn.Linear(d_model, d_v, bias=False)

    def forward(self, x, context=None):
        c = x if context is None else context
        q = self.W_q(x)
        weights = torch.softmax(q @ self.W_k(c).transpose(1, 2) / math.sqrt(q.shape[-1]), dim=-1)
        return weights @ self.W_v(c), weights
''', "should be a tensor"),
]
