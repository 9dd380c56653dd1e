"""Int8 dynamic quantisation of a model's Linear layers, and the int8 tensors it is stored as.

Why dynamic int8: LXMERT inference is ~90% Linear layers. Weights are quantised once
(per output channel, symmetric int8); activations are quantised on the fly per batch, and
the GEMMs run in int8 with int32 accumulation (fbgemm / oneDNN kernels: VNNI / AMX on
recent x86). No calibration data is needed. Embeddings, LayerNorms, attention products,
the pooler and the task heads (`HEAD_SKIP`) stay fp32. Measured on this project's CPU: see docs/benchmarks.md.

Activation range: torch's dynamic Linear quantises activations to 7 bits (`reduce_range=True`)
because x86 CPUs without VNNI multiply uint8 x int8 pairs into a saturating int16
(`vpmaddubsw`); 255 * 127 * 2 overflows it. CPUs with VNNI (and oneDNN's AMX path) accumulate
in int32, so the eighth bit is free there: it halves the activation rounding error at the
same speed (docs/benchmarks.md: 94.9% -> 96.7% same top answer on the demo's VQA model).
`activation_range="auto"` (the default) runs a worst-case probe once per process and engine
(`full_range_is_exact`) and uses 8 bits only where the kernel does not saturate. It is a
property of the machine that runs the model, not of the file, so `load_quantized` decides
again where it loads.

Implementation: `torch.ao.quantization.quantize_dynamic`. torch marks the `torch.ao`
eager quantisation API deprecated in favour of `torchao`, but it is present and working
in the pinned torch (2.13), its kernels are the fast ones on CPU (a hand-written
`torch._int_mm` path is slower because quantising activations in eager PyTorch costs
more than the int8 GEMM saves), and it needs no extra dependency. The
deprecation warnings are silenced locally, only around our calls.

Stored form (`int8_state` / `load_int8_state`; `save_pretrained` writes it as
`model.int8.safetensors`, `from_pretrained` reads it back): for each quantised Linear `X`:
`X.weight.int8` (int8 [out, in]), `X.weight.scale` (fp32 [out] or [1]), `X.weight.zero_point`
(int32, same shape), `X.bias` (fp32); every other tensor (embeddings, LayerNorms, skipped
Linears) in fp32 under its usual key; `config.json` carries `extra.quantization` =
{"method": "dynamic-int8", "scheme", "modules", ...}. We store the quantised tensors rather
than the fp32 checkpoint plus a flag so that the file is what runs (~3.5x smaller, nothing
re-derived at load), while the quantisation parameters stay plain tensors readable by any
safetensors reader.
"""

from __future__ import annotations

import copy
import warnings
from contextlib import contextmanager
from functools import lru_cache
from typing import Callable, Iterable, Iterator, Sequence

import torch
from torch import nn

from lxmert.config import LxmertConfig
from lxmert.errors import CheckpointError

__all__ = [
    "METHOD", "QUANT_KEY", "TIED_SKIP", "HEAD_SKIP", "DEFAULT_SKIP", "ACTIVATION_RANGES",
    "quantize_model", "is_quantized", "full_range_is_exact", "probe_error", "int8_state", "load_int8_state",
    "weight_rounding_model",
]

QUANT_KEY = "quantization"
METHOD = "dynamic-int8"
# The MLM decoder shares its weight with the word embeddings and is applied through
# `F.linear(decoder.weight, ...)`; quantising the module would break the tie.
TIED_SKIP = ("cls.predictions.decoder",)
# The pooler and the task heads (QA answer head, NLVR2 / classification logit layers) are
# ~0.1% of a full-size model's FLOPs but write the logits directly: in fp32 they cost no
# measurable speed and raise the answer agreement (docs/benchmarks.md).
HEAD_SKIP = ("lxmert.pooler", "answer_head", "logit_fc", "classifier")
DEFAULT_SKIP = TIED_SKIP + HEAD_SKIP
_SUFFIXES = (".weight.int8", ".weight.scale", ".weight.zero_point")
ACTIVATION_RANGES = ("auto", "full", "reduced")

@contextmanager
def _quiet() -> Iterator[None]:
    """Silence torch.ao's deprecation chatter for the duration of our own calls only."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.ao")
        warnings.filterwarnings("ignore", message=r".*quantiz.*deprecated.*")
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated.*")
        yield


def _dynamic_linear_type() -> type:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    return DynamicLinear


@lru_cache(maxsize=None)
def _full_range_linear_type() -> type:
    """torch's dynamic Linear with 8-bit instead of 7-bit activations (same packed weights)."""
    base = _dynamic_linear_type()

    class FullRangeDynamicLinear(base):  # type: ignore[misc, valid-type]
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self._packed_params.dtype != torch.qint8:
                return super().forward(x)
            return torch.ops.quantized.linear_dynamic(x, self._packed_params._packed_params,
                                                      reduce_range=False).to(x.dtype)

        def _get_name(self) -> str:
            return "DynamicQuantizedLinear(8-bit activations)"

    return FullRangeDynamicLinear


