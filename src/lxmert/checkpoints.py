"""Checkpoint I/O: our safetensors directories, the authors' `.pth` files, Hugging Face.

Every layout is first brought to ONE canonical state dict: Hugging Face key names
(`lxmert.*`, `cls.*`, `obj_predict_head.*`, `answer_head.*`, NLVR2 `logit_fc.*`) with the
attention projections fused (`...qkv.weight` = cat(query, key, value)). Our models use
exactly that tree, so loading is a plain `load_state_dict`; exporting to Hugging Face only
splits `qkv` again. This module is the only place that knows about foreign layouts.

Layouts recognised from the keys:
- ours / Hugging Face directory: `config.json` + `model.safetensors` or `pytorch_model.bin`;
- the authors' pre-training `.pth` (`module.bert.*`, `module.cls.*`, ... or without `module.`);
- the authors' fine-tuned `.pth` (`lxrt_encoder.model.bert.*` + `logit_fc.*`);
- a bare `LxmertModel` state dict (`embeddings.*`, `encoder.*`, `pooler.*`).
Pickled files are read with `torch.load(weights_only=True)`: a checkpoint never runs code.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Sequence

import torch

from lxmert.config import CONFIG_NAME, LxmertConfig
from lxmert.text import AnswerTable, normalize_answer
from lxmert.utils import atomic_open, atomic_write_text

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
HF_BIN_NAME = "pytorch_model.bin"
ANSWERS_NAME = "answers.json"
TIED_KEY = "cls.predictions.decoder.weight"
WORD_EMB_KEY = "lxmert.embeddings.word_embeddings.weight"
HEAD_PREFIXES = ("cls.", "obj_predict_head.", "answer_head.", "logit_fc.", "classifier.")

_QKV = re.compile(r"^(.*)\.(query|key|value)\.(weight|bias)$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model (names keys and shapes)."""


# ---------------------------------------------------------------------------------------
# Reading raw state dicts


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A training run's `last` marker (or the run directory holding one and no weights)
    names its newest complete checkpoint: follow it, so `--init runs/x/last` and
    `from_pretrained("runs/x")` mean that checkpoint. Other paths are returned as is."""
    from lxmert.quantize import QUANTIZED_WEIGHTS_NAME

    path = Path(path)
    marker = None
    if path.is_file() and path.name == "last" and path.stat().st_size < 4096:
        marker = path
    elif path.is_dir() and (path / "last").is_file() and not any(
            (path / n).is_file() for n in (WEIGHTS_NAME, HF_BIN_NAME, QUANTIZED_WEIGHTS_NAME)):
        marker = path / "last"
    if marker is None:
        return path
    target = marker.read_text().strip()
    if not target:
        raise CheckpointError(f"{marker}: empty; the run has no complete checkpoint yet")
    resolved = (marker.parent / target) if not Path(target).is_absolute() else Path(target)
    if not resolved.is_dir():
        raise CheckpointError(f"{marker} names {target}, which does not exist (run directory moved?)")
    return resolved


def read_state_dict(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Tensors of a weights file (`.safetensors`, `.pth`, `.bin`) or a checkpoint directory."""
    path = resolve_checkpoint(path)
    if path.is_dir():
        for name in (WEIGHTS_NAME, HF_BIN_NAME):
            if (path / name).is_file():
                return read_state_dict(path / name, map_location)
        pths = sorted(path.glob("*.pth"))
        if len(pths) == 1:
            return read_state_dict(pths[0], map_location)
        raise FileNotFoundError(f"{path}: no {WEIGHTS_NAME}, {HF_BIN_NAME} or single .pth file")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device=str(map_location))
        except (SafetensorError, OSError, RuntimeError) as err:
            raise CheckpointError(f"{path}: not a readable safetensors file (truncated or corrupt?): {err}") from err
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # pickle.UnpicklingError, RuntimeError, EOFError ...
        raise CheckpointError(
            f"{path}: refused or unreadable. Checkpoints are loaded with weights_only=True, so a "
            f"pickle that holds anything but tensors (e.g. code) is rejected: {err}") from err
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a state dict of tensors")
    return state


# ---------------------------------------------------------------------------------------
# Layouts -> canonical


