"""lxmert: LXMERT (Tan & Bansal, 2019), faithful to the release, fast, and complete."""

from lxmert.config import LxmertConfig
from lxmert.modeling import LxmertModel, LxmertPreTrainedModel
from lxmert.tasks import LxmertForNLVR2, LxmertForPreTraining, LxmertForQuestionAnswering
from lxmert.text import AnswerTable, LxmertTokenizer, normalize_answer

__version__ = "0.1.0"

__all__ = [
    "LxmertConfig", "LxmertModel", "LxmertPreTrainedModel", "LxmertForPreTraining",
    "LxmertForQuestionAnswering", "LxmertForNLVR2", "LxmertTokenizer", "AnswerTable",
    "normalize_answer", "__version__",
]
