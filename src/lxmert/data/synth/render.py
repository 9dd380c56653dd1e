"""Pictures of the generated world: a scene drawn to an image of its own size.

Each object fills its box (the box the feature store holds for it, in the same pixels and
the same img_w x img_h), drawn as its shape in its colour, with its material shown by the
surface (metal: a highlight, wood: grain lines, glass: a pale rim, rubber: matte) and its
size by its box. The background is a plain wall and floor with a soft shadow under each
object. Nothing is random, so a scene always gives the same picture.

Every cue sits away from the object's box centre, whose pixel is always exactly
`COLOUR_RGB[colour]` - except for a ring, whose centre is its hole (`RING_HOLE`).
"""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageFilter

from lxmert.data.synth.layout import world_scene
from lxmert.data.synth.scenes import Scene

__all__ = ["COLOUR_RGB", "WALL_RGB", "FLOOR_RGB", "RING_HOLE", "render_scene", "render_world_image"]

#: colour name -> the RGB an object of that colour is painted with
COLOUR_RGB: dict[str, tuple[int, int, int]] = {
    "red": (214, 39, 40),
    "blue": (35, 90, 215),
    "green": (40, 160, 60),
    "yellow": (242, 205, 30),
    "purple": (135, 70, 185),
    "orange": (248, 128, 20),
    "gray": (128, 128, 128),
    "brown": (130, 80, 40),
}
WALL_RGB: tuple[int, int, int] = (234, 234, 238)
FLOOR_RGB: tuple[int, int, int] = (212, 208, 200)
_SHADOW_RGB = (188, 184, 176)
#: the ring's hole, as a fraction of its box (the ring's band is the rest)
RING_HOLE = 0.5
# Drawn at this many times the size and box-averaged down, for smooth edges; a box
# average keeps a flat area's colour exact, so box centres keep their colour.
_SUPERSAMPLE = 2
_HORIZON = 0.22  # share of the height that is wall (objects stand lower: centres below 25%)

_Point = tuple[float, float]


def _mix(rgb: tuple[int, int, int], other: tuple[int, int, int], t: float) -> tuple[int, int, int]:
    return tuple(round(a + (b - a) * t) for a, b in zip(rgb, other))  # type: ignore[return-value]


def _lighter(rgb: tuple[int, int, int], t: float = 0.3) -> tuple[int, int, int]:
    return _mix(rgb, (255, 255, 255), t)


def _darker(rgb: tuple[int, int, int], t: float = 0.3) -> tuple[int, int, int]:
    return _mix(rgb, (0, 0, 0), t)


def _star(x1: float, y1: float, x2: float, y2: float, points: int = 5, inner: float = 0.5) -> list[_Point]:
    cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
    out = []
    for k in range(2 * points):
        r = 1.0 if k % 2 == 0 else inner
        a = -math.pi / 2 + k * math.pi / points
        out.append((cx + r * rx * math.cos(a), cy + r * ry * math.sin(a)))
    return out


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[float, float, float, float],
                fill, light, dark, hole) -> None:
    """The silhouette of a `shape` filling `box`, with shaded faces; `fill` covers the box centre."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    if shape == "ball":
        draw.ellipse((x1, y1, x2, y2), fill=fill)
    elif shape == "block":  # front face, with top and right faces in perspective
        d = 0.2 * min(w, h)
        draw.polygon([(x1, y1 + d), (x1 + d, y1), (x2, y1), (x2 - d, y1 + d)], fill=light)
        draw.polygon([(x2 - d, y1 + d), (x2, y1), (x2, y2 - d), (x2 - d, y2)], fill=dark)
        draw.rectangle((x1, y1 + d, x2 - d, y2), fill=fill)
    elif shape == "cylinder":
        e = min(0.3 * w, 0.4 * h)
        draw.ellipse((x1, y2 - e, x2, y2), fill=fill)
        draw.rectangle((x1, y1 + e / 2, x2, y2 - e / 2), fill=fill)
        draw.ellipse((x1, y1, x2, y1 + e), fill=light)
    elif shape == "cone":
        e = min(0.3 * w, 0.3 * h)
        draw.ellipse((x1, y2 - e, x2, y2), fill=fill)
        draw.polygon([((x1 + x2) / 2, y1), (x1, y2 - e / 2), (x2, y2 - e / 2)], fill=fill)
    elif shape == "pyramid":  # a front face and a darker side face
        apex, split = (x1 + 0.55 * w, y1), (x1 + 0.72 * w, y2)
        draw.polygon([apex, split, (x2, y2 - 0.18 * h)], fill=dark)
        draw.polygon([apex, (x1, y2), split], fill=fill)
    elif shape == "ring":
        draw.ellipse((x1, y1, x2, y2), fill=fill)
        mx, my = w * (1 - RING_HOLE) / 2, h * (1 - RING_HOLE) / 2
        draw.ellipse((x1 + mx, y1 + my, x2 - mx, y2 - my), fill=hole)
    elif shape == "star":
        draw.polygon(_star(x1, y1, x2, y2), fill=fill)
    elif shape == "disk":  # a flat cylinder: the rim below, the face on top
        draw.ellipse((x1, y1 + 0.3 * h, x2, y2), fill=dark)
        draw.ellipse((x1, y1, x2, y2 - 0.3 * h), fill=fill)
    else:
        raise ValueError(f"no drawing for shape {shape!r}")


def _material_mask(material: str, box: tuple[float, float, float, float], silhouette: Image.Image) -> Image.Image:
    """Where `material`'s surface cue goes: inside the silhouette and away from the box centre."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    cue = Image.new("L", silhouette.size, 0)
    pen = ImageDraw.Draw(cue)
    if material == "metal":  # a specular highlight high on the object
        r = 0.09 * min(w, h)
        cx, cy = x1 + 0.42 * w, y1 + 0.2 * h
        pen.ellipse((cx - r, cy - 0.7 * r, cx + r, cy + 0.7 * r), fill=255)
    elif material == "wood":  # grain: thin lines across the upper and lower thirds
        width = max(1, round(0.025 * min(w, h)))
        for fy in (0.14, 0.3, 0.7, 0.86):
            pen.line((x1, y1 + fy * h, x2, y1 + fy * h), fill=255, width=width)
    elif material == "glass":  # a pale rim along the outline
        band = 2 * max(1, round(0.07 * min(w, h))) + 1
        return ImageChops.subtract(silhouette, silhouette.filter(ImageFilter.MinFilter(band)))
    return ImageChops.multiply(cue, silhouette)


