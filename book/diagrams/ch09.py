"""Chapter 9 diagrams: GPT's task-specific input transformations."""
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


DIAGRAMS = {"ch09_input_transformations": input_transformations}
