"""BERT (qkvcourse.bert) against Hugging Face's BertModel / BertForPreTraining and d2l's BERT,
plus the pretraining data (masking and next-sentence statistics), the loss, and errors on
bad input. Also the keyword options added to qkvcourse.transformer for BERT (activation,
LayerNorm epsilon), against torch.nn.TransformerEncoderLayer.

Hugging Face models are built from a ``BertConfig`` with random weights: no download.
"""
from __future__ import annotations

import dataclasses
import os
import random
from collections import Counter

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: never the network

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from conftest import dtype_for, tolerance
from qkvcourse.bert import BERTConfig, BERTEncoder, BERTModel, MaskLM, NextSentencePred, make_bert
from qkvcourse.data.bert_pretraining import (CLS, IS_NEXT, MASK, NOT_NEXT, SEP, BERTBatch,
                                             BERTPretrainingData, bert_vocab,
                                             get_tokens_and_segments, mask_tokens,
                                             next_sentence_pairs)
from qkvcourse.huggingface import (HubDownloadError, bert_config_from_huggingface,
                                   bert_from_huggingface)
from qkvcourse.losses import bert_batch_loss, bert_pretraining_loss
from qkvcourse.data.vocab import Vocab
from qkvcourse.transformer import AddNorm, PositionWiseFFN, TransformerEncoderBlock
from helpers import raises

HF_TOL = dict(rtol=1e-4, atol=1e-4)
TIGHT = dict(rtol=1e-5, atol=1e-5)




def randomise_vectors(module: nn.Module, std: float = 0.5) -> None:
    """Biases start at 0 and LayerNorms at (1, 0), which would hide a missing or misplaced
    bias or norm; give every 1-D parameter random values instead."""
    with torch.no_grad():
        for p in module.parameters():
            if p.dim() == 1:
                p.normal_(0.0, std)


@pytest.fixture(scope="module")
def hf():
    transformers = pytest.importorskip("transformers")
    return transformers


# -- parity with Hugging Face ----------------------------------------------------------------

SIZES = {  # V, N, H, L, F, max positions, segments
    "small": dict(vocab_size=50, hidden_size=32, num_attention_heads=4, num_hidden_layers=2,
                  intermediate_size=64, max_position_embeddings=40, type_vocab_size=2),
    "odd": dict(vocab_size=97, hidden_size=48, num_attention_heads=3, num_hidden_layers=1,
                intermediate_size=80, max_position_embeddings=16, type_vocab_size=3),
    "deep": dict(vocab_size=30, hidden_size=64, num_attention_heads=8, num_hidden_layers=3,
                 intermediate_size=128, max_position_embeddings=24, type_vocab_size=2),
}


def hf_config(hf, size: str, **overrides):
    fields = dict(SIZES[size], hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                  initializer_range=0.2)
    fields.update(overrides)
    return hf.BertConfig(**fields)


def hf_model(hf, cls_name: str, config):
    torch.manual_seed(1)
    model = getattr(hf, cls_name)(config).eval()
    randomise_vectors(model)
    return model


