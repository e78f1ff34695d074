"""A Scenario is frozen by construction (loadgen/scenario.py): every value is decided while it is
built, the command line's flags make a changed copy (scenario.overridden), and any write after
construction -- to the scenario, a part of it, one of its lists or tables, a user pattern -- raises.
What a run adds while it goes lives in the run context (loadgen/run/context.py)."""

import dataclasses
import pickle
from pathlib import Path

import pytest

from loadgen import scenario
from loadgen.cli.app import main
from loadgen.run.context import RunLoad
from loadgen.wire import ratelimit

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((ROOT / "scenarios").glob("*.toml"))

# every feature that gives a part a list, a table or a pattern: autodiscover, redirects, stages,
# thresholds and events with nested tables and arrays
RICH = """
name = "rich"
[target]
autodiscover = "u{n}@example.com"
autodiscover_redirect = { "Example.com" = "mail.example.org" }
[auth]
user = "u{n}@example.com"
first_user = 1
[population]
versions = { "14.1" = 3, "16.1" = 1 }
[load]
model = "open"
stages = [{ duration = "5s", target = 2 }, { duration = "5s", target = 4.5 }]
max_request_rate = 20
[thresholds]
"errors.rate" = "< 0.01"
[[events]]
at = "3s"
action = "abq"
rules = [{ characteristic = "DeviceType", query = "Android", access = "Quarantine" }]
allowed_ids = ["A1"]
[[events]]
at = "1s"
action = "change_policy"
settings = { MinDevicePasswordLength = 6 }
"""


def _parts(obj, where="scenario"):
    """(where, object) for the scenario and everything inside it: parts, lists, tables, patterns."""
    yield where, obj
    if dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            yield from _parts(getattr(obj, f.name), "%s.%s" % (where, f.name))
    elif isinstance(obj, (list, tuple)):
        for i, item in enumerate(obj):
            yield from _parts(item, "%s[%d]" % (where, i))
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from _parts(value, "%s[%r]" % (where, key))


def _all_scenarios():
    return [(p.name, scenario.load(p)) for p in SCENARIOS] + [("rich", scenario.parse(RICH, "rich.toml"))]


def _writes_refused(sc):
    """Every way of writing into ``sc`` that a caller could try, each checked to raise; returns how many."""
    tried = 0
    for where, obj in _parts(sc):
        if dataclasses.is_dataclass(obj):
            for f in dataclasses.fields(obj):
                with pytest.raises(dataclasses.FrozenInstanceError):
                    setattr(obj, f.name, getattr(obj, f.name))
                with pytest.raises(dataclasses.FrozenInstanceError):
                    delattr(obj, f.name)
                tried += 2
            with pytest.raises((dataclasses.FrozenInstanceError, AttributeError)):  # no new attribute either
                obj.stash = object()
            if type(obj).__module__ == scenario.__name__:  # the parts: nothing to smuggle state into (__dict__)
                assert not hasattr(obj, "__dict__"), where
            tried += 1
        elif isinstance(obj, scenario.UserPattern):
            for name in ("first", "_parts", "stash"):
                with pytest.raises(AttributeError):
                    setattr(obj, name, 5)
                tried += 1
            assert not hasattr(obj, "__dict__"), where
        elif isinstance(obj, list):
            for write in (lambda: obj.append(1), lambda: obj.extend([1]), lambda: obj.insert(0, 1),
                          lambda: obj.__setitem__(slice(None), []), lambda: obj.clear(), lambda: obj.sort(),
                          lambda: obj.pop(), lambda: obj.__iadd__([1]), lambda: obj.reverse()):
                with pytest.raises(TypeError):
                    write()
                tried += 1
        elif isinstance(obj, dict):
            for write in (lambda: obj.__setitem__("k", 1), lambda: obj.update(k=1), lambda: obj.setdefault("k", 1),
                          lambda: obj.pop("k", None), lambda: obj.popitem(), lambda: obj.clear(),
                          lambda: obj.__ior__({"k": 1})):
                with pytest.raises(TypeError):
                    write()
                tried += 1
    return tried


