"""State-dict layouts: the authors' `.pth` files, Hugging Face, ours, and the canonical tree.

Every layout is first brought to ONE canonical state dict: Hugging Face key names
(`lxmert.*`, `cls.*`, `obj_predict_head.*`, `answer_head.*`, NLVR2 `logit_fc.*`,
`classifier.*`) with the attention projections fused (`...qkv.weight` = cat(query, key,
value)). Our models use exactly that tree, so loading is a plain `load_state_dict`;
exporting only splits `qkv` again and renames prefixes. This module is the only place
that knows the foreign key names. It knows no model class: heads are named by key prefix.

Layouts recognised from the keys:
- `lxmert`: ours (fused `qkv`, `lxmert.*` prefix);
- `hf`: Hugging Face (`lxmert.*`, separate query/key/value);
- `original-pretrain`: the authors' pre-training `.pth` (`bert.*`, `cls.*`, ..., optionally
  under `module.`);
- `original-finetuned`: the authors' fine-tuned `.pth` (`lxrt_encoder.model.bert.*` + `logit_fc.*`);
- `bare-encoder`: an `LxmertModel` state dict (`embeddings.*`, `encoder.*`, `pooler.*`).
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import torch

from lxmert.config import LxmertConfig
from lxmert.errors import CheckpointError

__all__ = [
    "LAYOUTS", "TIED_KEY", "WORD_EMB_KEY", "ANSWER_WEIGHT_KEY", "ANSWER_BIAS_KEY", "HEAD_PREFIXES",
    "detect_layout", "fuse_qkv", "split_qkv", "canonicalize", "to_hf_state", "to_original_state",
    "encoder_keys", "head_names", "infer_class_name", "infer_config",
]

LAYOUTS = ("lxmert", "hf", "original-pretrain", "original-finetuned", "bare-encoder")
TIED_KEY = "cls.predictions.decoder.weight"
WORD_EMB_KEY = "lxmert.embeddings.word_embeddings.weight"
ANSWER_WEIGHT_KEY = "answer_head.logit_fc.3.weight"
ANSWER_BIAS_KEY = "answer_head.logit_fc.3.bias"
#: top-level prefixes of the task heads (everything else under `lxmert.` is the encoder)
HEAD_PREFIXES = ("cls.", "obj_predict_head.", "answer_head.", "logit_fc.", "classifier.")

_QKV = re.compile(r"^(.*)\.(query|key|value)\.(weight|bias)$")
# a buffer some transformers versions saved; not a parameter of either implementation
_HF_BUFFERS = ("lxmert.embeddings.position_ids",)


def _strip_module(keys: Sequence[str]) -> list[str]:
    return [k[len("module."):] if k.startswith("module.") else k for k in keys]


def detect_layout(keys: Sequence[str]) -> str:
    """One of `LAYOUTS`, from the key names alone."""
    keys = _strip_module(keys)
    if any(k.startswith("lxrt_encoder.model.bert.") for k in keys):
        return "original-finetuned"
    if any(k.startswith("bert.") for k in keys):
        return "original-pretrain"
    if any(k.startswith("lxmert.") for k in keys):
        return "lxmert" if any(".qkv." in k for k in keys) else "hf"
    if any(k.startswith(("embeddings.", "encoder.")) for k in keys):
        return "bare-encoder"
    raise CheckpointError(f"unrecognised checkpoint layout (first keys: {list(keys)[:5]})")


def fuse_qkv(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`X.query/key/value.{weight,bias}` -> `X.qkv.{weight,bias}` (rows q, k, v)."""
    out: dict[str, torch.Tensor] = {}
    groups: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        match = _QKV.match(key)
        if match:
            groups.setdefault((match.group(1), match.group(3)), {})[match.group(2)] = value
        else:
            out[key] = value
    for (stem, kind), parts in groups.items():
        missing = {"query", "key", "value"} - parts.keys()
        if missing:
            raise CheckpointError(f"{stem}: {kind} of {sorted(missing)} missing (have {sorted(parts)})")
        out[f"{stem}.qkv.{kind}"] = torch.cat([parts["query"], parts["key"], parts["value"]], dim=0)
    return out


