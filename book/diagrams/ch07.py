"""Chapter 7 diagrams: the encoder and decoder blocks; post-norm and pre-norm sub-layers."""
from svg import MUTED, Diagram

BOX_W, BOX_H, LN_H = 176, 40, 26  # sub-layer box, LayerNorm box


def _sublayer(d: Diagram, cx: float, y_in: float, label: str, kind: str, side: int) -> float:
    """One post-norm sub-layer drawn upwards from the stream entering at ``y_in``.

    The stream goes up into the sub-layer, the residual path goes round it on ``side``
    (-1 left, +1 right) to the addition ⊕, and a LayerNorm follows. Returns the y where the
    stream leaves (the top of the LayerNorm box).
    """
    box_top = y_in - 65
    box = d.box(cx - BOX_W / 2, box_top, BOX_W, BOX_H, label, kind=kind, size=13)
    d.arrow((cx, y_in), box.bottom)
    plus_y = box_top - 20
    plus = d.circle(cx, plus_y, label="+")
    d.arrow(box.top, plus.bottom)
    rx = cx + side * (BOX_W / 2 + 16)
    d.arrow((cx, y_in - 9), (rx, y_in - 9), (rx, plus_y), plus.left if side < 0 else plus.right)
    ln = d.box(cx - 55, plus_y - 50, 110, LN_H, "LayerNorm", kind="norm", size=13)
    d.arrow(plus.top, ln.bottom)
    return plus_y - 50


def encoder_decoder_blocks() -> Diagram:
    d = Diagram(720, 650, "The Transformer's encoder block and decoder block",
                "Two stacks, data flowing upwards. Left, the encoder: source tokens, then "
                "embeddings scaled by the square root of d_model plus positional encodings, then "
                "a block repeated N times: global self-attention with h heads and a padding "
                "mask, a residual addition and LayerNorm, a position-wise feed-forward network "
                "(d_model to d_ff to d_model), a residual addition and LayerNorm. Its output, the "
                "memory, gives the keys and values of the decoder's cross-attention. Right, the "
                "decoder: the target so far, starting with <bos>, embeddings plus positions, then "
                "a block repeated N times: causal self-attention, residual addition and "
                "LayerNorm, cross-attention whose queries come from the decoder, residual "
                "addition and LayerNorm, the feed-forward network, residual addition and "
                "LayerNorm; then a linear layer and a softmax give the next-token probabilities.")
    enc, dec = 180, 530
    d.text(enc, 24, "encoder", size=15, weight="bold")
    d.text(dec, 24, "decoder", size=15, weight="bold")
    for cx, tokens in ((enc, "source x_{1} … x_{S}"), (dec, "target so far: <bos>, y_{1} … y_{t-1}")):
        tok = d.box(cx - 125, 606, 250, 28, tokens, kind="input", size=13)
        emb = d.box(cx - 125, 548, 250, 34, "embedding · √d_{model} + position", kind="input",
                    size=13)
        d.arrow(tok.top, emb.bottom)
        d.line(emb.top, (cx, 520), color="#1a202c")
    # encoder block: global self-attention, FFN
    y = _sublayer(d, enc, 520, "global self-attention\nh heads, padding mask", "attention", -1)
    y = _sublayer(d, enc, y, "position-wise FFN\nd_{model} → d_{ff} → d_{model}", "ffn", -1)
    d.frame(enc - 120, y - 10, 228, 530 - y + 8)
    d.text(enc - 138, (y + 520) / 2, "× N", size=15, anchor="end", color=MUTED)
    memory = d.box(enc - 95, 188, 190, 44, "encoder output (memory)\nS × d_{model}",
                   kind="output", size=13)
    d.arrow((enc, y), memory.bottom)
    # decoder block: causal self-attention, cross-attention, FFN
    y = _sublayer(d, dec, 520, "causal self-attention\nh heads, causal mask", "attention", 1)
    y_cross = y
    y = _sublayer(d, dec, y, "cross-attention\nqueries from below", "attention", 1)
    cross_mid = y_cross - 45  # middle of the cross-attention box
    d.arrow(memory.right, (345, memory.right[1]), (345, cross_mid), (dec - BOX_W / 2, cross_mid),
            label="K, V", label_at=0.9)
    y = _sublayer(d, dec, y, "position-wise FFN\nd_{model} → d_{ff} → d_{model}", "ffn", 1)
    d.frame(dec - 108, y - 10, 228, 530 - y + 8)
    d.text(dec + 138, (y + 520) / 2, "× N", size=15, anchor="start", color=MUTED)
    out = d.box(dec - 95, 44, 190, 44, "linear + softmax\np(y_{t} | y_{<t}, x)", kind="output",
                size=13)
    d.arrow((dec, y), out.bottom)
    return d


