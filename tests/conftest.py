"""Fixtures for every test. Shared helper functions live in tests/helpers.py (test modules
import from there, never from conftest.py or from one another)."""
import numpy as np
import pytest
import torch
from PIL import Image


@pytest.fixture(autouse=True, scope="session")
def _session_cache(tmp_path_factory):
    """Module- and session-scoped fixtures run before the per-test fixture below: point them
    at a temp cache too, never the user's real one."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GANFORGE_CACHE", str(tmp_path_factory.mktemp("ganforge-cache-session")))
        yield


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """A fresh, empty ``$GANFORGE_CACHE`` for each test (evaluators, reference features,
    downloads: nothing one test stores is seen by another, nor the user's real cache); torch
    single-threaded per xdist worker."""
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path_factory.mktemp("ganforge-cache")))
    torch.set_num_threads(1)
    yield


@pytest.fixture
def shapes(tmp_path):
    """Two easily separable classes of 16 px grayscale images in class subfolders (60 each)."""
    root = tmp_path / "shapes"
    g = np.random.default_rng(0)
    for cls in ("bar", "dot"):
        (root / cls).mkdir(parents=True)
        for i in range(60):
            a = np.zeros((16, 16), np.uint8)
            y, x = g.integers(2, 10, 2)
            if cls == "bar":
                a[:, x:x + 3] = 255
            else:
                a[y:y + 4, x:x + 4] = 255
            Image.fromarray(a).save(root / cls / f"{i}.png")
    return root


@pytest.fixture
def evaluator(shapes):
    from ganforge.metrics.domain.train import train_evaluator
    return train_evaluator(str(shapes), epochs=3, batch_size=32, progress=False)