_CUE_RGB = {
    "metal": lambda rgb: (255, 255, 255),
    "wood": lambda rgb: _darker(rgb, 0.35),
    "glass": lambda rgb: _lighter(rgb, 0.6),
}


def render_scene(scene: Scene) -> Image.Image:
    """An RGB image of `scene`, `scene.width` x `scene.height` pixels, objects in their boxes."""
    s = _SUPERSAMPLE
    size = (scene.width * s, scene.height * s)
    image = Image.new("RGB", size, FLOOR_RGB)
    draw = ImageDraw.Draw(image)
    horizon = _HORIZON * size[1]
    draw.rectangle((0, 0, size[0], horizon), fill=WALL_RGB)
    draw.line((0, horizon, size[0], horizon), fill=_darker(WALL_RGB, 0.12), width=s)
    for o in scene.objects:  # shadows first, so that no shadow covers an object
        x1, y1, x2, y2 = (v * s for v in o.box)
        w, h = x2 - x1, y2 - y1
        draw.ellipse((x1 + 0.05 * w, y2 - 0.08 * h, x2 + 0.12 * w, y2 + 0.06 * h), fill=_SHADOW_RGB)
    # Farther objects (higher up) first, so nearer ones are drawn over them where boxes touch.
    for o in sorted(scene.objects, key=lambda o: (o.box[3], o.box[0])):
        # Each object is drawn on a canvas of its own box (plus a margin) and pasted in place.
        x1, y1, x2, y2 = (v * s for v in o.box)
        ox, oy = math.floor(x1) - 2, math.floor(y1) - 2
        canvas = (math.ceil(x2) - ox + 2, math.ceil(y2) - oy + 2)
        box = (x1 - ox, y1 - oy, x2 - ox, y2 - oy)
        rgb = COLOUR_RGB[o.colour]
        silhouette = Image.new("L", canvas, 0)
        _draw_shape(ImageDraw.Draw(silhouette), o.shape, box, 255, 255, 255, 0)
        layer = Image.new("RGB", canvas, (0, 0, 0))
        _draw_shape(ImageDraw.Draw(layer), o.shape, box, rgb, _lighter(rgb), _darker(rgb), (0, 0, 0))
        if o.material in _CUE_RGB:
            layer.paste(_CUE_RGB[o.material](rgb), (0, 0, *canvas), _material_mask(o.material, box, silhouette))
        image.paste(layer, (ox, oy), silhouette)
    return image.reduce(s)


def render_world_image(world: str | Path, img_id: str) -> Image.Image:
    """The picture of image `img_id` of the generated world at `world`, rendered now.

    Works for every image of every world (its scene is rebuilt from synth.json,
    `layout.world_scene`), whether or not the world was written with pictures; equal to
    WORLD/images/<img_id>.png where that exists. ValueError for an id not of the world.
    """
    return render_scene(world_scene(world, img_id))
