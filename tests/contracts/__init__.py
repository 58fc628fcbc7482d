"""Contract suites: one per port, run unchanged against every adapter of that port.

Subclass the suite in a test module named ``test_*.py`` under a ``Test...``
class name and give it the fixtures it asks for::

    class TestMyStore(StoreContract):
        @pytest.fixture
        def store(self) -> ports.PayoutStore:
            return MyStore()
"""

from tests.contracts.gateway_contract import GatewayContract, StripeHarness
from tests.contracts.store_contract import StoreContract

__all__ = ["GatewayContract", "StoreContract", "StripeHarness"]
