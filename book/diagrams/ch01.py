"""Chapter 1 diagrams: where queries, keys and values come from."""
from svg import Diagram


def qkv_projections() -> Diagram:
    d = Diagram(640, 330, "Queries, keys and values from one input",
                "The input rows X pass through three dense layers W^Q, W^K, W^V giving Q, K, V; "
                "Q times K transposed, scaled by one over root d, goes through a row-wise softmax "
                "to give the attention weights A, and A times V is the output.")
    x = d.box(30, 135, 90, 50, "X\n(n × d_{model})", kind="input", size=13)
    rows = [(40, "W^{Q}", "Q"), (135, "W^{K}", "K"), (230, "W^{V}", "V")]
    outs = {}
    for y, w, name in rows:
        lin = d.box(175, y, 80, 44, w, kind="linear")
        d.arrow(x.right, (148, x.right[1]), (148, lin.left[1]), lin.left)
        o = d.box(290, y, 70, 44, f"{name}\n(n × d)", kind="input", size=13)
        d.arrow(lin.right, o.left)
        outs[name] = o
    s = d.box(400, 80, 110, 56, "softmax(\nQK^{T}/√d)", kind="attention", size=13)
    d.arrow(outs["Q"].right, (380, outs["Q"].right[1]), (380, s.at(0, 0.3)[1]), s.at(0, 0.3))
    d.arrow(outs["K"].right, (380, outs["K"].right[1]), (380, s.at(0, 0.75)[1]), s.at(0, 0.75))
    m = d.box(545, 180, 70, 50, "A V", kind="attention")
    d.arrow(s.bottom, (s.bottom[0], m.left[1] - 0), m.left, label="A (n × n)", label_at=0.0,
            label_side="left")
    d.arrow(outs["V"].right, (580, outs["V"].right[1]), m.bottom)
    d.text(580, 160, "output", size=13, color="#4a5568")
    d.text(320, 305, "self-attention: Q, K and V are three views of the same X", size=13,
           color="#4a5568", italic=True)
    return d


DIAGRAMS = {"ch01_qkv_projections": qkv_projections}
