"""Fixtures for every test. Shared helper functions live in tests/helpers.py (test modules
import from there, never from conftest.py or from one another)."""
import pytest
import torch


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
