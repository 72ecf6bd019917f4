"""Chapter 3 diagrams: the masked softmax with valid lengths."""
from svg import MUTED, Diagram


def masked_softmax() -> Diagram:
    d = Diagram(700, 250, "The masked softmax with valid lengths",
                "Scores for two batch rows, one query each, over four keys, with valid lengths 2 "
                "and 3. The keys beyond each valid length are replaced by the smallest finite "
                "value of the dtype, written min; a softmax over each row follows, and the masked "
                "weights are then set to exactly zero, so each row's visible weights sum to one.")
    scores = [["0.50", "0.77", "0.09", "0.13"], ["0.46", "0.63", "0.35", "0.40"]]
    weights = [["0.43", "0.57", "0", "0"], ["0.32", "0.39", "0.29", "0"]]
    lens = [2, 3]
    cell, y = 40, 92
    xs = [82, 302, 522]
    visible = [[j < lens[i] for j in range(4)] for i in range(2)]
    filled = [[scores[i][j] if visible[i][j] else "min" for j in range(4)] for i in range(2)]
    kinds = [[("input" if v else "masked") for v in row] for row in visible]
    out_kinds = [[("attention" if v else "masked") for v in row] for row in visible]
    panels = [("scores X  (B = 2, S = 4)", [["input"] * 4] * 2, scores),
              ("fill masked keys", kinds, filled),
              ("softmax, then zero", out_kinds, weights)]
    grids = []
    for x, (title, fills, texts) in zip(xs, panels):
        d.text(x + 2 * cell, y - 40, title, size=14, weight="bold")
        for j in range(4):
            d.text(x + (j + 0.5) * cell, y - 14, f"k_{{{j}}}", size=13, color=MUTED)
        grids.append(d.grid(x, y, 2, 4, cell, fills=fills, texts=texts, size=13))
    for i, n in enumerate(lens):
        d.text(xs[0] - 8, y + (i + 0.5) * cell, f"len {n}", size=13, anchor="end", color=MUTED)
    for a, b in zip(grids, grids[1:]):
        d.arrow((a.x + a.w + 8, a.y + a.h / 2), (b.x - 8, b.y + b.h / 2))
    d.text(xs[0] + 2 * cell, y + 2 * cell + 24, "valid lengths [2, 3]", size=13, color=MUTED)
    d.text(xs[1] + 2 * cell, y + 2 * cell + 24, "min = torch.finfo(dtype).min", size=13,
           color=MUTED)
    d.text(xs[2] + 2 * cell, y + 2 * cell + 24, "each row sums to 1", size=13, color=MUTED)
    d.text(350, 226, "keys at or beyond a row's valid length get weight exactly 0; "
           "a row with valid length 0 gets all zeros", size=13, color=MUTED, italic=True)
    return d


DIAGRAMS = {"ch03_masked_softmax": masked_softmax}