def _panel_title(d: Diagram, cx: float, title: str, formula: str) -> None:
    d.text(cx, 24, title, size=15, weight="bold")
    d.text(cx, 48, formula, size=13, color=MUTED)


def post_vs_pre_norm() -> Diagram:
    d = Diagram(700, 456, "Post-norm and pre-norm residual sub-layers",
                "Two panels, data flowing upwards. Left, post-norm (the paper): the input X "
                "enters the sub-layer (attention or feed-forward) and also goes round it to an "
                "addition; a LayerNorm follows the addition, so what leaves is normalised. "
                "Right, pre-norm: X enters a LayerNorm and then the sub-layer, while the "
                "residual path carries X itself, never normalised, round both to the addition; "
                "the stack ends with one final LayerNorm after its last block.")
    left, right = 175, 525
    _panel_title(d, left, "post-norm (the paper)", "X ← LayerNorm(X + Sublayer(X))")
    _panel_title(d, right, "pre-norm (GPT-2 and later)", "X ← X + Sublayer(LayerNorm(X))")
    d.line((350, 20), (350, 440), dashed=True)
    for cx in (left, right):
        d.box(cx - 70, 380, 140, 32, "X  (from below)", kind="input", size=13)
    d.text(left, 436, "what leaves is normalised", size=13, color=MUTED, italic=True)
    d.text(right, 436, "the stream X is never normalised", size=13, color=MUTED, italic=True)
    # post-norm: sub-layer, add, norm
    sub = d.box(left - 90, 270, 180, 44, "Sublayer\n(attention or FFN)", kind="attention", size=13)
    d.arrow((left, 380), sub.bottom)
    plus = d.circle(left, 230)
    d.arrow(sub.top, plus.bottom)
    d.arrow((left, 362), (left - 115, 362), (left - 115, 230), plus.left)
    d.text(left - 58, 350, "residual", size=13, color=MUTED)
    ln = d.box(left - 60, 160, 120, 30, "LayerNorm", kind="norm", size=13)
    d.arrow(plus.top, ln.bottom)
    d.arrow(ln.top, (left, 100))
    d.text(left, 86, "to the next sub-layer", size=13, color=MUTED)
    # pre-norm: norm, sub-layer, add
    ln = d.box(right - 60, 300, 120, 30, "LayerNorm", kind="norm", size=13)
    d.arrow((right, 380), ln.bottom)
    sub = d.box(right - 90, 218, 180, 44, "Sublayer\n(attention or FFN)", kind="attention",
                size=13)
    d.arrow(ln.top, sub.bottom)
    plus = d.circle(right, 178)
    d.arrow(sub.top, plus.bottom)
    d.arrow((right, 362), (right + 115, 362), (right + 115, 178), plus.right)
    d.text(right + 58, 350, "residual", size=13, color=MUTED)
    final = d.box(right - 85, 86, 170, 40, "final LayerNorm\n(once, after block N)",
                  kind="norm", size=13, dashed=True)
    d.arrow(plus.top, final.bottom, dashed=True, label="… more blocks", label_side="right")
    return d


DIAGRAMS = {"ch07_encoder_decoder_blocks": encoder_decoder_blocks,
            "ch07_post_vs_pre_norm": post_vs_pre_norm}
