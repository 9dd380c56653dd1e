"""The world's language: captions, region descriptions, VQA- and GQA-style questions, answers.

Every sentence is about its own scene. Question templates enumerate every question they
could ask about a scene with its answer; an `AnswerBalancer` per split then picks the
answer its family has produced least so far, so answers are near-uniform per family and a
text-only model cannot do much better than chance. Referring expressions always pick out
exactly one object and never name the attribute asked about. `annotate` simulates the ten
VQA annotators and `vqa_soft_label` turns their answers into the release's soft scores.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from typing import Any, Callable, Iterable, Sequence

from lxmert.data.synth.scenes import (ATTRIBUTE_SPACE, ATTRIBUTES, COLOURS, MATERIALS, MIN_GAP, SHAPES, SIZES,
                                      Scene, SceneObject, relation)

__all__ = [
    "COUNT_ANSWERS", "YES_NO", "SIDES", "NUMBER_WORDS", "VQA_ANSWERS", "GQA_ANSWERS", "REL_PHRASE",
    "AnswerBalancer", "VqaCandidates", "GqaCandidates", "VQA_TEMPLATES", "GQA_TEMPLATES", "caption", "region_description", "annotate",
    "answer_space", "vqa_soft_label", "distinct_sentences", "ask", "article", "phrase_from_values",
    "random_description_attrs",
]

COUNT_ANSWERS: tuple[str, ...] = tuple(str(i) for i in range(7))
YES_NO: tuple[str, ...] = ("yes", "no")
SIDES: tuple[str, ...] = ("left", "right")
NUMBER_WORDS: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five", "six", "seven")

#: Every answer a VQA- (resp. GQA-) style question or a simulated annotator can produce.
VQA_ANSWERS: tuple[str, ...] = COLOURS + tuple(MATERIALS) + SHAPES + SIZES + YES_NO + COUNT_ANSWERS
GQA_ANSWERS: tuple[str, ...] = COLOURS + tuple(MATERIALS) + SHAPES + SIZES + YES_NO + SIDES

#: relation (as `scenes.relation` takes it) -> its words in a sentence
REL_PHRASE: dict[str, str] = {"left": "to the left of", "right": "to the right of", "above": "above", "below": "below"}

_DESC_SUBSETS: tuple[tuple[str, ...], ...] = (
    ("shape",), ("colour", "shape"), ("size", "shape"), ("material", "shape"),
    ("size", "colour", "shape"), ("colour", "material", "shape"), ("size", "material", "shape"),
    ("size", "colour", "material", "shape"),
)


def _allowed_subsets(exclude: frozenset[str]) -> tuple[tuple[str, ...], ...]:
    """Description subsets usable when `exclude` attributes must not be named."""
    out = []
    for subset in _DESC_SUBSETS:
        if "shape" in exclude:
            subset = tuple(a for a in subset if a != "shape")
            if not subset:
                continue
        if not exclude.intersection(subset):
            out.append(subset)
    return tuple(dict.fromkeys(out))


_ALLOWED = {frozenset(ex): _allowed_subsets(frozenset(ex))
            for ex in ((), ("size",), ("colour",), ("material",), ("shape",))}


def _unique_description(scene: Scene, target: SceneObject, rng: random.Random,
                        exclude: Iterable[str] = (), noun: str = "object") -> str | None:
    """A random description that picks out `target` alone, never naming `exclude` attributes."""
    key = frozenset(exclude)
    allowed = _ALLOWED.get(key) or _allowed_subsets(key)
    unique = set(scene.unique_subsets(target))
    usable = [subset for subset in allowed if subset in unique]
    if not usable:
        return None
    return target.phrase(rng.choice(usable), noun)


class AnswerBalancer:
    """Keeps each question family's answers near-uniform over a whole split.

    A template enumerates every question it could ask about a scene, each with its answer;
    the balancer picks, among the answers on offer, the one this family has produced
    least so far (ties broken at random), then a random question with that answer. Without
    it the distribution would follow the scenes (a count of 0 is possible in nearly every
    scene, 5 rarely; "same colour?" is mostly "no") and a text-only model could exploit it.
    Families are keyed finely (e.g. the counted attribute) so that no question string
    predicts its answer either.
    """

    def __init__(self) -> None:
        self.counts: dict[str, Counter] = defaultdict(Counter)

    def pick(self, family: str, candidates: Sequence[tuple[Any, str]], rng: random.Random) -> tuple[Any, str] | None:
        if not candidates:
            return None
        by_answer: dict[str, list[Any]] = defaultdict(list)
        for item, answer in candidates:
            by_answer[answer].append(item)
        seen = self.counts[family]
        fewest = min(seen[a] for a in by_answer)
        answer = rng.choice(sorted(a for a in by_answer if seen[a] == fewest))
        seen[answer] += 1
        return rng.choice(by_answer[answer]), answer


#: A VQA template returns (family, [((sentence, answer_type, question_type), answer), ...]).
VqaCandidates = tuple[str, list[tuple[tuple[str, str, str], str]]]
#: A GQA template returns (family, [(sentence, answer), ...]).
GqaCandidates = tuple[str, list[tuple[str, str]]]


def _q_query(scene: Scene, rng: random.Random) -> VqaCandidates:
    attr = rng.choice(ATTRIBUTES)
    out = []
    for target in scene.objects:
        desc = _unique_description(scene, target, rng, exclude=[attr], noun=rng.choice(("object", "thing")))
        if desc is None:
            continue
        if attr == "colour":
            q = (f"what color is the {desc}?", "other", "what color is the")
        elif attr == "material":
            q = (f"what is the {desc} made of?", "other", "what is the")
        elif attr == "size":
            q = (f"what size is the {desc}?", "other", "what")
        else:
            q = (f"what shape is the {desc}?", "other", "what")
        out.append((q, target.attr(attr)))
    return f"query:{attr}", out


def random_description_attrs(rng: random.Random) -> tuple[str, ...]:
    """A random attribute subset (always naming the shape) for a description that need
    not be unique, as existence questions and NLVR2 statements use."""
    return rng.choice((("shape",), ("colour", "shape"), ("material", "shape"), ("size", "shape"),
                       ("colour", "material", "shape")))


def _q_exist(scene: Scene, rng: random.Random) -> VqaCandidates:
    subset = random_description_attrs(rng)
    plural = rng.random() < 0.5
    options = [{a: o.attr(a) for a in subset} for o in scene.objects]
    options += [{a: rng.choice(ATTRIBUTE_SPACE[a]) for a in subset} for _ in range(6)]
    out = []
    for values in options:
        phrase = phrase_from_values(values)
        if plural:
            q = (f"are there any {_plural(phrase)}?", "yes/no", "are there any")
        else:
            q = (f"is there {article(phrase)} {phrase}?", "yes/no", "is there a")
        out.append((q, "yes" if scene.count(**values) else "no"))
    return f"exist:{'+'.join(subset)}", out


def article(phrase: str) -> str:
    """The indefinite article of `phrase` ("a" or "an")."""
    return "an" if phrase[:1] in ("a", "e", "i", "o", "u") else "a"


def _a(phrase: str) -> str:
    return f"{article(phrase)} {phrase}"


def phrase_from_values(values: dict[str, str], noun: str = "object") -> str:
    """Noun phrase naming attribute `values` (not necessarily of one real object) in the
    canonical order; `noun` stands in for an unnamed shape."""
    words = [values[a] if a != "material" else MATERIALS[values[a]]
             for a in ("size", "colour", "material") if a in values]
    words.append(values.get("shape", noun))
    return " ".join(words)


def _plural(phrase: str) -> str:
    return phrase + "s"


def _q_count(scene: Scene, rng: random.Random) -> VqaCandidates:
    attr = rng.choice(ATTRIBUTES)
    out = []
    for value in ATTRIBUTE_SPACE[attr]:
        noun = rng.choice(("objects", "things"))
        if attr == "shape":
            phrase = f"{value}s"
        elif attr == "material":
            phrase = f"{MATERIALS[value]} {noun}"
        else:
            phrase = f"{value} {noun}"
        out.append(((f"how many {phrase} are there?", "number", "how many"), str(scene.count(**{attr: value}))))
    return f"count:{attr}", out


#: The VQA question templates; a template is drawn uniformly, so repeats weight it.
VQA_TEMPLATES: tuple[Callable[[Scene, random.Random], VqaCandidates], ...] = (
    _q_query, _q_query, _q_exist, _q_count,
)


def _g_relate_query(scene: Scene, rng: random.Random) -> GqaCandidates:
    attr = rng.choice(("colour", "material", "shape"))
    what = {"colour": "what color is", "material": "what material is", "shape": "what shape is"}[attr]
    out = []
    for ref in scene.objects:
        for rel in REL_PHRASE:
            related = [o for o in scene.objects if o is not ref and relation(o, ref, rel)]
            ambiguous = [o for o in scene.objects if o is not ref and relation(o, ref, rel) is None]
            if len(related) != 1 or ambiguous:
                continue
            ref_desc = _unique_description(scene, ref, rng)
            if ref_desc is None:
                continue
            noun = rng.choice(("object", "thing"))
            out.append((f"{what} the {noun} {REL_PHRASE[rel]} the {ref_desc}?", related[0].attr(attr)))
    return f"relate:{attr}", out


def _g_verify_relation(scene: Scene, rng: random.Random) -> GqaCandidates:
    out = []
    for a in scene.objects:
        for b in scene.objects:
            if a is b:
                continue
            rel = rng.choice(tuple(REL_PHRASE))
            truth = relation(a, b, rel)
            if truth is None:
                continue
            da, db = _unique_description(scene, a, rng), _unique_description(scene, b, rng)
            if da is None or db is None:
                continue
            out.append((f"is the {da} {REL_PHRASE[rel]} the {db}?", "yes" if truth else "no"))
    return "verify-relation", out


def _g_same_attribute(scene: Scene, rng: random.Random) -> GqaCandidates:
    attr = rng.choice(("colour", "material", "shape"))
    out = []
    for i, a in enumerate(scene.objects):
        for b in scene.objects[i + 1:]:
            if rng.random() < 0.5:
                a, b = b, a
            da = _unique_description(scene, a, rng, exclude=[attr])
            db = _unique_description(scene, b, rng, exclude=[attr])
            if da is None or db is None:
                continue
            if attr == "colour":
                q = f"do the {da} and the {db} have the same color?"
            elif attr == "material":
                q = f"are the {da} and the {db} made of the same material?"
            else:
                q = f"do the {da} and the {db} have the same shape?"
            out.append((q, "yes" if a.attr(attr) == b.attr(attr) else "no"))
    return f"same:{attr}", out


def _g_choose(scene: Scene, rng: random.Random) -> GqaCandidates:
    attr = rng.choice(("colour", "material", "size", "shape"))
    out = []
    for target in scene.objects:
        desc = _unique_description(scene, target, rng, exclude=[attr])
        if desc is None:
            continue
        answer = target.attr(attr)
        options = [answer, rng.choice([v for v in ATTRIBUTE_SPACE[attr] if v != answer])]
        rng.shuffle(options)
        if attr == "material":
            q = f"is the {desc} made of {options[0]} or {options[1]}?"
        elif attr == "shape":
            q = f"is the {desc} a {options[0]} or a {options[1]}?"
        else:
            q = f"is the {desc} {options[0]} or {options[1]}?"
        out.append((q, answer))
    return f"choose:{attr}", out


def _g_same_colour_query(scene: Scene, rng: random.Random) -> GqaCandidates:
    attr = rng.choice(("shape", "material"))
    out = []
    for ref in scene.objects:
        others = [o for o in scene.objects if o is not ref and o.colour == ref.colour]
        if len(others) != 1:
            continue
        desc = _unique_description(scene, ref, rng)
        if desc is None:
            continue
        if attr == "shape":
            out.append((f"what shape is the object that has the same color as the {desc}?", others[0].shape))
        else:
            out.append((f"what is the object with the same color as the {desc} made of?", others[0].material))
    return f"same-colour:{attr}", out


def _g_side(scene: Scene, rng: random.Random) -> GqaCandidates:
    out = []
    for target in scene.objects:
        if abs(target.cx - scene.width / 2) < MIN_GAP:
            continue
        desc = _unique_description(scene, target, rng)
        if desc is None:
            continue
        out.append((f"on which side of the image is the {desc}?", "left" if target.cx < scene.width / 2 else "right"))
    return "side", out


#: The GQA question templates; a template is drawn uniformly, so repeats weight it.
GQA_TEMPLATES: tuple[Callable[[Scene, random.Random], GqaCandidates], ...] = (
    _g_relate_query, _g_relate_query, _g_relate_query, _g_verify_relation, _g_same_attribute,
    _g_choose, _g_same_colour_query, _g_side,
)


def caption(scene: Scene, rng: random.Random) -> str:
    """One COCO-style caption of `scene` (six kinds: a relation, a list, a material, a
    count of objects, a count of a colour, an image side); true of the scene."""
    objs = scene.objects
    kind = rng.randrange(6)
    full = ("size", "colour", "material", "shape")
    if kind == 0 and len(objs) >= 2:
        for _ in range(5):
            a, b = rng.sample(objs, 2)
            rel = rng.choice(tuple(REL_PHRASE))
            if relation(a, b, rel):
                return f"{_a(a.phrase(full))} {REL_PHRASE[rel]} {_a(b.phrase(('colour', 'shape')))}."
    if kind == 1:
        picked = rng.sample(objs, min(3, len(objs)))
        parts = [_a(o.phrase(('colour', 'shape'))) for o in picked]
        return (", ".join(parts[:-1]) + " and " + parts[-1] + ".") if len(parts) > 1 else parts[0] + "."
    if kind == 2:
        o = rng.choice(objs)
        return f"{_a(o.phrase(('size', 'shape')))} made of {o.material} next to other objects."
    if kind == 3:
        return f"{NUMBER_WORDS[len(objs)]} objects on the floor, one of them {_a(rng.choice(objs).phrase(('colour', 'material', 'shape')))}."
    if kind == 4:
        colour = rng.choice(objs).colour
        n = scene.count(colour=colour)
        noun = "object" if n == 1 else "objects"
        return f"a picture with {NUMBER_WORDS[n]} {colour} {noun}."
    o = rng.choice(objs)
    side = "left" if o.cx < scene.width / 2 else "right"
    return f"{_a(o.phrase(full))} on the {side} side of the picture."


def region_description(scene: Scene, rng: random.Random) -> str:
    """One Visual-Genome-style region description of an object of `scene`."""
    o = rng.choice(scene.objects)
    kind = rng.randrange(3)
    if kind == 0:
        return o.phrase(("colour", "shape"))
    if kind == 1:
        return o.phrase(("size", "material", "shape"))
    others = [b for b in scene.objects if b is not o and relation(o, b, "left")]
    if others:
        return f"{o.phrase(('colour', 'shape'))} left of {rng.choice(others).phrase(('shape',))}"
    return f"{o.phrase(('colour', 'shape'))} on the floor"


def annotate(answer: str, space: Sequence[str], rng: random.Random, accuracy: tuple[float, float]) -> list[str]:
    """Ten simulated annotators: each right with a per-question probability, else a plausible mistake."""
    p = rng.uniform(*accuracy)
    wrong = [a for a in space if a != answer]
    out = []
    for _ in range(10):
        if rng.random() < p or not wrong:
            out.append(answer)
        elif answer in COUNT_ANSWERS and rng.random() < 0.7:  # counting mistakes are off by one
            k = int(answer) + rng.choice((-1, 1))
            out.append(str(min(max(k, 0), 6)))
        else:
            out.append(rng.choice(wrong))
    return out


def vqa_soft_label(answers: Sequence[str]) -> dict[str, float]:
    """The bottom-up-attention preprocessing the release reused: 0/1/2/3/>=4 votes -> 0/.3/.6/.9/1."""
    counts = Counter(answers)
    return {ans: min(1.0, round(0.3 * n, 1)) for ans, n in counts.items()}


def answer_space(answer: str) -> tuple[str, ...]:
    """The answer family `answer` belongs to: the pool a simulated annotator's mistake is drawn from."""
    for space in (YES_NO, COUNT_ANSWERS, COLOURS, tuple(MATERIALS), SHAPES, SIZES, SIDES):
        if answer in space:
            return space
    raise ValueError(f"answer {answer!r} belongs to no answer space of the world")


def distinct_sentences(make: Callable[[Scene, random.Random], str], scene: Scene, rng: random.Random,
                       n: int) -> list[str]:
    """`n` sentences from `make`, without repeats where the scene allows (a few tries)."""
    out: list[str] = []
    for _ in range(4 * n):
        if len(out) == n:
            break
        sent = make(scene, rng)
        if sent not in out:
            out.append(sent)
    while len(out) < n:
        out.append(make(scene, rng))
    return out


def ask(templates: Sequence[Callable], scene: Scene, rng: random.Random, balancer: AnswerBalancer,
        tries: int = 20) -> Any:
    """One balanced question from a random template that has something to ask about `scene`."""
    for _ in range(tries):
        family, candidates = rng.choice(templates)(scene, rng)
        picked = balancer.pick(family, candidates, rng)
        if picked is not None:
            return picked
    return None
