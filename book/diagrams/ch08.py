"""Chapter 8 diagrams: the KV cache during generation, and tiled attention with the online softmax."""
from svg import MUTED, Diagram


def kv_cache() -> Diagram:
    d = Diagram(700, 440, "The causal mask and the KV cache during generation",
                "Left: a 6 by 6 causal mask; query i may attend to keys 0 to i. Rows 0 to 4 were "
                "computed at earlier steps; generation step 5 computes only the last row. Right: "
                "at step 5 the new token x_5 is projected once into q_5, k_5 and v_5; k_5 and v_5 "
                "are appended to the cache, which already holds the keys and values of positions "
                "0 to 4, and q_5 attends over all six cached keys and values. Per layer, each step "
                "stores one key and one value per head and nothing for the query.")
    # -- left: the causal mask, the current row highlighted --------------------------------
    n, cell, gx, gy = 6, 28, 62, 92
    fills = [["masked" if j > i else ("attention" if i == n - 1 else "input") for j in range(n)]
             for i in range(n)]
    d.text(20, 34, "causal mask, n = 6", size=15, anchor="start", weight="bold")
    d.text(gx + n * cell / 2, 70, "keys j →", size=13, color=MUTED)
    d.text(gx - 8, 70, "i", size=13, color=MUTED, anchor="end")
    d.grid(gx, gy, n, n, cell, fills=fills)
    for i in range(n):
        d.text(gx - 8, gy + (i + 0.5) * cell, str(i), size=13, anchor="end", color=MUTED)
        d.text(gx + (i + 0.5) * cell, gy + n * cell + 12, str(i), size=13, color=MUTED)
    legend_y = gy + n * cell + 44
    for k, (kind, label) in enumerate([("input", "computed at earlier steps"),
                                       ("attention", "computed now (one new query)"),
                                       ("masked", "masked: the future")]):
        d.box(20, legend_y + k * 26, 18, 18, kind=kind, rx=2)
        d.text(46, legend_y + k * 26 + 9, label, size=13, anchor="start")
    d.line((262, 20), (262, 420), dashed=True)
    # -- right: one generation step with the cache -----------------------------------------
    d.text(282, 34, "generation step t = 5 (one layer)", size=15, anchor="start", weight="bold")
    x = d.box(282, 70, 100, 40, "x_{5} (new)", kind="input", size=13)
    w = d.box(282, 150, 100, 40, "W^{Q}, W^{K}, W^{V}", kind="linear", size=13)
    d.arrow(x.bottom, w.top)
    cache = d.frame(440, 60, 250, 196, "KV cache")
    bw, gap, cx = 34, 5, 454
    for name, y in [("k", 92), ("v", 170)]:
        for j in range(n):
            new = j == n - 1
            d.box(cx + j * (bw + gap), y, bw, 34, f"{name}_{{{j}}}",
                  kind="linear" if new else "input", size=13, dashed=new)
        d.text(cx + 3 * (bw + gap), y + 50, f"{name.upper()}: (t + 1) × d_{{k}} per head",
               size=13, color=MUTED)
    d.arrow(w.right, (cache.x, w.right[1]), label="append")
    d.text(411, w.right[1] + 16, "k_{5}, v_{5}", size=13, color=MUTED)
    att = d.box(282, 300, 250, 46, "softmax(q_{5} K^{T} / √d_{k}) V", kind="attention", size=14)
    d.arrow(w.bottom, att.at(0.2, 0), label="q_{5}", label_side="right")
    d.arrow((580, cache.y + cache.h), (580, att.right[1]), att.right)
    d.text(590, 290, "all 6 keys\nand values", size=13, color=MUTED, anchor="start")
    out = d.box(282, 378, 250, 40, "output at position 5 → next token", kind="output", size=13)
    d.arrow(att.bottom, out.top)
    d.text(618, 390, "stored per step:\n2 · h · d_{k} numbers\nper layer; no queries", size=13,
           color=MUTED)
    return d


