"""Chapter 1 diagrams: where queries, keys and values come from."""
from svg import MUTED, Diagram


def qkv_projections() -> Diagram:
    d = Diagram(700, 340, "Queries, keys and values from one input",
                "The input rows X (n by d_model) pass through three dense layers W^Q, W^K, W^V "
                "giving Q and K (n by d_k) and V (n by d_v); Q times K transposed, scaled by one "
                "over root d_k, goes through a row-wise softmax to give the n by n attention "
                "weights A, and A times V is the output, n by d_v.")
    x = d.box(20, 143, 105, 54, "X\n(n × d_{model})", kind="input", size=13)
    rows = [(45, "W^{Q}", "Q\n(n × d_{k})"), (145, "W^{K}", "K\n(n × d_{k})"),
            (245, "W^{V}", "V\n(n × d_{v})")]
    outs = []
    for y, w, name in rows:
        lin = d.box(170, y, 100, 50, w, kind="linear")
        d.arrow(x.right, (146, x.right[1]), (146, lin.left[1]), lin.left)
        o = d.box(305, y, 95, 50, name, kind="input", size=13)
        d.arrow(lin.right, o.left)
        outs.append(o)
    q, k, v = outs
    s = d.box(445, 70, 135, 60, "A = softmax(\nQK^{T}/√d_{k})", kind="attention", size=13)
    d.arrow(q.right, (422, q.right[1]), (422, s.at(0, 0.3)[1]), s.at(0, 0.3))
    d.arrow(k.right, (422, k.right[1]), (422, s.at(0, 0.75)[1]), s.at(0, 0.75))
    out = d.box(585, 165, 100, 60, "output AV\n(n × d_{v})", kind="output", size=13)
    d.arrow(s.right, (635, s.right[1]), out.top)
    d.text(627, 150, "A (n × n)", size=13, color=MUTED, anchor="end")
    d.arrow(v.right, (635, v.right[1]), out.bottom)
    d.text(350, 318, "self-attention: Q, K and V are three learned views of the same X",
           size=13, color=MUTED, italic=True)
    return d


def _panel(d: Diagram, px: float, title: str, weights: str, rows: str, cross: bool) -> None:
    """One panel of ch01_self_vs_cross, 330 units wide, starting at x = px."""
    d.text(px + 165, 22, title, size=15, weight="bold")
    d.frame(px, 40, 330, 305)
    att = d.box(px + 25, 58, 280, 72,
                f"softmax(QK^{{T}}/√d) V\nweights: {weights}\noutput: {rows}",
                kind="attention", size=13)
    centers = [px + 65, px + 165, px + 265]
    for cx, w, name in zip(centers, ["W^{Q}", "W^{K}", "W^{V}"], "QKV"):
        lin = d.box(cx - 40, 180, 80, 42, w, kind="linear")
        d.arrow(lin.top, (cx, att.bottom[1]), label=name, label_side="right")
    if cross:
        xq = d.box(px + 10, 268, 110, 64, "X_{q}\ndecoder\nL rows", kind="input", size=13)
        xkv = d.box(px + 130, 268, 190, 64, "X_{kv}\nencoder, S rows", kind="input", size=13)
        d.arrow((centers[0], xq.top[1]), (centers[0], 222))
        d.arrow((centers[1], xkv.top[1]), (centers[1], 222))
        d.arrow((centers[2], xkv.top[1]), (centers[2], 222))
    else:
        x = d.box(px + 10, 268, 310, 64, "X\none sequence, n rows", kind="input", size=13)
        for cx in centers:
            d.arrow((cx, x.top[1]), (cx, 222))


def self_vs_cross() -> Diagram:
    d = Diagram(705, 360, "Self-attention and encoder-decoder attention",
                "Two panels. Left, self-attention: one sequence X with n rows feeds all three "
                "projections W^Q, W^K, W^V; the weights are n by n and there are n output rows. "
                "Right, encoder-decoder attention: the decoder states X_q (L rows) feed W^Q only, "
                "the encoder states X_kv (S rows) feed W^K and W^V; the weights are L by S and "
                "there are L output rows, one per query.")
    _panel(d, 15, "self-attention", "n × n", "n rows", cross=False)
    _panel(d, 360, "encoder–decoder (cross-) attention", "L × S", "L rows (one per query)",
           cross=True)
    return d


DIAGRAMS = {"ch01_qkv_projections": qkv_projections, "ch01_self_vs_cross": self_vs_cross}
