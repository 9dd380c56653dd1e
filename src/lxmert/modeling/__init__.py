"""The network and its heads: nothing here reads data files, tokenizes, or knows about tasks.

Importing this package registers every model class (`lxmert.modeling.registry`), so that
`LxmertPreTrainedModel.from_pretrained(dir)` can return the class a checkpoint records.
"""

from lxmert.modeling.base import LxmertPreTrainedModel, load_state
from lxmert.modeling.classification import CLASSIFICATION_KEY, LxmertForClassification, classification_loss
from lxmert.modeling.lxmert import LxmertEncoder, LxmertModel
from lxmert.modeling.matching import LxmertForImageTextMatching, LxmertForImageTextMatchingOutput
from lxmert.modeling.nlvr2 import LxmertForNLVR2
from lxmert.modeling.outputs import (
    LxmertForNLVR2Output,
    LxmertForPreTrainingOutput,
    LxmertForQuestionAnsweringOutput,
    LxmertModelOutput,
)
from lxmert.modeling.pretraining import LxmertForPreTraining
from lxmert.modeling.question_answering import LxmertForQuestionAnswering, qa_loss
from lxmert.modeling.registry import model_class, model_names, register_model

__all__ = [
    "LxmertPreTrainedModel", "LxmertEncoder", "LxmertModel", "LxmertForPreTraining", "LxmertForQuestionAnswering",
    "LxmertForNLVR2", "LxmertForClassification", "LxmertForImageTextMatching", "LxmertForImageTextMatchingOutput", "CLASSIFICATION_KEY", "classification_loss", "qa_loss",
    "LxmertModelOutput", "LxmertForPreTrainingOutput", "LxmertForQuestionAnsweringOutput", "LxmertForNLVR2Output",
    "load_state", "model_class", "model_names", "register_model",
]
