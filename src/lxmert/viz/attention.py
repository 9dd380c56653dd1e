"""Attention maps of one (image, sentence) pair: what LXMERT looks at, as PNG files.

`compute_attention(model, tokenizer, text, features)` runs the model once with
`output_attentions=True` and keeps, per layer and head, the four kinds of maps:

- `lang`: language self-attention (tokens x tokens), the 9 language layers;
- `obj`: object self-attention (objects x objects), the 5 object-relationship layers;
- `lang2obj`: cross-attention from words to objects (tokens x objects), 5 cross layers;
- `obj2lang`: cross-attention from objects to words (objects x tokens), 5 cross layers.

`plot_attention(maps, out_dir, layers=..., heads=...)` writes one PNG per (kind, layer,
head): a heat map with token / object labels on the axes. Maps that involve objects get a
second panel: the image canvas (the real image when a file is given, else a blank canvas
of the image's known size) with every box drawn and labelled, and its outline / fill
weighted by the attention the box receives (for `lang2obj` from the chosen query token,
[CLS] by default; for `obj` and `obj2lang` the attention that box sends or receives
summed over the rows). `boxes.png` shows all boxes with their labels.

Padding objects (mask 0) and padding tokens are dropped before plotting, so every row of a
map sums to 1 over what is shown.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from lxmert.atomic import atomic_open

__all__ = ["AttentionMaps", "compute_attention", "plot_attention", "boxes_figure", "map_figure", "object_labels",
           "KINDS", "parse_index_list"]

KINDS = ("lang", "obj", "lang2obj", "obj2lang")
_OUTPUT_FIELDS = {
    "lang": "language_attentions",
    "obj": "vision_attentions",
    "lang2obj": "cross_encoder_attentions",
    "obj2lang": "cross_encoder_vision_attentions",
}


@dataclass
class AttentionMaps:
    """Per kind: an array [layers, heads, queries, keys] over real tokens / objects only."""

    text: str
    tokens: list[str]
    objects: list[str]
    boxes: np.ndarray | None  # [N, 4] pixels (x1, y1, x2, y2)
    image_size: tuple[int, int] | None  # (height, width)
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    image_id: str = ""

    def layers(self, kind: str) -> int:
        return int(self.maps[kind].shape[0])

    def heads(self, kind: str) -> int:
        return int(self.maps[kind].shape[1])


def object_labels(obj_ids: Sequence[int], attr_ids: Sequence[int] | None = None,
                  object_names: Sequence[str] | Mapping[int, str] | None = None,
                  attr_names: Sequence[str] | Mapping[int, str] | None = None) -> list[str]:
    """Display names `"i:attr object"` of detected boxes (`obj<id>` when no vocabulary)."""

    def name(table: Any, idx: int, fallback: str) -> str:
        if table is None:
            return fallback
        try:
            return str(table[idx])
        except (IndexError, KeyError):
            return fallback

    out = []
    for i, oid in enumerate(obj_ids):
        label = name(object_names, int(oid), f"obj{int(oid)}")
        if attr_ids is not None and attr_names is not None:
            attr = name(attr_names, int(attr_ids[i]), "")
            label = f"{attr} {label}".strip()
        out.append(f"{i}:{label}")
    return out


@torch.no_grad()
def compute_attention(model: torch.nn.Module, tokenizer: Any, text: str, features: Mapping[str, Any], *,
                      max_length: int = 20, object_names: Any = None, attr_names: Any = None) -> AttentionMaps:
    """Attention maps of `model` (any LXMERT model) on one sentence and one image.

    `features`: one image as `FeatureStore.get` returns it (`features`, `boxes`,
    `boxes_norm`, `mask`, `obj_ids`, `attr_ids`, `img_h`, `img_w`, `img_id`).
    """
    for key in ("features", "boxes_norm"):
        if key not in features:
            raise KeyError(f"image features lack {key!r} (expected a FeatureStore.get record)")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    enc = tokenizer([text], max_length=max_length)
    feats = torch.as_tensor(np.asarray(features["features"]), dtype=torch.float32, device=device)[None]
    pos = torch.as_tensor(np.asarray(features["boxes_norm"]), dtype=torch.float32, device=device)[None]
    n_real = feats.shape[1]
    vmask = None
    if features.get("mask") is not None:
        mask_np = np.asarray(features["mask"]).astype(bool)
        n_real = int(mask_np.sum())
        vmask = torch.as_tensor(mask_np, device=device).long()[None]
    inputs: dict[str, Any] = {
        "input_ids": enc["input_ids"].to(device), "attention_mask": enc["attention_mask"].to(device),
        "token_type_ids": enc["token_type_ids"].to(device),
        "visual_feats": feats, "visual_pos": pos, "visual_attention_mask": vmask,
    }
    if type(model).__name__ == "LxmertForNLVR2":
        raise TypeError("attention maps take one image; load the checkpoint as LxmertModel instead")
    out = model(**inputs, output_attentions=True)
    if was_training:
        model.train()
    n_tok = int(enc["attention_mask"][0].sum())
    ids = enc["input_ids"][0, :n_tok].tolist()
    tokens = _tokens(tokenizer, ids)
    maps: dict[str, np.ndarray] = {}
    for kind, name in _OUTPUT_FIELDS.items():
        values = getattr(out, name, None)
        if not values:
            raise ValueError(f"the model returned no {name}")
        stacked = torch.stack([v[0].float() for v in values]).cpu().numpy()  # [layers, heads, q, k]
        q = n_tok if kind in ("lang", "lang2obj") else n_real
        k = n_tok if kind in ("lang", "obj2lang") else n_real
        maps[kind] = stacked[:, :, :q, :k]
    obj_ids = np.asarray(features.get("obj_ids", np.arange(n_real)))[:n_real]
    attr_ids = features.get("attr_ids")
    labels = object_labels(obj_ids, None if attr_ids is None else np.asarray(attr_ids)[:n_real],
                           object_names, attr_names)
    boxes = np.asarray(features["boxes"], dtype=np.float32)[:n_real] if "boxes" in features else None
    size = None
    if features.get("img_h") is not None and features.get("img_w") is not None:
        size = (int(features["img_h"]), int(features["img_w"]))
    return AttentionMaps(text=text, tokens=tokens, objects=labels, boxes=boxes, image_size=size, maps=maps,
                         image_id=str(features.get("img_id", "")))


def _tokens(tokenizer: Any, ids: list[int]) -> list[str]:
    for attr in ("convert_ids_to_tokens", "id_to_token"):
        fn = getattr(tokenizer, attr, None)
        if callable(fn):
            try:
                got = fn(ids)
                if isinstance(got, list):
                    return [str(t) for t in got]
            except TypeError:
                pass
            return [str(fn(i)) for i in ids]
    inner = getattr(tokenizer, "tokenizer", None) or getattr(tokenizer, "_tokenizer", None)
    if inner is not None and hasattr(inner, "id_to_token"):
        return [str(inner.id_to_token(i)) for i in ids]
    vocab = getattr(tokenizer, "vocab", None)
    if isinstance(vocab, Mapping):
        inverse = {v: k for k, v in vocab.items()}
        return [inverse.get(i, f"#{i}") for i in ids]
    return [f"#{i}" for i in ids]


def parse_index_list(text: str | Sequence[int] | None) -> list[int] | None:
    """`"0,-1"` -> [0, -1]; None / "" -> None."""
    if text is None or text == "":
        return None
    if isinstance(text, str):
        try:
            return [int(t) for t in text.split(",") if t.strip()]
        except ValueError:
            raise ValueError(f"expected comma-separated integers, got {text!r}") from None
    return [int(t) for t in text]


def _resolve(indices: Sequence[int] | None, count: int, what: str) -> list[int]:
    if indices is None:
        return [count - 1]
    out = []
    for i in indices:
        j = i + count if i < 0 else i
        if not 0 <= j < count:
            raise ValueError(f"{what} {i} out of range (this model has {count})")
        out.append(j)
    return list(dict.fromkeys(out))


def _save(fig: Any, path: Path) -> Path:
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110, bbox_inches="tight")
    return path


def _canvas(ax: Any, maps: AttentionMaps, image: Any, weights: np.ndarray | None, title: str) -> None:
    """Boxes with labels on the image (or a blank canvas of its size); fill ~ weights."""
    from matplotlib import patches

    if maps.image_size is not None:
        h, w = maps.image_size
    elif maps.boxes is not None and len(maps.boxes):
        w, h = float(maps.boxes[:, 2].max()), float(maps.boxes[:, 3].max())
    else:
        h, w = 1, 1
    if image is not None:
        ax.imshow(image, extent=(0, w, h, 0))
    else:
        ax.add_patch(patches.Rectangle((0, 0), w, h, facecolor="#f2f2f2", edgecolor="#999999"))
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    if maps.boxes is None:
        return
    import matplotlib

    cmap = matplotlib.colormaps["Reds"]
    n = len(maps.boxes)
    strength = None
    if weights is not None and n:
        lo, hi = float(weights.min()), float(weights.max())
        # min-max scaled so that near-uniform attention still shows its ranking; the raw
        # range is in the title.
        strength = (weights - lo) / (hi - lo) if hi - lo > 1e-9 else np.full(n, 0.5)
        ax.set_title(f"{title}\n(colour: min {lo:.3f} .. max {hi:.3f})", fontsize=9)
    order = np.argsort(strength, kind="stable") if strength is not None else np.arange(n)
    top = set(order[-5:].tolist()) if strength is not None else set(range(n))
    labels: list[tuple[int, float, float]] = []
    for i in order:  # strongest drawn last (on top)
        x1, y1, x2, y2 = (float(v) for v in maps.boxes[i])
        if strength is None:
            ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="tab:blue",
                                           linewidth=1.0, alpha=0.8))
        else:
            s = float(strength[i])
            colour = cmap(0.25 + 0.75 * s)
            ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, facecolor=colour,
                                           alpha=0.04 + 0.3 * s ** 2, edgecolor="none"))
            ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour,
                                           linewidth=0.4 + 2.6 * s, alpha=0.25 + 0.75 * s))
        # Every box is labelled exactly once: all of them on the plain canvas, only the five
        # strongest on a crowded weighted one.
        if i in top or n <= 12:
            labels.append((i, x1 + 1, y1 + 1) if x1 < 0.7 * w else (i, x2 - 1, y1 + 1))
    # Labels after all boxes (no edge crosses a label), nudged down where two boxes share a
    # corner so that one label does not hide the other.
    fontsize = 6 if n <= 12 else 5
    line = h * fontsize / 170  # about one text line at the canvas' usual size
    placed: list[tuple[float, float]] = []
    for i, x, y in labels:
        while any(abs(x - px) < 0.18 * w and abs(y - py) < line for px, py in placed):
            y += line
        placed.append((x, y))
        text = maps.objects[i] + (f" {weights[i]:.3f}" if weights is not None else "")
        ax.text(x, y, text, fontsize=fontsize, va="top", ha="left" if x < 0.7 * w else "right",
                color="black", zorder=5,
                bbox={"facecolor": "white", "alpha": 0.75, "pad": 0.6, "edgecolor": "none"},
                gid=f"box-label:{i}")


def _heatmap(ax: Any, matrix: np.ndarray, rows: list[str], cols: list[str], title: str, fig: Any) -> None:
    im = ax.imshow(matrix, cmap="viridis", aspect="auto", vmin=0.0, vmax=max(float(matrix.max()), 1e-6))
    ax.set_title(title, fontsize=9)
    fs = 7 if max(len(rows), len(cols)) <= 24 else 5
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(rows, fontsize=fs)
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels(cols, fontsize=fs, rotation=90)
    ax.set_ylabel("query")
    ax.set_xlabel("key")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)


def boxes_figure(maps: AttentionMaps, image: Any = None) -> Any:
    """The figure of `boxes.png`: every box on the image (or a blank canvas of its size),
    each with its label once."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 6))
    _canvas(fig.subplots(), maps, _as_image(image), None, f"{maps.image_id}: {len(maps.objects)} boxes")
    return fig


