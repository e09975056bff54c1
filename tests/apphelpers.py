"""Start `python app.py` as a subprocess on a free local port, for the app and browser tests."""
from __future__ import annotations

from typing import Iterator

import pytest

from mindmap.serve import REPO, serve_app

SHIPPED = REPO / "checkpoints" / "raster-emoji32"


@pytest.fixture(scope="module")
def tiny_app(tiny_root) -> Iterator[str]:
    """URL of app.py serving conftest's tiny raster model (`tiny-raster`)."""
    with serve_app(tiny_root) as url:
        yield url