def split_qkv(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of `fuse_qkv`, for export to the released / Hugging Face layout."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if ".qkv." in key:
            stem, kind = key.rsplit(".qkv.", 1)
            for name, part in zip(("query", "key", "value"), value.chunk(3, dim=0)):
                out[f"{stem}.{name}.{kind}"] = part.clone()
        else:
            out[key] = value
    return out


def canonicalize(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Any known layout -> canonical keys (HF names, fused QKV).

    A fine-tuned `.pth` stores its task head as bare `logit_fc.*` for both QA and NLVR2;
    which one it is follows from the head's input size: 2d (two pooled vectors) is NLVR2,
    d is the QA answer head.
    """
    layout = detect_layout(list(state))
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("module."):
            key = key[len("module."):]
        if layout == "original-finetuned":
            if key.startswith("lxrt_encoder.model.bert."):
                key = "lxmert." + key[len("lxrt_encoder.model.bert."):]
            elif key.startswith("lxrt_encoder.model."):
                key = key[len("lxrt_encoder.model."):]
        elif layout == "original-pretrain" and key.startswith("bert."):
            key = "lxmert." + key[len("bert."):]
        elif layout == "bare-encoder" and not key.startswith(HEAD_PREFIXES):
            key = "lxmert." + key
        out[key] = value
    if "logit_fc.0.weight" in out and WORD_EMB_KEY in out:
        if out["logit_fc.0.weight"].shape[1] != 2 * out[WORD_EMB_KEY].shape[1]:
            out = {("answer_head." + k if k.startswith("logit_fc.") else k): v for k, v in out.items()}
    for key in _HF_BUFFERS:
        out.pop(key, None)
    out.pop(TIED_KEY, None)  # tied to the word embeddings: never stored twice in canonical form
    return fuse_qkv(out)


def to_hf_state(canonical: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Canonical -> Hugging Face keys (split QKV; the tied decoder weight written out)."""
    state = split_qkv(canonical)
    if any(k.startswith("cls.") for k in state) and TIED_KEY not in state:
        state[TIED_KEY] = state[WORD_EMB_KEY]
    return {k: v.contiguous() for k, v in state.items()}


def to_original_state(canonical: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Canonical -> the authors' layout (`bert.*` pre-training or `lxrt_encoder.model.bert.*`)."""
    state = split_qkv(canonical)
    finetuned = not any(k.startswith("cls.") for k in state)
    out = {}
    for key, value in state.items():
        if key.startswith("lxmert."):
            key = ("lxrt_encoder.model.bert." if finetuned else "bert.") + key[len("lxmert."):]
        elif finetuned and key.startswith("answer_head.logit_fc."):
            key = key[len("answer_head."):]
        out[key] = value
    if not finetuned and TIED_KEY not in out:
        out[TIED_KEY] = out["bert.embeddings.word_embeddings.weight"]
    return out


def encoder_keys(state: Mapping[str, Any]) -> list[str]:
    """The keys of the shared encoder (everything that is not a task head)."""
    return [k for k in state if not k.startswith(HEAD_PREFIXES)]


def head_names(state: Mapping[str, Any]) -> list[str]:
    """The task heads a canonical state holds, by top-level prefix (e.g. ['answer_head'])."""
    return sorted({k.split(".")[0] for k in state if k.startswith(HEAD_PREFIXES)})


def infer_class_name(state: Mapping[str, Any]) -> str:
    """The model class whose heads a canonical state holds, for checkpoints that do not
    name their class (the authors' `.pth` files, directories written before the class was
    recorded). A name, not a class: the model registry turns it into one."""
    heads = set(head_names(state))
    if "classifier" in heads:
        return "LxmertForClassification"
    if "cls" in heads:
        # the matching head alone is the image-text matching model (retrieval)
        only_matching = all(k.startswith("cls.seq_relationship.") for k in state if k.startswith("cls."))
        if only_matching and heads == {"cls"}:
            return "LxmertForImageTextMatching"
        return "LxmertForPreTraining"
    if "answer_head" in heads:
        return "LxmertForQuestionAnswering"
    if "logit_fc" in heads:
        return "LxmertForNLVR2"
    return "LxmertModel"


def _layer_count(state: Mapping[str, Any], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    idx = {int(m.group(1)) for k in state if (m := pattern.match(k))}
    return max(idx) + 1 if idx else 0


def infer_config(canonical: Mapping[str, torch.Tensor], source: str, **overrides: Any) -> LxmertConfig:
    """A config from tensor shapes, for `.pth` files that ship without one.

    The head count cannot be read from shapes. The release's models are 768 wide with 12
    heads, so that is assumed for width 768; any other width needs `num_attention_heads`
    given explicitly (a guess would load without error and compute different numbers).
    """
    try:
        vocab, hidden = canonical[WORD_EMB_KEY].shape
    except KeyError:
        raise CheckpointError(f"{source}: missing {WORD_EMB_KEY}: not an LXMERT checkpoint") from None
    if "num_attention_heads" not in overrides and hidden != 768:
        raise CheckpointError(
            f"{source}: no config.json, and the head count cannot be read from the weights of a "
            f"{hidden}-wide model; give it (`lxmert convert --num-attention-heads N`, or "
            f"from_pretrained(..., num_attention_heads=N))")
    try:
        values: dict[str, Any] = {
            "vocab_size": vocab,
            "hidden_size": hidden,
            "num_attention_heads": 12,
            "max_position_embeddings": canonical["lxmert.embeddings.position_embeddings.weight"].shape[0],
            "type_vocab_size": canonical["lxmert.embeddings.token_type_embeddings.weight"].shape[0],
            "l_layers": _layer_count(canonical, "lxmert.encoder.layer."),
            "r_layers": _layer_count(canonical, "lxmert.encoder.r_layers."),
            "x_layers": _layer_count(canonical, "lxmert.encoder.x_layers."),
            "visual_feat_dim": canonical["lxmert.encoder.visn_fc.visn_fc.weight"].shape[1],
            "visual_pos_dim": canonical["lxmert.encoder.visn_fc.box_fc.weight"].shape[1],
        }
    except KeyError as err:
        raise CheckpointError(f"{source}: missing {err.args[0]}: not a complete LXMERT checkpoint") from None
    inter = [v for k, v in canonical.items() if k.endswith("intermediate.dense.weight")]
    if inter:
        values["intermediate_size"] = inter[0].shape[0]
    heads = {k.split(".")[2]: v.shape[0] for k, v in canonical.items()
             if k.startswith("obj_predict_head.decoder_dict.") and k.endswith(".weight")}
    values["task_obj_predict"] = bool(heads)
    if heads:
        values["visual_obj_loss"] = "obj" in heads
        values["visual_attr_loss"] = "attr" in heads
        values["visual_feat_loss"] = "feat" in heads
        values["num_object_labels"] = heads.get("obj", 1600)
        values["num_attr_labels"] = heads.get("attr", 400)
    if ANSWER_WEIGHT_KEY in canonical:
        values["num_qa_labels"] = canonical[ANSWER_WEIGHT_KEY].shape[0]
    values["task_qa"] = ANSWER_WEIGHT_KEY in canonical
    values.update(overrides)
    try:
        return LxmertConfig(**values)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{source}: {err}") from None