def padded_inputs(config, B=4, T=11, seed=0):
    """Random tokens and segments with varied valid lengths; the padding holds junk ids."""
    g = torch.Generator().manual_seed(seed)
    T = min(T, config.max_position_embeddings)
    tokens = torch.randint(0, config.vocab_size, (B, T), generator=g)
    segments = torch.randint(0, config.type_vocab_size, (B, T), generator=g)
    valid_lens = torch.tensor([T, max(1, T // 2), 1, T - 1][:B])
    attention_mask = (torch.arange(T) < valid_lens[:, None]).long()  # (B, T), 1 = real token
    return tokens, segments, valid_lens, attention_mask


def valid(X, valid_lens):
    """The rows of X at real (non-padding) positions, concatenated: padded outputs are junk."""
    return torch.cat([X[b, :n] for b, n in enumerate(valid_lens.tolist())])


@pytest.mark.parametrize("size", list(SIZES))
def test_encoder_and_pooler_match_hf_bert_model(hf, size):
    config = hf_config(hf, size)
    theirs = hf_model(hf, "BertModel", config)
    ours = bert_from_huggingface(theirs)
    tokens, segments, valid_lens, attention_mask = padded_inputs(config)
    with torch.no_grad():
        out = theirs(input_ids=tokens, attention_mask=attention_mask, token_type_ids=segments)
        encoded, _, _ = ours(tokens, segments, valid_lens)
    torch.testing.assert_close(valid(encoded, valid_lens),
                               valid(out.last_hidden_state, valid_lens), **HF_TOL)
    torch.testing.assert_close(ours.pool(encoded), out.pooler_output, **HF_TOL)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("size", ["small", "odd"])
def test_pretraining_heads_match_hf_bert_for_pretraining(hf, size, attn):
    config = hf_config(hf, size)
    config._attn_implementation = attn
    theirs = hf_model(hf, "BertForPreTraining", config)
    ours = bert_from_huggingface(theirs)
    assert ours.mlm.decoder.weight is ours.encoder.token_embedding.weight  # tied, as in BERT
    tokens, segments, valid_lens, attention_mask = padded_inputs(config)
    pred_positions = torch.stack([torch.randint(0, n, (3,)) for n in valid_lens.tolist()])
    with torch.no_grad():
        out = theirs(input_ids=tokens, attention_mask=attention_mask, token_type_ids=segments)
        hidden = theirs.bert(input_ids=tokens, attention_mask=attention_mask,
                             token_type_ids=segments)
        encoded, mlm_Y_hat, nsp_Y_hat = ours(tokens, segments, valid_lens, pred_positions)
    rows = torch.arange(tokens.shape[0])[:, None]
    torch.testing.assert_close(valid(encoded, valid_lens),
                               valid(hidden.last_hidden_state, valid_lens), **HF_TOL)
    torch.testing.assert_close(ours.pool(encoded), hidden.pooler_output, **HF_TOL)
    torch.testing.assert_close(mlm_Y_hat, out.prediction_logits[rows, pred_positions], **HF_TOL)
    torch.testing.assert_close(nsp_Y_hat, out.seq_relationship_logits, **HF_TOL)


def test_pretraining_loss_matches_hf(hf):
    config = hf_config(hf, "small")
    theirs = hf_model(hf, "BertForPreTraining", config)
    ours = bert_from_huggingface(theirs)
    tokens, segments, valid_lens, attention_mask = padded_inputs(config)
    # Two predictions per row, the second of row 2 a padding slot (weight 0)
    pred_positions = torch.tensor([[1, 5], [0, 3], [0, 0], [2, 7]])
    mlm_weights = torch.ones(4, 2)
    mlm_weights[2, 1] = 0
    mlm_labels = torch.randint(0, config.vocab_size, (4, 2))
    nsp_labels = torch.tensor([IS_NEXT, NOT_NEXT, NOT_NEXT, IS_NEXT])
    labels = torch.full_like(tokens, -100)  # Hugging Face: -100 = not predicted
    for b in range(4):
        for p in range(2):
            if mlm_weights[b, p]:
                labels[b, pred_positions[b, p]] = mlm_labels[b, p]
    with torch.no_grad():
        expected = theirs(input_ids=tokens, attention_mask=attention_mask,
                          token_type_ids=segments, labels=labels,
                          next_sentence_label=nsp_labels).loss
        batch = BERTBatch(tokens, segments, valid_lens, pred_positions, mlm_weights,
                          mlm_labels, nsp_labels)
        total = bert_batch_loss(ours, batch)
    torch.testing.assert_close(total, expected, **HF_TOL)


def test_state_dict_with_config_and_untied_weights(hf):
    config = hf_config(hf, "small", tie_word_embeddings=False, hidden_act="relu",
                       layer_norm_eps=1e-6)
    theirs = hf_model(hf, "BertForPreTraining", config)
    with torch.no_grad():  # untied: the output layer is its own matrix
        theirs.cls.predictions.decoder.weight.normal_(0.0, 0.3)
    assert not torch.equal(theirs.cls.predictions.decoder.weight,
                           theirs.bert.embeddings.word_embeddings.weight)
    ours = bert_from_huggingface(theirs.state_dict(), config=config.to_dict())
    assert not ours.tie_weights
    assert ours.mlm.decoder.weight is not ours.encoder.token_embedding.weight
    assert ours.encoder.blks[0].addnorm1.ln.eps == 1e-6
    tokens, segments, valid_lens, attention_mask = padded_inputs(config)
    pred_positions = torch.zeros(4, 1, dtype=torch.long)
    with torch.no_grad():
        out = theirs(input_ids=tokens, attention_mask=attention_mask, token_type_ids=segments)
        _, mlm_Y_hat, nsp_Y_hat = ours(tokens, segments, valid_lens, pred_positions)
    torch.testing.assert_close(mlm_Y_hat[:, 0], out.prediction_logits[:, 0], **HF_TOL)
    torch.testing.assert_close(nsp_Y_hat, out.seq_relationship_logits, **HF_TOL)


def test_config_from_huggingface_and_unsupported_configs(hf):
    config = hf_config(hf, "odd")
    ours = bert_config_from_huggingface(config)
    assert (ours.vocab_size, ours.num_hiddens, ours.num_heads, ours.num_blks,
            ours.ffn_num_hiddens, ours.max_len, ours.num_segments) == (97, 48, 3, 1, 80, 16, 3)
    assert (ours.activation, ours.layer_norm_eps, ours.embedding_norm) == ("gelu", 1e-12, True)
    with raises(ValueError, "hidden_act='silu'"):
        bert_config_from_huggingface({**config.to_dict(), "hidden_act": "silu"})
    with raises(ValueError, "is_decoder=True"):
        bert_config_from_huggingface({**config.to_dict(), "is_decoder": True})


def test_loader_bad_sources(hf):
    config = hf_config(hf, "small")
    state = hf_model(hf, "BertModel", config).state_dict()
    with raises(TypeError, "config is required", "bert_from_huggingface"):
        bert_from_huggingface(state)
    with raises(TypeError, "got int"):
        bert_from_huggingface(3)
    with raises(TypeError, "got Linear"):
        bert_from_huggingface(nn.Linear(2, 2))
    with raises(KeyError, "encoder.layer.1.attention.self.query.weight"):
        bert_from_huggingface({k: v for k, v in state.items() if ".layer.1." not in k}, config)
    bigger = config.to_dict() | {"hidden_size": 64}
    with raises(ValueError, "(50, 64)", "(50, 32)"):
        bert_from_huggingface(state, bigger)


def test_hub_name_offline_fails_with_a_clear_message(hf):
    with raises(HubDownloadError, "qkvcourse-no-such/bert", "needs the network",
                "continues with the locally trained model"):
        bert_from_huggingface("qkvcourse-no-such/bert")


# -- parity with d2l -------------------------------------------------------------------------

def copy_linear(ours: nn.Linear, theirs: nn.Linear) -> None:
    with torch.no_grad():
        ours.weight.copy_(theirs.weight)
        ours.bias.copy_(theirs.bias)


def test_bert_model_matches_d2l(d2l):
    V, N, F_, H, L, T, max_len = 40, 32, 48, 4, 2, 9, 20
    theirs = d2l.BERTModel(V, N, F_, H, L, dropout=0.3, max_len=max_len).eval()
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, V, (3, T), generator=g)
    segments = torch.randint(0, 2, (3, T), generator=g)
    valid_lens = torch.tensor([T, 5, 2])
    pred_positions = torch.tensor([[1, 2, 8], [0, 3, 4], [1, 1, 0]])
    theirs(tokens, segments, valid_lens, pred_positions)  # materialise the LazyLinear layers
    randomise_vectors(theirs)

    config = dataclasses.replace(BERTConfig.d2l(V, max_len=max_len), d_model=N,
                                 ffn_num_hiddens=F_, num_heads=H, num_layers=L, dropout=0.3)
    ours = make_bert(config).eval()
    e = ours.encoder
    with torch.no_grad():
        e.token_embedding.weight.copy_(theirs.encoder.token_embedding.weight)
        e.segment_embedding.weight.copy_(theirs.encoder.segment_embedding.weight)
        e.pos_embedding.P.copy_(theirs.encoder.pos_embedding)
    for blk, their_blk in zip(e.blks, theirs.encoder.blks):
        for name in ("W_q", "W_k", "W_v", "W_o"):
            copy_linear(getattr(blk.attention.mha, name), getattr(their_blk.attention, name))
        copy_linear(blk.ffn.dense1, their_blk.ffn.dense1)
        copy_linear(blk.ffn.dense2, their_blk.ffn.dense2)
        blk.addnorm1.ln.load_state_dict(their_blk.addnorm1.ln.state_dict())
        blk.addnorm2.ln.load_state_dict(their_blk.addnorm2.ln.state_dict())
    copy_linear(ours.hidden[0], theirs.hidden[0])
    copy_linear(ours.mlm.dense, theirs.mlm.mlp[0])
    ours.mlm.ln.load_state_dict(theirs.mlm.mlp[2].state_dict())
    copy_linear(ours.mlm.decoder, theirs.mlm.mlp[3])
    copy_linear(ours.nsp.output, theirs.nsp.output)

    with torch.no_grad():
        expected = theirs(tokens, segments, valid_lens, pred_positions)
        got = ours(tokens, segments, valid_lens, pred_positions)
    for name, a, b in zip(("encoded_X", "mlm_Y_hat", "nsp_Y_hat"), got, expected):
        torch.testing.assert_close(a, b, **TIGHT, msg=lambda m: f"{name}: {m}")


def test_d2l_config_is_d2ls_simplified_bert():
    config = BERTConfig.d2l(20)
    model = make_bert(config)
    assert model.encoder.embedding_ln is None and not model.tie_weights
    assert isinstance(model.mlm.activation, nn.ReLU)
    assert isinstance(model.encoder.blks[0].ffn.relu, nn.ReLU)
    assert model.encoder.blks[0].addnorm1.ln.eps == 1e-5


@pytest.mark.parametrize("tokens_b", [None, ["c", "d", "e"]], ids=["single", "pair"])
def test_get_tokens_and_segments_matches_d2l(d2l, tokens_b):
    ours = get_tokens_and_segments(["a", "b"], tokens_b)
    theirs = d2l.get_tokens_and_segments(["a", "b"], tokens_b)
    assert ours == theirs
    hf_style = get_tokens_and_segments(["a"], ["b"], cls="[CLS]", sep="[SEP]")
    assert hf_style == (["[CLS]", "a", "[SEP]", "b", "[SEP]"], [0, 0, 0, 1, 1])


# -- the model on its own --------------------------------------------------------------------

def tiny_model(V=30, **options) -> BERTModel:
    config = BERTConfig(V, num_hiddens=16, ffn_num_hiddens=32, num_heads=2, num_blks=2,
                        dropout=0.1, max_len=20, **options)
    return make_bert(config).eval()


def test_shapes_and_attention_weights():
    model = tiny_model()
    tokens = torch.randint(0, 30, (3, 7))
    segments = torch.zeros_like(tokens)
    model.encoder.need_weights = True
    encoded, mlm, nsp = model(tokens, segments, torch.tensor([7, 4, 1]),
                              torch.tensor([[0, 1], [2, 3], [0, 0]]))
    assert encoded.shape == (3, 7, 16) and mlm.shape == (3, 2, 30) and nsp.shape == (3, 2)
    weights = model.encoder.attention_weights
    assert len(weights) == 2 and weights[0].shape == (3, 2, 7, 7)
    assert torch.all(weights[0][2, :, :, 1:] == 0)  # row 2 has one valid key
    _, none, _ = model(tokens, segments)
    assert none is None


def test_padding_does_not_change_valid_positions():
    model = tiny_model()
    g = torch.Generator().manual_seed(3)
    tokens = torch.randint(0, 30, (2, 6), generator=g)
    segments = torch.randint(0, 2, (2, 6), generator=g)
    valid_lens = torch.tensor([6, 4])
    pred_positions = torch.tensor([[0, 5], [1, 3]])
    encoded, mlm, nsp = model(tokens, segments, valid_lens, pred_positions)
    # five more positions of junk tokens and segments beyond every row's valid length
    extra = torch.randint(0, 30, (2, 5), generator=g)
    longer = model(torch.cat([tokens, extra], 1), torch.cat([segments, extra % 2], 1),
                   valid_lens, pred_positions)
    torch.testing.assert_close(valid(longer[0], valid_lens), valid(encoded, valid_lens), **TIGHT)
    torch.testing.assert_close(longer[1], mlm, **TIGHT)
    torch.testing.assert_close(longer[2], nsp, **TIGHT)
    # and junk at row 1's padded positions 4, 5 does not matter either
    changed = tokens.clone()
    changed[1, 4:] = (changed[1, 4:] + 1) % 30
    torch.testing.assert_close(valid(model(changed, segments, valid_lens)[0], valid_lens),
                               valid(encoded, valid_lens), **TIGHT)


def test_segments_and_positions_matter():
    model = tiny_model()
    tokens = torch.randint(0, 30, (1, 5))
    a = model.encoder(tokens, torch.zeros_like(tokens))
    b = model.encoder(tokens, torch.ones_like(tokens))
    assert not torch.allclose(a, b, atol=1e-3)
    same = torch.full((1, 5), 7)
    out = model.encoder(same, torch.zeros_like(same))
    assert not torch.allclose(out[0, 0], out[0, 1], atol=1e-3)  # positions break the symmetry


def test_tied_weights_share_one_parameter_and_its_gradient():
    model = tiny_model().train()
    assert model.mlm.decoder.weight is model.encoder.token_embedding.weight
    names = [n for n, _ in model.named_parameters()]
    assert "mlm.decoder.weight" not in names  # counted once
    tokens = torch.randint(0, 30, (2, 6))
    _, mlm, _ = model(tokens, torch.zeros_like(tokens), None, torch.tensor([[1], [2]]))
    mlm.sum().backward()
    grad = model.encoder.token_embedding.weight.grad
    assert grad is not None and torch.all(grad.abs().sum(1) > 0)  # every row, via the output layer
    untied = tiny_model(tie_weights=False)
    assert untied.mlm.decoder.weight is not untied.encoder.token_embedding.weight


def test_bert_base_has_bert_base_size(hf):
    """BERT_BASE, section 3: "Total Parameters=110M"; exactly Hugging Face's count."""
    with torch.device("meta"):
        ours = make_bert(BERTConfig.bert_base())
        theirs = hf.BertForPreTraining(hf.BertConfig())
    count = sum(p.numel() for p in ours.parameters())
    assert count == sum(p.numel() for p in theirs.parameters())
    assert 109e6 < count < 111e6
    assert BERTConfig.bert_large().num_blks == 24 and BERTConfig.tiny(10) == BERTConfig(10)


def test_runs_on_every_device(device):
    dtype = dtype_for(device)
    model = tiny_model()
    tokens = torch.randint(0, 30, (2, 6))
    segments = torch.zeros_like(tokens)
    valid_lens, pred_positions = torch.tensor([6, 3]), torch.tensor([[1, 2], [0, 2]])
    expected = model(tokens, segments, valid_lens, pred_positions)
    model = model.to(device=device, dtype=dtype)
    got = model(tokens.to(device), segments.to(device), valid_lens.to(device),
                pred_positions.to(device))
    for a, b in zip(got, expected):
        assert a.device.type == torch.device(device).type
        torch.testing.assert_close(a.float().cpu(), b, **tolerance(dtype))


def test_a_few_steps_reduce_the_pretraining_loss():
    data = BERTPretrainingData(corpus(num_paragraphs=8, seed=5), max_len=16, seed=0)
    model = make_bert(BERTConfig(len(data.vocab), num_hiddens=32, ffn_num_hiddens=64,
                                 num_heads=2, num_blks=1, dropout=0.0, max_len=16))
    batch = data.tensors
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = bert_batch_loss(model, batch).item()
    for _ in range(30):
        optimizer.zero_grad()
        loss = bert_batch_loss(model, batch)
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.6 * first


# -- pretraining data ------------------------------------------------------------------------

WORDS = [f"w{i}" for i in range(60)]
BIG = 800  # paragraphs: about 2000 pairs and 4000 masked-LM predictions


def corpus(num_paragraphs=200, seed=0):
    """Paragraphs of 2-6 sentences of 3-12 words; some paragraphs of one sentence."""
    rng = random.Random(seed)
    return [[[rng.choice(WORDS) for _ in range(rng.randint(3, 12))]
             for _ in range(rng.randint(1, 6))] for _ in range(num_paragraphs)]


@pytest.fixture(scope="module")
def big_data():
    return BERTPretrainingData(corpus(BIG), max_len=32, seed=0)


def test_vocab_and_layout(big_data):
    vocab = big_data.vocab
    assert vocab.to_tokens([0, 3, 4, 5, 6]) == ["<pad>", "<unk>", CLS, SEP, MASK]
    batch = big_data.tensors
    B, T = batch.tokens.shape
    P = batch.pred_positions.shape[1]
    assert T == 32 and P == round(0.15 * 32)
    assert batch.valid_lens.dtype == torch.long and batch.mlm_weights.dtype == torch.float32
    assert all(t.shape[0] == B for t in batch)
    positions = torch.arange(T)
    padding = positions >= batch.valid_lens[:, None]  # (B, T)
    assert torch.all(batch.tokens[padding] == vocab.pad_id)
    assert torch.all(batch.segments[padding] == 0)
    assert torch.all(batch.tokens[:, 0] == vocab[CLS])
    last = batch.tokens.gather(1, (batch.valid_lens - 1)[:, None])
    assert torch.all(last == vocab[SEP])
    assert torch.all((batch.tokens == vocab[SEP]).sum(1) == 2)
    # segments: 0 up to the first <sep> included, then 1 up to the end
    first_sep = (batch.tokens == vocab[SEP]).long().argmax(1)
    expected = ((positions > first_sep[:, None]) & ~padding).long()
    assert torch.equal(batch.segments, expected)
    # padding prediction slots: weight 0, position 0, label 0
    slots = batch.mlm_weights == 0
    assert torch.all(batch.pred_positions[slots] == 0) and torch.all(batch.mlm_labels[slots] == 0)
    item = big_data[3]
    assert isinstance(item, BERTBatch) and torch.equal(item.tokens, batch.tokens[3])


def test_masks_reconstruct_the_original_pairs(big_data):
    """Putting the labels back at pred_positions gives the uncorrupted pair, token for token."""
    pairs = next_sentence_pairs(corpus(BIG), 32, random.Random(0))  # the same draws first
    batch, vocab = big_data.tensors, big_data.vocab
    assert len(pairs) == len(big_data)
    for b, (tokens, segments, label) in enumerate(pairs):
        n = batch.valid_lens[b].item()
        restored = batch.tokens[b, :n].clone()
        real = batch.mlm_weights[b] > 0
        restored[batch.pred_positions[b, real]] = batch.mlm_labels[b, real]
        assert restored.tolist() == vocab[tokens]
        assert batch.segments[b, :n].tolist() == segments and batch.nsp_labels[b] == label


def test_masking_statistics(big_data):
    """15% of the real tokens predicted; of those 80% <mask>, 10% random, 10% unchanged
    (Appendix A.1); never a special token or padding."""
    batch, vocab = big_data.tensors, big_data.vocab
    specials = torch.tensor([vocab[t] for t in ("<pad>", "<bos>", "<eos>", "<unk>", CLS, SEP,
                                                MASK)])
    real = batch.mlm_weights > 0  # (B, P)
    eligible = batch.valid_lens - 3  # every token of a pair but <cls> and the two <sep>
    chosen = real.sum(1)
    assert torch.all(chosen == torch.clamp(torch.round(0.15 * eligible), min=1))
    assert abs(chosen.sum().item() / eligible.sum().item() - 0.15) < 0.01
    positions = batch.pred_positions[real]
    rows = torch.arange(len(big_data))[:, None].expand_as(batch.pred_positions)[real]
    inputs, labels = batch.tokens[rows, positions], batch.mlm_labels[real]
    assert torch.all(positions > 0) and torch.all(positions < batch.valid_lens[rows] - 1)
    assert not torch.isin(labels, specials).any()  # never predicts <cls>, <sep>, <pad>
    masked = inputs == vocab[MASK]
    kept = inputs == labels
    randomised = ~masked & ~kept
    n = len(labels)
    assert n > 3500  # binomial standard deviations: 0.0067 (80%), 0.005 (10%)
    assert abs(masked.sum().item() / n - 0.8) < 0.02
    # a random draw can hit the original token (1 in 60 here): count it as unchanged
    assert abs(kept.sum().item() / n - 0.1 - 0.1 / 60) < 0.015
    assert abs(randomised.sum().item() / n - 0.1 + 0.1 / 60) < 0.015
    assert not torch.isin(inputs[randomised], specials).any()
    # positions are distinct within a row and increasing
    for b in range(len(big_data)):
        p = batch.pred_positions[b, real[b]]
        assert torch.all(p[1:] > p[:-1])


def test_next_sentence_balance_and_truth(big_data):
    labels = big_data.tensors.nsp_labels
    assert abs(labels.float().mean().item() - 0.5) < 0.035  # 3 standard deviations
    assert set(labels.tolist()) == {IS_NEXT, NOT_NEXT}
    paragraphs = corpus(BIG)
    followers = Counter()
    for p in paragraphs:
        for a, b in zip(p, p[1:]):
            followers[(tuple(a), tuple(b))] += 1
    pairs = next_sentence_pairs(paragraphs, 1000, random.Random(0))  # no truncation
    for tokens, segments, label in pairs:
        a = tuple(tokens[1:segments.index(1) - 1])
        b = tuple(tokens[segments.index(1):-1])
        if label == IS_NEXT:
            assert followers[(a, b)] > 0
    assert len(pairs) == sum(max(0, len(p) - 1) for p in paragraphs)


def test_truncation_keeps_pairs_within_max_len():
    paragraphs = [[["x"] * 30, ["y"] * 4, ["z"] * 40], [["u"] * 2, ["v"] * 3]]
    pairs = next_sentence_pairs(paragraphs, 12, random.Random(0))
    for tokens, segments, _ in pairs:
        assert len(tokens) == 12 or len(tokens) < 12 and "x" not in tokens
        assert len(tokens) == len(segments) and tokens[0] == CLS and tokens[-1] == SEP
    first = pairs[0][0]
    if pairs[0][2] == IS_NEXT:  # 30 x + 4 y cut to 5 x + 4 y: the longer one loses tokens
        assert first.count("x") == 5 and first.count("y") == 4


def test_determinism_per_seed():
    paragraphs = corpus(num_paragraphs=30)
    a = BERTPretrainingData(paragraphs, max_len=24, seed=7).tensors
    b = BERTPretrainingData(paragraphs, max_len=24, seed=7).tensors
    c = BERTPretrainingData(paragraphs, max_len=24, seed=8).tensors
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a.tokens, c.tokens)
    data = BERTPretrainingData(paragraphs, max_len=24, seed=7)
    first = [batch.tokens for batch in data.dataloader(8)]
    second = [batch.tokens for batch in data.dataloader(8)]
    assert all(torch.equal(x, y) for x, y in zip(first, second))
    assert isinstance(next(iter(data.dataloader(8))), BERTBatch)


def test_mask_tokens_directly():
    vocab = bert_vocab([["a", "b", "c"]])
    tokens, _ = get_tokens_and_segments(["a", "b", "c", "zz"])  # zz is unknown
    ids, positions, labels = mask_tokens(tokens, vocab, random.Random(0), mask_prob=0.5)
    assert len(positions) == 2 and all(0 < p < 5 for p in positions)
    assert labels == [vocab[tokens[p]] for p in positions]
    only_specials = mask_tokens([CLS, SEP], vocab, random.Random(0))
    assert only_specials == (vocab[[CLS, SEP]], [], [])


# -- the loss --------------------------------------------------------------------------------

def test_pretraining_loss_is_a_weighted_mean():
    g = torch.Generator().manual_seed(0)
    mlm_Y_hat, nsp_Y_hat = torch.randn(2, 3, 7, generator=g), torch.randn(2, 2, generator=g)
    labels = torch.randint(0, 7, (2, 3), generator=g)
    weights = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    nsp_labels = torch.tensor([0, 1])
    loss = bert_pretraining_loss(mlm_Y_hat, nsp_Y_hat, weights, labels, nsp_labels)
    kept = weights.bool()
    torch.testing.assert_close(loss.mlm, F.cross_entropy(mlm_Y_hat[kept], labels[kept]))
    torch.testing.assert_close(loss.nsp, F.cross_entropy(nsp_Y_hat, nsp_labels))
    torch.testing.assert_close(loss.loss, loss.mlm + loss.nsp)
    nothing = bert_pretraining_loss(mlm_Y_hat, nsp_Y_hat, torch.zeros(2, 3), labels, nsp_labels)
    assert nothing.mlm.item() == 0.0 and torch.isfinite(nothing.loss)


def test_pretraining_loss_bad_shapes():
    mlm_Y_hat, nsp_Y_hat = torch.randn(2, 3, 7), torch.randn(2, 2)
    labels, weights, nsp_labels = torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 3), \
        torch.zeros(2, dtype=torch.long)
    with raises(ValueError, "mlm_weights", "(2, 3)", "(2, 4)"):
        bert_pretraining_loss(mlm_Y_hat, nsp_Y_hat, torch.ones(2, 4), labels, nsp_labels)
    with raises(ValueError, "nsp_labels", "(3,)"):
        bert_pretraining_loss(mlm_Y_hat, nsp_Y_hat, weights, labels,
                              torch.zeros(3, dtype=torch.long))
    with raises(ValueError, "mlm_Y_hat must be 3-D", "(2, 7)"):
        bert_pretraining_loss(torch.randn(2, 7), nsp_Y_hat, weights, labels, nsp_labels)


