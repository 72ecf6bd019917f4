"""Every public entry point on bad input: the right error type, and a message that names
the argument and what was received (its shape, or its dtype or value where that is the
problem), so a learner knows which tensor to look at."""
from __future__ import annotations


import pytest
import torch

import qkvcourse as qc
from helpers import raises




def shape(*dims):
    return str(tuple(dims))


f32 = torch.float32


# -- masked_softmax --------------------------------------------------------------------------

class TestMaskedSoftmax:
    X = torch.randn(2, 3, 4)

    def test_not_a_tensor(self):
        with raises(TypeError, "X", "list"):
            qc.masked_softmax([[1.0, 2.0]])

    def test_integer_scores(self):
        with raises(TypeError, "X", "torch.int64", shape(2, 3, 4)):
            qc.masked_softmax(torch.ones(2, 3, 4, dtype=torch.long))

    def test_scalar(self):
        with raises(ValueError, "X", "scalar"):
            qc.masked_softmax(torch.tensor(1.0))

    def test_wrong_rank_with_valid_lens(self):
        with raises(ValueError, "X", "3-D", shape(3, 4)):
            qc.masked_softmax(torch.randn(3, 4), torch.tensor([1, 2, 3]))
        with raises(ValueError, "X", shape(1, 2, 3, 4, 5)):
            qc.masked_softmax(torch.randn(1, 2, 3, 4, 5), torch.tensor([1]))

    @pytest.mark.parametrize("lens_shape", [(3,), (1,), (2, 4), (3, 3), (2, 1)])
    def test_valid_lens_of_the_wrong_shape(self, lens_shape):
        with raises(ValueError, "valid_lens", str(lens_shape), "(2,) or (2, 3)"):
            qc.masked_softmax(self.X, torch.ones(lens_shape, dtype=torch.long))

    def test_valid_lens_of_the_wrong_rank(self):
        with raises(ValueError, "valid_lens", shape(2, 3, 1)):
            qc.masked_softmax(self.X, torch.ones(2, 3, 1, dtype=torch.long))

    def test_valid_lens_of_the_wrong_rank_4d_scores(self):
        with raises(ValueError, "valid_lens", shape(2, 5)):
            qc.masked_softmax(torch.randn(2, 5, 3, 4), torch.ones(2, 5, dtype=torch.long))

    def test_float_valid_lens(self):
        with raises(TypeError, "valid_lens", "integer", "torch.float32", shape(2,)):
            qc.masked_softmax(self.X, torch.tensor([1.0, 2.0]))

    def test_bool_valid_lens(self):
        with raises(TypeError, "valid_lens", "torch.bool", shape(2,), "mask="):
            qc.masked_softmax(self.X, torch.tensor([True, False]))

    @pytest.mark.parametrize("lens,lo,hi", [([-1, 2], -1, 2), ([1, 5], 1, 5), ([9, 0], 0, 9)])
    def test_valid_lens_out_of_range(self, lens, lo, hi):
        with raises(ValueError, "valid_lens", "[0, 4]", f"from {lo} to {hi}"):
            qc.masked_softmax(self.X, torch.tensor(lens))

    def test_integer_mask(self):
        with raises(TypeError, "mask", "boolean", "torch.int64", shape(2, 3, 4)):
            qc.masked_softmax(self.X, mask=torch.ones(2, 3, 4, dtype=torch.long))

    def test_float_mask_is_not_a_boolean_mask(self):
        with raises(TypeError, "mask", "torch.float32", shape(2, 3, 4)):
            qc.masked_softmax(self.X, mask=torch.ones(2, 3, 4))

    @pytest.mark.parametrize("mask_shape", [(3, 5), (4, 3, 4), (2, 3, 4, 1), (3,)])
    def test_mask_that_does_not_broadcast(self, mask_shape):
        with raises(ValueError, "mask", str(mask_shape), shape(2, 3, 4)):
            qc.masked_softmax(self.X, mask=torch.ones(mask_shape, dtype=torch.bool))

    def test_mask_that_would_grow_the_scores(self):
        # (2, 3, 4) & (5, 2, 3, 4) broadcasts, but not *to* X's shape
        with raises(ValueError, "mask", shape(5, 2, 3, 4)):
            qc.masked_softmax(self.X, mask=torch.ones(5, 2, 3, 4, dtype=torch.bool))


# -- scaled_dot_product_attention ------------------------------------------------------------

class TestScaledDotProductAttention:
    q, k, v = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 6)

    def call(self, q=None, k=None, v=None, **kwargs):
        return qc.scaled_dot_product_attention(self.q if q is None else q, self.k if k is None else k,
                                               self.v if v is None else v, **kwargs)

    def test_not_a_tensor(self):
        with raises(TypeError, "key", "ndarray"):
            self.call(k=self.k.numpy())

    def test_one_d_query(self):
        with raises(ValueError, "query", "2-D", shape(4,)):
            self.call(q=torch.randn(4))

    def test_ranks_differ(self):
        with raises(ValueError, "query", "same rank", shape(2, 3, 4), shape(1, 2, 5, 4)):
            self.call(k=torch.randn(1, 2, 5, 4))

    def test_batch_sizes_differ(self):
        with raises(ValueError, "batch", "value", shape(3, 5, 6)):
            self.call(v=torch.randn(3, 5, 6))

    def test_feature_sizes_differ(self):
        with raises(ValueError, "feature", "query", "key", shape(2, 3, 4), shape(2, 5, 7)):
            self.call(k=torch.randn(2, 5, 7))

    def test_key_value_lengths_differ(self):
        with raises(ValueError, "key", "value", shape(2, 5, 4), shape(2, 6, 6)):
            self.call(v=torch.randn(2, 6, 6))

    def test_integer_inputs(self):
        with raises(TypeError, "value", "torch.int64", shape(2, 5, 6)):
            self.call(v=torch.ones(2, 5, 6, dtype=torch.long))

    def test_dtypes_differ(self):
        with raises(TypeError, "dtypes", "key: torch.float64", shape(2, 5, 4)):
            self.call(k=self.k.double())

    def test_integer_mask(self):
        with raises(TypeError, "attn_mask", "torch.int64", shape(3, 5)):
            self.call(attn_mask=torch.ones(3, 5, dtype=torch.long))

    @pytest.mark.parametrize("mask_shape", [(5, 3), (3, 4), (4, 3, 5), (2, 3, 5, 1)])
    def test_mask_that_does_not_broadcast(self, mask_shape):
        with raises(ValueError, "attn_mask", str(mask_shape), shape(2, 3, 5)):
            self.call(attn_mask=torch.ones(mask_shape, dtype=torch.bool))

    def test_float_mask_of_another_dtype(self):
        with raises(TypeError, "attn_mask", "torch.float64", shape(3, 5)):
            self.call(attn_mask=torch.zeros(3, 5, dtype=torch.float64))

    @pytest.mark.parametrize("p", [-0.1, 1.0, 2.0])
    def test_dropout_out_of_range(self, p):
        with raises(ValueError, "dropout_p", str(p)):
            self.call(dropout_p=p)

    @pytest.mark.parametrize("scale", [0.0, -1.0, float("nan")])
    def test_non_positive_scale(self, scale):
        with raises(ValueError, "scale", str(scale)):
            self.call(scale=scale)

    @pytest.mark.parametrize("backend", ["explicit", "fused"])
    def test_checks_run_on_both_paths(self, backend):
        with qc.attention_backend(backend):
            with raises(ValueError, "feature", shape(2, 5, 7)):
                self.call(k=torch.randn(2, 5, 7))