_NAMES = {"lang": "language self-attention", "obj": "object self-attention",
          "lang2obj": "cross-attention words -> objects", "obj2lang": "cross-attention objects -> words"}


def map_figure(maps: AttentionMaps, kind: str, layer: int, head: int | str = "mean", *, image: Any = None,
               query_token: int = 0) -> Any:
    """The figure of one `{kind}_layer{layer}_{head}.png`: the heat map and, for maps that
    involve objects, the boxes weighted by the attention they send or receive.
    `layer` and `head` are non-negative indices (`head="mean"`: averaged over heads)."""
    from matplotlib.figure import Figure

    arr = maps.maps[kind]
    m = arr[layer].mean(0) if head == "mean" else arr[layer, head]
    rows = maps.tokens if kind in ("lang", "lang2obj") else maps.objects
    cols = maps.tokens if kind in ("lang", "obj2lang") else maps.objects
    title = f"{_NAMES[kind]}, layer {layer}, {'mean of heads' if head == 'mean' else f'head {head}'}"
    with_canvas = kind != "lang"
    fig = Figure(figsize=(13, 6) if with_canvas else (7, 6))
    axes = np.atleast_1d(fig.subplots(1, 2 if with_canvas else 1,
                                      gridspec_kw={"width_ratios": [1.2, 1]} if with_canvas else None))
    _heatmap(axes[0], m, rows, cols, title, fig)
    if with_canvas:
        if kind == "lang2obj":
            weights, sub = m[query_token], f"attention from {maps.tokens[query_token]!r}"
        elif kind == "obj2lang":
            weights, sub = m[:, query_token], f"attention each object pays to {maps.tokens[query_token]!r}"
        else:
            weights, sub = m.sum(0), "attention received (summed over objects)"
        _canvas(axes[1], maps, _as_image(image), weights, sub)
    fig.suptitle(f'"{maps.text}"', fontsize=10)
    return fig


