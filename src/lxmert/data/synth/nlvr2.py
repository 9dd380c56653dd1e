"""NLVR2-style statements about a (left, right) pair of scenes, with their truth.

`nlvr2_statement` draws a statement and returns it with a function computing its truth
for any pair; `nlvr2_pairs` shows each statement with as many true as false pairs of a
split's scenes, as in NLVR2, so the sentence alone says nothing about the label.
"""

from __future__ import annotations

import random
from typing import Callable, Sequence

from lxmert.data.synth.language import (NUMBER_WORDS, SIDES, article, phrase_from_values,
                                        random_description_attrs)
from lxmert.data.synth.scenes import ATTRIBUTE_SPACE, Scene

__all__ = ["NLVR2_KINDS", "nlvr2_statement", "nlvr2_pairs"]


#: The statement kinds, in the order of `nlvr2_statement`'s cases: existence in one named
#: image, in both, in exactly one; a total count; a comparison of counts; "each image ...".
NLVR2_KINDS: tuple[str, ...] = ("side", "both", "one", "count", "more", "each")


def nlvr2_statement(left: Scene, right: Scene, rng: random.Random,
                    kinds: Sequence[str] = ()) -> tuple[str, Callable[[Scene, Scene], bool]]:
    """A statement drawn from (left, right) - of a kind among `kinds` (all of `NLVR2_KINDS`
    when empty) - and the function giving its truth for any (left, right) pair."""
    kind = NLVR2_KINDS.index(rng.choice(kinds)) if kinds else rng.randrange(len(NLVR2_KINDS))
    attrs = random_description_attrs(rng)
    source = rng.choice(left.objects + right.objects)
    values = {a: source.attr(a) for a in attrs}
    if rng.random() < 0.3:  # sometimes a description that may be absent from both images
        values = {a: rng.choice(ATTRIBUTE_SPACE[a]) for a in attrs}
    phrase = phrase_from_values(values)
    art = article(phrase)
    has = lambda s: s.count(**values) > 0  # noqa: E731
    if kind == 0:
        side = rng.choice(SIDES)
        pick = (lambda l, r: has(l)) if side == "left" else (lambda l, r: has(r))
        return f"the {side} image contains {art} {phrase}.", pick
    if kind == 1:
        return f"both images contain {art} {phrase}.", lambda l, r: has(l) and has(r)
    if kind == 2:
        return f"exactly one image contains {art} {phrase}.", lambda l, r: has(l) != has(r)
    if kind == 3:
        shape = source.shape
        n = left.count(shape=shape) + right.count(shape=shape) + rng.choice((-1, 0, 0, 1))
        n = min(max(n, 1), 7)
        noun = shape if n == 1 else f"{shape}s"
        return (f"there {'is' if n == 1 else 'are'} exactly {NUMBER_WORDS[min(n, 7)]} {noun} in the images.",
                lambda l, r: l.count(shape=shape) + r.count(shape=shape) == n)
    if kind == 4:
        colour = source.colour
        side = rng.choice(SIDES)
        other = "right" if side == "left" else "left"
        more = (lambda l, r: l.count(colour=colour) > r.count(colour=colour)) if side == "left" else \
            (lambda l, r: r.count(colour=colour) > l.count(colour=colour))
        return f"the {side} image has more {colour} objects than the {other} image.", more
    colour = source.colour
    n = rng.choice((1, 2))
    noun = "object" if n == 1 else "objects"
    return (f"each image contains at least {NUMBER_WORDS[n]} {colour} {noun}.",
            lambda l, r: l.count(colour=colour) >= n and r.count(colour=colour) >= n)


def nlvr2_pairs(scenes: list[Scene], file_name: str, rng: random.Random, *, per_image: float,
                pairs_per_sentence: int, kinds: Sequence[str] = ()) -> list[dict]:
    """Sentences about image pairs, each shown with several pairs; labels balanced per sentence.

    As in NLVR2, where each sentence was written to be true of some image pairs and false
    of others, every sentence here gets as many true as false pairs (one more of either
    for an odd count, alternating), so the sentence alone says nothing about the label.
    A statement for which no true (or no false) pair turns up among random pairs is
    replaced by another. `per_image` sentences per scene (one at least), each shown with
    `pairs_per_sentence` pairs; entries in the release's layout, identifiers named after
    `file_name`.
    """
    if len(scenes) < 2 or pairs_per_sentence == 0:
        return []
    n_sentences = max(1, round(len(scenes) * per_image))
    k = pairs_per_sentence
    entries: list[dict] = []
    extra_true = True  # which label gets the odd pair out, alternating over sentences
    for set_id in range(n_sentences):
        wanted = [True] * (k // 2) + [False] * (k // 2)
        if k % 2:
            wanted.append(extra_true)
            extra_true = not extra_true
        rng.shuffle(wanted)
        for _ in range(20):
            seed_pair = rng.sample(scenes, 2)
            sent, truth = nlvr2_statement(seed_pair[0], seed_pair[1], rng, kinds)
            pairs = []
            for want in wanted:
                for _ in range(100):
                    candidate = rng.sample(scenes, 2)
                    if truth(*candidate) == want:
                        pairs.append(candidate)
                        break
                else:
                    break
            if len(pairs) == len(wanted):
                break
        else:  # a tiny split where no statement can be balanced: keep the last one, truthfully labelled
            pairs = [rng.sample(scenes, 2) for _ in wanted]
        for pair_id, (left, right) in enumerate(pairs):
            entries.append({
                "identifier": f"{file_name}-{set_id}-{pair_id}-0",
                "img0": left.img_id,
                "img1": right.img_id,
                "label": int(truth(left, right)),
                "sent": sent,
                "uid": f"nlvr2_{file_name}_{len(entries)}",
            })
    return entries
