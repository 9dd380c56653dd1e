"""Writing checkpoints for other code: a Hugging Face directory, the authors' `.pth`.

A Hugging Face export must load in `transformers` exactly as `unc-nlp/lxmert-*` does:
`AutoConfig` / `LxmertForQuestionAnswering.from_pretrained(dir)` for the weights, with the
answer names as `id2label` / `label2id` (QA heads), and `AutoTokenizer.from_pretrained(dir)`
for the BERT word pieces (vocab.txt, tokenizer.json, tokenizer_config.json,
special_tokens_map.json). Without the tokenizer files transformers silently builds a
5-token vocabulary and maps every word to [UNK].
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping, Sequence

import torch

from lxmert.atomic import atomic_open, atomic_write_text
from lxmert.checkpoint.files import ANSWERS_NAME, CONFIG_NAME, WEIGHTS_NAME, pth_answers_path
from lxmert.checkpoint.layouts import ANSWER_WEIGHT_KEY, to_hf_state, to_original_state
from lxmert.config import LxmertConfig
from lxmert.errors import CheckpointError
from lxmert.text import LxmertTokenizer

__all__ = ["HF_CLASSES", "export_hf", "export_original"]

#: our classes with a `transformers` counterpart of the same name and key layout
HF_CLASSES = ("LxmertModel", "LxmertForPreTraining", "LxmertForQuestionAnswering")

_SPECIAL_TOKENS = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
                   "mask_token": "[MASK]"}


def _write_tokenizer(directory: Path, tokenizer: LxmertTokenizer) -> None:
    tokenizer.save_pretrained(directory)  # vocab.txt
    atomic_write_text(directory / "tokenizer.json", tokenizer.to_json())
    config = {"tokenizer_class": "LxmertTokenizer", "do_lower_case": True, "tokenize_chinese_chars": True,
              "strip_accents": None, "model_max_length": 512, **_SPECIAL_TOKENS}
    atomic_write_text(directory / "tokenizer_config.json", json.dumps(config, indent=2) + "\n")
    atomic_write_text(directory / "special_tokens_map.json", json.dumps(_SPECIAL_TOKENS, indent=2) + "\n")


def export_hf(directory: str | os.PathLike, canonical: Mapping[str, torch.Tensor], config: LxmertConfig,
              class_name: str, *, answers: Sequence[str] | None = None,
              tokenizer: LxmertTokenizer | None = None) -> Path:
    """A Hugging Face directory for a model of class `class_name` (see the module docstring).

    `tokenizer` defaults to the packaged BERT uncased vocabulary (the one LXMERT uses).
    """
    if class_name not in HF_CLASSES:
        raise CheckpointError(f"transformers has no counterpart for {class_name}; export the encoder "
                              f"(LxmertModel) instead")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = to_hf_state(canonical)
    if class_name == "LxmertModel":
        state = {k[len("lxmert."):]: v for k, v in state.items() if k.startswith("lxmert.")}
    from safetensors.torch import save as st_save

    data = st_save({k: v.detach().clone().contiguous().cpu() for k, v in state.items()}, metadata={"format": "pt"})
    with atomic_open(directory / WEIGHTS_NAME, "wb") as handle:
        handle.write(data)
    _write_tokenizer(directory, tokenizer or LxmertTokenizer.from_vocab())
    hf = config.to_hf_dict()
    hf["architectures"] = [class_name]
    if answers:
        if len(answers) != config.num_qa_labels:
            raise CheckpointError(f"{len(answers)} answers for a {config.num_qa_labels}-row answer head")
        hf["id2label"] = {str(i): a for i, a in enumerate(answers)}
        hf["label2id"] = {a: i for i, a in enumerate(answers)}
        atomic_write_text(directory / ANSWERS_NAME, json.dumps(list(answers), ensure_ascii=False) + "\n")
    atomic_write_text(directory / CONFIG_NAME, json.dumps(hf, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    return directory


def export_original(path: str | os.PathLike, canonical: Mapping[str, torch.Tensor], *,
                    answers: Sequence[str] | None = None) -> Path:
    """The authors' `.pth` layout (for their scripts), saved as a plain tensor dict, with
    the answer head's rows named in `NAME.answers.json` beside it (`answers`): the `.pth`
    has no place for them, and without them a head of a table other than the release's
    cannot be remapped when fine-tuning starts from the file."""
    path = Path(path)
    state = to_original_state(canonical)
    rows = canonical.get(ANSWER_WEIGHT_KEY)
    if answers and rows is not None and len(answers) != rows.shape[0]:
        raise CheckpointError(f"{len(answers)} answers for a {rows.shape[0]}-row answer head")
    with atomic_open(path, "wb") as handle:
        torch.save({k: v.contiguous().clone() for k, v in state.items()}, handle)
    sidecar = pth_answers_path(path)
    if answers and rows is not None:
        atomic_write_text(sidecar, json.dumps(list(answers), ensure_ascii=False) + "\n")
    elif sidecar.is_file():
        sidecar.unlink()  # a stale list of a former file of this name would name the wrong rows
    return path