def probe_error(linear_dynamic: Callable[..., torch.Tensor]) -> float:
    """Worst relative error of `linear_dynamic(x, packed, reduce_range=False)` on inputs that
    overflow an int16 pair sum: every activation at the top of the uint8 range times weights
    at +-127. A saturating kernel is off by ~50%; an exact one by the rounding of 1/255."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    k = 256
    lin = nn.Linear(k, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.stack([torch.ones(k), -torch.ones(k)]))
    with _quiet():
        q = quantize_dynamic(nn.Sequential(lin), {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)[0]
    x = torch.ones(4, k)
    x[:, 0] = 0.0  # range [0, 1]: zero point 0, every other activation quantises to 255
    with torch.no_grad():
        want = x @ lin.weight.T
        got = linear_dynamic(x, q._packed_params._packed_params, reduce_range=False)
    return float(((got - want).abs() / want.abs()).max())


@lru_cache(maxsize=None)
def _full_range_exact_for(engine: str) -> bool:
    return probe_error(torch.ops.quantized.linear_dynamic) < 0.01


def full_range_is_exact() -> bool:
    """Whether this machine's int8 kernels (current `torch.backends.quantized.engine`) take
    8-bit activations without saturating. Probed once per process and engine."""
    return _full_range_exact_for(torch.backends.quantized.engine)


def _linear_mapping(full: bool) -> dict[type, type]:
    """quantize_dynamic's float -> int8 module mapping for 8-bit (`full`) or 7-bit activations."""
    return {nn.Linear: _full_range_linear_type() if full else _dynamic_linear_type()}


def _activations_name(full: bool) -> str:
    """The config flag's `activations` entry."""
    return "uint8" if full else "uint7"


def _resolve_range(activation_range: str) -> bool:
    """True for 8-bit activations."""
    if activation_range not in ACTIVATION_RANGES:
        raise ValueError(f"activation_range must be one of {ACTIVATION_RANGES}, got {activation_range!r}")
    if activation_range == "reduced":
        return False
    exact = full_range_is_exact()
    if activation_range == "full" and not exact:
        raise ValueError(f"8-bit activations saturate in this CPU's int8 kernels (engine "
                         f"{torch.backends.quantized.engine!r}, no VNNI?); use activation_range='reduced' or 'auto'")
    return exact


def is_quantized(model: nn.Module) -> bool:
    """True when any module of `model` is a dynamically quantised Linear."""
    dyn = _dynamic_linear_type()
    return any(isinstance(m, dyn) for m in model.modules())


def _targets(model: nn.Module, skip: Iterable[str]) -> list[str]:
    skip = set(skip)
    return [name for name, m in model.named_modules()
            if type(m) is nn.Linear and name not in skip and not any(name.startswith(s + ".") for s in skip)]


def quantize_model(model: nn.Module, per_channel: bool = True, skip: Iterable[str] = DEFAULT_SKIP,
                   inplace: bool = False, activation_range: str = "auto") -> nn.Module:
    """Return `model` with its Linear layers int8-dynamically quantised (eval mode, CPU).

    `per_channel=True` gives each output row its own scale (better agreement with fp32 at
    the same speed); `skip` names modules (and their submodules) to keep in fp32: by default
    the tied MLM decoder, the pooler and the task heads (`TIED_SKIP` alone quantises the
    heads too). `activation_range`: "auto" uses
    8-bit activations where this CPU's kernels take them exactly (see the module docstring),
    "full" insists on them, "reduced" keeps torch's 7-bit default.
    """
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

    if any(p.device.type != "cpu" for p in model.parameters()):
        raise ValueError("dynamic int8 quantisation runs on CPU; move the model with .cpu() first")
    if is_quantized(model):
        raise ValueError("model is already quantised")
    qconfig = per_channel_dynamic_qconfig if per_channel else default_dynamic_qconfig
    names = _targets(model, skip)
    if not names:
        raise ValueError("model has no nn.Linear to quantise")
    full = _resolve_range(activation_range)
    mapping = _linear_mapping(full)
    model.eval()
    with _quiet():
        quantized = quantize_dynamic(model, {name: qconfig for name in names}, dtype=torch.qint8,
                                     mapping=mapping, inplace=inplace)
    if isinstance(getattr(model, "config", None), LxmertConfig):
        quantized.config = _with_flag(model.config, per_channel, names, full)
    return quantized


def _with_flag(config: LxmertConfig, per_channel: bool, names: Sequence[str], full: bool) -> LxmertConfig:
    data = config.to_dict()
    extra = dict(data.get("extra") or {})
    # "activations" records what the quantising machine used; the loading machine decides again.
    extra[QUANT_KEY] = {"method": METHOD, "scheme": "per_channel" if per_channel else "per_tensor",
                        "modules": "Linear", "count": len(names), "torch": torch.__version__,
                        "activations": _activations_name(full)}
    data["extra"] = extra
    return LxmertConfig.from_dict(data)


