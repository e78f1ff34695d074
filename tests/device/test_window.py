"""A collection's window (loadgen/device/mail.py Window) behaves as the dict it replaces: the same
answers and the same insertion order under any sequence of the operations the device uses, with int
keys (two arrays), opaque string keys and big infos (a dict from then on)."""

import random

import pytest

from loadgen.device.mail import Collection, Window, _key


def _same(w, d):
    assert len(w) == len(d) and bool(w) == bool(d)
    assert list(w) == list(d)
    assert w.items() == list(d.items())
    for k in d:
        assert k in w and w[k] == d[k]


@pytest.mark.parametrize("seed", range(6))
def test_window_matches_a_dict_under_random_operations(seed):
    rng = random.Random(seed)
    w, d = Window(), {}
    opaque = seed % 2 == 1  # odd seeds mix in string ids part-way, as a server with opaque ServerIds
    for step in range(3000):
        if opaque and step > 1500 and rng.random() < 0.05:
            key = "AAMk%d" % rng.randrange(50)
        else:
            key = rng.randrange(1, 60)
        op = rng.random()
        if op < 0.45:
            info = rng.randrange(0, 4000) if rng.random() < 0.99 else 2 ** 40  # a big info: dict from then on
            w[key] = info
            d[key] = info
            if len(d) > 32:  # the device's bound: the oldest entry goes
                oldest = next(iter(d))
                assert next(iter(w)) == oldest
                del w[oldest]
                del d[oldest]
        elif op < 0.65:
            assert w.pop(key, None) == d.pop(key, None)
        elif op < 0.75 and key in d:
            del w[key]
            del d[key]
        elif op < 0.8:
            with pytest.raises(KeyError):
                w.pop(-1)
            with pytest.raises(KeyError):
                w[-1]
            with pytest.raises(KeyError):
                del w[-1]
        else:
            assert (key in w) == (key in d)
        if step % 97 == 0:
            _same(w, d)
    _same(w, d)


def test_window_keeps_int_keys_in_arrays_and_is_small():
    w = Window()
    assert not w and list(w) == [] and w.items() == [] and 5 not in w and w.pop(5, "none") == "none"
    for n in range(1, 33):
        w[_key("7", "7:%d" % (1000 + n))] = (n + 1) << 3
    assert w._dict is None and len(w) == 32 and w[1001] == 16 and "7:1001" not in w
    w["7:0x"] = 1  # an opaque id: every entry kept, in order, in a dict
    assert w._dict is not None and list(w)[:2] == [1001, 1002] and list(w)[-1] == "7:0x" and w[1032] == 33 << 3


def test_collections_start_with_an_empty_window():
    coll = Collection("1", 2)
    assert isinstance(coll.window, Window) and len(coll.window) == 0
