"""benchmarks/vision_reliance.py: scores the same examples with own and swapped images."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from support.world import make_world

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))


def test_vision_reliance_scores_both_ways(tmp_path: Path, capsys):
    import vision_reliance

    from lxmert.training.recipe import load_recipe
    from lxmert.api import make_task

    world = make_world(tmp_path, images=40)
    torch.manual_seed(0)
    task = make_task(load_recipe("demo-pretrain", ["train.progress=false"]), world)
    model = task.build_model()
    model.save_pretrained(tmp_path / "ckpt")
    out = tmp_path / "reliance.json"
    assert vision_reliance.main([str(world), str(tmp_path / "ckpt"), "--limit", "48", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    own, swapped = report["own_image"], report["swapped"]
    for key in ("qa", "matched", "mlm_visual_words"):
        assert own[f"n_{key}"] == swapped[f"n_{key}"], key  # the same examples both ways
    # the demo recipe keeps matching to region descriptions (`pretrain.match_sources`): only
    # those are scored for matching, the other sentences' -100 labels are not counted as misses
    assert 0 < own["n_matched"] < 48 and own["n_qa"] > 0 and own["n_mlm_visual_words"] > 0
    assert all(0.0 <= own[k] <= 1.0 and 0.0 <= swapped[k] <= 1.0 for k in ("qa", "matched"))
    assert "swapped" in capsys.readouterr().out


def test_swap_gives_every_sentence_another_image(tmp_path: Path):
    """Each scored batch is seen twice: own images, then every example with another image's boxes."""
    import vision_reliance

    from lxmert.training.recipe import load_recipe
    from lxmert.api import make_task

    world = make_world(tmp_path, images=40)
    task = make_task(load_recipe("demo-pretrain", ["train.progress=false", "data.valid_limit=72",
                                                   "pretrain.match_sources=[]"]), world)
    seen: list[torch.Tensor] = []

    class Spy(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, **kw):
            seen.append(kw["visual_pos"].clone())
            return self.inner(**kw)

    valid = task.valid_dataset()
    valid.set_epoch(0)
    raw = [valid[i]["visual_pos"] for i in range(len(valid))]
    assert any(bool((raw[i] == raw[i - 1]).all()) for i in range(1, len(raw))), \
        "the validation set lists an image's sentences together (what the shuffle is for)"
    report = vision_reliance.score(Spy(task.build_model().eval()), task, valid, torch.tensor([1]))
    assert len(seen) >= 2 and len(seen) % 2 == 0
    for own, swapped in zip(seen[0::2], seen[1::2]):
        assert all(not torch.equal(own[i], swapped[i]) for i in range(len(own)))
        assert sorted(map(str, own.reshape(len(own), -1).tolist())) == \
            sorted(map(str, swapped.reshape(len(own), -1).tolist())), "the same images, reassigned"
    assert report["own_image"]["n_matched"] + report["own_image"]["skipped"] == len(valid)


def test_swap_order_is_a_derangement_of_images():
    import vision_reliance

    assert vision_reliance.swap_order(torch.rand(1, 5, 4).expand(6, 5, 4)) is None
    images = torch.rand(4, 5, 4)
    for groups in ([0, 0, 0, 1, 1, 2], [2, 0, 1, 0, 3, 0, 1, 1], [0, 1]):
        boxes = images[groups]
        perm = vision_reliance.swap_order(boxes)
        assert sorted(perm.tolist()) == list(range(len(groups)))
        assert all(groups[int(perm[i])] != groups[i] for i in range(len(groups)))
    assert vision_reliance.swap_order(images[[0, 0, 0, 1]]) is None  # 3 of 4 show one image
