"""The three model configurations name the same quantities the same way (issue 11), and accept
d2l's names as aliases."""
from __future__ import annotations

import dataclasses

import pytest

import qkvcourse as qc

SHARED = {"d_model", "num_heads", "ffn_num_hiddens", "dropout", "max_len"}


@pytest.mark.parametrize("cls", [qc.TransformerConfig, qc.GPTConfig, qc.BERTConfig])
def test_shared_names(cls):
    fields = {f.name for f in dataclasses.fields(cls)}
    assert SHARED <= fields, SHARED - fields
    # no field is spelled the d2l way any more: those are aliases only
    assert not fields & {"num_hiddens", "num_blks", "num_enc_blks", "num_dec_blks", "use_bias"}


def test_layer_counts_and_bias_share_names():
    assert {"num_layers", "bias"} <= {f.name for f in dataclasses.fields(qc.GPTConfig)}
    assert "num_layers" in {f.name for f in dataclasses.fields(qc.BERTConfig)}
    assert {"num_enc_layers", "num_dec_layers", "bias"} <= {
        f.name for f in dataclasses.fields(qc.TransformerConfig)}


@pytest.mark.parametrize("build, d2l, ours", [
    (lambda **kw: qc.TransformerConfig(7, 9, **kw),
     dict(num_hiddens=32, num_enc_blks=3, num_dec_blks=1, use_bias=True),
     dict(d_model=32, num_enc_layers=3, num_dec_layers=1, bias=True)),
    (lambda **kw: qc.GPTConfig(11, **kw), dict(num_hiddens=64, num_blks=3, use_bias=False),
     dict(d_model=64, num_layers=3, bias=False)),
    (lambda **kw: qc.BERTConfig(13, **kw), dict(num_hiddens=64, num_blks=3),
     dict(d_model=64, num_layers=3)),
])
def test_d2l_names_are_aliases(build, d2l, ours):
    a, b = build(**d2l), build(**ours)
    assert a == b
    for name, value in d2l.items():
        assert getattr(a, name) == value  # readable under d2l's name
    alias, canonical = next(iter(d2l)), next(iter(ours))
    setattr(a, alias, 128)  # and writable
    assert getattr(a, canonical) == 128
    with pytest.raises(TypeError, match=f"{canonical}.*{alias}"):
        build(**{alias: 32, canonical: 32})


def test_d2l_sized_models_are_unchanged():
    """A model built from d2l's names is the model built from ours (same parameters)."""
    import torch
    torch.manual_seed(0)
    a = qc.make_transformer(qc.TransformerConfig(7, 9, num_hiddens=16, num_heads=2,
                                                 num_enc_blks=1, num_dec_blks=1))
    torch.manual_seed(0)
    b = qc.make_transformer(qc.TransformerConfig(7, 9, d_model=16, num_heads=2,
                                                 num_enc_layers=1, num_dec_layers=1))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_replace_names_the_field():
    config = qc.BERTConfig(10)
    assert dataclasses.replace(config, d_model=64).d_model == 64
    with pytest.raises(TypeError, match="dataclasses.replace needs the field's own name, d_model"):
        dataclasses.replace(config, num_hiddens=64)
