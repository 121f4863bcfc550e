"""Shared fixtures for the model tests: the published reference values."""

import json
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[3] / "shared" / "reference" / "literature.json"
COPY = Path(__file__).resolve().parent / "data" / "literature.json"
"""A copy kept in the repository so a clone without ../shared still runs every reference test."""


@pytest.fixture(scope="session")
def literature():
    """The ``values`` of ../shared/reference/literature.json (each entry names its source), else the copy."""
    path = SHARED if SHARED.is_file() else COPY
    return json.loads(path.read_text())["values"]
