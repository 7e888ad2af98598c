"""Fixtures of the model client tests: a fake model server on loopback."""

from collections.abc import Iterator

import pytest

from tests.llm_fake import FakeModelServer


@pytest.fixture
def model_server() -> Iterator[FakeModelServer]:
    """A fake OpenAI/Anthropic server for one test (see ``tests.llm_fake``)."""
    with FakeModelServer() as server:
        yield server
