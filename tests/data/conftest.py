"""Fixtures for the data-layer tests: the synthetic warehouse of :mod:`ashare_synth`."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from ashare_synth import Warehouse, build_warehouse


@pytest.fixture(scope="session")
def warehouse(tmp_path_factory) -> Warehouse:
    """The synthetic warehouse (read-only by convention: copy it before deleting files)."""
    return build_warehouse(tmp_path_factory.mktemp("ashare"))


@pytest.fixture
def dm(warehouse):
    from data.manager import DataManager
    return DataManager(warehouse.root)


@pytest.fixture
def warehouse_copy(warehouse, tmp_path) -> Path:
    """A private copy of the synthetic warehouse that a test may damage."""
    dst = tmp_path / "wh"
    shutil.copytree(warehouse.root, dst)
    return dst