# -- DotProductAttention and AdditiveAttention ----------------------------------------------

class TestDotProductAttention:
    q, k, v = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 6)

    def test_wrong_rank(self):
        with raises(ValueError, "queries", "3-D", shape(3, 4)):
            qc.DotProductAttention()(torch.randn(3, 4), torch.randn(5, 4), torch.randn(5, 6))
        with raises(ValueError, "queries", shape(1, 2, 2, 3, 4)):
            qc.DotProductAttention()(*(torch.randn(1, 2, 2, 3, 4),) * 3)

    def test_names_its_arguments(self):
        with raises(ValueError, "feature", "queries", "keys", shape(2, 5, 3)):
            qc.DotProductAttention()(self.q, torch.randn(2, 5, 3), self.v)
        with raises(ValueError, "batch", "values", shape(1, 5, 6)):
            qc.DotProductAttention()(self.q, self.k, torch.randn(1, 5, 6))
        with raises(TypeError, "queries", "torch.int32", shape(2, 3, 4)):
            qc.DotProductAttention()(self.q.int(), self.k, self.v)

    @pytest.mark.parametrize("lens,msg", [
        (torch.tensor([1, 2, 3]), shape(3,)),
        (torch.ones(2, 5, dtype=torch.long), shape(2, 5)),
        (torch.tensor([1.0, 2.0]), "torch.float32"),
        (torch.tensor([True, True]), "torch.bool"),
        (torch.tensor([6, 1]), "[0, 5]"),
        (torch.tensor([-2, 1]), "from -2 to 1"),
    ])
    @pytest.mark.parametrize("need_weights", [True, False])
    def test_bad_valid_lens(self, lens, msg, need_weights):
        exc = TypeError if lens.dtype in (torch.float32, torch.bool) else ValueError
        with raises(exc, "valid_lens", msg):
            qc.DotProductAttention(need_weights=need_weights)(self.q, self.k, self.v, lens)

    def test_bad_attn_mask(self):
        with raises(ValueError, "attn_mask", shape(4, 5)):
            qc.DotProductAttention()(self.q, self.k, self.v, torch.tensor([1, 2]),
                                     attn_mask=torch.ones(4, 5, dtype=torch.bool))
        with raises(TypeError, "attn_mask", "torch.uint8", shape(3, 5)):
            qc.DotProductAttention()(self.q, self.k, self.v,
                                     attn_mask=torch.ones(3, 5, dtype=torch.uint8))


class TestAdditiveAttention:
    q, k, v = torch.randn(2, 3, 4), torch.randn(2, 5, 6), torch.randn(2, 5, 7)

    def module(self):
        return qc.AdditiveAttention(8, query_size=4, key_size=6)

    def test_wrong_rank(self):
        with raises(ValueError, "queries", "3-D", shape(3, 4)):
            self.module()(torch.randn(3, 4), self.k, self.v)
        with raises(ValueError, "values", shape(2, 1, 5, 7)):
            self.module()(self.q, self.k, torch.randn(2, 1, 5, 7))

    def test_batch_and_length_mismatch(self):
        with raises(ValueError, "batch", "queries", "keys", shape(3, 3, 4), shape(2, 5, 6)):
            self.module()(torch.randn(3, 3, 4), self.k, self.v)
        with raises(ValueError, "key-value", "values", shape(2, 4, 7)):
            self.module()(self.q, self.k, torch.randn(2, 4, 7))

    def test_feature_sizes_that_do_not_fit_the_layers(self):
        with raises(ValueError, "queries", "4 features", shape(2, 3, 5)):
            self.module()(torch.randn(2, 3, 5), self.k, self.v)
        with raises(ValueError, "keys", "6 features", shape(2, 5, 4)):
            self.module()(self.q, torch.randn(2, 5, 4), self.v)
        lazy = qc.AdditiveAttention(8)
        lazy(self.q, self.k, self.v)  # sizes fixed by the first call
        with raises(ValueError, "queries", "4 features", shape(2, 3, 9)):
            lazy(torch.randn(2, 3, 9), self.k, self.v)

    def test_dtypes(self):
        with raises(TypeError, "keys", "torch.int64", shape(2, 5, 6)):
            self.module()(self.q, self.k.long(), self.v)
        with raises(TypeError, "dtypes", "values: torch.float64"):
            self.module()(self.q, self.k, self.v.double())

    @pytest.mark.parametrize("lens,exc,msg", [
        (torch.tensor([1, 2, 3]), ValueError, shape(3,)),
        (torch.ones(2, 4, dtype=torch.long), ValueError, shape(2, 4)),
        (torch.tensor([1.5, 2.0]), TypeError, "torch.float32"),
        (torch.tensor([0, 6]), ValueError, "[0, 5]"),
    ])
    def test_bad_valid_lens(self, lens, exc, msg):
        with raises(exc, "valid_lens", msg):
            self.module()(self.q, self.k, self.v, lens)


# -- MultiHeadAttention ----------------------------------------------------------------------

