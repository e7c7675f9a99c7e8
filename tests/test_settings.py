"""One typed-config mechanism: a dataclass declared once gives TOML parsing, CLI flags, ranges and help."""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from typing import Literal

import pytest

from ticketbench.settings import (
    SettingError,
    add_arguments,
    check_mapping,
    coerce,
    describe,
    from_args,
    from_mapping,
    setting,
)


@dataclass
class Knobs:
    rounds: int = setting(5, 1, 1000, help="timing rounds")
    floor: float = setting(0.1, 0, 10, hi_open=True, aliases=("--threshold",), help="relative floor")
    share: float | None = setting(None, 0, 1, help="None: derived")
    mode: str = setting("dense", choices=("dense", "none"), help="what to divide by")
    strict: bool = setting(False, help="fail on anything")
    shape: Literal["a", "b"] = setting("a", help="a Literal")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="x", exit_on_error=False)
    add_arguments(p, Knobs)
    return p


def test_from_mapping_is_strict_about_types_keys_and_ranges():
    assert from_mapping(Knobs, {"rounds": 3, "floor": 1, "strict": True}, "t") == Knobs(3, 1.0, None, "dense", True)
    cases = {
        "rounds": ({"rounds": 0}, "t rounds must be a whole number in [1, 1000], got 0"),
        "string": ({"rounds": "5"}, "t rounds must be a whole number in [1, 1000], got '5'"),
        "bool-number": ({"floor": True}, "t floor must be a finite number in [0, 10), got True"),
        "nan": ({"floor": float("nan")}, "t floor must be a finite number in [0, 10), got nan"),
        "bool": ({"strict": "false"}, "t strict must be true or false, got 'false'"),
        "choice": ({"mode": "raw"}, "t mode must be one of dense, none, got 'raw'"),
        "literal": ({"shape": "c"}, "t shape must be a|b, got 'c'"),
        "optional": ({"share": 2}, "t share must be a finite number in [0, 1], got 2.0"),
    }
    for what, (data, message) in cases.items():
        with pytest.raises(SettingError) as err:
            from_mapping(Knobs, data, "t")
        assert str(err.value) == message, what
    with pytest.raises(SettingError, match=r"unknown setting\(s\) \['round'\]; valid: floor, mode, rounds"):
        from_mapping(Knobs, {"round": 3}, "t")


def test_check_mapping_checks_only_the_keys_given():
    check_mapping(Knobs, {"rounds": 7}, "case 0")
    with pytest.raises(SettingError, match="case 0 rounds must be a whole number"):
        check_mapping(Knobs, {"rounds": 7.5, "not_a_field": object()}, "case 0")


def test_coerce_handles_containers_unions_and_never_takes_a_bool_for_a_number():
    assert coerce([1, 2], list[int]) == [1, 2] and coerce(3, float | None) == 3.0 and coerce({}, dict[str, int]) == {}
    for value, tp in ((True, int), ("1", int), ([1, "x"], list[int]), (1, dict[str, int]), ("c", Literal["a"])):
        with pytest.raises(TypeError):
            coerce(value, tp)


def test_flags_are_generated_from_the_fields_one_name_each():
    p = parser()
    help_text = p.format_help()
    for name in ("--rounds", "--floor", "--share", "--mode", "--strict", "--no-strict", "--shape"):
        assert name in help_text
    assert "--threshold" not in help_text  # an earlier spelling: accepted, not advertised
    assert "[1, 1000]; default 5" in " ".join(help_text.split())
    args = p.parse_args(["--rounds", "9", "--strict", "--mode", "none"])
    assert from_args(Knobs, args) == Knobs(9, 0.1, None, "none", True)
    base = Knobs(rounds=2, strict=True)
    assert from_args(Knobs, p.parse_args(["--no-strict"]), base) == Knobs(2, 0.1, None, "dense", False)
    assert from_args(Knobs, p.parse_args([]), base) == base  # absent flags keep the base's values


def test_an_old_flag_spelling_sets_the_field_and_says_the_new_name(caplog):
    with caplog.at_level(logging.WARNING, logger="ticketbench"):
        args = parser().parse_args(["--threshold", "0.3"])
    assert from_args(Knobs, args).floor == 0.3
    assert "--threshold is now --floor" in caplog.text


def test_flag_values_are_range_checked_naming_the_flag():
    with pytest.raises(SettingError, match=r"^--floor must be a finite number in \[0, 10\), got inf$"):
        from_args(Knobs, parser().parse_args(["--floor", "inf"]))
    with pytest.raises(argparse.ArgumentError):
        parser().parse_args(["--mode", "raw"])


def test_describe_lists_every_field_with_type_default_and_help():
    lines = describe(Knobs).splitlines()
    assert lines[0] == "rounds (int, default 5): timing rounds"
    assert lines[2] == "share (float or none, default None): None: derived"
    assert len(lines) == 6
