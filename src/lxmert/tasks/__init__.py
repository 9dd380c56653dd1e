"""One module per task: head + loss + how a batch maps to it. No task builds its own encoder."""

from lxmert.tasks.classification import LxmertForClassification
from lxmert.tasks.nlvr2 import LxmertForNLVR2
from lxmert.tasks.pretraining import LxmertForPreTraining
from lxmert.tasks.qa import LxmertForQuestionAnswering, qa_loss

__all__ = ["LxmertForPreTraining", "LxmertForQuestionAnswering", "LxmertForNLVR2", "LxmertForClassification",
           "qa_loss"]
