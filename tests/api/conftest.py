"""Fixtures of the API tests."""

from collections.abc import AsyncIterator

import pytest

from tests.webhook_support import Receiver, receiving


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with receiving(Receiver()) as started:
        yield started
