"""Official metrics and test-server files for every task LXMERT is fine-tuned on.

Per task, a full evaluator returning fractions plus the official printout (percent):
:func:`evaluate_vqa`, :func:`evaluate_gqa`, :func:`evaluate_nlvr2`, :func:`evaluate_aokvqa`,
:func:`evaluate_vizwiz`, :func:`evaluate_classification`; writers and readers for the
prediction files the leaderboards take (:mod:`lxmert.evaluation.submissions`); and the
registry (:mod:`lxmert.evaluation.registry`): :func:`get_metric`, that the training loop
uses, and :func:`score`, which takes file paths (what ``lxmert score`` runs)::

    metric = get_metric("vqa")                      # get_metric("vqa", rules="legacy")
    scores = metric(predictions, dataset_annotations)   # {"accuracy": 0.69, ...}
    best = scores[metric.primary]

docs/evaluation.md says which official tool and version each figure matches.
"""

from __future__ import annotations

from .aokvqa import da_accuracy, evaluate_aokvqa, map_to_choice, select_choice
from .classification import (
    accuracy,
    average_precision,
    evaluate_classification,
    f1_scores,
    roc_auc,
    subset_accuracy,
)
from .gqa import evaluate_gqa
from .nlvr2 import evaluate_nlvr2, read_nlvr2_categories
from .registry import METRICS, Metric, get_metric, load_annotations, score
from .retrieval import RECALL_AT, first_hits, recall_metrics
from .submissions import (
    read_gqa_attentions,
    read_nlvr2_predictions,
    read_predictions,
    read_vizwiz_predictions,
    write_aokvqa_submission,
    write_classification_predictions,
    write_gqa_submission,
    write_nlvr2_predictions,
    write_predictions,
    write_vizwiz_submission,
    write_vqa_submission,
)
from .vizwiz import VIZWIZ_CONTRACTIONS, evaluate_vizwiz, normalize_vizwiz_answer
from .vqa import (
    VQA_RULES,
    evaluate_vqa,
    label_score,
    normalize_vqa_answer,
    process_digit_article,
    process_punctuation,
    soft_scores,
    vqa_accuracy,
    vqa_soft_score,
)

__all__ = [
    "METRICS",
    "Metric",
    "VIZWIZ_CONTRACTIONS",
    "VQA_RULES",
    "accuracy",
    "average_precision",
    "da_accuracy",
    "evaluate_aokvqa",
    "evaluate_classification",
    "evaluate_gqa",
    "evaluate_nlvr2",
    "evaluate_vizwiz",
    "evaluate_vqa",
    "f1_scores",
    "get_metric",
    "label_score",
    "load_annotations",
    "map_to_choice",
    "normalize_vizwiz_answer",
    "normalize_vqa_answer",
    "process_digit_article",
    "process_punctuation",
    "read_gqa_attentions",
    "read_nlvr2_categories",
    "read_nlvr2_predictions",
    "read_predictions",
    "read_vizwiz_predictions",
    "roc_auc",
    "score",
    "RECALL_AT",
    "first_hits",
    "recall_metrics",
    "select_choice",
    "soft_scores",
    "subset_accuracy",
    "vqa_accuracy",
    "vqa_soft_score",
    "write_aokvqa_submission",
    "write_classification_predictions",
    "write_gqa_submission",
    "write_nlvr2_predictions",
    "write_predictions",
    "write_vizwiz_submission",
    "write_vqa_submission",
]