class TestMultiHeadAttention:
    X = torch.randn(2, 5, 8)

    @pytest.mark.parametrize("num_hiddens,num_heads", [(10, 3), (8, 0), (8, -2), (6, 4)])
    def test_num_heads_must_divide_num_hiddens(self, num_hiddens, num_heads):
        with raises(ValueError, "num_heads", f"num_hiddens={num_hiddens}", f"num_heads={num_heads}"):
            qc.MultiHeadAttention(num_hiddens, num_heads)

    def test_wrong_rank(self):
        with raises(ValueError, "queries", "3-D", shape(5, 8)):
            qc.MultiHeadAttention(8, 2)(torch.randn(5, 8), self.X, self.X)
        with raises(ValueError, "keys", shape(2, 2, 5, 8)):
            qc.MultiHeadAttention(8, 2)(self.X, torch.randn(2, 2, 5, 8), self.X)

    def test_wrong_feature_sizes(self):
        with raises(ValueError, "values", "8 features", shape(2, 5, 6)):
            qc.MultiHeadAttention(8, 2)(self.X, self.X, torch.randn(2, 5, 6))
        with raises(ValueError, "queries", "3 features", shape(2, 5, 8)):
            qc.MultiHeadAttention(8, 2, query_size=3)(self.X, self.X, self.X)

    def test_batch_and_length_mismatch(self):
        with raises(ValueError, "batch", "keys", shape(3, 5, 8)):
            qc.MultiHeadAttention(8, 2)(self.X, torch.randn(3, 5, 8), torch.randn(3, 5, 8))
        with raises(ValueError, "key-value", "values", shape(2, 4, 8)):
            qc.MultiHeadAttention(8, 2)(self.X, self.X, torch.randn(2, 4, 8))

    def test_integer_inputs(self):
        with raises(TypeError, "queries", "torch.int64", shape(2, 5, 8)):
            qc.MultiHeadAttention(8, 2)(self.X.long(), self.X, self.X)

    @pytest.mark.parametrize("lens,exc,msg", [
        (torch.tensor([1, 2, 3]), ValueError, shape(3,)),
        (torch.ones(2, 4, dtype=torch.long), ValueError, shape(2, 4)),
        (torch.ones(2, 5, 1, dtype=torch.long), ValueError, shape(2, 5, 1)),
        (torch.tensor([1.0, 2.0]), TypeError, "torch.float32"),
        (torch.tensor([True, False]), TypeError, "torch.bool"),
        (torch.tensor([-1, 2]), ValueError, "from -1 to 2"),
        (torch.tensor([6, 2]), ValueError, "[0, 5]"),
    ])
    @pytest.mark.parametrize("need_weights", [True, False])
    def test_bad_valid_lens(self, lens, exc, msg, need_weights):
        with raises(exc, "valid_lens", msg):
            qc.MultiHeadAttention(8, 2, need_weights=need_weights)(self.X, self.X, self.X, lens)

    def test_bad_attn_mask(self):
        with raises(ValueError, "attn_mask", shape(3, 5, 5), shape(2, 2, 5, 5)):
            qc.MultiHeadAttention(8, 2)(self.X, self.X, self.X,
                                        attn_mask=torch.ones(3, 5, 5, dtype=torch.bool))
        with raises(TypeError, "attn_mask", "torch.int64", shape(5, 5)):
            qc.MultiHeadAttention(8, 2)(self.X, self.X, self.X,
                                        attn_mask=torch.ones(5, 5, dtype=torch.long))
        with raises(ValueError, "attn_mask", shape(5, 4)):
            qc.MultiHeadAttention(8, 2)(self.X, self.X, self.X, torch.tensor([5, 2]),
                                        attn_mask=torch.ones(5, 4, dtype=torch.bool))


class TestHeadReshapes:
    def test_num_heads_must_divide_the_features(self):
        for fn in (qc.split_heads, qc.transpose_qkv):
            with raises(ValueError, "num_heads=3", shape(2, 5, 8)):
                fn(torch.randn(2, 5, 8), 3)
            with raises(ValueError, "num_heads=0", shape(2, 5, 8)):
                fn(torch.randn(2, 5, 8), 0)
            with raises(ValueError, "X", "3-D", shape(5, 8)):
                fn(torch.randn(5, 8), 2)
        with raises(ValueError, "num_heads=3", shape(4, 5, 2)):
            qc.transpose_output(torch.randn(4, 5, 2), 3)
        with raises(ValueError, "X", "4-D", shape(2, 5, 8)):
            qc.merge_heads(torch.randn(2, 5, 8))


# -- positions -------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [qc.PositionalEncoding, qc.LearnedPositionalEncoding])
class TestPositionEncodings:
    def test_wrong_rank(self, cls):
        with raises(ValueError, "X", "3-D", shape(5, 8)):
            cls(8)(torch.randn(5, 8))

    def test_wrong_width(self, cls):
        with raises(ValueError, "X", "num_hiddens=8", shape(2, 5, 6)):
            cls(8)(torch.randn(2, 5, 6))

    def test_longer_than_max_len(self, cls):
        with raises(ValueError, "X", "12 positions", shape(1, 12, 8), "max_len=10"):
            cls(8, max_len=10)(torch.randn(1, 12, 8))
        with raises(ValueError, "X", "11 positions", shape(2, 11, 8), "max_len=10"):
            cls(8, max_len=10)(torch.randn(2, 11, 8))
        assert cls(8, max_len=10)(torch.randn(1, 10, 8)).shape == (1, 10, 8)  # the limit itself

    def test_integer_input(self, cls):
        with raises(TypeError, "X", "torch.int64", shape(2, 5, 8)):
            cls(8)(torch.ones(2, 5, 8, dtype=torch.long))


@pytest.mark.parametrize("num_hiddens", [7, 1, 33])
def test_odd_num_hiddens_for_sinusoids(num_hiddens):
    with raises(ValueError, "num_hiddens", "even", str(num_hiddens)):
        qc.PositionalEncoding(num_hiddens)
    with raises(ValueError, "num_hiddens", str(num_hiddens)):
        qc.sinusoidal_table(10, num_hiddens)
    assert qc.LearnedPositionalEncoding(num_hiddens)(torch.zeros(1, 2, num_hiddens)).shape \
        == (1, 2, num_hiddens)  # learned positions have no such restriction


class TestRotaryEmbedding:
    def test_odd_head_dim(self):
        with raises(ValueError, "head_dim", "even", "7"):
            qc.RotaryEmbedding(7)

    @pytest.mark.parametrize("bad_shape", [(2, 3, 6), (8,), (3, 9)])
    def test_wrong_shape(self, bad_shape):
        with raises(ValueError, "x", "head_dim=8", str(bad_shape)):
            qc.RotaryEmbedding(8)(torch.randn(bad_shape))

    def test_integer_input(self):
        with raises(TypeError, "x", "torch.int64", shape(2, 8)):
            qc.RotaryEmbedding(8)(torch.ones(2, 8, dtype=torch.long))

    def test_not_a_tensor(self):
        with raises(TypeError, "x", "list"):
            qc.RotaryEmbedding(2)([[1.0, 2.0]])


# -- Nadaraya–Watson -------------------------------------------------------------------------