# -- errors on bad input ---------------------------------------------------------------------

class TestBadInput:
    @pytest.fixture
    def model(self):
        return tiny_model()

    @pytest.fixture
    def inputs(self):
        tokens = torch.randint(0, 30, (2, 5))
        return tokens, torch.zeros_like(tokens)

    def test_segments(self, model, inputs):
        tokens, segments = inputs
        with raises(ValueError, "segments", "(2, 4)", "(2, 5)"):
            model(tokens, segments[:, :4])
        bad = segments.clone()
        bad[1, 3] = 2
        with raises(ValueError, "segments must lie in [0, 2)", "from 0 to 2"):
            model(tokens, bad)
        with raises(TypeError, "segments", "torch.float32"):
            model(tokens, segments.float())

    def test_tokens(self, model, inputs):
        tokens, segments = inputs
        with raises(ValueError, "tokens", "[0, 30)", "from -1"):
            model(tokens - 1 - tokens, segments)
        with raises(TypeError, "tokens", "torch.float32", "(2, 5)"):
            model(tokens.float(), segments)
        with raises(ValueError, "tokens must be 2-D", "(10,)"):
            model(tokens.reshape(-1), segments.reshape(-1))
        long = torch.zeros(1, 21, dtype=torch.long)
        with raises(ValueError, "(1, 21)", "max_len=20"):
            model(long, long)

    def test_valid_lens(self, model, inputs):
        tokens, segments = inputs
        with raises(ValueError, "valid_lens must lie in [0, 5]", "from 2 to 6"):
            model(tokens, segments, torch.tensor([2, 6]))
        with raises(TypeError, "valid_lens", "torch.float32"):
            model(tokens, segments, torch.tensor([2.0, 3.0]))
        with raises(ValueError, "valid_lens", "(3,)", "(2,)"):
            model(tokens, segments, torch.tensor([2, 3, 4]))

    def test_pred_positions(self, model, inputs):
        tokens, segments = inputs
        with raises(ValueError, "pred_positions must lie in [0, 5)", "from 0 to 5"):
            model(tokens, segments, None, torch.tensor([[0, 5], [1, 2]]))
        with raises(TypeError, "pred_positions", "torch.float32"):
            model(tokens, segments, None, torch.tensor([[0.0], [1.0]]))
        with raises(ValueError, "batch sizes", "pred_positions", "(3, 1)"):
            model(tokens, segments, None, torch.zeros(3, 1, dtype=torch.long))
        with raises(ValueError, "pred_positions must be 2-D", "(2,)"):
            model(tokens, segments, None, torch.tensor([0, 1]))

    def test_heads(self):
        with raises(ValueError, "num_hiddens=16", "(2, 5, 8)"):
            MaskLM(30, 16)(torch.randn(2, 5, 8), torch.zeros(2, 1, dtype=torch.long))
        with raises(ValueError, "num_hiddens=16", "(2, 8)"):
            NextSentencePred(16)(torch.randn(2, 8))
        with raises(ValueError, "must be 2-D", "(2, 1, 16)"):
            NextSentencePred(16)(torch.randn(2, 1, 16))

    def test_data(self):
        with raises(ValueError, "at least 2 non-empty paragraphs", "got 1"):
            next_sentence_pairs([[["a"], ["b"]], []], 10, random.Random(0))
        with raises(ValueError, "max_len must be at least 5", "got 4"):
            next_sentence_pairs([[["a"], ["b"]], [["c"]]], 4, random.Random(0))
        with raises(ValueError, "'<mask>'"):
            mask_tokens(["a"], Vocab([["a"]]), random.Random(0))
        with raises(ValueError, "mask_prob must lie in (0, 1)", "got 1.5"):
            mask_tokens(["a"], bert_vocab([["a"]]), random.Random(0), mask_prob=1.5)
        with raises(TypeError, "tokens_a", "'abc'"):
            get_tokens_and_segments("abc")
        with raises(TypeError, "paragraphs[1][0] must be a list of tokens", "'the cat sat'"):
            BERTPretrainingData([[["a"], ["b"]], ["the cat sat", "on the mat"]], 10)

    def test_activation_name(self):
        with raises(ValueError, "activation must be one of", "'tanh'"):
            BERTEncoder(10, 8, 16, 2, 1, 0.0, activation="tanh")



