"""fedprog's own ClientApp, slow to tell its site: a hospital whose machine is loaded, for tests.

The test copies this file into its Flower App folder (so it travels in the FAB) and names
``slow_clientapp:client`` as the App's ClientApp. Every message goes to
:data:`fedprog.flower_app.client` unchanged; only the answer to the request for the node's site
(the coordinator's discovery probe) is held back by the seconds in the SuperNode's environment
variable :data:`DELAY` (absent: no delay). Nothing in fedprog reads that variable.
"""

from __future__ import annotations

import os
import time

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from federated.protocol.flower_records import HELLO_TYPE
from fedprog.flower_app import client as fedprog_client

#: seconds this node takes to answer the request for its site
DELAY = "FEDPROG_TEST_HELLO_DELAY"


class SlowToAnswer(ClientApp):
    """fedprog's ClientApp behind a delay on the discovery probe."""

    def __call__(self, message: Message, context: Context) -> Message:
        if message.metadata.message_type == HELLO_TYPE:
            time.sleep(float(os.environ.get(DELAY) or 0))
        return fedprog_client(message, context)


client = SlowToAnswer()
