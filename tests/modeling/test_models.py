"""One tester for every registered task (cf. transformers' ModelTesterMixin, timm's test_models).

Parametrised over `lxmert.tasks.task_names()`, so a new task module is tested the moment it
is registered: its recipe, dataset, collate, model, loss, prediction, metric, prediction
file and checkpoint round trip, on a small generated world, with a tiny model.
"""

from __future__ import annotations

import pytest
import torch

from support.world import make_world
from lxmert.api import make_task
from lxmert.data.synth.more_tasks import derive_more_tasks
from lxmert.errors import CheckpointError
from lxmert.modeling import LxmertPreTrainedModel, model_class, model_names
from lxmert.tasks import get_task, task_names
from lxmert.training.recipe import load_recipe, recipe_names

TINY = ["model.hidden_size=32", "model.num_attention_heads=2", "model.intermediate_size=64", "model.l_layers=1",
        "model.x_layers=1", "model.r_layers=1", "model.hidden_dropout_prob=0.0",
        "model.attention_probs_dropout_prob=0.0", "data.num_workers=0", 'data.features=["features/store"]',
        "data.valid_limit=8", "train.batch_size=4", "data.token_cache=\"\""]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = make_world(tmp_path_factory.mktemp("models_world"), images=40)
    derive_more_tasks(root, seed=0)
    return root


def _recipe(name: str, world):
    """The task's demo recipe (`demo-<name>`, made for the generated world) or else its own
    packaged recipe, shrunk, keeping the splits the world has."""
    task = get_task(name)
    base = f"demo-{name}" if f"demo-{name}" in recipe_names() else task.default_recipe
    recipe = load_recipe(base, TINY)
    probe = task(recipe, world)

    def has(split: str) -> bool:
        try:
            return all(p.is_file() for p in probe.split_files([split]))
        except FileNotFoundError:
            return False

    train = [s for s in recipe.data.train if has(s)]
    assert train, f"{name}: none of {recipe.data.train} in the world"
    valid = recipe.data.valid if has(recipe.data.valid) else train[0]
    return load_recipe(base, [*TINY, f"data.train={train!r}".replace("'", '"'), f"data.valid={valid!r}"])


@pytest.mark.parametrize("name", task_names())
def test_task(name, world, tmp_path):
    task = make_task(_recipe(name, world), world)
    torch.manual_seed(0)
    model = task.build_model()
    assert isinstance(model, task.model_class)

    train = task.train_dataset()
    batch = task.collate([train[i] for i in range(4)])
    inputs, meta = batch
    assert batch.size == 4 and all(len(v) == 4 for v in meta.values())
    model.train()
    loss, parts = task.loss(model, inputs, 0)
    assert loss.dim() == 0 and torch.isfinite(loss), name
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)
    with pytest.raises(TypeError):  # a misspelt argument is an error, never swallowed
        model(**inputs, labelz=None)

    model.eval()
    model.save_pretrained(tmp_path / "ckpt")
    for cls in (task.model_class, LxmertPreTrainedModel):  # the recorded class comes back
        again = cls.from_pretrained(tmp_path / "ckpt")
        assert type(again) is type(model)
    with torch.no_grad():
        a = task.loss(model, inputs, 0)[0]
        b = task.loss(again, inputs, 0)[0]
    assert torch.equal(a, b)
    for other in model_names():  # another task's head is never made up silently
        if other not in (type(model).__name__, "LxmertModel"):
            with pytest.raises(CheckpointError):
                model_class(other).from_pretrained(tmp_path / "ckpt")

    metrics = task.validate(model, torch.device("cpu"))
    if task.main_metric is not None:
        assert task.main_metric in metrics
        valid = task.valid_dataset()
        predictions = task.predict(model, valid, torch.device("cpu"))
        assert predictions.by_id
        assert task.main_metric in task.score(predictions.by_id, valid)
        path = task.write_predictions(tmp_path / f"predictions{task.prediction_suffix}", predictions.by_id)
        assert path.is_file() and path.stat().st_size > 0
    else:
        assert metrics and all(v == v for v in metrics.values())  # pre-training: its losses, no NaN