class TestNadarayaWatson:
    q, k, v = torch.rand(4), torch.rand(5), torch.rand(5)

    @pytest.mark.parametrize("fn", ["function", "module"])
    def test_wrong_rank(self, fn):
        call = qc.nadaraya_watson if fn == "function" else qc.NadarayaWatson()
        with raises(ValueError, "queries", "1-D", shape(4, 1)):
            call(self.q[:, None], self.k, self.v)
        with raises(ValueError, "values", "1-D", shape(1, 5)):
            call(self.q, self.k, self.v[None])

    @pytest.mark.parametrize("fn", ["function", "module"])
    def test_keys_and_values_differ(self, fn):
        call = qc.nadaraya_watson if fn == "function" else qc.NadarayaWatson()
        with raises(ValueError, "keys", "values", shape(5,), shape(4,)):
            call(self.q, self.k, torch.rand(4))

    @pytest.mark.parametrize("fn", ["function", "module"])
    def test_integer_inputs(self, fn):
        call = qc.nadaraya_watson if fn == "function" else qc.NadarayaWatson()
        with raises(TypeError, "keys", "torch.int64", shape(5,)):
            call(self.q, torch.arange(5), self.v)

    def test_unknown_kernel(self):
        with raises(ValueError, "kernel", "'triangle'", "gaussian"):
            qc.nadaraya_watson(self.q, self.k, self.v, kernel="triangle")

    @pytest.mark.parametrize("h", [0.0, -1.0, float("nan"), torch.tensor([1.0, -1.0])])
    def test_non_positive_bandwidth(self, h):
        with raises(ValueError, "bandwidth", "positive"):
            qc.nadaraya_watson(self.q, self.k, self.v, bandwidth=h)

    @pytest.mark.parametrize("h", [0.0, -0.5, float("nan")])
    def test_module_non_positive_bandwidth(self, h):
        with raises(ValueError, "bandwidth", "positive", str(h)):
            qc.NadarayaWatson(h)

    def test_module_bad_mask(self):
        with raises(ValueError, "mask", shape(5, 4), shape(4, 5)):
            qc.NadarayaWatson()(self.q, self.k, self.v, mask=torch.ones(5, 4, dtype=torch.bool))
        with raises(TypeError, "mask", "torch.int64", shape(4, 5)):
            qc.NadarayaWatson()(self.q, self.k, self.v, mask=torch.ones(4, 5, dtype=torch.long))


# -- edge cases that are valid: they must give numbers, never NaN ---------------------------

def test_nothing_produces_nan_silently():
    q, k, v = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 6)
    outputs = [
        qc.masked_softmax(torch.randn(2, 3, 4), torch.tensor([0, 0])),
        qc.masked_softmax(torch.full((2, 3, 4), -1e30), mask=torch.zeros(4, dtype=torch.bool)),
        qc.masked_softmax(torch.full((1, 1, 3), float("-inf")).clamp_min(-3e38), torch.tensor([2])),
        qc.DotProductAttention()(q, k, v, torch.tensor([0, 0])),
        qc.DotProductAttention(need_weights=False)(q, k, v, torch.tensor([[0, 0, 0], [0, 5, 0]])),
        qc.AdditiveAttention(8)(q, k, v, torch.tensor([0, 0])),
        qc.MultiHeadAttention(8, 2, query_size=4, key_size=4, value_size=6)(
            q, k, v, torch.tensor([0, 0])),
        qc.scaled_dot_product_attention(q, k, v, attn_mask=torch.zeros(5, dtype=torch.bool)),
        qc.scaled_dot_product_attention(q, k, v, attn_mask=torch.full((3, 5), float("-inf"))),
        qc.scaled_dot_product_attention(q * 1e4, k * 1e4, v),
        qc.nadaraya_watson(torch.tensor([100.0]), torch.tensor([0.0]), torch.tensor([1.0]),
                           "epanechnikov")[0],
        qc.nadaraya_watson(torch.tensor([1e4]), torch.tensor([0.0]), torch.tensor([1.0]))[0],
        qc.NadarayaWatson(1e-3)(torch.tensor([100.0]), torch.tensor([0.0, 1.0]),
                                torch.tensor([1.0, 2.0])),
        qc.RotaryEmbedding(8)(torch.randn(3, 8), offset=10**6),
    ]
    for i, out in enumerate(outputs):
        assert torch.isfinite(out).all(), f"case {i} produced {out}"


# -- issue 11: values, sizes and ids that used to pass silently ---------------------------------

