"""Where the project keeps its data files."""
from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("YOUSHU_DATA_DIR", PROJECT_ROOT / "data"))
DEFAULT_DB = Path(os.environ.get("YOUSHU_DB", DATA_DIR / "youshu.duckdb"))
YEARBOOK_DIR = Path(__file__).resolve().parent / "data" / "nbs-yearbook"