def tiled_attention() -> Diagram:
    d = Diagram(700, 440, "Tiled attention with the online softmax",
                "Left: the n by n score matrix cut into 4 by 4 tiles, query blocks Q_1 to Q_4 down "
                "the side and key-value blocks K_1,V_1 to K_4,V_4 along the top. For query block "
                "Q_2 the key blocks stream past one at a time: tiles K_1 and K_2 are done, K_3 is "
                "in fast memory now, K_4 comes next. No tile is kept, so the n by n matrix is "
                "never stored. Right: for each tile the kernel computes the scores, raises the "
                "running maximum m, rescales the running sum l and the unnormalised output a by "
                "e to the m minus m-prime, and adds the tile's contribution; after the last block "
                "the output is a divided by l, and only m plus log l is kept per row.")
    # -- left: the tile grid -----------------------------------------------------------------
    t, gx, gy = 50, 76, 84
    d.text(20, 30, "scores S = QK^{T}/√d, n × n", size=15, anchor="start", weight="bold")
    fills = [["masked"] * 4 for _ in range(4)]
    texts = [[""] * 4 for _ in range(4)]
    for j, (kind, label) in enumerate([("plain", "done"), ("plain", "done"),
                                       ("attention", "now"), ("plain", "next")]):
        fills[1][j], texts[1][j] = kind, label
    d.grid(gx, gy, 4, 4, t, fills=fills, texts=texts, size=13)
    for i in range(4):
        d.text(gx - 10, gy + (i + 0.5) * t, f"Q_{{{i + 1}}}", size=14, anchor="end")
        d.text(gx + (i + 0.5) * t, gy - 14, f"K_{{{i + 1}}},V_{{{i + 1}}}", size=13)
    d.arrow((gx + 10, gy + 1.5 * t + 18), (gx + 3.5 * t + 10, gy + 1.5 * t + 18), color=MUTED)
    for k, line in enumerate(["each tile is computed, used and", "thrown away: the n × n matrix",
                              "is never stored, only one tile", "at a time, in fast memory"]):
        d.text(gx + 2 * t, gy + 4 * t + 22 + 18 * k, line, size=13, color=MUTED)
    d.box(20, 386, 262, 36, "kept per row: O and m + log ℓ", kind="output", size=13)
    d.line((300, 20), (300, 420), dashed=True)
    # -- right: the update for one tile ------------------------------------------------------
    d.text(318, 30, "for query block Q_{2}, key block j:", size=15, anchor="start",
           weight="bold")
    x0, w = 318, 300
    steps = [
        ("S_{2j} = Q_{2} K_{j}^{T} / √d", "attention"),
        ("m' = max(m, row max of S_{2j})", "attention"),
        ("ℓ ← e^{m−m'} ℓ + Σ e^{S−m'}", "norm"),
        ("a ← e^{m−m'} a + e^{S−m'} V_{j};  m ← m'", "norm"),
    ]
    ys = [54, 112, 170, 228]
    boxes = [d.box(x0, y, w, 40, label, kind=kind, size=14) for (label, kind), y in zip(steps, ys)]
    for a, b in zip(boxes, boxes[1:]):
        d.arrow(a.bottom, b.top)
    loop_x = x0 + w + 26
    d.arrow(boxes[-1].right, (loop_x, boxes[-1].right[1]), (loop_x, boxes[0].right[1]),
            boxes[0].right)
    d.text(loop_x + 4, 150, "next\nblock\nj + 1", size=13, color=MUTED, anchor="start")
    fin = d.box(x0, 310, w, 40, "O_{2} = a / ℓ", kind="output", size=14)
    d.arrow(boxes[-1].bottom, fin.top, label="after the last block", label_side="right")
    for k, line in enumerate(["m: running maximum, ℓ: running sum,",
                              "a: unnormalised output, one each per query",
                              "row, starting at m = −∞, ℓ = 0, a = 0;",
                              "e^{m−m'} rescales what was summed before"]):
        d.text(x0, 370 + 18 * k, line, size=13, color=MUTED, anchor="start")
    return d


DIAGRAMS = {"ch08_kv_cache": kv_cache, "ch08_tiled_attention": tiled_attention}
