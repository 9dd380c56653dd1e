"""GQA (Hudson & Manning 2019) as the release ships it: `DATA/gqa/<split>.json` entries
`{question_id: str, img_id, sent, label: {answer: 1.0}}`.

The release's BCE on {answer: 1.0} over the 1842-answer table (or cross-entropy with
`data.qa_target = "index"`); exact-match accuracy and the challenge's breakdowns
(`lxmert.evaluation.gqa`); test-server file `[{"questionId": str, "prediction": str}]`.
"""

from __future__ import annotations

from lxmert.data import GQADataset
from lxmert.tasks import register_task
from lxmert.tasks.vqa import VQATask

__all__ = ["GQATask"]


@register_task("gqa")
class GQATask(VQATask):
    """GQA: the VQA machinery with GQA's files, answers and metric."""

    folder = "gqa"
    default_recipe = "gqa"
    answer_files = ("gqa/trainval_label2ans.json",)
    packaged_answers = "gqa"
    dataset_class = GQADataset
