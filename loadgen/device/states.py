"""What a device reports and what its steps hand each other.

The states (``Device.state``) are the final or current states the engine reports; the markers
are what an ordinary command returns instead of a decoded answer.
"""

from loadgen.results.outcomes import INTERRUPTED  # noqa: F401 -- the outcome of a held Ping the device stopped to act (mail.py)


NEW = "new"
PROVISIONING = "provisioning"
PROVISIONED = "provisioned"
NO_POLICY = "no_policy"  # the server has no policy for the device (Policy Status 2)
UNPROVISIONED = "unprovisioned"  # non-provisionable device allowed without a policy
REFUSED = "refused"
BLOCKED = "blocked"
QUARANTINED = "quarantined"
WIPED = "wiped"
THROTTLED = "throttled"
FAILED = "failed"
AUTH_FAILED = "auth_failed"
STOPPED = "stopped"  # stopped by a closed-model ramp-down (engine.ClosedStages): not a failure

FAILED_CMD = object()  # an ordinary command that did not succeed
PARKED = object()  # a Ping sent with transport.park: the answer comes to a callback (Device.ping_answered)
MALFORMED = object()  # the tree of a WBXML body that does not decode (truncated, corrupt): a failed request


class Stopped(Exception):
    """Raised instead of sending a request once the engine asked the device to stop (closed-model ramp-down)."""
