import os

import pytest
import torch


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Never touch the user's real cache; keep torch single-threaded per xdist worker."""
    cache = tmp_path_factory.getbasetemp() / "ganforge-cache"
    monkeypatch.setenv("GANFORGE_CACHE", str(cache))
    torch.set_num_threads(1)
    yield


FMNIST_DIR = "/usr/share/datasets/fashion-mnist"


def require_fashion_mnist():
    """Skip when Fashion-MNIST is not installed, unless CI demands real data."""
    if not os.path.isdir(FMNIST_DIR):
        if os.environ.get("GANFORGE_REQUIRE_DATA") == "1":
            pytest.fail(f"Fashion-MNIST missing at {FMNIST_DIR} but GANFORGE_REQUIRE_DATA=1 "
                        f"(install the Debian package dataset-fashion-mnist)")
        pytest.skip(f"Fashion-MNIST not installed at {FMNIST_DIR}")
