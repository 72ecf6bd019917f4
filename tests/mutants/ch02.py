from . import Mutant

SHEET = "ch02_attention_pooling"

_KERNELS = '''
    u = (queries[:, None] - keys[None, :]) / bandwidth
    if kernel == "gaussian":
        k = torch.exp(-u ** 2 / 2)
    elif kernel == "boxcar":
        k = (u.abs() <= 1).to(u.dtype)
    else:
        k = 0.75 * torch.clamp(1 - u ** 2, min=0)
'''

MUTANTS = [
    Mutant(SHEET, "q1", "nan-empty-window", '''
def nw_regression(queries, keys, values, kernel, bandwidth):''' + _KERNELS + '''
    weights = k / k.sum(dim=1, keepdim=True)
    return weights @ values, weights
''', "NaN for a query with no key in its window"),
    Mutant(SHEET, "q1", "open-boxcar", '''
def nw_regression(queries, keys, values, kernel, bandwidth):
    u = (queries[:, None] - keys[None, :]) / bandwidth
    kernels = {"gaussian": lambda u: torch.exp(-0.5 * u ** 2),
               "boxcar": lambda u: (u.abs() < 1).to(u.dtype),
               "epanechnikov": lambda u: 0.75 * (1 - u ** 2).clamp(min=0)}
    k = kernels[kernel](u)
    weights = k / k.sum(1, keepdim=True).clamp(min=1e-300)
    return weights @ values, weights
''', "boxcar window open at its edges"),
    Mutant(SHEET, "q1", "epanechnikov-unclipped", '''
def nw_regression(queries, keys, values, kernel, bandwidth):
    u = (queries[:, None] - keys[None, :]) / bandwidth
    if kernel == "gaussian":
        k = torch.exp(-u ** 2 / 2)
    elif kernel == "boxcar":
        k = (u.abs() <= 1).to(u.dtype)
    else:
        k = 0.75 * (1 - u ** 2)
    total = k.sum(dim=1, keepdim=True)
    weights = torch.where(total == 0, torch.zeros_like(k), k / total)
    return weights @ values, weights
''', "Epanechnikov kernel not clipped at 0"),
    Mutant(SHEET, "q1", "times-bandwidth", '''
def nw_regression(queries, keys, values, kernel, bandwidth):
    u = (queries[:, None] - keys[None, :]) * bandwidth
    if kernel == "gaussian":
        k = torch.exp(-u ** 2 / 2)
    elif kernel == "boxcar":
        k = (u.abs() <= 1).to(u.dtype)
    else:
        k = 0.75 * torch.clamp(1 - u ** 2, min=0)
    weights = torch.nan_to_num(k / k.sum(dim=1, keepdim=True))
    return weights @ values, weights
''', "bandwidth multiplies the distance"),
    Mutant(SHEET, "q1", "weights-transposed", '''
def nw_regression(queries, keys, values, kernel, bandwidth):
    u = (keys[:, None] - queries[None, :]) / bandwidth  # (N, Q)
    if kernel == "gaussian":
        k = torch.exp(-u ** 2 / 2)
    elif kernel == "boxcar":
        k = (u.abs() <= 1).to(u.dtype)
    else:
        k = 0.75 * torch.clamp(1 - u ** 2, min=0)
    weights = torch.nan_to_num(k / k.sum(dim=0, keepdim=True))
    return values @ weights, weights
''', "has shape"),
    Mutant(SHEET, "q2", "keeps-self", '''
def loo_mse(x, y, bandwidth):
    k = torch.exp(-((x[:, None] - x[None, :]) / bandwidth) ** 2 / 2)
    pred = (k / k.sum(dim=1, keepdim=True)) @ y
    return ((pred - y) ** 2).mean().item()
''', "each point used to predict itself"),
    Mutant(SHEET, "q2", "zeroed-after-normalising", '''
def loo_mse(x, y, bandwidth):
    k = torch.exp(-((x[:, None] - x[None, :]) / bandwidth) ** 2 / 2)
    w = k / k.sum(dim=1, keepdim=True)
    w = w - torch.diag(torch.diag(w))
    return ((w @ y - y) ** 2).mean().item()
''', "own weight removed after normalising"),
    Mutant(SHEET, "q2", "rmse", '''
def loo_mse(x, y, bandwidth):
    scores = -((x[:, None] - x[None, :]) / bandwidth) ** 2 / 2
    scores.fill_diagonal_(float("-inf"))
    pred = torch.softmax(scores, dim=1) @ y
    return torch.sqrt(((pred - y) ** 2).mean()).item()
''', "square root taken (RMSE)"),
    Mutant(SHEET, "q2", "returns-tensor", '''
def loo_mse(x, y, bandwidth):
    scores = -((x[:, None] - x[None, :]) / bandwidth) ** 2 / 2
    scores.fill_diagonal_(float("-inf"))
    pred = torch.softmax(scores, dim=1) @ y
    return ((pred - y) ** 2).mean()
''', "returned a tensor, not a float"),
]