class TestSilentlyOddInputs:
    def test_valid_lens_to_mask_rejects_negative_float_and_too_large_lengths(self):
        with raises(ValueError, "valid_lens", "[0, 4]", "-1"):
            qc.valid_lens_to_mask(torch.tensor([-1, 2]), 4)
        with raises(ValueError, "valid_lens", "[0, 4]", "9"):
            qc.valid_lens_to_mask(torch.tensor([9, 2]), 4)
        with raises(TypeError, "valid_lens", "torch.float32", shape(2,)):
            qc.valid_lens_to_mask(torch.tensor([1.5, 2.0]), 4)
        with raises(ValueError, "num_keys", "-3"):
            qc.valid_lens_to_mask(torch.tensor([1]), -3)

    @pytest.mark.parametrize("offset", [1.5, True, "2", torch.tensor(1)])
    def test_rotary_offset_must_be_a_whole_position(self, offset):
        with raises(ValueError, "offset", "integer"):
            qc.RotaryEmbedding(8)(torch.randn(2, 3, 8), offset=offset)

    def test_rotary_negative_offset_is_the_inverse_rotation(self):
        """Negative positions stay allowed (chapter 6 rotates a key to n - m < 0): R_{-m}
        undoes R_m."""
        rope, x = qc.RotaryEmbedding(8), torch.randn(1, 8)
        back = rope(rope(x, offset=5), offset=-5)
        assert torch.allclose(back, x, atol=1e-5)

    @pytest.mark.parametrize("num_hiddens", [0, -8, 8.0])
    def test_multihead_sizes(self, num_hiddens):
        with raises(ValueError, "num_hiddens", repr(num_hiddens)):
            qc.MultiHeadAttention(num_hiddens, 2)

    def test_block_counts_and_sizes_at_construction(self):
        with raises(ValueError, "num_enc_blks", "-1"):
            qc.TransformerConfig(5, 5, num_enc_blks=-1)
        with raises(ValueError, "num_blks", "0"):
            qc.TransformerEncoder(5, 8, 16, 2, 0, 0.0)
        with raises(ValueError, "ffn_num_hiddens", "0"):
            qc.TransformerDecoder(5, 8, 0, 2, 1, 0.0)
        with raises(ValueError, "num_blks", "-2"):
            qc.make_bert(qc.BERTConfig(vocab_size=10, num_blks=-2))

    def test_sequence_loss_validates_logits_and_targets(self):
        with raises(TypeError, "logits", "torch.int64", shape(2, 3, 4)):
            qc.sequence_loss(torch.ones(2, 3, 4, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long), 0)
        with raises(ValueError, "targets", "[0, 4)", "7"):
            qc.sequence_loss(torch.randn(2, 3, 4), torch.full((2, 3), 7), 0)
        with raises(TypeError, "targets", "torch.float32"):
            qc.sequence_loss(torch.randn(2, 3, 4), torch.zeros(2, 3), 0)

    def test_bert_pretraining_loss_validates_weights_and_labels(self):
        args = dict(mlm_Y_hat=torch.randn(2, 3, 5), nsp_Y_hat=torch.randn(2, 2),
                    mlm_weights=torch.ones(2, 3), mlm_labels=torch.zeros(2, 3, dtype=torch.long),
                    nsp_labels=torch.zeros(2, dtype=torch.long))
        with raises(ValueError, "mlm_weights", ">= 0", "-1.0"):
            qc.bert_pretraining_loss(**{**args, "mlm_weights": -torch.ones(2, 3)})
        with raises(ValueError, "mlm_labels", "[0, 5)", "9"):
            qc.bert_pretraining_loss(**{**args, "mlm_labels": torch.full((2, 3), 9)})
        with raises(ValueError, "nsp_labels", "[0, 2)", "3"):
            qc.bert_pretraining_loss(**{**args, "nsp_labels": torch.tensor([0, 3])})

    def test_vocab_reserved_tokens_must_be_a_list(self):
        with raises(TypeError, "reserved_tokens", "'<sep>'", "['<sep>']"):
            qc.Vocab(["a"], reserved_tokens="<sep>")

    @pytest.mark.parametrize("ids", [[1.7, 2], [True, 2], torch.tensor([1.0]), torch.tensor([True])])
    def test_vocab_and_tokenizers_reject_float_and_bool_ids(self, ids):
        with raises(TypeError, "ids", "integer"):
            qc.Vocab(["a", "b"]).decode(ids)
        with raises(TypeError, "ids", "integer"):
            qc.CharTokenizer("helo").decode(ids)

    @pytest.mark.parametrize("dtype", [torch.int16, torch.uint8, torch.int8])
    def test_token_ids_must_be_int32_or_int64(self, dtype):
        gpt = qc.GPT(qc.GPTConfig(10, max_len=8, num_layers=1, num_heads=2, d_model=8))
        with raises(TypeError, "idx", str(dtype), "torch.int64", shape(1, 3)):
            gpt(torch.zeros(1, 3, dtype=dtype))
        gpt(torch.zeros(1, 3, dtype=torch.int32))  # int32 is fine

    def test_trainer_stops_at_the_first_non_finite_loss_before_the_optimiser_step(self):
        model = torch.nn.Linear(2, 1)
        data = [(torch.randn(4, 2), torch.randn(4, 1)) for _ in range(20)]
        calls = []

        def loss_fn(m, batch):
            calls.append(1)
            x, y = batch
            loss = ((m(x) - y) ** 2).mean()
            return loss * float("nan") if len(calls) == 3 else loss

        trainer = qc.Trainer(model, loss_fn, data,
                             config=qc.TrainerConfig(max_steps=20, log_every=10, progress=False))
        with raises(FloatingPointError, "nan", "step 3"):
            trainer.fit()
        assert trainer.step == 2 and torch.isfinite(model.weight).all()

    def test_evaluate_raises_on_a_non_finite_result(self):
        model = torch.nn.Linear(2, 1)
        data = [(torch.randn(4, 2), torch.randn(4, 1))]
        trainer = qc.Trainer(model, lambda m, b: m(b[0]).mean() * float("inf"), data,
                             config=qc.TrainerConfig(max_steps=1, progress=False))
        with raises(FloatingPointError, "evaluate", "inf"):
            trainer.evaluate(data)

    def test_empty_loader_and_empty_batch(self):
        def loss_fn(m, b):
            return ((m(b[0]) - b[1]) ** 2).mean()
        with raises(ValueError, "train_loader", "no batches"):
            qc.Trainer(torch.nn.Linear(2, 1), loss_fn, [],
                       config=qc.TrainerConfig(max_steps=5, progress=False)).fit()
        with raises(ValueError, "train_loader", "empty batch"):
            qc.Trainer(torch.nn.Linear(2, 1), loss_fn, [(torch.randn(0, 2), torch.randn(0, 1))],
                       config=qc.TrainerConfig(max_steps=1, progress=False)).fit()


class TestChecksOnce:
    """Issue 11: the models check their arguments once, at entry; the layers they stack run
    bare. Counted by wrapping every check helper of qkvcourse._validate (and value_range, the
    one that reads values), wherever a package module imported it: a model with four blocks
    must make exactly as many checks as the same model with one."""

    @pytest.fixture
    def count_checks(self, monkeypatch):
        import sys

        import qkvcourse._validate as validate
        calls = []
        helpers = {name: fn for name, fn in vars(validate).items()
                   if callable(fn) and (name.startswith("check_") or name == "value_range")}

        def counting(name, fn):
            def wrapper(*args, **kwargs):
                calls.append(name)
                return fn(*args, **kwargs)
            return wrapper

        for module_name, module in list(sys.modules.items()):
            if module_name.startswith("qkvcourse") and module is not None:
                for name, fn in helpers.items():
                    if getattr(module, name, None) is fn:
                        monkeypatch.setattr(module, name, counting(name, fn))
        return calls

    @staticmethod
    def _counts(calls, run, build, depths=(1, 4)):
        counts = []
        for depth in depths:
            torch.manual_seed(0)
            model = build(depth)
            calls.clear()
            run(model)
            counts.append(len(calls))
        return counts

    def test_gpt(self, count_checks):
        idx = torch.randint(0, 50, (2, 12))
        build = lambda L: qc.GPT(qc.GPTConfig(vocab_size=50, max_len=16, num_layers=L,
                                              num_heads=2, d_model=16))
        counts = self._counts(count_checks, lambda m: m(idx, idx)[1].backward(), build)
        assert counts[0] == counts[1] and counts[0] > 0, counts
        assert "value_range" in count_checks  # the token ids were range-checked, once

    def test_transformer(self, count_checks):
        src = torch.randint(0, 20, (3, 7))
        tgt = torch.randint(0, 20, (3, 5))
        lens = torch.tensor([7, 3, 5])

        def build(L):
            return qc.make_transformer(qc.TransformerConfig(20, 20, num_hiddens=16, num_heads=2,
                                                            ffn_num_hiddens=32, num_enc_blks=L,
                                                            num_dec_blks=L))

        counts = self._counts(count_checks, lambda m: m(src, tgt, lens)[0].sum().backward(), build)
        assert counts[0] == counts[1] and counts[0] > 0, counts

    def test_bert(self, count_checks):
        tokens = torch.randint(0, 30, (2, 9))
        segments = torch.zeros(2, 9, dtype=torch.long)
        lens = torch.tensor([9, 6])
        positions = torch.tensor([[1, 2], [3, 4]])

        def build(L):
            return qc.make_bert(qc.BERTConfig(vocab_size=30, num_hiddens=16, ffn_num_hiddens=32,
                                              num_heads=2, num_blks=L, max_len=16))

        counts = self._counts(count_checks,
                              lambda m: m(tokens, segments, lens, positions)[1].sum().backward(),
                              build)
        assert counts[0] == counts[1] and counts[0] > 0, counts


# -- one module of argument checks -----------------------------------------------------------

