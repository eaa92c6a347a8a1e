"""Tests of plugin_support.py (typed settings, JSON state) against the fake
host: settings arrive as the TOML text the host sends."""

import pytest

from fakehost import Raw


@pytest.fixture
def support(host):
    host.load("dht22")  # any plugin whose world has settings, state and log
    return host.module("plugin_support")


@pytest.mark.parametrize("value, default, expected", [
    (28.5, 0.0, 28.5),
    (30, 0.0, 30.0),            # an integer in host.toml for a float setting
    (4, 0, 4),
    (0x77, 0, 0x77),            # hex in host.toml arrives as decimal
    (-3, 0, -3),
    (True, False, True),
    (False, True, False),
    ("greenhouse", "x", "greenhouse"),
    ("", "x", ""),
    ("héllo wörld", "x", "héllo wörld"),
    ('lab "north"', "x", 'lab "north"'),      # the host sends 'lab "north"' (TOML literal)
    ("C:\\sensors\\a", "x", "C:\\sensors\\a"),  # and 'C:\sensors\a'
])
def test_setting_converts_host_toml_text(host, support, value, default, expected):
    host.settings["k"] = value
    got = support.setting("k", default)
    assert got == expected and type(got) is type(expected)
    assert host.log_lines("warn") == []


def test_missing_setting_is_the_default(host, support):
    assert support.setting("absent", 1.5) == 1.5
    assert host.logs == []


@pytest.mark.parametrize("value, default", [
    ("fast", 0),          # a string where a number is expected
    (2.5, 0),             # a float where an integer is expected
    (1, True),            # a number where a boolean is expected
    (True, 0),            # and the other way round
    (True, 0.0),
    (42, "text"),         # a number where a string is expected
    (["a"], "text"),
    (Raw("not toml"), 0.0),
])
def test_wrong_type_is_the_default_with_a_warning(host, support, value, default):
    host.settings["k"] = value
    got = support.setting("k", default)
    assert got == default and type(got) is type(default)
    [line] = host.log_lines("warn")
    assert "k" in line and repr(default) in line


def test_state_round_trip(host, support):
    assert support.load_state("alert", {"level": 0}) == {"level": 0}
    support.save_state("alert", {"level": 2, "levels": {"t": 2}})
    assert host.state_json("alert") == {"level": 2, "levels": {"t": 2}}
    assert support.load_state("alert", None) == {"level": 2, "levels": {"t": 2}}


def test_unreadable_state_is_the_default(host, support):
    host.state["alert"] = b"\xff{not json"
    assert support.load_state("alert", {"level": 0}) == {"level": 0}
    host.state["alert"] = b"{not json"
    assert support.load_state("alert", {"level": 0}) == {"level": 0}
