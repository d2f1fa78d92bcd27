"""Shared fixtures: one small demo warehouse per test session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

SMALL_SCALE = 0.02


@pytest.fixture(scope="session")
def small_db(tmp_path_factory) -> Path:
    """A small warehouse (scale 0.02) built once per session with the real build entry point."""
    from warehouse.build import build_warehouse

    path = tmp_path_factory.mktemp("warehouse") / "small.duckdb"
    build_warehouse(path, scale=SMALL_SCALE, progress=None)
    return path