class TestOneCheckModule:
    """The generic checks live in ``qkvcourse/_validate.py`` only, and every check that reads
    values goes through ``value_range``: named errors on the CPU, no host read on an accelerator."""

    V_SRC, V_TGT, BOS, EOS = 9, 11, 1, 2

    def model(self, attention, seed=0):
        torch.manual_seed(seed)
        config = qc.RNNSeq2SeqConfig(embed_size=8, num_hiddens=16, num_layers=2, dropout=0.1)
        return qc.make_rnn_seq2seq(self.V_SRC, self.V_TGT, attention, config)

    @pytest.mark.parametrize("attention", [False, True])
    def test_rnn_seq2seq_names_bad_ids_and_lengths_on_cpu(self, attention):
        model = self.model(attention)
        src = torch.tensor([[3, 4, 5, 0], [6, 7, 0, 0]])
        lens = torch.tensor([3, 2])
        with raises(ValueError, "src", f"[0, {self.V_SRC})", "from 0 to 9", shape(2, 4)):
            model.encoder(torch.tensor([[3, 4, 5, 9], [6, 7, 0, 0]]), lens)
        with raises(ValueError, "src", "from -1 to 7", shape(2, 4)):
            model.encoder(torch.tensor([[3, 4, 5, -1], [6, 7, 0, 0]]), lens)
        with raises(ValueError, "src_valid_lens", "[0, 4]", "from 2 to 5", shape(2, 4)):
            model.encoder(src, torch.tensor([5, 2]))
        with raises(ValueError, "src_valid_lens", "[0, 4]", "from -1 to 3"):
            model.encoder(src, torch.tensor([3, -1]))
        enc = model.encoder(src, lens)
        state = model.decoder.init_state(enc, lens)
        with raises(ValueError, "tgt", f"[0, {self.V_TGT})", "from 1 to 11", shape(2, 2)):
            model.decoder(torch.tensor([[1, 11], [1, 2]]), state)
        with raises(ValueError, "tgt", "from -3 to 2"):
            model.decoder(torch.tensor([[1, -3], [1, 2]]), state)
        with raises(ValueError, "index", "[0, 2)", "from 0 to 2", shape(3,)):
            model.decoder.reorder_state(state, torch.tensor([0, 1, 2]))
        if attention:
            with raises(ValueError, "src_valid_lens", "[0, 4]", "from 3 to 6"):
                model.decoder.init_state(enc, torch.tensor([3, 6]))

    @pytest.mark.parametrize("search", ["greedy", "beam"])
    def test_searches_name_bad_ids_and_lengths_on_cpu(self, search):
        model = self.model(True)
        run = (lambda s, l: qc.greedy_search(model, s, l, self.BOS, self.EOS, max_len=5)) \
            if search == "greedy" else \
            (lambda s, l: qc.beam_search(model, s, l, self.BOS, self.EOS, max_len=5, beam_size=2))
        src = torch.tensor([[3, 4, 5], [6, 7, 0]])
        with raises(ValueError, "src_valid_lens", "[0, 3]", "from 2 to 4", shape(2, 3)):
            run(src, torch.tensor([4, 2]))
        with raises(ValueError, "src_valid_lens", "from -2 to 3"):
            run(src, torch.tensor([3, -2]))
        with raises(ValueError, "src", f"[0, {self.V_SRC})", "from 0 to 12"):
            run(torch.tensor([[3, 4, 12], [6, 7, 0]]), torch.tensor([3, 2]))
        with raises(TypeError, "src", "torch.int16"):
            run(src.to(torch.int16), torch.tensor([3, 2]))
        with raises(ValueError, "max_len", "0"):
            qc.greedy_search(model, src, None, self.BOS, self.EOS, max_len=0)

    @pytest.mark.parametrize("attention", [False, True])
    def test_rnn_seq2seq_trains_on_meta_with_valid_lens(self, attention):
        # no value is read: the length and id checks are skipped (no data to read, as on a GPU
        # they would wait for the device) and the encoder does not pack (packing copies the
        # lengths to the host)
        with torch.device("meta"):
            model = self.model(attention)
            src = torch.empty(3, 6, dtype=torch.long)
            tgt = torch.empty(3, 5, dtype=torch.long)
            lens = torch.empty(3, dtype=torch.long)
        logits = model(src, tgt, lens)
        assert logits.shape == (3, 5, self.V_TGT) and logits.device.type == "meta"
        logits.float().sum().backward()
        assert all(p.grad is not None and p.grad.device.type == "meta"
                   for p in model.parameters())

    @pytest.mark.parametrize("num_layers", [1, 2])
    def test_encoder_without_packing_matches_the_packed_encoder(self, num_layers):
        # the path taken where lengths cannot be read for free, compared with packing on the CPU
        torch.manual_seed(0)
        encoder = qc.Seq2SeqEncoder(self.V_SRC, 8, 16, num_layers).eval()
        src = torch.randint(0, self.V_SRC, (4, 6))
        lens = torch.tensor([6, 0, 3, 1])
        outputs, state = encoder(src, lens)
        X = encoder.embedding(src)
        stepped_out, stepped_state = encoder._stepped(X, lens)
        valid = (torch.arange(6) < lens[:, None])[..., None]
        torch.testing.assert_close(stepped_out * valid, outputs)
        torch.testing.assert_close(stepped_state * (lens > 0)[None, :, None], state)
        assert state[:, 1].abs().sum() == 0  # the empty row

    def test_generic_checks_are_defined_once(self):
        import ast
        from pathlib import Path

        banned = {"_check_positive_int", "_check_token_ids", "_check_lengths", "_check_ids_1d",
                  "_check_index_vector", "_is_integer", "_check_dropout", "_check_integer_dtype",
                  "_check_lens", "_check_tokens", "_check_hidden", "_check_cache",
                  "_check_length", "_check_positive_lens", "_check_range", "_check_flag",
                  "_check_path", "_check_seed", "_check_real", "_check_nonempty"}
        package = Path(qc.__file__).parent
        found = []
        for path in sorted(package.rglob("*.py")):
            if path.name == "_validate.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) \
                        and getattr(node, "name", None) in banned:
                    found.append(f"{path.relative_to(package)}:{node.lineno} {node.name}")
                if isinstance(node, ast.Assign) and isinstance(node.value, ast.Lambda):
                    found += [f"{path.relative_to(package)}:{node.lineno} {t.id}"
                              for t in node.targets if isinstance(t, ast.Name) and t.id in banned]
        assert not found, found
        assert len(list(package.rglob("*.py"))) > 20  # the walk did see the package


# -- the second fuzz (this stop): sizes, epsilons, bases, flags, index dtypes ------------------

_NAN, _INF = float("nan"), float("inf")


