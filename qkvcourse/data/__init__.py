"""Data for the course: vocabularies, translation tasks, and a safe downloader.

- ``vocab``        :class:`Vocab` (``<pad>``, ``<bos>``, ``<eos>``, ``<unk>`` at ids 0..3) and
  :func:`pad_batch`
- ``translation``  the generated date task (:class:`DateTranslationData`, the default,
  no network) and Tatoeba English–French (:class:`TatoebaData`), in one batch format
- ``download``     :func:`download` (cached, checksummed, atomic) and :func:`extract`
- ``bert_pretraining``  BERT's masked-LM and next-sentence examples (:class:`BERTPretrainingData`)
"""
from .download import ChecksumError, DownloadError, download, extract, get_cache_dir
from .translation import (DATE_STYLES, TATOEBA_SHA1, TATOEBA_URL, CharacterTranslationData, DateStyle,
                          DateTranslationData, TatoebaData, TranslationBatch, TranslationData,
                          generate_date_pairs, preprocess_sentence, translation_tensors)
from .vocab import SPECIAL_TOKENS, Vocab, pad_batch
from ..metrics import exact_match, token_accuracy  # at home in qkvcourse.metrics; kept here

__all__ = [
    "ChecksumError", "DATE_STYLES", "DateStyle", "DateTranslationData", "DownloadError",
    "SPECIAL_TOKENS", "TATOEBA_SHA1", "TATOEBA_URL", "TatoebaData", "TranslationBatch",
    "TranslationData", "Vocab", "download", "exact_match", "extract", "generate_date_pairs",
    "get_cache_dir", "pad_batch", "preprocess_sentence", "translation_tensors", "CharacterTranslationData",
]

# Corpora and tokenisation (chapters 9, 10): ``text`` (CharTokenizer, byte-level BPE) and
# ``corpus`` (the offline stories / docstrings, Tiny Shakespeare, WikiText-2).
from .corpus import (OFFLINE_CORPORA, TINY_SHAKESPEARE_SHA256, TINY_SHAKESPEARE_URL,
                     WIKITEXT2_SHA1, WIKITEXT2_URLS, char_entropy, generate_stories,
                     load_offline_corpus, load_tiny_shakespeare, load_wikitext2, paragraphs,
                     split_sentences, stdlib_docstrings, train_val_split)
from .text import PRE_TOKENIZE_PATTERN, BPETokenizer, CharTokenizer, pre_tokenize

__all__ += [
    "BPETokenizer", "CharTokenizer", "OFFLINE_CORPORA", "PRE_TOKENIZE_PATTERN",
    "TINY_SHAKESPEARE_SHA256", "TINY_SHAKESPEARE_URL", "WIKITEXT2_SHA1", "WIKITEXT2_URLS",
    "char_entropy", "generate_stories", "load_offline_corpus", "load_tiny_shakespeare",
    "load_wikitext2", "paragraphs", "pre_tokenize", "split_sentences", "stdlib_docstrings",
    "train_val_split",
]

# Generated fine-tuning tasks (chapters 9, 10): ``tasks`` (sentence-pair classification and
# SQuAD-like span extraction, with a vocabulary holding GPT's and BERT's special tokens).
from .tasks import (CLASSIFICATION_LABELS, FINETUNE_RESERVED_TOKENS, ClassificationExample,
                    ClassificationTask, SpanExample, SpanTask, make_classification_task,
                    make_span_task, task_vocab)

__all__ += [
    "CLASSIFICATION_LABELS", "ClassificationExample", "ClassificationTask",
    "FINETUNE_RESERVED_TOKENS", "SpanExample", "SpanTask", "make_classification_task",
    "make_span_task", "task_vocab",
]

# Generated string and image tasks (chapters 4 and 7): ``sequences`` (copying or reversing
# random strings, the same content at growing length) and ``images`` (shapes to caption).
from .images import ShapeCaptionData, draw_shapes
from .sequences import CopyTaskData, SequenceTaskData, random_string_pairs

__all__ += ["CopyTaskData", "SequenceTaskData", "ShapeCaptionData", "draw_shapes",
            "random_string_pairs", "token_accuracy"]

# BERT's pretraining examples (chapter 10): ``bert_pretraining`` (the <cls> a <sep> b <sep>
# input, next-sentence pairs, masked-LM corruption, the padded data set).
from .bert_pretraining import (BERT_RESERVED_TOKENS, BERTBatch, BERTPretrainingData, bert_vocab,
                               get_tokens_and_segments, mask_tokens, next_sentence_pairs)

__all__ += ["BERTBatch", "BERTPretrainingData", "BERT_RESERVED_TOKENS", "bert_vocab",
            "get_tokens_and_segments", "mask_tokens", "next_sentence_pairs"]
