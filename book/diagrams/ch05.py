"""Chapter 5 diagrams: splitting into heads and merging, with the shapes at each arrow."""
from svg import MUTED, Diagram

HEAD_KINDS = ["linear", "attention", "norm", "ffn"]  # one colour per head in the strips


def _strip(d: Diagram, x: float, y: float, heads: int = 4, cell: float = 14) -> None:
    """A feature axis of h·d_k cells, coloured by the head that owns each block of d_k = 2."""
    d.grid(x, y, 1, 2 * heads, cell, fills=[[HEAD_KINDS[j // 2] for j in range(2 * heads)]])


def split_merge_heads() -> Diagram:
    d = Diagram(710, 575, "Splitting into heads and merging",
                "Left column, top to bottom: X_q of shape (B, L, d_model) goes through W^Q to "
                "(B, L, h·d_k); a view cuts the feature axis into h blocks, (B, L, h, d_k); a "
                "transpose moves the head axis forward, (B, h, L, d_k), which d2l folds into "
                "(B·h, L, d_k). Middle column: X_kv goes through W^K and W^V and is split the same "
                "way into (B, h, S, d_k). At the bottom, scaled dot-product attention runs in every "
                "head at once and gives (B, h, L, d_k). Right column, bottom to top: transposing "
                "back gives (B, L, h, d_k), a reshape concatenates the heads into (B, L, h·d_k), "
                "and W^O mixes them into the output (B, L, d_model).")
    # column centres and the shape labels' x (to the right of each vertical arrow)
    cl, cm, cr = 95, 330, 580
    bw = 150

    def col_box(cx, y, label, kind, h=44, size=14):
        return d.box(cx - bw / 2, y, bw, h, label, kind=kind, size=size)

    def down(cx, y1, y2, label):
        d.arrow((cx, y1), (cx, y2), label=label, label_side="right")

    # left: queries, top to bottom
    xq = col_box(cl, 20, "X_{q}", "input")
    down(cl, xq.bottom[1], 100, "(B, L, d_{model})")
    wq = col_box(cl, 100, "W^{Q}", "linear")
    d.arrow((cl, wq.bottom[1]), (cl, 176), (cl, 210), label="(B, L, h·d_{k})", label_at=0.0)
    _strip(d, cl + 8, 182)
    v1 = col_box(cl, 210, "view", "output", size=13)
    down(cl, v1.bottom[1], 300, "(B, L, h, d_{k})")
    t1 = col_box(cl, 300, "transpose(1, 2)", "output", size=13)
    down(cl, t1.bottom[1], 430, "(B, h, L, d_{k})")
    d.text(cl + 8, 410, "d2l: (B·h, L, d_{k})", size=13, color=MUTED, anchor="start",
           italic=True)
    # middle: keys and values, top to bottom
    xkv = col_box(cm, 20, "X_{kv}", "input")
    down(cm, xkv.bottom[1], 100, "(B, S, d_{model})")
    wkv = col_box(cm, 100, "W^{K}, W^{V}", "linear")
    down(cm, wkv.bottom[1], 210, "(B, S, h·d_{k})")
    s2 = col_box(cm, 210, "view +\ntranspose", "output", h=60, size=13)
    down(cm, s2.bottom[1], 430, "(B, h, S, d_{k})")
    # bottom: attention in every head
    att = d.box(20, 430, 410, 62, "softmax(Q_{i}K_{i}^{T}/√d_{k}) V_{i}\nfor every head i at once",
                kind="attention", size=14)
    d.arrow(att.right, (cr, att.right[1]), (cr, 344), label="(B, h, L, d_{k})", label_at=0.9,
            label_side="right")
    # right: merge, bottom to top
    t2 = col_box(cr, 300, "transpose(1, 2)", "output", size=13)
    d.arrow(t2.top, (cr, 254), label="(B, L, h, d_{k})", label_side="right")
    r2 = col_box(cr, 210, "reshape\n(concat heads)", "output", h=44, size=13)
    d.arrow(r2.top, (cr, 180), (cr, 144), label="(B, L, h·d_{k})", label_at=0.0,
            label_side="right")
    _strip(d, cr + 8, 150)
    wo = col_box(cr, 100, "W^{O}", "linear")
    d.arrow(wo.top, (cr, 64), label="(B, L, d_{model})", label_side="right")
    col_box(cr, 20, "output", "output")
    d.text(355, 525, "Each colour is one head's block of d_{k} features. Splitting copies nothing "
           "(a view and a transpose);", size=13, color=MUTED)
    d.text(355, 547, "merging copies once (reshape of a transposed tensor). h·d_{k} = d_{model}.",
           size=13, color=MUTED)
    return d


DIAGRAMS = {"ch05_split_merge_heads": split_merge_heads}
