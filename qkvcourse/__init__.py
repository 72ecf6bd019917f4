"""qkvcourse: the reusable code of the attention course.

The package is organised in the order the course teaches:

- ``masking``     masks and the masked softmax (chapter 3)
- ``attention``   scaled dot-product and additive attention (chapters 1, 3)
- ``pooling``     Nadaraya–Watson attention pooling (chapter 2)
- ``multihead``   multi-head attention (chapter 5)
- ``positional``  sinusoidal, learned and rotary positions (chapter 6)
- ``encoder_decoder``  the encoder–decoder contract (chapters 4, 7)
- ``seq2seq``     GRU encoder, Bahdanau attention decoder (chapter 4)
- ``transformer`` encoder and decoder blocks, the three attention flavours (chapter 7)
- ``decoding``    greedy and beam search (chapters 4, 7)
- ``metrics``     BLEU, exact match, token accuracy, calibration, classification accuracy,
                  SQuAD exact match and F1 (chapters 4, 7, 9, 10)
- ``trainer``     a generic trainer with the performance switches in one place
- ``callbacks``   what the trainer does around its loop: printing, curves, early stopping,
                  checkpoints
- ``schedules``   learning-rate schedules: the Transformer paper's, warm-up then cosine
- ``gpt``         decoder-only pretraining: GPT-2 layout, sampling, KV-cache generation (chapter 9)
- ``bert``        encoder-only pretraining: the BERT model and its two heads (chapter 10)
- ``losses``      the training losses: sequence, language model, BERT pretraining and
                  span extraction (chapters 4, 7, 9, 10)
- ``huggingface`` GPT-2 and BERT weights from Hugging Face ``transformers``, one offline error
- ``finetune``    GPT- and BERT-style fine-tuning: classification, span extraction (9, 10)
- ``bert_transfer``  what pretraining buys a BERT, measured: pretrained vs scratch vs frozen (10)
- ``transfer``    a pretrained GPT for a task: new token rows, the first k of L blocks (9)
- ``zero_shot``   scoring candidate answers by their likelihood under a language model (9)
- ``distributed`` DistributedDataParallel helpers for the trainer (torchrun)
- ``profiling``   time and peak memory of attention against length, power-law fits (chapter 8)
- ``data``        vocabularies, tokenizers (character, byte-level BPE), the generated
                  date-translation task, offline corpora, BERT's pretraining examples,
                  checksummed downloads
- ``plotting``, ``utils``  figures, devices, seeding

Mask convention everywhere: a boolean mask is True where a query may attend.

    >>> import qkvcourse as qc
    >>> attention = qc.MultiHeadAttention(num_hiddens=32, num_heads=4)
"""
from .attention import (AdditiveAttention, DotProductAttention, attention_backend,
                        attention_reference, scaled_dot_product_attention, use_fused_path)
from .masking import causal_mask, masked_softmax, valid_lens_to_mask
from .multihead import (MultiHeadAttention, merge_heads, split_heads, transpose_output,
                        transpose_qkv)
from .plotting import plot, show_heatmaps
from .pooling import (KERNELS, NadarayaWatson, fit_bandwidth, leave_one_out_mask,
                      make_regression_data, nadaraya_watson, target_function)
from .positional import (LearnedPositionalEncoding, PositionalEncoding, RotaryEmbedding,
                         sinusoidal_table)
from .utils import (available_devices, check_shape, get_device, num_parameters, seed_everything,
                    time_function)
from ._validate import value_checks, value_checks_enabled
from .encoder_decoder import Decoder, Encoder, EncoderDecoder, map_state
from .losses import BERTLoss, bert_batch_loss, bert_pretraining_loss, lm_loss, sequence_loss
from .seq2seq import (RNNSeq2SeqConfig, Seq2SeqAttentionDecoder, Seq2SeqDecoder, Seq2SeqEncoder,
                      make_rnn_seq2seq, train_seq2seq, translate_sources)
from .transformer import (AddNorm, CausalSelfAttention, CrossAttention, GlobalSelfAttention,
                          PositionWiseFFN, Residual, TransformerConfig, TransformerDecoder,
                          TransformerDecoderBlock, TransformerEncoder, TransformerEncoderBlock,
                          make_transformer)
from .decoding import Hypotheses, Hypothesis, beam_search, greedy_search
from .metrics import (bleu, classification_accuracy, corpus_bleu, exact_match,
                      expected_calibration_error, span_exact_match, span_f1, token_accuracy,
                      token_f1)
from .experiments import SweepResult, sweep
from .callbacks import (Callback, Checkpoint, EarlyStopping, EvaluateEvery, LossCurve,
                        PrintMetrics)
