"""The network only: nothing here reads files, tokenizes, or knows about tasks."""

from lxmert.modeling.base import LxmertPreTrainedModel
from lxmert.modeling.lxmert import LxmertEncoder, LxmertModel
from lxmert.modeling.outputs import (
    LxmertForNLVR2Output,
    LxmertForPreTrainingOutput,
    LxmertForQuestionAnsweringOutput,
    LxmertModelOutput,
)

__all__ = [
    "LxmertPreTrainedModel", "LxmertEncoder", "LxmertModel", "LxmertModelOutput",
    "LxmertForPreTrainingOutput", "LxmertForQuestionAnsweringOutput", "LxmertForNLVR2Output",
]