@pytest.mark.parametrize("name,sc", _all_scenarios(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_write_into_a_loaded_scenario_raises(name, sc):
    before = pickle.dumps(sc)
    assert _writes_refused(sc) > 100
    assert pickle.dumps(sc) == before  # and nothing changed on the way


def test_the_rich_scenario_holds_what_its_file_says():
    """The parts are built from values decided before construction (parse writes nothing afterwards)."""
    sc = scenario.parse(RICH, "rich.toml")
    assert sc.load.stages == [(5.0, 2.0), (5.0, 4.5)] and sc.load.max_request_rate == 20.0
    assert sc.load.autodiscover.format(n=0) == "u1@example.com" and sc.auth.user.format(n=2) == "u3@example.com"
    assert sc.target.autodiscover_redirect == {"example.com": "mail.example.org"}
    assert [e.action for e in sc.events] == ["change_policy", "abq"]  # sorted by time
    assert sc.events[1].args["rules"][0]["access"] == "Quarantine" and sc.events[1].display() == "abq"
    assert [str(t) for t in sc.thresholds] == ["errors.rate < 0.01"]


def test_a_frozen_scenario_still_travels_and_copies():
    """Worker and target processes get the scenario pickled; the copies are as frozen as the original."""
    sc = scenario.parse(RICH, "rich.toml")
    again = pickle.loads(pickle.dumps(sc))
    assert again == sc and again.auth.user.format(n=0) == "u1@example.com"
    assert _writes_refused(again) == _writes_refused(sc)
    copy = dataclasses.replace(sc, duration=3.0)
    assert copy.duration == 3.0 and sc.duration != 3.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        copy.duration = 4.0


def test_a_part_built_directly_is_frozen_too():
    """LoadConfig(stages=[...]) as tests and benches build it: its list is read-only as parse's is."""
    load = scenario.LoadConfig(stages=[(1.0, 2.0)])
    with pytest.raises(TypeError):
        load.stages.append((1.0, 3.0))
    pop = scenario.PopulationConfig(versions={"14.1": 1})
    with pytest.raises(TypeError):
        pop.versions["16.1"] = 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        pop.devices = 3


def test_overridden_is_a_copy_with_the_flags():
    sc = scenario.parse('duration = 20\n[auth]\nusers = 100\n[population]\ndevices = 20\n', "f.toml")
    before = pickle.dumps(sc)
    new = scenario.overridden(sc, duration=7.0, devices=300, url="https://mail.example.test/M",
                              transport="aiohttp", insecure=True)
    assert (new.duration, new.population.devices, new.auth.users) == (7.0, 300, 150)  # users cover the devices
    assert (new.target.url, new.target.insecure, new.load.transport) == ("https://mail.example.test/M", True,
                                                                          "aiohttp")
    assert pickle.dumps(sc) == before  # the scenario given is unchanged
    assert scenario.overridden(sc) is sc
    assert _writes_refused(new) > 100


def test_run_state_lives_in_the_run_context_not_in_the_scenario():
    """The token bucket and a redirect's cap change the run context (RunLoad), never [load]."""
    sc = scenario.parse('[load]\nmax_request_rate = 10\n', "f.toml")
    before = pickle.dumps(sc)
    ctx = RunLoad.for_run(sc)
    assert all(getattr(ctx, f.name) == getattr(sc.load, f.name) for f in dataclasses.fields(sc.load)
               if f.name != "autodiscover")
    assert ratelimit.bucket(ctx) is ctx.bucket is not None
    ctx.request_cap = 0.0
    ratelimit.remote_move(ctx, 5.0)
    assert ctx.request_cap == 5.0
    assert pickle.dumps(sc) == before


def test_flags_give_what_the_same_values_in_the_file_give(tmp_path, capsys):
    """``easload run --dry-run`` with --duration --devices --target --transport --insecure plans the
    run a file holding those values plans."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "s.toml").write_text('name = "s"\nduration = 20\n[auth]\nusers = 100\n'
                                           '[population]\ndevices = 20\n')
    (tmp_path / "b" / "s.toml").write_text(
        'name = "s"\nduration = 7\n[target]\nurl = "https://mail.example.test/M"\ninsecure = true\n'
        '[auth]\nusers = 150\n[population]\ndevices = 300\n[load]\ntransport = "aiohttp"\n')
    assert main(["run", str(tmp_path / "a" / "s.toml"), "--dry-run", "--duration", "7", "--devices", "300",
                 "--target", "https://mail.example.test/M", "--transport", "aiohttp", "--insecure"]) == 0
    flags = capsys.readouterr().out
    assert main(["run", str(tmp_path / "b" / "s.toml"), "--dry-run"]) == 0
    file = capsys.readouterr().out
    assert "300 on 150 users" in flags and "mail.example.test" in flags
    assert flags.replace(str(tmp_path / "a"), "D") == file.replace(str(tmp_path / "b"), "D")
