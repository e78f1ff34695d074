"""Bearer tokens on the embedded target (exchange/bearer.py): validated without a table, Basic still
accepted, the RFC 6750 challenge for a token that is expired, malformed, for another target or another
user; a cluster's processes accept the parent's tokens; the run's token source mints valid ones."""

import pickle

import pytest

from loadgen import scenario
from loadgen.eas import commands
from loadgen.exchange import bearer
from loadgen.exchange.cluster import STATE_OPTIONS, shard_state
from loadgen.exchange.launch import launch
from loadgen.exchange.state import TargetState
from test_target import AUTH, INFO, Client
from test_target_features import make_target  # noqa: F401

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_tokens_are_checked_by_their_signature_user_and_expiry():
    state = TargetState(users=3)
    now = state.clock()
    good = state.mint_token("user1")
    assert state.authenticate("Bearer " + good) == "user1"
    assert state.authenticate("bearer  " + good) == "user1"  # the scheme is case-insensitive (RFC 9110 11.1)
    assert state.authenticate("Bearer " + state.mint_token("user1", lifetime=-5)) is None  # expired
    assert state.authenticate("Bearer " + TargetState(users=3).mint_token("user1")) is None  # another secret
    assert state.authenticate("Bearer " + bearer.mint(state.token_secret, "nobody", now + 60)) is None
    user_part, expiry = good.split(".")[1:3]
    forged = bearer.mint(b"x" * 32, "user2", now + 60).split(".")
    for bad in ("", "eas1", "eas1.a.b.c", good + "x", good.replace(expiry, str(int(expiry) + 1000)),
                ".".join(["eas1", forged[1], expiry, good.split(".")[3]]), "eas2" + good[4:]):
        assert state.authenticate("Bearer " + bad) is None, bad
    assert bearer.check(state.token_secret, good) == ("user1", int(expiry))
    assert all(c.isalnum() or c in "-._~+/" for c in good)  # RFC 6750 2.1 b64token
    # a token once accepted is cached with its expiry: it stops working when it expires
    clock = [now]
    state = TargetState(users=3, clock=lambda: clock[0], token_lifetime=10)
    token = "Bearer " + state.mint_token("user2")
    assert state.authenticate(token) == "user2"
    clock[0] += 11
    assert state.authenticate(token) is None
    with pytest.raises(ValueError, match="token_lifetime"):
        TargetState(users=3, token_lifetime=0)


async def test_the_run_token_source_mints_what_the_target_accepts():
    state = TargetState(users=3)
    source = state.token_source()
    first = await source.get("user0")
    assert source.cached("user0") == first and await source.get("user0") == first
    assert state.authenticate("Bearer " + first) == "user0"
    clock = [state.clock() + 1]
    source.clock = lambda: clock[0]
    fresh = await source.get("user0", fresh=True)
    assert fresh != first and state.authenticate("Bearer " + fresh) == "user0"
    copy = pickle.loads(pickle.dumps(source))  # --workers: the secret goes along, the cache stays
    assert copy.cached("user0") is None and state.authenticate("Bearer " + await copy.get("user0")) == "user0"
    assert "eas1" not in repr(source) and state.token_secret.hex() not in repr(source)


def test_a_cluster_process_accepts_the_parent_s_tokens():
    parent = TargetState(users=4, seed=2)
    options = {"users": 4, "seed": 2, "token_secret": parent.token_secret}
    assert "token_secret" in STATE_OPTIONS
    process1 = shard_state(options, 1, 2)  # users 1 and 3
    assert process1.authenticate("Bearer " + parent.mint_token("user1")) == "user1"
    assert process1.authenticate("Bearer " + parent.mint_token("user0")) is None  # not its user: as for Basic


async def test_bearer_and_basic_over_http_with_the_rfc_6750_challenge(make_target):
    tgt, session, url = await make_target(users=3)
    state = tgt.state
    c = Client(session, url)

    async def refused(auth):
        status, headers, _ = await c.post("Provision", b"", auth=auth)  # any command: authentication first
        return status, headers.get("WWW-Authenticate")

    good = "Bearer " + state.mint_token("user1")
    status, _, tree = await c.post("Provision", commands.provision_initial(INFO), key="0", auth=good)
    assert status == 200 and commands.parse_provision(tree).status == 1
    status, _, tree = await c.post("Provision", commands.provision_initial(INFO), key="0", auth=AUTH)
    assert status == 200 and commands.parse_provision(tree).status == 1  # Basic too
    challenge = 'Bearer realm="easload", error="invalid_token"'
    assert await refused("Bearer " + state.mint_token("user1", lifetime=-1)) == (401, challenge)  # expired
    assert await refused("Bearer " + TargetState(users=3).mint_token("user1")) == (401, challenge)  # wrong
    assert await refused("Bearer not-a-token") == (401, challenge)
    assert await refused("Basic dXNlcjE6bm9wZQ==") == (401, 'Basic realm="easload"')
    assert await refused(None) == (401, 'Basic realm="easload", Bearer realm="easload"')
    assert tgt.counters[("Provision", 401, None)] == 5


async def test_the_launched_scenario_carries_the_target_s_token_source():
    sc = scenario.parse('duration = 1\n[auth]\nusers = 2\n[population]\ndevices = 2\n', "x.toml")
    launched = await launch(sc)
    try:
        source = launched.scenario.target.bearer_tokens
        assert launched.state.authenticate("Bearer " + await source.get("user1")) == "user1"
        assert sc.target.bearer_tokens is None  # the scenario given is not changed
    finally:
        await launched.close()
