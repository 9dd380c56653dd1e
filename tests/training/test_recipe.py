"""Recipes: TOML loading, dotted overrides, validation errors that name the key."""

from __future__ import annotations

import json

import pytest

from lxmert.training.recipe import Recipe, load_recipe, parse_override, recipe_names


def test_overrides_are_typed_and_nested(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text(
        'task = "vqa"\n[model]\nhidden_size = 64\ninit = "ckpt"\n'
        "[optim]\nlr = 5e-5\n[train]\nbatch_size = 32\n"
    )
    r = load_recipe(path, ["optim.lr=1e-4", "train.epochs=2", "model.l_layers=1",
                           "train.amp=bf16", "data.train=[\"train\", \"nominival\"]",
                           "optim.betas=[0.9, 0.98]", "train.progress=false"])
    assert r.task == "vqa"
    assert r.optim.lr == 1e-4 and r.train.epochs == 2 and r.train.batch_size == 32
    assert r.model.init == "ckpt"
    assert r.model.config == {"hidden_size": 64, "l_layers": 1}
    assert r.train.amp == "bf16" and r.train.progress is False
    assert r.data.train == ["train", "nominival"]
    assert r.optim.betas == [0.9, 0.98]
    # The saved JSON reads back to the same recipe.
    saved = r.save(tmp_path / "config.json")
    again = load_recipe(saved)
    assert again.to_dict() == r.to_dict()
    assert json.loads(saved.read_text())["optim"]["lr"] == 1e-4


def test_bad_keys_and_values_name_the_file_and_key(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[optim]\nlrr = 1.0\n")
    with pytest.raises(ValueError, match=r"bad.toml.*optim\.lrr"):
        load_recipe(path)
    with pytest.raises(ValueError, match=r"train\.epochs: expected an integer"):
        load_recipe(None, ["train.epochs=1.5"])
    with pytest.raises(ValueError, match=r"model\.hidden_sise: not an LxmertConfig field"):
        load_recipe(None, ["model.hidden_sise=8"])
    with pytest.raises(ValueError, match="train.amp"):
        load_recipe(None, ["train.amp=fp8"])
    with pytest.raises(ValueError, match="train.compile"):
        load_recipe(None, ["train.compile=\"inductr\""])
    with pytest.raises(ValueError, match="data.qa_target"):
        load_recipe(None, ["data.qa_target=\"bce\""])
    with pytest.raises(ValueError, match="expected KEY=VALUE"):
        parse_override("optim.lr")
    with pytest.raises(ValueError, match="recipe is for task 'vqa'"):
        p = tmp_path / "v.toml"
        p.write_text('task = "vqa"\n')
        load_recipe(p, task="gqa")
    with pytest.raises(FileNotFoundError, match="not found"):
        load_recipe(tmp_path / "missing.toml")


def test_model_field_set_in_both_layouts_is_an_error_not_a_silent_pick(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text('task = "vqa"\n[model]\nhidden_dropout_prob = 0.1\n')
    with pytest.raises(ValueError, match=r"r.toml.*model\.hidden_dropout_prob \(0\.1\) and "
                                         r"model\.config\.hidden_dropout_prob \(0\.0\)"):
        load_recipe(path, ["model.config.hidden_dropout_prob=0.0"])
    # The same value in both places is harmless; the flat key is the documented override.
    assert load_recipe(path, ["model.config.hidden_dropout_prob=0.1"]).model.config["hidden_dropout_prob"] == 0.1
    assert load_recipe(path, ["model.hidden_dropout_prob=0.0"]).model.config["hidden_dropout_prob"] == 0.0


def test_pretrain_loss_weights_are_checked():
    r = load_recipe(None, ["pretrain.loss_weights.matched=4.0", "pretrain.loss_weights.qa=1"], task="pretrain")
    assert r.options.loss_weights == {"matched": 4.0, "qa": 1}
    assert load_recipe(None, ["pretrain.loss_weights={matched = 2.0}"], task="pretrain").options.loss_weights == {
        "matched": 2.0}
    with pytest.raises(ValueError, match=r"pretrain\.loss_weights\.match: not a loss"):
        load_recipe(None, ["pretrain.loss_weights.match=4.0"], task="pretrain")
    with pytest.raises(ValueError, match=r"pretrain\.loss_weights\.qa = -1"):
        load_recipe(None, ["pretrain.loss_weights.qa=-1"], task="pretrain")


def test_bare_string_override():
    assert parse_override("model.init=runs/pre/best") == (["model", "init"], "runs/pre/best")
    assert parse_override("optim.lr=1e-4") == (["optim", "lr"], 1e-4)


def test_shipped_recipes_load_with_the_papers_numbers():
    names = set(recipe_names())
    for required in ("lxr955-pretrain", "vqa", "gqa", "nlvr2", "demo-pretrain", "demo-vqa",
                     "demo-gqa", "demo-nlvr2"):
        assert required in names
    for name in names:
        load_recipe(name)  # every shipped recipe validates
    pre = load_recipe("lxr955-pretrain")
    assert (pre.optim.lr, pre.train.batch_size, pre.train.epochs, pre.optim.warmup,
            pre.optim.max_grad_norm, pre.train.seed) == (1e-4, 256, 20, 0.05, 1.0, 9595)
    assert pre.model.config.get("l_layers", 9) == 9 and pre.model.init == ""
    for task, lr in (("vqa", 5e-5), ("gqa", 1e-5), ("nlvr2", 5e-5)):
        r = load_recipe(task)
        assert r.task == task
        assert (r.optim.lr, r.train.batch_size, r.train.epochs, r.optim.warmup,
                r.optim.max_grad_norm) == (lr, 32, 4, 0.1, 5.0)
    assert Recipe().optim.name == "bertadam"
