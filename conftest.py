"""Shared pytest set-up: docstring examples run as doctests with ``torch`` in scope."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _doctest_torch(doctest_namespace: dict) -> None:
    doctest_namespace["torch"] = torch
