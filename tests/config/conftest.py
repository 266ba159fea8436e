"""Fixtures of the configuration tests: a test PKI (tests/support/tls.py), made once per run."""

from __future__ import annotations

import pytest

from tests.support.tls import Pki, make_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))
