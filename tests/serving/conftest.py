"""Fixtures of the pipeline and server tests: one generated world with pictures and one
tiny QA checkpoint for the whole package (read-only; a test that changes files makes its
own), and one torch thread (small matrices: a second intra-op thread only spin-waits on
a shared 2-core machine)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from support.serving import save_qa, world_answers, world_with_pictures


@pytest.fixture(scope="package", autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="package")
def world(tmp_path_factory) -> Path:
    return world_with_pictures(tmp_path_factory.mktemp("serving-world"))


@pytest.fixture(scope="package")
def qa(world, tmp_path_factory) -> Path:
    return save_qa(tmp_path_factory.mktemp("serving-qa") / "ckpt", world_answers(world), world)