class TestConstructionArguments:
    """Every size, epsilon and base is checked when the layer (or config) is built, with the
    argument named, instead of building a degenerate layer or failing later inside torch."""

    @pytest.mark.parametrize("build,exc,fragments", [
        (lambda: qc.causal_mask(-1), ValueError, ("num_queries", "-1")),
        (lambda: qc.causal_mask(3, 2.5), ValueError, ("num_keys", "2.5")),
        (lambda: qc.sinusoidal_table(-1, 8), ValueError, ("max_len", "-1")),
        (lambda: qc.PositionalEncoding(8, max_len=-1), ValueError, ("max_len", "-1")),
        (lambda: qc.PositionalEncoding(8, max_len=0), ValueError, ("max_len", "0")),
        (lambda: qc.PositionalEncoding(8, dropout="0.1"), ValueError, ("dropout", "'0.1'")),
        (lambda: qc.LearnedPositionalEncoding(True), ValueError, ("num_hiddens", "True")),
        (lambda: qc.PositionWiseFFN(8, 0), ValueError, ("ffn_num_hiddens", "0")),
        (lambda: qc.AdditiveAttention(0), ValueError, ("num_hiddens", "0")),
        (lambda: qc.AdditiveAttention(4, query_size=-1), ValueError, ("query_size", "-1")),
        (lambda: qc.DotProductAttention("0.1"), ValueError, ("dropout", "'0.1'")),
        (lambda: qc.DotProductAttention(0.0, need_weights="yes"), TypeError,
         ("need_weights", "'yes'")),
        (lambda: qc.MultiHeadAttention(8, True), ValueError, ("num_heads", "True")),
        (lambda: qc.MultiHeadAttention(8, 2.0), ValueError, ("num_heads", "2.0")),
        (lambda: qc.MultiHeadAttention(8, 2, bias="no"), TypeError, ("bias", "'no'")),
        (lambda: qc.Residual(8, eps=0.0), ValueError, ("eps", "0.0")),
        (lambda: qc.AddNorm(8, norm_first="yes"), TypeError, ("norm_first", "'yes'")),
        (lambda: qc.TransformerEncoderBlock(8, 0, 2, 0.0), ValueError, ("ffn_num_hiddens", "0")),
        (lambda: qc.TransformerEncoderBlock(8, 16, 2, 0.0, layer_norm_eps=-1.0), ValueError,
         ("layer_norm_eps", "-1.0")),
        (lambda: qc.MaskLM(0, 8), ValueError, ("vocab_size", "0")),
        (lambda: qc.MaskLM(12, 8, layer_norm_eps=_NAN), ValueError, ("layer_norm_eps", "nan")),
        (lambda: qc.NextSentencePred(0), ValueError, ("num_hiddens", "0")),
        (lambda: qc.BERTConfig(12, dropout=1.5), ValueError, ("dropout", "1.5")),
        (lambda: qc.BERTConfig(12, num_heads=3), ValueError, ("num_heads", "d_model=128")),
        (lambda: qc.BERTConfig(12, activation="swish"), ValueError, ("activation", "'swish'")),
        (lambda: qc.BERTConfig(12, layer_norm_eps=-1.0), ValueError, ("layer_norm_eps", "-1.0")),
        (lambda: qc.BERTConfig(12, tie_weights="no"), TypeError, ("tie_weights", "'no'")),
        (lambda: qc.GPTConfig(10, layer_norm_eps=_INF), ValueError, ("layer_norm_eps", "inf")),
        (lambda: qc.GPTConfig(10, layer_norm_eps="1e-5"), ValueError,
         ("layer_norm_eps", "'1e-5'")),
        (lambda: qc.GPTConfig(10, bias=1), TypeError, ("bias", "1")),
        (lambda: qc.TransformerConfig(10, 10, norm_first="yes"), TypeError,
         ("norm_first", "'yes'")),
        (lambda: qc.EncoderDecoder(None, None), TypeError, ("encoder", "NoneType")),
        (lambda: qc.make_transformer({"src_vocab_size": 5}), TypeError, ("config", "dict")),
        (lambda: qc.make_bert({"vocab_size": 5}), TypeError, ("config", "dict")),
        (lambda: qc.GPTBlock({"d_model": 8}), TypeError, ("config", "dict")),
        (lambda: qc.map_state((torch.zeros(1),), None), TypeError, ("fn", "NoneType")),
        (lambda: qc.transfer.char_token_map(None, None), TypeError, ("vocab", "NoneType")),
        (lambda: qc.Vocab(["a"]).encode(None), TypeError, ("tokens", "NoneType")),
    ])
    def test_refused_at_construction(self, build, exc, fragments):
        with raises(exc, *fragments):
            build()

    def test_pooling_an_empty_sequence(self):
        bert = qc.make_bert(qc.BERTConfig(12, d_model=8, ffn_num_hiddens=16, num_layers=1))
        with raises(ValueError, "encoded_X", "(2, 0, 8)"):
            bert.pool(torch.zeros(2, 0, 8))

    def test_negative_epsilon_no_longer_gives_an_all_nan_bert(self):
        # Before: make_bert(BERTConfig(..., layer_norm_eps=-1)) built, and its encoding was NaN
        with raises(ValueError, "layer_norm_eps", "-1"):
            qc.make_bert(qc.BERTConfig(12, layer_norm_eps=-1))

    @pytest.mark.parametrize("base", [0.0, -2.0, _NAN, _INF, "10000"])
    def test_base_of_the_position_encodings(self, base):
        with raises(ValueError, "base", repr(base)):
            qc.RotaryEmbedding(8, base=base)
        with raises(ValueError, "base", repr(base)):
            qc.sinusoidal_table(10, 8, base=base)

    def test_a_valid_base_other_than_the_papers_still_works(self):
        table = qc.sinusoidal_table(10, 8, base=100.0)
        rotated = qc.RotaryEmbedding(8, base=0.5)(torch.randn(3, 8))
        assert torch.isfinite(table).all() and torch.isfinite(rotated).all()


class TestOffsetsAndIndexDtypes:
    @pytest.mark.parametrize("cls", [qc.PositionalEncoding, qc.LearnedPositionalEncoding])
    @pytest.mark.parametrize("offset", [1.5, True, -1])
    def test_position_offset_is_a_whole_number(self, cls, offset):
        with raises(ValueError, "offset", repr(offset)):
            cls(8, max_len=20)(torch.randn(2, 3, 8), offset=offset)

    def test_rotary_offset_must_be_whole(self):
        with raises(ValueError, "offset", "1.5"):
            qc.RotaryEmbedding(8)(torch.randn(3, 8), offset=1.5)
        qc.RotaryEmbedding(8)(torch.randn(3, 8), offset=-2)  # negative: the inverse rotation

    def test_bert_segments_must_be_int32_or_int64(self):
        bert = qc.make_bert(qc.BERTConfig(12, d_model=8, ffn_num_hiddens=16, num_layers=1))
        tokens = torch.randint(0, 12, (2, 5))
        with raises(TypeError, "segments", "torch.int16"):
            bert(tokens, torch.zeros(2, 5, dtype=torch.int16))
        bert(tokens, torch.zeros(2, 5, dtype=torch.int32))  # int32 is an index dtype

    def test_masklm_positions_must_be_int32_or_int64(self):
        mlm = qc.MaskLM(12, 8)
        with raises(TypeError, "pred_positions", "torch.int16"):
            mlm(torch.randn(2, 5, 8), torch.zeros(2, 3, dtype=torch.int16))
        assert mlm(torch.randn(2, 5, 8), torch.zeros(2, 3, dtype=torch.int32)).shape == (2, 3, 12)

    def test_addnorm_refuses_an_integer_sublayer_output(self):
        with raises(TypeError, "Y", "torch.int64"):
            qc.AddNorm(8)(torch.randn(2, 3, 8), torch.zeros(2, 3, 8, dtype=torch.long))


