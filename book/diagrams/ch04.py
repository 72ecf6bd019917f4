"""Chapter 4 diagrams: one step of the Bahdanau decoder; fixed context vs attention."""
from svg import MUTED, Diagram


def bahdanau_step() -> Diagram:
    d = Diagram(700, 480, "One step of the Bahdanau attention decoder",
                "The previous decoder state s_{t-1} and each encoder state z_1 to z_S enter the "
                "alignment model a, which gives one score e_{t,j} per source position. A softmax "
                "over the positions turns the scores into weights alpha_{t,j} that sum to one. "
                "The weighted sum of the encoder states is the context c_t. The GRU reads c_t and "
                "the embedding of the previous token y_{t-1}, updates s_{t-1} to s_t, and a linear "
                "layer with a softmax gives the output y_t.")
    xs = [40, 130, 220, 330]  # the four source positions shown: 1, 2, 3 and S
    zs = [d.box(x, 400, 64, 40, lab, kind="input")
          for x, lab in zip(xs, ["z_{1}", "z_{2}", "z_{3}", "z_{S}"])]
    d.text(311, 420, "…", size=18, color=MUTED)
    d.text(215, 458, "encoder states z_{j} (keys and values)", size=13, color=MUTED)
    align = d.box(40, 325, 354, 40, "alignment model a(s_{t-1}, z_{j})", kind="linear", size=14)
    es, als = [], []
    for z, j in zip(zs, "123S"):
        cx = z.center[0]
        d.arrow(z.top, (cx, align.bottom[1]))
        es.append(d.box(cx - 32, 255, 64, 34, f"e_{{t,{j}}}", kind="attention", size=13))
        d.arrow((cx, align.top[1]), es[-1].bottom)
    d.text(402, 272, "scores", size=13, color=MUTED, anchor="start")
    sm = d.box(40, 195, 354, 34, "softmax over j (scores e → weights α)", kind="attention", size=13)
    for e, j in zip(es, "123S"):
        cx = e.center[0]
        d.arrow(e.top, (cx, sm.bottom[1]))
        als.append(d.box(cx - 32, 135, 64, 34, f"α_{{t,{j}}}", kind="attention", size=13))
        d.arrow((cx, sm.top[1]), als[-1].bottom)
    d.text(402, 152, "weights", size=13, color=MUTED, anchor="start")
    ctx = d.box(150, 40, 130, 48, "c_{t} = Σ_{j} α_{t,j} z_{j}", kind="attention", size=13)
    for a in als:  # the weights meet on one bus that feeds the weighted sum
        d.line(a.top, (a.top[0], 112))
    d.line((als[0].top[0], 112), (als[-1].top[0], 112))
    d.arrow((ctx.bottom[0], 112), ctx.bottom)
    # the values: the same encoder states, carried up the left side (dashed)
    d.arrow(zs[0].left, (22, zs[0].left[1]), (22, ctx.left[1]), ctx.left, dashed=True)
    d.text(28, 48, "values z_{j}", size=13, color=MUTED, anchor="start")
    # the query s_{t-1} enters the alignment model; the GRU updates it to s_t
    s_prev = d.box(540, 400, 90, 40, "s_{t-1}", kind="ffn")
    d.text(585, 458, "previous decoder state", size=13, color=MUTED)
    d.arrow(s_prev.left, (420, s_prev.left[1]), (420, align.right[1]), align.right,
            label="query", label_at=0.5, label_side="right")
    gru = d.box(470, 40, 125, 48, "GRU", kind="ffn", weight="bold")
    d.arrow(ctx.right, gru.left, label="c_{t}")
    d.arrow(s_prev.top, (585, 230), (500, 230), (500, gru.bottom[1]))
    y_prev = d.box(535, 140, 90, 36, "e(y_{t-1})", kind="input", size=13)
    d.arrow(y_prev.top, (580, gru.bottom[1]))
    out = d.box(612, 40, 80, 48, "s_{t} → y_{t}", kind="output", size=13)
    d.arrow(gru.right, out.left)
    return d


def context_vs_attention() -> Diagram:
    d = Diagram(700, 330, "Encoder–decoder without and with attention",
                "Left: an encoder reads x_1 to x_S into states z_1 to z_S; only the last, z_S, "
                "becomes the single context c that every decoder step s_1, s_2, s_3 receives. "
                "Right: the same encoder, but every decoder step reads all encoder states through "
                "attention and gets its own context c_1, c_2, c_3.")
    for ox, title, attention in ((20, "without attention: one fixed c", False),
                                 (365, "with attention: a new c_{t} per step", True)):
        d.text(ox + 158, 24, title, size=14, weight="bold")
        zs = [d.box(ox + 10 + 78 * i, 250, 58, 38, lab, kind="input")
              for i, lab in enumerate(["z_{1}", "z_{2}", "z_{3}", "z_{S}"])]
        for a, b in zip(zs, zs[1:]):
            d.arrow(a.right, b.left)
        d.text(ox + 158, 308, "encoder", size=13, color=MUTED)
        ss = [d.box(ox + 52 + 96 * i, 50, 58, 38, lab, kind="ffn")
              for i, lab in enumerate(["s_{1}", "s_{2}", "s_{3}"])]
        for a, b in zip(ss, ss[1:]):
            d.arrow(a.right, b.left)
        if not attention:
            c = d.box(ox + 238, 160, 70, 38, "c = z_{S}", kind="attention", size=13)
            d.arrow(zs[-1].top, c.bottom)
            for s in ss:
                d.arrow(c.top, (c.top[0], 130), (s.bottom[0], 130), s.bottom)
            d.text(ox + 105, 180, "the same c\nat every step", size=13, color=MUTED)
        else:
            att = d.box(ox + 10, 160, 292, 38, "attention over z_{1} … z_{S}", kind="attention",
                        size=13)
            for z in zs:
                d.arrow(z.top, (z.top[0], att.bottom[1]))
            for s, lab in zip(ss, ["c_{1}", "c_{2}", "c_{3}"]):
                d.arrow((s.bottom[0], att.top[1]), s.bottom, label=lab, label_side="right")
    d.line((350, 40), (350, 300))
    return d


DIAGRAMS = {"ch04_bahdanau_step": bahdanau_step, "ch04_context_vs_attention": context_vs_attention}
