"""Shared fixtures for the model tests: the published reference values."""

import json
from pathlib import Path

import pytest

LITERATURE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "literature.json"


@pytest.fixture(scope="session")
def literature():
    """The ``values`` of ../shared/reference/literature.json (each entry names its source)."""
    if not LITERATURE.is_file():
        pytest.skip(f"reference values not found at {LITERATURE} (the shared/ checkout beside the repository)")
    return json.loads(LITERATURE.read_text())["values"]
