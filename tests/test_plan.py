"""Plan printing and parsing."""

from __future__ import annotations

import pytest

from privacysplit import Plan


def test_prints_like_the_paper():
    assert str(Plan(9, {6: "C3", 0: "W1", 3: "W1"})) == "9 | 0:W1 3:W1 6:C3"
    assert str(Plan(9)) == "9 | none"
    assert str(Plan(9, {0: "none"})) == "9 | none"


@pytest.mark.parametrize("text", ["9 | 0:W1 3:W1 6:C3", "13 | 0:C3 8:C3 10:C3", "2 | none", "0 | 0:W2"])
def test_parse_round_trips(text):
    assert str(Plan.parse(text)) == text
    assert Plan.parse(str(Plan.parse(text))) == Plan.parse(text)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("9 0:W1", "expected 'PARTITION"),
        ("x | none", "not an integer"),
        ("9 | 0-W1", "bad item"),
        ("3 | 5:W1", "cloud side"),
        ("3 | 1:W1 1:W2", "two techniques"),
    ],
)
def test_bad_plans_are_refused(text, match):
    with pytest.raises(ValueError, match=match):
        Plan.parse(text)
