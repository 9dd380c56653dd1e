"""`lxmert attention` figures: every box label is drawn exactly once.

Before, `boxes.png` of an image with more than 12 boxes (the demo world has 20) carried
each label twice, at two font sizes, which read as garbled text.
"""

from __future__ import annotations

import numpy as np
import pytest

from lxmert.viz import attention
from lxmert.viz.attention import AttentionMaps, boxes_figure, map_figure, plot_attention


def _maps(n_boxes: int, seed: int = 0) -> AttentionMaps:
    rng = np.random.default_rng(seed)
    tokens = ["[CLS]", "is", "the", "ball", "red", "?", "[SEP]"]
    x1 = rng.uniform(0, 400, n_boxes)
    y1 = rng.uniform(0, 300, n_boxes)
    boxes = np.stack([x1, y1, x1 + rng.uniform(20, 80, n_boxes), y1 + rng.uniform(20, 60, n_boxes)], 1)
    # two boxes sharing a corner: their labels must not sit on top of each other
    boxes[1, :2] = boxes[0, :2]

    def soft(*shape: int) -> np.ndarray:
        a = rng.random(shape)
        return a / a.sum(-1, keepdims=True)

    t, n = len(tokens), n_boxes
    return AttentionMaps(text="is the ball red?", tokens=tokens, objects=[f"{i}:red ball" for i in range(n)],
                         boxes=boxes.astype(np.float32), image_size=(380, 500), image_id="img0",
                         maps={"lang": soft(2, 2, t, t), "obj": soft(1, 2, n, n), "lang2obj": soft(2, 2, t, n),
                               "obj2lang": soft(2, 2, n, t)})


def _box_labels(ax) -> list[str]:
    return [t.get_text() for t in ax.texts if (t.get_gid() or "").startswith("box-label:")]


@pytest.mark.parametrize("n_boxes", [5, 12, 13, 20, 36])
def test_boxes_png_labels_each_box_once(n_boxes):
    maps = _maps(n_boxes)
    (ax,) = boxes_figure(maps).axes
    assert sorted(_box_labels(ax)) == sorted(maps.objects)
    # no other text artist repeats a label either (the old duplicate had no gid)
    for name in maps.objects:
        assert sum(t.get_text().startswith(name) for t in ax.texts) == 1, name
    positions = [t.get_position() for t in ax.texts]
    assert len(set(positions)) == len(positions)  # shared corners: labels nudged apart


@pytest.mark.parametrize("kind", ["obj", "lang2obj", "obj2lang"])
@pytest.mark.parametrize("n_boxes", [8, 20])
def test_weighted_canvas_labels_the_strongest_boxes_once(kind, n_boxes):
    maps = _maps(n_boxes, seed=1)
    fig = map_figure(maps, kind, 0, "mean")
    canvas = fig.axes[1]  # heat map, canvas, colour bar
    labels = _box_labels(canvas)
    assert len(labels) == len(set(labels)) == (n_boxes if n_boxes <= 12 else 5)
    for name in maps.objects:
        assert sum(t.get_text().split(" 0.")[0] == name for t in canvas.texts) <= 1


def test_plot_attention_saves_the_figures_it_builds(tmp_path, monkeypatch):
    built = []
    original = attention.boxes_figure

    def spy(*args, **kwargs):
        built.append(original(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(attention, "boxes_figure", spy)
    maps = _maps(20)
    paths = plot_attention(maps, tmp_path, kinds=["lang2obj"], layers=[0, -1])
    assert [p.name for p in paths] == ["boxes.png", "lang2obj_layer0_mean.png", "lang2obj_layer1_mean.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)
    (fig,) = built
    assert sorted(_box_labels(fig.axes[0])) == sorted(maps.objects)
