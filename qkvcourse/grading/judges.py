"""Judges: checks of questions whose answer is random, so it cannot be compared with a reference.

A judge receives the case and the student's output and returns None (acceptable), a message,
or ``(message, (mistake label, explanation))``. Judges check stated properties of the answer
(shapes, which positions change, proportions), never a reference implementation, so they ship
with the student package and run in ``grader.check`` as in the autograder.
"""
from __future__ import annotations

import math

import torch

from .core import describe

__all__ = ["JUDGES"]

IGNORE = -100


def mlm_mask(case, received):
    try:
        problem = _mlm_problem(case, received)
    except Exception as exc:  # an output so odd that the checks themselves fail
        return f"the output could not be checked ({type(exc).__name__}: {exc})"
    if problem and case.args[0].numel() <= 64 and isinstance(received, (tuple, list)):
        problem += "\n  received: " + describe(tuple(received))  # small: show what came back
    return problem


def _mlm_problem(case, received):
    ids, num_special, mask_id, vocab_size = case.args
    mask_prob = case.kwargs.get("mask_prob", 0.15)
    if not isinstance(received, (tuple, list)) or len(received) != 2:
        return f"return a pair (inputs, labels), got {type(received).__name__}"
    for name, t in zip(("inputs", "labels"), received):
        if not isinstance(t, torch.Tensor):
            return f"{name} should be a tensor, got {type(t).__name__}"
        if t.shape != ids.shape:
            return f"{name} has shape {tuple(t.shape)}, expected {tuple(ids.shape)}"
        if t.is_floating_point() or t.dtype == torch.bool:
            return f"{name} has dtype {t.dtype}, expected integer ids (torch.long)"
    inputs, labels = (t.detach().cpu().long() for t in received)
    selected = labels != IGNORE
    special = ids < num_special
    if bool(selected.all()):
        return ("every position has a label; positions that are not selected for prediction "
                "must have the label -100")
    n = int((selected & (labels != ids)).sum())
    if n:
        return (f"{n} predicted position(s) have a label that is not the original id; labels "
                f"hold the token the model must recover there, and -100 everywhere else")
    n = int((selected & special).sum())
    if n:
        return (f"{n} special position(s) (ids below num_special: <cls>, <sep>, padding) were "
                f"selected for prediction; only ordinary tokens are ever predicted")
    n = int((~selected & (inputs != ids)).sum())
    if n:
        return (f"{n} position(s) that are not predicted (label -100) were changed in inputs; "
                f"only the selected positions are corrupted")
    replaced = selected & (inputs != ids) & (inputs != mask_id)
    bad = replaced & ((inputs < num_special) | (inputs >= vocab_size))
    if int(bad.sum()):
        return (f"{int(bad.sum())} random replacement(s) are not ordinary tokens: a random "
                f"token is drawn from ids num_special .. vocab_size - 1")
    C = int((~special).sum())
    S = int(selected.sum())
    if C < 2000:
        return None  # too few tokens for the statistics: the rules above are all we check
    frac = S / C
    margin = 6 * math.sqrt(mask_prob * (1 - mask_prob) / C) + 0.005
    if abs(frac - mask_prob) > margin:
        return (f"selected {frac:.3f} of the {C} ordinary positions for prediction, expected "
                f"about mask_prob = {mask_prob} (each ordinary position is selected with "
                f"probability mask_prob)")
    ordinary = vocab_size - num_special
    fm = int((selected & (inputs == mask_id)).sum()) / S
    fr = int(replaced.sum()) / S
    fk = int((selected & (inputs == ids)).sum()) / S
    expected = (0.8, 0.1 * (1 - 1 / ordinary), 0.1 + 0.1 / ordinary)
    for got, want in zip((fm, fr, fk), expected):
        if abs(got - want) > 6 * math.sqrt(want * (1 - want) / S) + 0.005:
            return (f"of the {S} selected positions, {fm:.1%} became mask_id, {fr:.1%} a "
                    f"random token and {fk:.1%} stayed unchanged; expected about 80% / 10% / "
                    f"10%")
    return None


JUDGES = {"mlm_mask": mlm_mask}
