"""Heavy imports pause the garbage collector and leave it as they found it."""

from __future__ import annotations

import gc

import pytest
from winecrm.core.imports import collector_paused


@pytest.fixture(autouse=True)
def collector_running():
    gc.enable()
    yield
    gc.enable()


def test_the_collector_is_paused_inside_and_running_after():
    with collector_paused():
        assert not gc.isenabled()
        with collector_paused():  # nested: the inner block leaves it paused for the outer one
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_failing_import_resumes_the_collector():
    with pytest.raises(ImportError), collector_paused():
        import a_module_that_does_not_exist  # noqa: F401
    assert gc.isenabled()


def test_a_collector_paused_by_someone_else_stays_paused():
    gc.disable()
    with collector_paused():
        pass
    assert not gc.isenabled()