def detect_layout(keys: Sequence[str]) -> str:
    """'original-finetuned', 'original-pretrain', 'hf' (also ours), or 'bare-encoder'."""
    keys = [k[len("module."):] if k.startswith("module.") else k for k in keys]
    if any(k.startswith("lxrt_encoder.model.bert.") for k in keys):
        return "original-finetuned"
    if any(k.startswith("bert.") for k in keys):
        return "original-pretrain"
    if any(k.startswith("lxmert.") for k in keys):
        return "hf"
    if any(k.startswith(("embeddings.", "encoder.")) for k in keys):
        return "bare-encoder"
    raise CheckpointError(f"unrecognised checkpoint layout (first keys: {list(keys)[:5]})")


def fuse_qkv(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
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


def split_qkv(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
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


def canonicalize(state: dict[str, torch.Tensor], task_head: str | None = None) -> dict[str, torch.Tensor]:
    """Any known layout -> canonical keys (HF names, fused QKV).

    `task_head` says where a fine-tuned file's bare `logit_fc.*` belongs: 'qa' ->
    `answer_head.logit_fc.*`; 'nlvr2' -> `logit_fc.*`; None -> decided by its input size
    (2d for NLVR2, d for QA).
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
    if any(k.startswith("logit_fc.") for k in out):
        hidden = out[WORD_EMB_KEY].shape[1] if WORD_EMB_KEY in out else None
        in_dim = out["logit_fc.0.weight"].shape[1] if "logit_fc.0.weight" in out else None
        head = task_head or ("nlvr2" if hidden is not None and in_dim == 2 * hidden else "qa")
        if head == "qa":
            out = {("answer_head." + k if k.startswith("logit_fc.") else k): v for k, v in out.items()}
    out.pop("lxmert.embeddings.position_ids", None)  # a buffer some HF versions saved
    return fuse_qkv(out)


def to_hf_state(canonical: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Canonical -> Hugging Face keys (split QKV; the tied decoder weight written out)."""
    state = split_qkv(canonical)
    if any(k.startswith("cls.") for k in state) and TIED_KEY not in state:
        state[TIED_KEY] = state[WORD_EMB_KEY]
    return {k: v.contiguous() for k, v in state.items()}


def to_original_state(canonical: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
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


# ---------------------------------------------------------------------------------------
# Configs


def infer_config(canonical: dict[str, torch.Tensor], **overrides: Any) -> LxmertConfig:
    """A config from tensor shapes, for `.pth` files that ship without one.

    Head count cannot be read from shapes; it defaults to 12 (hidden 768) or hidden/64.
    """
    def count(prefix: str) -> int:
        idx = {int(m.group(1)) for k in canonical if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
        return max(idx) + 1 if idx else 0

    try:
        vocab, hidden = canonical[WORD_EMB_KEY].shape
    except KeyError:
        raise CheckpointError(f"missing {WORD_EMB_KEY}: not an LXMERT checkpoint") from None
    values: dict[str, Any] = {
        "vocab_size": vocab,
        "hidden_size": hidden,
        "num_attention_heads": max(1, hidden // 64),
        "max_position_embeddings": canonical["lxmert.embeddings.position_embeddings.weight"].shape[0],
        "type_vocab_size": canonical["lxmert.embeddings.token_type_embeddings.weight"].shape[0],
        "l_layers": count("lxmert.encoder.layer."),
        "r_layers": count("lxmert.encoder.r_layers."),
        "x_layers": count("lxmert.encoder.x_layers."),
        "visual_feat_dim": canonical["lxmert.encoder.visn_fc.visn_fc.weight"].shape[1],
        "visual_pos_dim": canonical["lxmert.encoder.visn_fc.box_fc.weight"].shape[1],
    }
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
    if "answer_head.logit_fc.3.weight" in canonical:
        values["num_qa_labels"] = canonical["answer_head.logit_fc.3.weight"].shape[0]
    values["task_qa"] = "answer_head.logit_fc.3.weight" in canonical
    if hidden % values["num_attention_heads"]:
        values["num_attention_heads"] = 1
    values.update(overrides)
    return LxmertConfig(**values)


# ---------------------------------------------------------------------------------------
# Loading into a model


def load_canonical(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                   task_head: str | None = None, **config_overrides: Any
                   ) -> tuple[dict[str, torch.Tensor], LxmertConfig, list[str] | None]:
    """(canonical state, config, answer list or None) of any supported checkpoint."""
    path = resolve_checkpoint(path)
    state = canonicalize(read_state_dict(path, map_location), task_head)
    directory = path if path.is_dir() else path.parent
    config_file = directory / CONFIG_NAME
    if config_file.is_file() and (path.is_dir() or path.suffix in (".safetensors", ".bin")):
        config = LxmertConfig.from_json_file(config_file, **config_overrides)
    else:
        config = infer_config(state, **config_overrides)
    answers = None
    if (directory / ANSWERS_NAME).is_file() and (path.is_dir() or path.suffix != ".pth"):
        answers = AnswerTable.from_file(directory / ANSWERS_NAME).answers
    return state, config, answers


_RELEASE_TABLES = {9500: "pretrain", 3129: "vqa", 1842: "gqa"}


def _default_answers(rows: int) -> list[str] | None:
    """The release's tables are recognised by size (9500 pre-training, 3129 VQA, 1842 GQA)."""
    name = _RELEASE_TABLES.get(rows)
    return AnswerTable.from_name(name).answers if name else None


def remap_answer_head(state: dict[str, torch.Tensor], source: Sequence[str], target: Sequence[str]
                      ) -> tuple[dict[str, torch.Tensor], int]:
    """Rebuild the last answer layer row by row for a new answer list, as the release did.

    Each target answer is normalised and looked up in the source list; found rows are
    copied, unknown answers get zero weight and bias. Returns (state, rows copied).
    """
    w_key, b_key = "answer_head.logit_fc.3.weight", "answer_head.logit_fc.3.bias"
    weight, bias = state[w_key], state[b_key]
    if weight.shape[0] != len(source):
        raise CheckpointError(f"answer head has {weight.shape[0]} rows but the source answer list "
                              f"has {len(source)}")
    index = {ans: i for i, ans in enumerate(source)}
    new_w = weight.new_zeros(len(target), weight.shape[1])
    new_b = bias.new_zeros(len(target))
    copied = 0
    for row, ans in enumerate(target):
        src = index.get(normalize_answer(ans), index.get(ans))
        if src is not None:
            new_w[row], new_b[row] = weight[src], bias[src]
            copied += 1
    state = dict(state)
    state[w_key], state[b_key] = new_w, new_b
    return state, copied


def _quantized_directory(path: str | os.PathLike) -> Path | None:
    """`path` if it is an int8 directory written by `lxmert quantize` (no fp32 weights in it)."""
    from lxmert.quantize import QUANTIZED_WEIGHTS_NAME

    path = resolve_checkpoint(path)
    if path.is_dir() and (path / QUANTIZED_WEIGHTS_NAME).is_file() and not (path / WEIGHTS_NAME).is_file():
        return path
    return None


def _load_quantized_as(cls, directory: Path, config_overrides: dict[str, Any]):
    """An int8 directory loads through `lxmert.quantize.load_quantized`: its tensors are the
    quantised ones, so there is nothing to remap or override; the class must match."""
    from lxmert.quantize import load_quantized

    if config_overrides:
        raise CheckpointError(f"{directory}: an int8 checkpoint loads as saved; config overrides "
                              f"{sorted(config_overrides)} cannot be applied to it")
    model = load_quantized(directory)
    if cls is not None and not isinstance(model, cls):
        raise CheckpointError(f"{directory}: holds an int8 {type(model).__name__}, not a {cls.__name__}; "
                              f"load it with {type(model).__name__}.from_pretrained or lxmert.quantize.load_quantized")
    return model


def load_pretrained(cls, path: str | os.PathLike, *, strict: bool = True, answers: Any = None,
                    map_location: str | torch.device = "cpu", **config_overrides: Any):
    """Implementation of `Model.from_pretrained` (see `LxmertPreTrainedModel`)."""
    from lxmert.modeling.lxmert import LxmertModel
    from lxmert.tasks.nlvr2 import LxmertForNLVR2
    from lxmert.tasks.pretraining import LxmertForPreTraining
    from lxmert.tasks.qa import LxmertForQuestionAnswering

    quantized = _quantized_directory(path)
    if quantized is not None:
        return _load_quantized_as(cls, quantized, config_overrides)
    task_head = "nlvr2" if issubclass(cls, LxmertForNLVR2) else "qa"
    state, config, source_answers = load_canonical(path, map_location, task_head, **config_overrides)
    target_answers = list(answers.answers if isinstance(answers, AnswerTable) else answers) \
        if answers is not None else None

    if issubclass(cls, LxmertModel):
        state = {k[len("lxmert."):]: v for k, v in state.items() if k.startswith("lxmert.")}
        model = cls(config)
    else:
        if "answer_head.logit_fc.3.weight" in state and issubclass(cls, (LxmertForQuestionAnswering,
                                                                         LxmertForPreTraining)):
            rows = state["answer_head.logit_fc.3.weight"].shape[0]
            if target_answers is not None:
                source = source_answers or _default_answers(rows)
                if source is None:
                    raise CheckpointError(
                        f"{path}: cannot remap a {rows}-answer head: the checkpoint names no answers "
                        f"({ANSWERS_NAME}) and {rows} is not a released table size")
                if list(source) != target_answers:
                    state, copied = remap_answer_head(state, source, target_answers)
                    logger.info("answer head remapped: %d of %d answers found in the checkpoint's %d",
                                copied, len(target_answers), len(source))
            elif "num_qa_labels" not in config_overrides:
                config.num_qa_labels = rows
        if target_answers is not None:
            config.num_qa_labels = len(target_answers)
        if issubclass(cls, LxmertForQuestionAnswering):
            known = source_answers or _default_answers(config.num_qa_labels)
            model = cls(config, answers=target_answers or (
                known if known and len(known) == config.num_qa_labels else None))
        else:
            model = cls(config)
    _load_into(model, state, path, strict)
    model.eval()
    return model


def _load_into(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Any, strict: bool) -> None:
    """Load, ignoring surplus heads; encoder keys must match; fresh task heads are allowed."""
    own = model.state_dict()
    tied = {TIED_KEY}
    surplus = [k for k in state if k not in own]
    mismatched = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in state if k in own and state[k].shape != own[k].shape]
    if mismatched:
        raise CheckpointError(f"{path}: shape mismatch for {len(mismatched)} keys:\n  " + "\n  ".join(mismatched))
    missing = [k for k in own if k not in state and k not in tied]
    encoder_missing = [k for k in missing if not k.startswith(HEAD_PREFIXES)]
    if encoder_missing and strict:
        raise CheckpointError(f"{path}: {len(encoder_missing)} encoder keys missing, e.g. {encoder_missing[:5]}")
    if missing:
        logger.info("%s: %d keys not in the checkpoint keep their fresh init (new heads): %s",
                    path, len(missing), sorted({k.split('.')[0] for k in missing}))
    if surplus:
        logger.info("%s: ignoring %d checkpoint keys this model has no use for (%s)", path, len(surplus),
                    sorted({k.split('.')[0] for k in surplus}))
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    if hasattr(model, "tie_weights"):
        model.tie_weights()


# ---------------------------------------------------------------------------------------
# Saving


def canonical_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's state in canonical keys (what our directories store), tied key dropped."""
    from lxmert.modeling.lxmert import LxmertModel

    state = {k: v.detach() for k, v in model.state_dict().items()}
    if isinstance(model, LxmertModel):
        state = {"lxmert." + k: v for k, v in state.items()}
    state.pop(TIED_KEY, None)
    return state


def _save_safetensors(state: dict[str, torch.Tensor], target: Path, metadata: dict[str, str]) -> None:
    from safetensors.torch import save as st_save

    data = st_save({k: v.contiguous().cpu() for k, v in state.items()}, metadata=metadata)
    with atomic_open(target, "wb") as handle:
        handle.write(data)


def save_pretrained(model: torch.nn.Module, directory: str | os.PathLike) -> Path:
    """Write our directory format: config.json, model.safetensors, answers.json (QA).

    Weights are written first and config last, each atomically, so a directory with a
    config always has complete weights beside it.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = canonical_state(model)
    _save_safetensors(state, directory / WEIGHTS_NAME,
                      {"format": "pt", "lxmert_class": type(model).__name__})
    answers = getattr(model, "answers", None)
    if answers:
        atomic_write_text(directory / ANSWERS_NAME, json.dumps(list(answers), ensure_ascii=False) + "\n")
    model.config.save_pretrained(directory)
    return directory


def model_class_for(state: dict[str, torch.Tensor]):
    """The model class whose heads a canonical state holds."""
    from lxmert.modeling.lxmert import LxmertModel
    from lxmert.tasks.classification import LxmertForClassification
    from lxmert.tasks.nlvr2 import LxmertForNLVR2
    from lxmert.tasks.pretraining import LxmertForPreTraining
    from lxmert.tasks.qa import LxmertForQuestionAnswering

    if any(k.startswith("classifier.") for k in state):
        return LxmertForClassification
    if any(k.startswith("cls.") for k in state):
        return LxmertForPreTraining
    if any(k.startswith("answer_head.") for k in state):
        return LxmertForQuestionAnswering
    if any(k.startswith("logit_fc.") for k in state):
        return LxmertForNLVR2
    return LxmertModel


def load_any(path: str | os.PathLike, map_location: str | torch.device = "cpu", **config_overrides: Any):
    """Load whatever model a checkpoint holds (class chosen from its heads)."""
    quantized = _quantized_directory(path)
    if quantized is not None:
        return _load_quantized_as(None, quantized, config_overrides)
    state, _, _ = load_canonical(path, map_location, **config_overrides)
    return model_class_for(state).from_pretrained(path, map_location=map_location, **config_overrides)


_HF_ARCH = {"LxmertForPreTraining": "LxmertForPreTraining",
            "LxmertForQuestionAnswering": "LxmertForQuestionAnswering",
            "LxmertModel": "LxmertModel"}


def export_hf(model: torch.nn.Module, directory: str | os.PathLike) -> Path:
    """A Hugging Face directory that `transformers.<Class>.from_pretrained` loads cleanly."""
    name = type(model).__name__
    if name not in _HF_ARCH:
        raise CheckpointError(f"transformers has no counterpart for {name}; export the encoder "
                              f"(model.lxmert) instead")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = to_hf_state(canonical_state(model))
    if name == "LxmertModel":
        state = {k[len("lxmert."):]: v for k, v in state.items()}
    _save_safetensors({k: v.clone() for k, v in state.items()}, directory / WEIGHTS_NAME, {"format": "pt"})
    hf = model.config.to_hf_dict()
    hf["architectures"] = [_HF_ARCH[name]]
    answers = getattr(model, "answers", None)
    if answers:
        atomic_write_text(directory / ANSWERS_NAME, json.dumps(list(answers), ensure_ascii=False) + "\n")
    atomic_write_text(directory / CONFIG_NAME, json.dumps(hf, indent=2, sort_keys=True) + "\n")
    return directory


def export_original(model: torch.nn.Module, path: str | os.PathLike) -> Path:
    """The authors' `.pth` layout (for their scripts), saved as a plain tensor dict."""
    path = Path(path)
    state = to_original_state(canonical_state(model))
    with atomic_open(path, "wb") as handle:
        torch.save({k: v.contiguous().clone() for k, v in state.items()}, handle)
    return path


def convert(src: str | os.PathLike, dst: str | os.PathLike, to: str = "lxmert",
            map_location: str = "cpu", **config_overrides: Any) -> Path:
    """`lxmert convert`: any supported checkpoint -> ours ('lxmert'), 'hf' or 'original'."""
    model = load_any(src, map_location, **config_overrides)
    if to == "lxmert":
        return save_pretrained(model, dst)
    if to == "hf":
        return export_hf(model, dst)
    if to == "original":
        return export_original(model, dst)
    raise ValueError(f"unknown target format {to!r} (lxmert, hf, original)")


def describe(path: str | os.PathLike) -> dict[str, Any]:
    """What `lxmert inspect` prints: layout, class, config, parameter counts per part."""
    raw = read_state_dict(path)
    layout = detect_layout(list(raw))
    state, config, answers = load_canonical(path)
    parts: dict[str, int] = {}
    for key, value in state.items():
        part = key.split(".")[0] if not key.startswith("lxmert.") else "lxmert." + key.split(".")[1]
        parts[part] = parts.get(part, 0) + value.numel()
    return {
        "path": str(path),
        "layout": layout,
        "model_class": model_class_for(state).__name__,
        "config": config.to_dict(),
        "parameters": {"total": sum(parts.values()), **dict(sorted(parts.items()))},
        "heads": sorted({k.split(".")[0] for k in state if k.startswith(HEAD_PREFIXES)}),
        "answers": len(answers) if answers else None,
        "dtypes": sorted({str(v.dtype) for v in state.values()}),
    }
