from . import Mutant

SHEET = "ch07_transformer"

_INIT = '''
class PreNormEncoderBlock(nn.Module):
    def __init__(self, num_hiddens, ffn_num_hiddens, num_heads, dropout):
        super().__init__()
        self.ln1 = nn.LayerNorm(num_hiddens)
        self.attention = qc.MultiHeadAttention(num_hiddens, num_heads, dropout)
        self.ln2 = nn.LayerNorm(num_hiddens)
        self.ffn = qc.PositionWiseFFN(num_hiddens, ffn_num_hiddens, dropout)
        self.dropout = nn.Dropout(dropout)
'''

MUTANTS = [
    Mutant(SHEET, "q1", "post-norm", _INIT + '''
    def forward(self, X, valid_lens=None):
        X = self.ln1(X + self.dropout(self.attention(X, X, X, valid_lens)))
        return self.ln2(X + self.dropout(self.ffn(X)))
''', "post-norm instead of pre-norm"),
    Mutant(SHEET, "q1", "normalised-residual", _INIT + '''
    def forward(self, X, valid_lens=None):
        X = self.ln1(X)
        X = X + self.dropout(self.attention(X, X, X, valid_lens))
        X = self.ln2(X)
        return X + self.dropout(self.ffn(X))
''', "residual added to the normalised input"),
    Mutant(SHEET, "q1", "ffn-no-residual", _INIT + '''
    def forward(self, X, valid_lens=None):
        Y = self.ln1(X)
        X = X + self.dropout(self.attention(Y, Y, Y, valid_lens))
        return self.dropout(self.ffn(self.ln2(X)))
''', "missing residual connection around the feed-forward network"),
    Mutant(SHEET, "q1", "functional-dropout", _INIT + '''
    def forward(self, X, valid_lens=None):
        p = self.dropout.p
        Y = self.ln1(X)
        X = X + torch.nn.functional.dropout(self.attention(Y, Y, Y, valid_lens), p)
        return X + torch.nn.functional.dropout(self.ffn(self.ln2(X)), p)
''', "dropout active in evaluation mode"),
    Mutant(SHEET, "q1", "no-valid-lens", _INIT + '''
    def forward(self, X, valid_lens=None):
        Y = self.ln1(X)
        X = X + self.dropout(self.attention(Y, Y, Y))
        return X + self.dropout(self.ffn(self.ln2(X)))
''', "padding mask ignored"),
    Mutant(SHEET, "q1", "wrong-names", '''
class PreNormEncoderBlock(nn.Module):
    def __init__(self, num_hiddens, ffn_num_hiddens, num_heads, dropout):
        super().__init__()
        self.norm1 = nn.LayerNorm(num_hiddens)
        self.attention = qc.MultiHeadAttention(num_hiddens, num_heads, dropout)
        self.norm2 = nn.LayerNorm(num_hiddens)
        self.ffn = qc.PositionWiseFFN(num_hiddens, ffn_num_hiddens, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, X, valid_lens=None):
        Y = self.norm1(X)
        X = X + self.dropout(self.attention(Y, Y, Y, valid_lens))
        return X + self.dropout(self.ffn(self.norm2(X)))
''', "the module's parameters are not the ones the exercise names"),
    Mutant(SHEET, "q2", "strict-diagonal", '''
def cached_causal_mask(num_cached, num_new):
    keys = torch.arange(num_cached + num_new)
    queries = num_cached + torch.arange(num_new)
    return keys[None, :] < queries[:, None]
''', "diagonal excluded"),
    Mutant(SHEET, "q2", "top-left", '''
def cached_causal_mask(num_cached, num_new):
    return torch.tril(torch.ones(num_new, num_cached + num_new, dtype=torch.bool))
''', "mask aligned at the top-left corner"),
    Mutant(SHEET, "q2", "float-mask", '''
def cached_causal_mask(num_cached, num_new):
    return torch.ones(num_new, num_cached + num_new).tril(diagonal=num_cached)
''', "has dtype"),
    Mutant(SHEET, "q3", "lambda-offset", '''
def noam_rate(step, d_model, warmup_steps):
    step = step + 1
    return d_model ** -0.5 * min(step ** -0.5, step * warmup_steps ** -1.5)
''', "step shifted by one"),
    Mutant(SHEET, "q3", "max", '''
def noam_rate(step, d_model, warmup_steps):
    return d_model ** -0.5 * max(step ** -0.5, step * warmup_steps ** -1.5)
''', "max instead of min"),
]
