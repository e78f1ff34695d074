"""The embedded target's handlers of the mail commands beyond Sync, Ping, the compose commands and
MoveItems: one module per command, registered here for the server's handler table (server.py
``Target._handlers``).  A handler is ``handle(target, record, version, tree) -> web.Response``.

* MeetingResponse (MS-ASCMD 2.2.1.11): meeting.py
* Search (MS-ASCMD 2.2.1.16): search.py -- GAL and Mailbox stores
* ResolveRecipients (MS-ASCMD 2.2.1.15): resolve.py
* GetItemEstimate (MS-ASCMD 2.2.1.9): estimate.py
* Settings (MS-ASCMD 2.2.1.18): oof.py -- Oof Get/Set, DeviceInformation, DevicePassword, UserInformation
"""

from loadgen.exchange import estimate, meeting, oof, resolve, search

HANDLERS = {
    "MeetingResponse": meeting.handle,
    "Search": search.handle,
    "ResolveRecipients": resolve.handle,
    "GetItemEstimate": estimate.handle,
    "Settings": oof.handle,
}


def install(table):
    """Add the handlers to a server's handler table (a dict command -> handler); returns it."""
    table.update(HANDLERS)
    return table