class TestFlagsAndScales:
    """Switches take True or False, not any truthy object: ``is_causal="no"`` used to apply
    the causal mask."""

    def _qkv(self):
        return torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4)

    @pytest.mark.parametrize("kwargs,fragments", [
        (dict(is_causal="no"), ("is_causal", "'no'")),
        (dict(need_weights=1), ("need_weights", "1")),
    ])
    def test_sdpa_flags(self, kwargs, fragments):
        with raises(TypeError, *fragments):
            qc.scaled_dot_product_attention(*self._qkv(), **kwargs)

    @pytest.mark.parametrize("scale", ["1", True, 0.0, -1.0, _NAN, _INF])
    def test_sdpa_scale(self, scale):
        with raises(ValueError, "scale", repr(scale)):
            qc.scaled_dot_product_attention(*self._qkv(), scale=scale)

    def test_module_flags(self):
        q, k, v = (torch.randn(2, 3, 8) for _ in range(3))
        with raises(TypeError, "is_causal", "'no'"):
            qc.DotProductAttention()(q, k, v, is_causal="no")
        mha = qc.MultiHeadAttention(8, 2)
        with raises(TypeError, "need_weights", "'yes'"):
            mha(q, k, v, need_weights="yes")
        with raises(TypeError, "need_weights", "1"):
            mha.need_weights = 1

    def test_generate_flags(self):
        gpt = qc.GPT(qc.GPTConfig(10, max_len=8, num_layers=1, num_heads=2, d_model=8)).eval()
        prompt = torch.zeros(1, 2, dtype=torch.long)
        with raises(TypeError, "do_sample", "'no'"):
            gpt.generate(prompt, 2, do_sample="no")
        with raises(TypeError, "use_cache", "0"):
            gpt.generate(prompt, 2, use_cache=0)


class TestTemperature:
    @pytest.mark.parametrize("temperature", [1e-45, 1e-30, 1e-7])
    def test_a_tiny_temperature_samples_the_arg_max(self, temperature):
        # Before: 1e-45 passed the check, the logits overflowed to inf and torch.multinomial
        # raised "probability tensor contains either inf, nan or element < 0". Below
        # TINY_TEMPERATURE the logits are shifted by their maximum first.
        torch.manual_seed(0)
        gpt = qc.GPT(qc.GPTConfig(10, max_len=8, num_layers=1, num_heads=2, d_model=8)).eval()
        prompt = torch.randint(0, 10, (4, 2))
        cold = gpt.generate(prompt, 5, temperature=temperature,
                            generator=torch.Generator().manual_seed(1))
        assert torch.equal(cold, gpt.generate(prompt, 5, do_sample=False))


class TestValidValuesStayValid:
    """What the second fuzz's checks must not refuse (found by this stop's review)."""

    def test_numpy_flags_and_dropouts(self):
        np = pytest.importorskip("numpy")
        qc.DotProductAttention(0.0, need_weights=np.bool_(True))
        qc.PositionalEncoding(8, np.float32(0.1))
        qc.MultiHeadAttention(8, 2, np.float64(0.2), bias=np.bool_(False))

    def test_metrics_take_any_integer_labels(self):
        # Only comparing values: uint8 and int16 labels work, as before this stop
        logits = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
        labels = torch.tensor([0, 1, 1])
        for dtype in (torch.uint8, torch.int16):
            assert qc.classification_accuracy(logits, labels.to(dtype)) == pytest.approx(2 / 3)
        spans = [torch.tensor([1, 2], dtype=torch.int16) for _ in range(4)]
        assert qc.span_exact_match(*spans) == 1.0

    def test_use_bias_is_named_as_given(self):
        with raises(TypeError, "use_bias", "'no'"):
            qc.TransformerEncoderBlock(8, 16, 2, 0.0, use_bias="no")
        with raises(TypeError, "use_bias", "'no'"):
            qc.TransformerConfig(10, 10, use_bias="no")

    def test_a_device_index_is_a_device(self):
        from qkvcourse.utils import _check_device
        if torch.cuda.is_available():
            assert _check_device("device", 0) == torch.device("cuda", 0)
        else:
            with raises(ValueError, "device", "none is available", "0"):
                _check_device("device", 0)
        with raises(TypeError, "device", "-1"):
            _check_device("device", -1)


class TestSeeds:
    """One seed check (``_validate.check_seed``) everywhere a seed is taken: an integer
    (``TypeError`` otherwise) in [0, 2**32 - 1], NumPy's range."""

    @pytest.fixture
    def builders(self):
        from qkvcourse import pooling
        from qkvcourse.data.images import ShapeCaptionData
        from qkvcourse.data.translation import DateTranslationData
        from qkvcourse.finetune import make_loader
        corpus = [[["a", "b"], ["c", "d"], ["e", "f"]], [["g", "h"], ["i", "j"]]]
        data = (torch.zeros(4), torch.zeros(4))
        return {
            "DateTranslationData": lambda s: DateTranslationData(num_train=2, num_val=0,
                                                                 num_test=0, seed=s),
            "ShapeCaptionData": lambda s: ShapeCaptionData(num_train=1, num_test=1, seed=s),
            "BERTPretrainingData": lambda s: qc.BERTPretrainingData(corpus, 10, seed=s),
            "make_regression_data": lambda s: pooling.make_regression_data(seed=s),
            "make_classification_task": lambda s: qc.data.tasks.make_classification_task(
                seed=s),
            "make_loader": lambda s: make_loader(data, 2, seed=s),
            "distributed_loader": lambda s: qc.distributed.distributed_loader(
                list(range(4)), 2, seed=s),
            "TrainerConfig": lambda s: qc.TrainerConfig(seed=s),
            "seed_everything": lambda s: qc.utils.seed_everything(s),
        }

    @pytest.mark.parametrize("seed", [1.5, True, "0"])
    def test_a_seed_is_an_integer(self, builders, seed):
        for name, build in builders.items():
            with raises(TypeError, "seed", repr(seed)):
                build(seed)

    @pytest.mark.parametrize("seed", [-3, 2 ** 32])
    def test_a_seed_is_in_numpys_range(self, builders, seed):
        for name, build in builders.items():
            with raises(ValueError, "seed", str(seed), "2**32 - 1"):
                build(seed)
