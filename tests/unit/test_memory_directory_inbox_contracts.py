"""The in-memory account directory and settlement inbox keep their ports' contracts."""

from __future__ import annotations

import pytest

from payout_adapters.memory import InMemoryAccountDirectory, InMemoryInbox
from payout_core import ports
from tests.contracts.directory_contract import Connect, DirectoryContract, Disconnect
from tests.contracts.inbox_contract import InboxContract, Send
from tests.kit import builders as b
from tests.kit.times import T0


class TestInMemoryAccountDirectory(DirectoryContract):
    @pytest.fixture
    def memory_directory(self) -> InMemoryAccountDirectory:
        return InMemoryAccountDirectory()

    @pytest.fixture
    def directory(self, memory_directory: InMemoryAccountDirectory) -> ports.AccountDirectory:
        return memory_directory

    @pytest.fixture
    def connect(self, memory_directory: InMemoryAccountDirectory) -> Connect:
        return memory_directory.set_account

    @pytest.fixture
    def disconnect(self, memory_directory: InMemoryAccountDirectory) -> Disconnect:
        return memory_directory.remove_account


class TestInMemoryInbox(InboxContract):
    @pytest.fixture
    def memory_inbox(self) -> InMemoryInbox:
        return InMemoryInbox()

    @pytest.fixture
    def inbox(self, memory_inbox: InMemoryInbox) -> ports.SettlementInbox:
        return memory_inbox

    @pytest.fixture
    def send(self, memory_inbox: InMemoryInbox) -> Send:
        def send(settlement_id: str, payload: str) -> int:
            return memory_inbox.put_json(settlement_id, payload, received_at=T0)

        return send

    @pytest.fixture
    def job_id(self) -> str:
        return b.new_id()  # the in-memory inbox knows no store
