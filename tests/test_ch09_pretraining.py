"""Chapter 9's measured-pretraining helpers: LM windows, the destination cloze task,
transferring a pretrained GPT (new token rows, k of L blocks) and zero-shot scoring."""
from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

import qkvcourse as qc
from qkvcourse.data import CharTokenizer
from qkvcourse.data.corpus import _DESTINATIONS, generate_stories, lm_windows
from qkvcourse.data.story_cloze import (DESTINATION_WORDS, destination_passages,
                                        make_destination_task)
from qkvcourse.data.tasks import task_vocab
from qkvcourse.finetune import gpt_classification_inputs
from qkvcourse.transfer import char_token_map, transfer_gpt
from qkvcourse.zero_shot import choose_continuation, continuation_log_probs


# -- lm_windows ------------------------------------------------------------------------------

def test_lm_windows_against_a_python_loop():
    ids = list(range(100, 123))  # 23 tokens
    T, stride = 5, 3
    inputs, targets = lm_windows(ids, T, stride)
    expected = [ids[s:s + T + 1] for s in range(0, len(ids) - T, stride)]
    assert inputs.tolist() == [w[:-1] for w in expected]
    assert targets.tolist() == [w[1:] for w in expected]
    assert inputs.dtype == torch.long and inputs.shape == (len(expected), T)


def test_lm_windows_default_stride_predicts_every_target_once():
    ids = torch.arange(41)
    inputs, targets = lm_windows(ids, 8)
    assert torch.equal(targets.reshape(-1), ids[1:41])
    assert torch.equal(inputs[:, 1:], targets[:, :-1])  # targets are the inputs shifted by one


@pytest.mark.parametrize("kwargs, error", [
    (dict(ids=[1, 2, 3], T=3), ValueError),  # fewer than T + 1 tokens
    (dict(ids=[1, 2, 3], T=0), ValueError),
    (dict(ids=[1, 2, 3], T=1, stride=0), ValueError),
    (dict(ids=[[1, 2], [3, 4]], T=1), ValueError),  # not 1-D
])
def test_lm_windows_rejects_bad_input(kwargs, error):
    with pytest.raises(error):
        lm_windows(**kwargs)


# -- the destination cloze task --------------------------------------------------------------

def test_destination_passages_end_before_the_destinations_last_word():
    story = generate_stories(5_000, seed=3).split("\n\n")[0]
    passages = destination_passages(story, max_chars=44)
    assert passages, "every story names its destination"
    for p in passages:
        assert len(p.prompt) <= 44 and p.prompt.endswith(" ")
        assert p.prompt + p.answer in story  # the passage is the story's own text
        destination = _DESTINATIONS[DESTINATION_WORDS.index(p.answer)]
        assert (p.prompt + p.answer).endswith(destination[-len(p.prompt) - len(p.answer):])
    assert len({p.answer for p in passages}) == 1  # one destination per story


def test_make_destination_task_splits_sizes_labels_and_determinism():
    task = make_destination_task(num_train=300, num_val=40, num_test=60, seed=0)
    assert (len(task.train), len(task.val), len(task.test)) == (300, 40, 60)
    assert task.num_classes == len(DESTINATION_WORDS) == 10
    assert all(0 <= e.label < 10 and e.tokens_b is None for e in task.train + task.val + task.test)
    assert task.max_chars() <= 44
    assert len({e.label for e in task.train}) == 10
    again = make_destination_task(num_train=300, num_val=40, num_test=60, seed=0)
    assert again.train == task.train and again.test == task.test
    other = make_destination_task(num_train=300, num_val=40, num_test=60, seed=1)
    assert other.train != task.train


def test_make_destination_task_rejects_bad_sizes():
    with pytest.raises(ValueError):
        make_destination_task(num_train=-1)
    with pytest.raises(TypeError):
        make_destination_task(seed="0")


def test_cloze_examples_go_through_gpts_input_transformation():
    task = make_destination_task(num_train=20, num_val=4, num_test=4)
    vocab = task_vocab([list("abcdefghijklmnopqrstuvwxyz ,.!?\"ABCDEFGHIJKLMNOPQRSTUVWXYZ")])
    idx, valid_lens = gpt_classification_inputs(task.train[:3], vocab, None)
    for b, e in enumerate(task.train[:3]):
        tokens = vocab.to_tokens(idx[b, :valid_lens[b]])
        assert tokens == ["<start>", *e.prompt, "<extract>"]


# -- transfer_gpt ----------------------------------------------------------------------------

def _small_gpt(vocab_size=12, layers=3, seed=0):
    torch.manual_seed(seed)
    return qc.GPT(qc.GPTConfig(vocab_size, max_len=16, num_layers=layers, num_heads=2, d_model=16,
                               dropout=0.0))


def test_char_token_map():
    tokenizer = CharTokenizer.from_text("abc ")
    vocab = task_vocab([list("abc ")])
    mapping = char_token_map(vocab, tokenizer)
    for token, source in zip(vocab.idx_to_token, mapping):
        if len(token) == 1:
            assert source == tokenizer.encode(token)[0]
        else:
            assert source == -1  # <pad>, <start>, <extract>, ...


