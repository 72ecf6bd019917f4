"""Chapter 9 diagrams: GPT's task-specific input transformations; pretraining, then transfer."""
from svg import MUTED, Diagram

H = 30  # height of a token box
TRANSFORMER_X, TRANSFORMER_W = 395, 110


def _sequence(d: Diagram, y: float, items) -> None:
    """Token boxes left to right from x = 20, then an arrow into a Transformer box."""
    x = 20
    for label, kind, w in items:
        d.box(x, y, w, H, label, kind=kind, size=13)
        x += w + 4
    t = d.box(TRANSFORMER_X, y, TRANSFORMER_W, H, "Transformer", kind="attention", size=13)
    d.arrow((x - 2, y + H / 2), t.left)


def _heading(d: Diagram, y: float, text: str) -> None:
    d.text(20, y, text, size=14, anchor="start", weight="bold")


def _pair(first: str, second: str, w1: int = 70, w2: int = 70):
    return [("Start", "special", 48), (first, "input", w1), ("Delim", "special", 48),
            (second, "input", w2), ("Extract", "special", 58)]


def input_transformations() -> Diagram:
    d = Diagram(715, 448, "GPT's task-specific input transformations",
                "Four groups of rows. Classification: Start, the text, Extract, through the "
                "Transformer, then a linear layer. Entailment: Start, premise, Delim, hypothesis, "
                "Extract, Transformer, linear. Similarity: the two texts in both orders, each "
                "through the Transformer; the two final Extract states are added before one "
                "linear layer. Multiple choice: Start, context, Delim, one answer, Extract, one "
                "sequence per answer, each through the Transformer and a linear layer that gives "
                "a score; a softmax over the answers' scores. The new Start, Delim and Extract "
                "tokens are the only inputs the pretrained model has not seen.")
    right = TRANSFORMER_X + TRANSFORMER_W
    # Classification
    _heading(d, 22, "Classification")
    _sequence(d, 36, [("Start", "special", 48), ("Text", "input", 170), ("Extract", "special", 58)])
    lin = d.box(right + 35, 36, 70, H, "Linear", kind="linear", size=13)
    d.arrow((right, 51), lin.left)
    # Entailment
    _heading(d, 92, "Entailment")
    _sequence(d, 106, _pair("Premise", "Hypothesis", 80, 95))
    lin = d.box(right + 35, 106, 70, H, "Linear", kind="linear", size=13)
    d.arrow((right, 121), lin.left)
    # Similarity: both orders, the two extract states added
    _heading(d, 162, "Similarity")
    ys = (176, 216)
    _sequence(d, ys[0], _pair("Text 1", "Text 2"))
    _sequence(d, ys[1], _pair("Text 2", "Text 1"))
    plus = d.circle(right + 35, (ys[0] + ys[1] + H) / 2, label="+")
    for y in ys:
        end = plus.top if y == ys[0] else plus.bottom
        d.arrow((right, y + H / 2), (end[0], y + H / 2), end)
    lin = d.box(right + 70, plus.center[1] - H / 2, 70, H, "Linear", kind="linear", size=13)
    d.arrow(plus.right, lin.left)
    # Multiple choice: one sequence per answer, a softmax over their scores
    _heading(d, 272, "Multiple choice")
    ys = (286, 326, 384)
    for y, answer in zip(ys, ("Answer 1", "Answer 2", "Answer N")):
        _sequence(d, y, _pair("Context", answer, 80, 80))
        lin = d.box(right + 25, y, 70, H, "Linear", kind="linear", size=13)
        d.arrow((right, y + H / 2), lin.left)
    d.text(248, 371, "⋮", size=14, color=MUTED)
    soft = d.box(right + 120, ys[0], 80, ys[-1] + H - ys[0], "softmax\nover the\nanswers",
                 kind="output", size=13)
    for y in ys:
        d.arrow((right + 95, y + H / 2), (soft.left[0], y + H / 2))
    d.text(357, 432, "the linear layer reads the last layer's state at the Extract token",
           size=13, color=MUTED, italic=True)
    return d


def pretrain_then_transfer() -> Diagram:
    d = Diagram(700, 400, "Pretraining, then transferring k of L blocks to a task",
                "Two stacks side by side. Left, pretraining without labels: the stories, one "
                "character per token, enter token and position embeddings, then blocks 1 to L, a "
                "final LayerNorm and the tied output layer, which predicts the next character. "
                "Right, fine-tuning with few labels: the input start, passage, extract enters the "
                "embeddings, copied from pretraining except new rows for the special tokens; "
                "blocks 1 to k are copied, blocks k+1 to L are re-initialised; on top, a new "
                "linear layer W_y reads the extract state and predicts the label, and the tied "
                "output layer gives the auxiliary language-modelling loss.")
    lx, rx, w, h = 30, 420, 250, 38
    d.text(lx + w / 2, 22, "1. Pretraining: no labels", size=15, weight="bold")
    d.text(rx + w / 2, 22, "2. Fine-tuning: few labels", size=15, weight="bold")
    rows = [  # (y, left label, left kind, right label, right kind, copied)
        (300, "token + position embeddings", "input",
         "embeddings: copied, new rows\nfor <start>, <extract>", "input", True),
        (240, "blocks 1 … k", "attention", "blocks 1 … k: copied", "attention", True),
        (180, "blocks k+1 … L", "attention", "blocks k+1 … L: fresh", "masked", False),
        (120, "final LayerNorm", "norm", "final LayerNorm: copied\nonly when k = L", "norm", False),
    ]
    for y, left, lkind, right, rkind, copied in rows:
        a = d.box(lx, y, w, h, left, kind=lkind, size=13)
        b = d.box(rx, y, w, h, right, kind=rkind, size=13, dashed=not copied)
        if copied:
            d.arrow(a.right, b.left, label="copy")
    for x in (lx, rx):
        for y in (300, 240, 180):
            d.arrow((x + w / 2, y), (x + w / 2, y - 22))
    lin = d.box(lx, 352, w, 30, "the stories, one character per token", kind="plain", size=13)
    d.arrow(lin.top, (lx + w / 2, 338))
    inp = d.box(rx, 352, w, 30, "<start> passage <extract>", kind="special", size=13)
    d.arrow(inp.top, (rx + w / 2, 338))
    out = d.box(lx, 50, w, 44, "tied output layer:\nthe next character (L_1)", kind="output", size=13)
    d.arrow((lx + w / 2, 120), out.bottom)
    wy = d.box(rx, 50, 120, 44, "new W_y:\nthe label (L_2)", kind="linear", size=13)
    aux = d.box(rx + 130, 50, 120, 44, "tied output:\nL_1 (auxiliary)", kind="output", size=13)
    d.arrow((wy.center[0], 120), wy.bottom)
    d.arrow((aux.center[0], 120), aux.bottom)
    d.text(350, 168, "k = 0 … L:\nthe paper's\nlayer-transfer\nexperiment", size=13, color=MUTED)
    return d


DIAGRAMS = {"ch09_input_transformations": input_transformations,
            "ch09_pretrain_transfer": pretrain_then_transfer}
