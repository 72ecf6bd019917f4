"""What pretraining buys a BERT, measured (chapter 10).

The harness behind the chapter's comparisons of a pretrained BERT with the same BERT
trained from scratch, on the same fine-tuning budget, over seeds (with
:func:`~qkvcourse.experiments.sweep`):

- :func:`pretraining_metrics` and :func:`pretraining_monitors`: masked-LM loss,
  masked-token accuracy and next-sentence accuracy of a BERT on a loader of
  :class:`~qkvcourse.data.bert_pretraining.BERTBatch`, recorded during pretraining with
  :class:`~qkvcourse.callbacks.EvaluateEvery`.
- :func:`bert_for_task`: a :class:`~qkvcourse.finetune.BERTClassifier` or
  :class:`~qkvcourse.finetune.BERTSpanExtractor` on a fresh BERT, either loaded with
  pretrained weights or left at random (scratch), with the encoder trainable (fine-tuning)
  or frozen (feature-based use), and the new layers initialised as BERT does (normal, std
  0.02) or as PyTorch does (``reset_parameters``).
- :func:`finetune_bert`: a fixed number of AdamW steps on some labelled examples.
- :func:`transfer_run`: ``run(arm, budget, seed)`` for :func:`~qkvcourse.experiments.sweep`,
  the held-out accuracy (classification) or exact match (spans) of one arm trained on
  ``budget`` labelled examples.

The arms: ``"pretrained"`` (fine-tune everything from the pretrained weights),
``"scratch"`` (the same from random weights), ``"frozen"`` (pretrained encoder kept
fixed, only the pooler and the new layer trained), and ``"pretrained, BERT init"``,
``"scratch, BERT init"`` (the new layer, and a scratch model's pooler, at BERT's std 0.02
instead of PyTorch's default).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from .bert import BERTConfig, BERTModel, init_bert_weights, make_bert
from .finetune import (BERTClassifier, BERTSpanExtractor, _model_device,
                       bert_classification_loss, bert_span_loss, evaluate_classifier,
                       evaluate_spans, make_loader)
from .callbacks import EvaluateEvery
from .losses import bert_pretraining_loss
from .schedules import warmup_cosine_schedule
from .trainer import Trainer, TrainerConfig
from .utils import seed_everything

__all__ = ["ARMS", "FinetuneRecipe", "bert_for_task", "finetune_bert", "pretraining_metrics",
           "pretraining_monitors", "subset", "transfer_run"]

ARMS = ("pretrained", "scratch", "frozen", "pretrained, BERT init", "scratch, BERT init")
PRETRAINING_METRICS = ("mlm_loss", "mlm_accuracy", "nsp_accuracy")


@torch.no_grad()
def pretraining_metrics(bert: BERTModel, loader) -> dict[str, float]:
    """Mean masked-LM loss, masked-token accuracy and next-sentence accuracy over a loader
    of :class:`~qkvcourse.data.bert_pretraining.BERTBatch`, in eval mode (the mode is restored)."""
    was_training, device = bert.training, _model_device(bert)
    bert.eval()
    # float64 sums on the device, read once at the end (no synchronisation per batch)
    totals = torch.zeros(4, dtype=torch.float64, device=device)
    num_pairs = 0
    for batch in loader:
        tokens, segments, valid_lens, pred_positions, mlm_weights, mlm_labels, nsp_labels = (
            t.to(device) for t in batch)
        _, mlm_logits, nsp_logits = bert(tokens, segments, valid_lens, pred_positions)
        loss = bert_pretraining_loss(mlm_logits, nsp_logits, mlm_weights, mlm_labels,
                                     nsp_labels)
        n = mlm_weights.sum().double()
        totals += torch.stack([loss.mlm.double() * n,
                               ((mlm_logits.argmax(-1) == mlm_labels) * mlm_weights).sum().double(),
                               n, (nsp_logits.argmax(-1) == nsp_labels).sum().double()])
        num_pairs += len(nsp_labels)
    bert.train(was_training)
    if num_pairs == 0:
        raise ValueError("loader yielded no example")
    mlm_sum, mlm_correct, num_preds, nsp_correct = totals.tolist()
    return {"mlm_loss": mlm_sum / max(num_preds, 1.0),
            "mlm_accuracy": mlm_correct / max(num_preds, 1.0),
            "nsp_accuracy": nsp_correct / num_pairs}


def pretraining_monitors(loader, every: int) -> dict[str, EvaluateEvery]:
    """Three :class:`~qkvcourse.callbacks.EvaluateEvery` callbacks, ``"mlm_loss"``,
    ``"mlm_accuracy"`` and ``"nsp_accuracy"``, sharing one evaluation per step
    (:func:`pretraining_metrics` of the trained model on ``loader``)."""
    cache: dict = {}

    def metric(name: str) -> Callable:
        def evaluate(trainer) -> float:
            if cache.get("step") != trainer.step:
                cache.update(step=trainer.step,
                             values=pretraining_metrics(trainer.model, loader))
            return cache["values"][name]
        return evaluate

    return {name: EvaluateEvery(metric(name), every) for name in PRETRAINING_METRICS}


def bert_for_task(config: BERTConfig, pretrained: dict | None, head: str,
                  num_classes: int | None = None, *, freeze_encoder: bool = False,
                  head_init: str = "default", seed: int = 0) -> nn.Module:
    """A task model on a fresh BERT of ``config``.

    Args:
        config: the BERT's sizes (``dropout`` applies in fine-tuning too).
        pretrained: a :class:`~qkvcourse.bert.BERTModel` state dict to load, or None for
            random weights (training from scratch).
        head: ``"classifier"`` (:class:`~qkvcourse.finetune.BERTClassifier`, without
            dropout of its own) or ``"span"`` (:class:`~qkvcourse.finetune.BERTSpanExtractor`).
        num_classes: the classifier's number of classes.
        freeze_encoder: keep the encoder (embeddings and blocks) fixed: feature-based use.
            The pooler and the new layer are trained.
        head_init: the initialisation of the layers without pretrained weights (the new
            layer, and the pooler of a scratch model): ``"default"`` (PyTorch's
            ``reset_parameters``) or ``"bert"`` (normal with std 0.02, BERT's).
        seed: seeds the random weights.
    """
    if head not in ("classifier", "span"):
        raise ValueError(f"head must be 'classifier' or 'span', got {head!r}")
    if head_init not in ("default", "bert"):
        raise ValueError(f"head_init must be 'default' or 'bert', got {head_init!r}")
    seed_everything(seed)
    bert = make_bert(config)
    if pretrained is not None:
        bert.load_state_dict(pretrained)
    if head == "classifier":
        if num_classes is None:
            raise ValueError("num_classes is needed for head='classifier'")
        model = BERTClassifier(bert, num_classes, dropout=0.0)
        new_layers = [model.classifier] + ([bert.hidden[0]] if pretrained is None else [])
    else:
        model = BERTSpanExtractor(bert)
        new_layers = [model.qa_outputs]
    for layer in new_layers:
        if head_init == "default":
            layer.reset_parameters()
        else:
            init_bert_weights(layer)
    if freeze_encoder:
        for p in bert.encoder.parameters():
            p.requires_grad_(False)
    return model


@dataclass
class FinetuneRecipe:
    """The fine-tuning budget, the same for every arm."""

    num_steps: int = 60  # AdamW steps
    lr: float = 1e-3  # peak learning rate (BERT: 5e-5 to 5e-4 at its size)
    batch_size: int = 32  # or the number of examples, if fewer
    warmup_steps: int = 6  # linear warm-up, then cosine decay to a tenth
    weight_decay: float = 0.01


def subset(tensors: Sequence[Tensor], n: int, seed: int) -> tuple[Tensor, ...]:
    """``n`` rows of ``tensors`` drawn at random (seeded) without replacement."""
    total = tensors[0].shape[0]
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= total:
        raise ValueError(f"n must be an integer in [1, {total}], got {n!r}")
    rows = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:n]
    return tuple(t[rows] for t in tensors)


def finetune_bert(model: nn.Module, train: Sequence[Tensor], recipe: FinetuneRecipe,
                  seed: int = 0, callbacks: Sequence = ()) -> Trainer:
    """Train ``model`` (a classifier or a span extractor) on the tensors ``train`` for
    ``recipe.num_steps`` steps; the trainable parameters only. Returns the trainer."""
    loss_fn = (bert_classification_loss if isinstance(model, BERTClassifier)
               else bert_span_loss)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    warmup = min(recipe.warmup_steps, recipe.num_steps - 1)  # a very short run: less warm-up
    scheduler = warmup_cosine_schedule(optimizer, warmup, recipe.num_steps, min_ratio=0.1)
    loader = make_loader(train, min(recipe.batch_size, train[0].shape[0]), seed=seed)
    trainer = Trainer(model, loss_fn, loader, optimizer=optimizer, scheduler=scheduler,
                      callbacks=list(callbacks),
                      config=TrainerConfig(max_epochs=10**6, max_steps=recipe.num_steps,
                                           eval_every_epoch=False, seed=seed, progress=False))
    trainer.fit()
    return trainer


def transfer_run(config: BERTConfig, pretrained: dict, train: Sequence[Tensor],
                 test: Sequence[Tensor], recipe: FinetuneRecipe, head: str,
                 num_classes: int | None = None, max_answer_len: int = 8
                 ) -> Callable[[str, int, int], float]:
    """``run(arm, budget, seed)`` for :func:`~qkvcourse.experiments.sweep`: fine-tune the
    arm's model on ``budget`` training examples (:func:`subset`, the same for every arm
    at one seed) and return its test accuracy (``head="classifier"``) or exact match
    (``head="span"``, best span of at most ``max_answer_len`` tokens).

    Arms: see :data:`ARMS`.
    """
    def run(arm: str, budget: int, seed: int) -> float:
        if arm not in ARMS:
            raise ValueError(f"arm must be one of {ARMS}, got {arm!r}")
        model = bert_for_task(config, None if arm.startswith("scratch") else pretrained, head,
                              num_classes, freeze_encoder=arm == "frozen",
                              head_init="bert" if arm.endswith("BERT init") else "default",
                              seed=seed)
        finetune_bert(model, subset(train, budget, seed), recipe, seed)
        loader = make_loader(test, 256, shuffle=False)
        if head == "classifier":
            return evaluate_classifier(model, loader)
        return evaluate_spans(model, loader, max_answer_len).exact_match

    return run


def with_dropout(config: BERTConfig, dropout: float) -> BERTConfig:
    """A copy of ``config`` with another dropout (e.g. 0 for short fine-tuning runs)."""
    return dataclasses.replace(config, dropout=dropout)
