"""Chapter 10 diagrams: BERT's input and its span-extraction head."""
from svg import MUTED, Diagram

_TOKENS = ["<cls>", "oliver", "loved", "trees", "<sep>", "he", "was", "afraid", "<sep>"]
_SEGMENTS = [0, 0, 0, 0, 0, 1, 1, 1, 1]


def bert_input() -> Diagram:
    d = Diagram(716, 470, "BERT's input representation",
                "A sentence pair packed as <cls> oliver loved trees <sep> he was afraid <sep>. "
                "Under each token three embeddings are looked up: its token embedding, the "
                "segment embedding E_A for <cls>, sentence A and the first <sep>, E_B for "
                "sentence B and the last <sep>, and the position embedding E_0 to E_8. The "
                "three are added and normalised by a LayerNorm; the result x_t, one vector of "
                "width d_model per position, enters the first encoder block.")
    left, col = 112, 67
    xs = [left + i * col for i in range(len(_TOKENS))]
    w = 60
    # the two sentences
    d.brace_label(xs[0] - 3, xs[4] + w + 3, 28, "")
    d.text((xs[0] + xs[4] + w) / 2, 16, "segment A: <cls> sentence A <sep>", size=13, color=MUTED)
    d.brace_label(xs[5] - 3, xs[8] + w + 3, 28, "")
    d.text((xs[5] + xs[8] + w) / 2, 16, "segment B: sentence B <sep>", size=13, color=MUTED)
    rows = {"tokens": 40, "token": 112, "segment": 172, "position": 232}
    d.text(12, rows["tokens"] + 19, "input", size=14, anchor="start", weight="bold")
    d.text(12, rows["token"] + 19, "token\nembedding", size=13, anchor="start")
    d.text(12, rows["segment"] + 19, "segment\nembedding", size=13, anchor="start")
    d.text(12, rows["position"] + 19, "position\nembedding", size=13, anchor="start")
    for t, (x, tok, seg) in enumerate(zip(xs, _TOKENS, _SEGMENTS)):
        special = tok.startswith("<")
        top = d.box(x, rows["tokens"], w, 38, tok, kind="special" if special else "input",
                    size=13, weight="bold" if special else "normal")
        d.arrow(top.bottom, (x + w / 2, rows["token"]))
        d.box(x, rows["token"], w, 38, "E_{" + tok.strip("<>") + "}", kind="input", size=13)
        d.box(x, rows["segment"], w, 38, "E_{A}" if seg == 0 else "E_{B}", kind="linear",
              size=13)
        d.box(x, rows["position"], w, 38, f"E_{{{t}}}", kind="ffn", size=13)
        for y in (rows["token"] + 38, rows["segment"] + 38):
            d.text(x + w / 2, y + 11, "+", size=15, weight="bold", color=MUTED)
        plus = d.circle(x + w / 2, 305, 11, "+")
        d.arrow((x + w / 2, rows["position"] + 38), plus.top)
        d.arrow(plus.bottom, (x + w / 2, 350))
    ln = d.box(xs[0], 350, xs[-1] + w - xs[0], 40, "LayerNorm (and dropout)", kind="norm",
               size=14)
    d.text(12, 305, "sum", size=13, anchor="start")
    for x in xs:
        d.arrow((x + w / 2, 390), (x + w / 2, 418))
    d.text(12, 432, "x_{t}", size=14, anchor="start", weight="bold")
    d.box(xs[0], 418, xs[-1] + w - xs[0], 34, "x_{0} … x_{8}: one row of width d_{model} per "
          "position, into encoder block 1", kind="output", size=13)
    return d


def span_head() -> Diagram:
    d = Diagram(716, 360, "BERT's span-extraction head",
                "The packed input <cls> question <sep> passage <sep> goes through the encoder, "
                "which gives a final state T_i for every position. Two learned vectors, a start "
                "vector S and an end vector E, are multiplied with every passage state: S·T_i "
                "scores position i as the start of the answer, E·T_j as its end; positions "
                "outside the passage are masked. A softmax over the passage gives the start and "
                "end probabilities, and the predicted answer is the span i ≤ j with the highest "
                "S·T_i + E·T_j.")
    toks = ["<cls>", "what", "...", "?", "<sep>", "tom", "loved", "...", "spiders", ".", "<sep>"]
    left, col, w = 20, 63, 57
    xs = [left + i * col for i in range(len(toks))]
    passage = range(5, 10)
    d.text(358, 20, "<cls> question <sep> passage <sep>", size=13, color=MUTED)
    for i, (x, tok) in enumerate(zip(xs, toks)):
        special = tok.startswith("<")
        d.box(x, 34, w, 34, tok, kind="special" if special else "input", size=13)
    enc = d.box(xs[0], 98, xs[-1] + w - xs[0], 40, "BERT encoder (pretrained, then fine-tuned)",
                kind="attention", size=14)
    for x in xs:
        d.arrow((x + w / 2, 68), (x + w / 2, enc.y))
    for i, x in enumerate(xs):
        inside = i in passage
        d.arrow((x + w / 2, enc.y + enc.h), (x + w / 2, 166))
        d.box(x, 166, w, 32, f"T_{{{i}}}", kind="output" if inside else "masked", size=13)
        if inside:
            d.box(x, 214, w, 28, f"S·T_{{{i}}}", kind="linear", size=13)
            d.box(x, 248, w, 28, f"E·T_{{{i}}}", kind="linear", size=13)
        else:
            d.box(x, 214, w, 62, "masked\n(−∞)", kind="masked", size=13)
    d.brace_label(xs[5], xs[9] + w, 290, "")
    d.text(358, 320, "softmax over the passage positions: P_{start}(i) and P_{end}(j)\n"
           "answer: the span i ≤ j with the highest S·T_{i} + E·T_{j}", size=13, color=MUTED)
    return d


DIAGRAMS = {"ch10_bert_input": bert_input, "ch10_span_head": span_head}