def _as_image(image: Any) -> Any:
    if isinstance(image, (str, os.PathLike)):
        from PIL import Image

        return np.asarray(Image.open(image).convert("RGB"))
    return image


def plot_attention(maps: AttentionMaps, out_dir: str | os.PathLike, *, kinds: Sequence[str] = KINDS,
                   layers: Sequence[int] | None = None, heads: Sequence[int] | str | None = "mean",
                   image: Any = None, query_token: int = 0) -> list[Path]:
    """Write the PNGs; returns their paths.

    `layers`: indices into each encoder (negative from the end; default the last layer of
    each); an index outside one encoder's range is an error naming it. `heads`: "mean"
    (average over heads, the default), "all", or a list of head indices. `image`: an array
    (H, W, 3) or a path to draw the boxes on. `query_token`: the token whose attention to
    objects colours the boxes in `lang2obj` plots (0 = [CLS]).
    """
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise ValueError(f"unknown attention kinds {bad} (known: {', '.join(KINDS)})")
    image = _as_image(image)
    if not 0 <= query_token < len(maps.tokens):
        raise ValueError(f"query token {query_token} out of range ({len(maps.tokens)} tokens)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [_save(boxes_figure(maps, image), out_dir / "boxes.png")]
    for kind in kinds:
        arr = maps.maps[kind]
        n_layers, n_heads = arr.shape[0], arr.shape[1]
        if heads == "mean" or heads is None:
            head_sel: list[Any] = ["mean"]
        elif heads == "all":
            head_sel = list(range(n_heads))
        else:
            head_sel = _resolve(list(heads), n_heads, "head")  # type: ignore[arg-type]
        for layer in _resolve(layers, n_layers, f"{kind} layer"):
            for head in head_sel:
                tag = "mean" if head == "mean" else f"h{head}"
                fig = map_figure(maps, kind, layer, head, image=image, query_token=query_token)
                written.append(_save(fig, out_dir / f"{kind}_layer{layer}_{tag}.png"))
    return written