def int8_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Plain tensors: int8 weights + scales for quantised Linears, fp32 for the rest."""
    dyn = _dynamic_linear_type()
    qnames = [name for name, m in model.named_modules() if isinstance(m, dyn)]
    state: dict[str, torch.Tensor] = {}
    with _quiet():
        for name, module in model.named_modules():
            if not isinstance(module, dyn):
                continue
            weight, bias = module._packed_params._weight_bias()
            if weight.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
                scale = weight.q_per_channel_scales().to(torch.float32)
                zero = weight.q_per_channel_zero_points().to(torch.int32)
            else:
                scale = torch.tensor([weight.q_scale()], dtype=torch.float32)
                zero = torch.tensor([weight.q_zero_point()], dtype=torch.int32)
            state[f"{name}.weight.int8"] = weight.int_repr().contiguous()
            state[f"{name}.weight.scale"] = scale.contiguous()
            state[f"{name}.weight.zero_point"] = zero.contiguous()
            if bias is not None:
                state[f"{name}.bias"] = bias.detach().to(torch.float32).contiguous()
    prefixes = tuple(n + "." for n in qnames)
    seen: dict[int, str] = {}
    for key, value in model.state_dict().items():
        if key.startswith(prefixes) or not isinstance(value, torch.Tensor) or value.is_quantized:
            continue
        ptr = value.data_ptr()
        if ptr in seen:  # tied weight (MLM decoder = word embeddings): stored once, re-tied at load
            continue
        seen[ptr] = key
        state[key] = value.detach().contiguous()
    return state


def load_int8_state(model: nn.Module, state: dict[str, torch.Tensor], source: str,
                    activation_range: str = "auto") -> nn.Module:
    """Turn a freshly built float `model` into the int8 model whose stored tensors are
    `state` (`int8_state`'s form), in place; `model.config` must carry the quantisation flag.

    `activation_range` as for `quantize_model`, decided for THIS machine (the stored
    `activations` entry only records what the quantising machine used)."""
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

    config = model.config
    flag = config.extra.get(QUANT_KEY)
    if not flag or flag.get("method") != METHOD:
        raise CheckpointError(f"{source}: config extra.{QUANT_KEY} is {flag!r}, expected method {METHOD!r}")
    full = _resolve_range(activation_range)
    qnames = sorted({k[: -len(".weight.int8")] for k in state if k.endswith(".weight.int8")})
    plain = {k: v for k, v in state.items()
             if not k.endswith(_SUFFIXES) and not any(k == f"{n}.bias" for n in qnames)}
    own = model.state_dict()
    expected_missing = {f"{n}.{p}" for n in qnames for p in ("weight", "bias")} | {"cls.predictions.decoder.weight"}
    unexpected = sorted(set(plain) - set(own))
    missing = sorted(k for k in own if k not in plain and k not in expected_missing)
    if unexpected or missing:
        raise CheckpointError(f"{source}: does not match {type(model).__name__}: unexpected {unexpected[:5]}, "
                              f"missing {missing[:5]}")
    model.load_state_dict(plain, strict=False)
    model.tie_weights()
    model.eval()
    qconfig = per_channel_dynamic_qconfig if flag.get("scheme") == "per_channel" else default_dynamic_qconfig
    with _quiet():
        quantize_dynamic(model, {n: qconfig for n in qnames}, dtype=torch.qint8, mapping=_linear_mapping(full),
                         inplace=True)
        modules = dict(model.named_modules())
        for name in qnames:
            q = state[f"{name}.weight.int8"]
            scale = state[f"{name}.weight.scale"].to(torch.float64)
            zero = state[f"{name}.weight.zero_point"].to(torch.int64)
            if flag.get("scheme") == "per_channel":
                weight = torch._make_per_channel_quantized_tensor(q, scale, zero, 0)
            else:
                weight = torch._make_per_tensor_quantized_tensor(q, float(scale[0]), int(zero[0]))
            modules[name].set_weight_bias(weight, state.get(f"{name}.bias"))
    data = config.to_dict()  # the in-memory flag says what THIS model runs with
    data["extra"] = {**data["extra"], QUANT_KEY: {**flag, "activations": _activations_name(full)}}
    model.config = LxmertConfig.from_dict(data)
    return model


def weight_rounding_model(reference: nn.Module, quantized: nn.Module) -> nn.Module:
    """A float copy of `reference` whose Linear weights are `quantized`'s int8 weights
    dequantised: the int8 model minus activation rounding. Its answer agreement with
    `reference` is the ceiling that activation tricks (8-bit, per-token scales, fp32 layers
    elsewhere) cannot pass; only the weights' rounding is left in it."""
    dyn = _dynamic_linear_type()
    float_modules = dict(reference.named_modules())
    weights = {}
    with _quiet():
        for name, module in quantized.named_modules():
            if isinstance(module, dyn):
                if type(float_modules.get(name)) is not nn.Linear:
                    raise ValueError(f"{name}: quantised in one model but not a Linear in the other")
                weights[name] = module._packed_params._weight_bias()[0].dequantize()
    if not weights:
        raise ValueError("the second model has no int8 Linear layers")
    model = copy.deepcopy(reference).eval()
    with torch.no_grad():
        for name, weight in weights.items():
            model.get_submodule(name).weight.copy_(weight)
    return model
