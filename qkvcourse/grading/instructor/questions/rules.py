"""What each answer may not call: one table for every graded question.

The autograder enforces these while it runs a submission (see ``qkvcourse.grading.worker``),
and ``make student`` states them before each answer cell. The rule of a question names the
course package's own implementation of what the question asks and, where PyTorch has the same
thing as one call, PyTorch's (an ``aten::`` operator is caught by every route to it).
"""
from __future__ import annotations

# PyTorch's fused attention: F.scaled_dot_product_attention, torch.ops.aten..., and the kernels
# behind nn.MultiheadAttention and nn.TransformerEncoderLayer.
TORCH_SDPA = ("aten::scaled_dot_product_attention", "aten::_scaled_dot_product_attention_math",
              "aten::_scaled_dot_product_flash_attention_for_cpu")
TORCH_MHA = ("torch.nn.MultiheadAttention", "torch.nn.functional.multi_head_attention_forward",
             "aten::_native_multi_head_attention")
COURSE_SDPA = ("qkvcourse.attention.scaled_dot_product_attention", "qkvcourse.attention.attention_reference",
               "qkvcourse.attention.DotProductAttention", "qkvcourse.attention._attend",
               "qkvcourse.attention._explicit_attention")

RULES: dict[str, tuple[str, ...]] = {
    "ch01.attention_by_hand": COURSE_SDPA + TORCH_SDPA + TORCH_MHA,
    "ch01.single_head_attention": COURSE_SDPA + ("qkvcourse.multihead.MultiHeadAttention",)
    + TORCH_SDPA + TORCH_MHA,
    "ch02.nw_regression": ("qkvcourse.pooling.nadaraya_watson", "qkvcourse.pooling.NadarayaWatson"),
    "ch02.loo_mse": ("qkvcourse.pooling.nadaraya_watson", "qkvcourse.pooling.NadarayaWatson",
                     "qkvcourse.pooling.leave_one_out_mask", "qkvcourse.pooling.fit_bandwidth"),
    "ch03.masked_softmax_lens": ("qkvcourse.masking.masked_softmax", "qkvcourse.masking.valid_lens_to_mask",
                                "qkvcourse.masking.lens_mask"),
    "ch03.additive_scores": ("qkvcourse.attention.AdditiveAttention",),
    "ch03.sdpa": COURSE_SDPA + TORCH_SDPA + TORCH_MHA,
    "ch04.bahdanau_step": ("qkvcourse.attention.AdditiveAttention", "qkvcourse.seq2seq.Seq2SeqAttentionDecoder"),
    "ch04.fixed_context_inputs": ("qkvcourse.seq2seq.Seq2SeqDecoder",),
    "ch04.grid_attention": COURSE_SDPA + TORCH_SDPA + TORCH_MHA,
    "ch05.split_heads": ("qkvcourse.multihead.split_heads", "qkvcourse.multihead._split",
                         "qkvcourse.multihead.transpose_qkv"),
    "ch05.merge_heads": ("qkvcourse.multihead.merge_heads", "qkvcourse.multihead._merge",
                         "qkvcourse.multihead.transpose_output"),
    "ch05.multihead_attention": ("qkvcourse.multihead.MultiHeadAttention",) + TORCH_MHA,
    "ch06.sinusoidal_encoding": ("qkvcourse.positional.sinusoidal_table", "qkvcourse.positional.PositionalEncoding"),
    "ch06.position_similarity": ("qkvcourse.positional.sinusoidal_table", "qkvcourse.positional.PositionalEncoding"),
    "ch06.apply_rotary": ("qkvcourse.positional.RotaryEmbedding",),
    "ch07.prenorm_encoder_block": ("qkvcourse.transformer.TransformerEncoderBlock",
                                   "torch.nn.TransformerEncoderLayer"),
    "ch07.cached_causal_mask": ("qkvcourse.masking.causal_mask",),
    "ch07.noam_rate": (),  # the package has no function for it: nothing to borrow
    "ch08.blockwise_attention": COURSE_SDPA + TORCH_SDPA + TORCH_MHA,
    "ch08.local_global_mask": (),  # the package has no function for it
    "ch08.grouped_query_attention": COURSE_SDPA + TORCH_SDPA + TORCH_MHA,  # F.sdpa has enable_gqa
    "ch09.causal_lm_loss": ("qkvcourse.gpt.lm_loss", "qkvcourse.finetune.gpt_lm_targets"),
    "ch09.sampling_probs": ("qkvcourse.gpt.top_k_filter", "qkvcourse.gpt.top_p_filter"),
    "ch09.gpt_pair_inputs": ("qkvcourse.finetune.gpt_classification_inputs",),
    "ch10.tokens_and_segments": ("qkvcourse.bert.get_tokens_and_segments",),
    "ch10.best_span": ("qkvcourse.finetune.best_spans",),
    "ch10.mlm_mask": ("qkvcourse.bert.mask_tokens",),
}