from .schedules import transformer_schedule, warmup_cosine_schedule
from .trainer import Trainer, TrainerConfig
from .gpt import GPT, GPTBlock, GPTConfig, top_k_filter, top_p_filter
from .bert import BERTConfig, BERTEncoder, BERTModel, MaskLM, NextSentencePred, make_bert
from .data.bert_pretraining import (BERTBatch, BERTPretrainingData, bert_vocab,
                                    get_tokens_and_segments, mask_tokens, next_sentence_pairs)
from .huggingface import (bert_from_huggingface, gpt_config_from_huggingface,
                          gpt_from_huggingface)
from . import data, distributed, metrics, profiling
from .profiling import (attention_step, peak_attention_memory, power_law_fit, steady_timing,
                        time_attention)
from .distributed import distributed_loader
from .finetune import (BERTClassifier, BERTSpanExtractor, GPTClassifier, best_spans,
                       bert_classification_inputs, bert_classification_loss, bert_span_inputs,
                       bert_span_loss, gpt_classification_inputs, gpt_finetune_loss)
from .transfer import char_token_map, transfer_gpt
from .zero_shot import choose_continuation, continuation_log_probs
from .data import (BPETokenizer, CharTokenizer, DateTranslationData, TatoebaData, Vocab,
                   load_offline_corpus)

__version__ = "0.1.0"

__all__ = [
    "value_checks", "value_checks_enabled",
    "AdditiveAttention", "DotProductAttention", "KERNELS", "LearnedPositionalEncoding",
    "MultiHeadAttention", "NadarayaWatson", "PositionalEncoding", "RotaryEmbedding",
    "attention_backend", "attention_reference", "available_devices", "causal_mask",
    "check_shape", "fit_bandwidth", "get_device", "leave_one_out_mask", "make_regression_data",
    "masked_softmax", "merge_heads", "nadaraya_watson", "num_parameters", "plot",
    "scaled_dot_product_attention", "seed_everything", "show_heatmaps", "sinusoidal_table",
    "split_heads", "target_function", "time_function", "transpose_output", "transpose_qkv",
    "use_fused_path", "valid_lens_to_mask",
    # measuring attention's cost (chapter 8)
    "attention_step", "peak_attention_memory", "power_law_fit", "profiling", "steady_timing",
    "time_attention",
    # encoder-decoder models, decoding, training, data (chapters 4, 7, 8)
    "AddNorm", "Callback", "CausalSelfAttention", "Checkpoint", "CrossAttention",
    "DateTranslationData", "Decoder", "EarlyStopping", "Encoder", "EncoderDecoder",
    "EvaluateEvery", "GlobalSelfAttention", "train_seq2seq", "translate_sources", "SweepResult", "sweep", "Hypotheses", "Hypothesis", "LossCurve", "PositionWiseFFN", "Residual",
    "PrintMetrics", "RNNSeq2SeqConfig", "Seq2SeqAttentionDecoder", "Seq2SeqDecoder",
    "Seq2SeqEncoder", "TatoebaData", "Trainer", "TrainerConfig", "TransformerConfig",
    "TransformerDecoder", "TransformerDecoderBlock", "TransformerEncoder",
    "TransformerEncoderBlock", "Vocab", "beam_search", "bleu", "corpus_bleu", "data",
    "greedy_search", "make_rnn_seq2seq", "make_transformer", "map_state", "sequence_loss",
    "transformer_schedule", "warmup_cosine_schedule",
    # pretraining (chapters 9, 10)
    "BERTBatch", "BERTConfig", "BERTEncoder", "BERTLoss", "BERTModel", "BERTPretrainingData",
    "BPETokenizer", "CharTokenizer", "GPT", "GPTBlock", "GPTConfig", "MaskLM", "NextSentencePred",
    "bert_batch_loss", "bert_from_huggingface", "bert_pretraining_loss", "bert_vocab",
    "get_tokens_and_segments", "gpt_config_from_huggingface", "gpt_from_huggingface",
    "load_offline_corpus", "lm_loss", "make_bert", "mask_tokens", "next_sentence_pairs",
    "top_k_filter", "top_p_filter", "distributed", "distributed_loader",
    "BERTClassifier", "BERTSpanExtractor", "GPTClassifier", "best_spans",
    "bert_classification_inputs", "bert_classification_loss", "bert_span_inputs",
    "bert_span_loss", "gpt_classification_inputs", "gpt_finetune_loss", "span_f1",
    "char_token_map", "choose_continuation", "continuation_log_probs", "transfer_gpt",
    # scores (chapters 4, 7, 9, 10); bleu, corpus_bleu and span_f1 are listed above
    "metrics", "classification_accuracy", "exact_match", "expected_calibration_error",
    "span_exact_match", "token_accuracy", "token_f1",
]