# -- the options added to qkvcourse.transformer for BERT -------------------------------------

@pytest.mark.parametrize("activation,eps", [("relu", 1e-5), ("gelu", 1e-12)])
def test_encoder_block_options_match_torch(activation, eps):
    """activation= and layer_norm_eps= on TransformerEncoderBlock, against PyTorch's layer."""
    N, F_, H = 16, 32, 4
    theirs = nn.TransformerEncoderLayer(N, H, F_, dropout=0.0, activation=activation,
                                        layer_norm_eps=eps, batch_first=True).eval()
    randomise_vectors(theirs)
    ours = TransformerEncoderBlock(N, F_, H, 0.0, True, activation=activation,
                                   layer_norm_eps=eps).eval()
    with torch.no_grad():
        for layer, w, b in zip((ours.attention.mha.W_q, ours.attention.mha.W_k,
                                ours.attention.mha.W_v), theirs.self_attn.in_proj_weight.chunk(3),
                               theirs.self_attn.in_proj_bias.chunk(3)):
            layer.weight.copy_(w)
            layer.bias.copy_(b)
    copy_linear(ours.attention.mha.W_o, theirs.self_attn.out_proj)
    copy_linear(ours.ffn.dense1, theirs.linear1)
    copy_linear(ours.ffn.dense2, theirs.linear2)
    ours.addnorm1.ln.load_state_dict(theirs.norm1.state_dict())
    ours.addnorm2.ln.load_state_dict(theirs.norm2.state_dict())
    assert ours.addnorm1.ln.eps == eps == theirs.norm1.eps
    X = torch.randn(2, 6, N)
    torch.testing.assert_close(ours(X), theirs(X), **TIGHT)


def test_transformer_defaults_are_unchanged():
    ffn, addnorm = PositionWiseFFN(8, 16), AddNorm(8)
    assert isinstance(ffn.relu, nn.ReLU) and addnorm.ln.eps == 1e-5
    block = TransformerEncoderBlock(8, 16, 2, 0.0)
    assert isinstance(block.ffn.relu, nn.ReLU) and block.addnorm2.ln.eps == 1e-5
    X = torch.randn(2, 3, 8)
    gelu_tanh = PositionWiseFFN(8, 16, activation="gelu_tanh")
    expected = gelu_tanh.dense2(F.gelu(gelu_tanh.dense1(X), approximate="tanh"))
    torch.testing.assert_close(gelu_tanh(X), expected, **TIGHT)
    with raises(ValueError, "activation must be one of", "'swish'"):
        PositionWiseFFN(8, 16, activation="swish")
