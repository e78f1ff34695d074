"""The relay pipes of a multi-process target (loadgen/exchange/cluster.py TargetCluster._on_pipe): a
message larger than the socket buffer -- mail with attachments relayed to another process's user --
arrives in parts.  uvloop's add_reader makes the descriptor non-blocking, so a plain Connection.recv()
would stop half way with BlockingIOError; the reader was then dropped and the sending process blocked
in its send for good, with its event loop and every device it served (seen as a 10,000-device run whose
target processes stopped answering)."""

import asyncio
import multiprocessing
import threading
from types import SimpleNamespace

import uvloop

from loadgen.exchange.cluster import TargetCluster


def test_relayed_messages_larger_than_the_socket_buffer_are_all_read():
    parent_end, child_end = multiprocessing.get_context("spawn").Pipe()
    cluster = TargetCluster.__new__(TargetCluster)
    seen = []

    def user_for(address):
        seen.append(address)
        return None  # nobody to deliver to: the test is about reading

    cluster._pipes = [parent_end]
    cluster._session = None
    cluster.state = SimpleNamespace(store=SimpleNamespace(user_for=user_for))
    big = b"x" * (3 << 20)  # 3 MiB: many socket buffers
    messages = [("relay", big, ["a%d@example.com" % i]) for i in range(4)] + [("relay", b"small", ["last@example.com"])]
    sent = threading.Event()

    def child():
        for m in messages:
            child_end.send(m)
        sent.set()

    async def main():
        loop = asyncio.get_running_loop()
        loop.add_reader(parent_end.fileno(), cluster._on_pipe, 0)
        thread = threading.Thread(target=child, daemon=True)
        thread.start()
        deadline = loop.time() + 30
        while len(seen) < len(messages) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        loop.remove_reader(parent_end.fileno())

    uvloop.run(main())
    assert sent.is_set(), "the sending side is still blocked in its send"
    assert seen == ["a%d@example.com" % i for i in range(4)] + ["last@example.com"]
    parent_end.close()
    child_end.close()