def test_transfer_gpt_copies_rows_positions_and_the_first_k_blocks():
    source = _small_gpt()
    token_map = [3, -1, 0, 11, -1]
    torch.manual_seed(1)
    target = transfer_gpt(source, token_map, num_blocks=2)
    assert target.config.vocab_size == 5 and target.config.num_layers == 3
    W, W0 = target.token_embedding.weight, source.token_embedding.weight
    for i, j in enumerate(token_map):
        if j >= 0:
            assert torch.equal(W[i], W0[j])
        else:
            assert not any(torch.equal(W[i], row) for row in W0)  # a fresh row
    assert target.lm_head.weight is target.token_embedding.weight  # still tied
    assert torch.equal(target.pos_embedding.P, source.pos_embedding.P)
    for layer in range(3):
        same = all(torch.equal(a, b) for a, b in zip(target.blks[layer].state_dict().values(),
                                                     source.blks[layer].state_dict().values()))
        assert same == (layer < 2)
    # the final LayerNorm belongs to the last block: kept fresh (ones, zeros) unless k = L
    assert torch.equal(target.norm.weight, torch.ones(16))


def test_transfer_gpt_with_everything_computes_the_source_model():
    source = _small_gpt().eval()
    target = transfer_gpt(source).eval()
    idx = torch.randint(0, 12, (2, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(target(idx), source(idx), atol=1e-6)
    assert target is not source and target.token_embedding.weight is not source.token_embedding.weight


def test_transfer_gpt_zero_blocks_is_a_fresh_model_with_pretrained_embeddings():
    source = _small_gpt()
    torch.manual_seed(5)
    fresh = qc.GPT(source.config)
    torch.manual_seed(5)
    target = transfer_gpt(source, num_blocks=0)
    for a, b in zip(target.blks.state_dict().values(), fresh.blks.state_dict().values()):
        assert torch.equal(a, b)  # the same initialisation as any GPT seeded alike
    assert torch.equal(target.token_embedding.weight, source.token_embedding.weight)


@pytest.mark.parametrize("kwargs", [dict(num_blocks=4), dict(num_blocks=-1), dict(token_map=[12]),
                                    dict(token_map=[])])
def test_transfer_gpt_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        transfer_gpt(_small_gpt(), **kwargs)


# -- zero-shot scoring -----------------------------------------------------------------------

def _reference_log_prob(model, prompt, continuation):
    """One token at a time: log P(c_j | prompt, c_<j) from a separate forward pass each."""
    total, seq = 0.0, list(prompt)
    with torch.no_grad():
        for token in continuation:
            logits = model(torch.tensor([seq]))[0, -1]
            total += F.log_softmax(logits, dim=-1)[token].item()
            seq.append(token)
    return total


def test_continuation_log_probs_against_token_by_token_chain_rule():
    model = _small_gpt(layers=2).eval()
    prompts = [[1, 2, 3], [4], [5, 6, 7, 8, 9]]
    continuations = [[7, 8], [9, 10, 11, 1], [2]]
    got = continuation_log_probs(model, prompts, continuations)
    expected = [_reference_log_prob(model, p, c) for p, c in zip(prompts, continuations)]
    assert torch.allclose(got, torch.tensor(expected), atol=1e-5)
    mean = continuation_log_probs(model, prompts, continuations, reduction="mean")
    assert torch.allclose(mean, got / torch.tensor([2.0, 4.0, 1.0]), atol=1e-6)


def test_continuation_probabilities_of_all_one_token_continuations_sum_to_one():
    model = _small_gpt(layers=1).eval()
    scores = continuation_log_probs(model, [[1, 2]] * 12, [[v] for v in range(12)])
    assert math.isclose(scores.exp().sum().item(), 1.0, rel_tol=1e-5)


def test_choose_continuation_prefers_what_the_model_learned():
    # A model trained to always continue 1 2 3 4 with 5 must choose [5] over [6]
    torch.manual_seed(0)
    model = _small_gpt(layers=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    seq = torch.tensor([[1, 2, 3, 4, 5]])
    for _ in range(50):
        optimizer.zero_grad()
        model(seq[:, :-1], seq[:, 1:])[1].backward()
        optimizer.step()
    best, scores = choose_continuation(model.eval(), [1, 2, 3, 4], [[6], [5]])
    assert best == 1 and scores.shape == (2,) and scores[1] > scores[0]


@pytest.mark.parametrize("args, error", [
    (([[1]], [[1], [2]]), ValueError),  # different numbers of prompts and continuations
    (([[]], [[1]]), ValueError),  # empty prompt
    (([[1] * 15], [[1, 2]]), ValueError),  # longer than max_len = 16
    (("abc", "d"), TypeError),
])
def test_continuation_log_probs_rejects_bad_input(args, error):
    with pytest.raises(error):
        continuation_log_probs(_small_gpt(layers=1), *args)
