"""Layout text: parsing, printing, canonical order and the errors a user sees."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from migrator import Geometry, Layout, Placement
from migrator.errors import InvalidLayout, LayoutSyntaxError

# Profile names as NVML writes them: letters, digits and . + - (1g.24gb+me.all, 1g.24gb-me).
profile_names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9.+\-]{0,11}", fullmatch=True)
placements = st.builds(Placement, profile=profile_names, start=st.integers(0, 10**6))
layouts = st.lists(placements, max_size=8).map(Layout.of)
blanks = st.text(alphabet=" \t\n", max_size=2)


def spaced(placement: Placement, pads: list[str]) -> str:
    """``placement`` with whitespace around its name, ``@`` and start."""
    a, b, c, d = pads
    return f"{a}{placement.profile}{b}@{c}{placement.start}{d}"


# -- round trips ----------------------------------------------------------------------------


@given(placements)
def test_placement_round_trips(placement: Placement) -> None:
    assert Placement.parse(str(placement)) == placement


@given(layouts)
def test_layout_round_trips(layout: Layout) -> None:
    assert Layout.parse(str(layout)) == layout


@given(st.lists(placements, max_size=8), st.randoms())
def test_text_does_not_depend_on_input_order(items: list[Placement], rng: random.Random) -> None:
    shuffled = list(items)
    rng.shuffle(shuffled)
    assert str(Layout.of(shuffled)) == str(Layout.of(items))


@given(layouts, st.data())
def test_whitespace_around_tokens_is_ignored(layout: Layout, data: st.DataObject) -> None:
    tokens = [spaced(p, data.draw(st.lists(blanks, min_size=4, max_size=4))) for p in layout]
    assert Layout.parse(",".join(tokens)) == layout


# -- canonical order and examples -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("3g.40gb@4,1g.10gb@0", "1g.10gb@0,3g.40gb@4"),
        ("2g.20gb@2,1g.10gb@1,3g.40gb@4,1g.10gb@0", "1g.10gb@0,1g.10gb@1,2g.20gb@2,3g.40gb@4"),
        # Same start: by profile name, as the C++ core sorts its slots.
        ("1g.10gb+me@0,1g.10gb@0", "1g.10gb@0,1g.10gb+me@0"),
        # Leading zeros are the same start.
        ("3g.40gb@04", "3g.40gb@4"),
        (" 1g.10gb @ 0 ,\t3g.40gb@4\n", "1g.10gb@0,3g.40gb@4"),
        ("", ""),
        ("  \t\n", ""),
    ],
    ids=["two", "four", "same-start", "leading-zero", "whitespace", "empty", "blank"],
)
def test_canonical_text(text: str, canonical: str) -> None:
    assert str(Layout.parse(text)) == canonical


def test_duplicates_are_kept_for_the_geometry_to_reject() -> None:
    # Parsing is syntax only; dropping the copy would hide a user's mistake.
    assert len(Layout.parse("1g.10gb@0,1g.10gb@0")) == 2


@pytest.mark.parametrize("text", ["MIG 3g.40gb@4", "mig 3G.40GB@4", "  MIG  3g.40gb @4"])
def test_nvml_style_names_resolve_through_normalize(h100: Geometry, text: str) -> None:
    assert str(h100.normalize(text)) == "3g.40gb@4"


def test_parse_rejects_non_text() -> None:
    with pytest.raises(TypeError, match="must be str"):
        Layout.parse(None)  # type: ignore[arg-type]


# -- syntax errors --------------------------------------------------------------------------

# text -> the piece a user should be shown as bad.
BAD_TEXT = {
    "3g.40gb": "3g.40gb",
    "@4": "@4",
    "@": "@",
    "3g.40gb@": "3g.40gb@",
    "3g.40gb@-1": "3g.40gb@-1",
    "3g.40gb@+4": "3g.40gb@+4",
    "3g.40gb@x": "3g.40gb@x",
    "3g.40gb@4.0": "3g.40gb@4.0",
    "3g.40gb@²": "3g.40gb@²",
    "3g.40gb@4,,1g.10gb@0": "",
    "3g.40gb@4,": "",
    ",3g.40gb@4": "",
    "1g.10gb@0,3g.40gb@x": "3g.40gb@x",
}


@pytest.mark.parametrize(("text", "token"), BAD_TEXT.items(), ids=list(BAD_TEXT))
def test_malformed_token_names_the_piece(text: str, token: str) -> None:
    with pytest.raises(LayoutSyntaxError) as info:
        Layout.parse(text)
    assert info.value.token == token
    assert repr(token) in str(info.value)
    assert info.value.rule == "syntax"
    assert isinstance(info.value, InvalidLayout)  # one except clause catches every bad layout


# Found while writing the table above (fixed since): the token is the stripped piece,
# a token holds one placement, and starts are ASCII digits.
@pytest.mark.parametrize(("text", "token"), [("1g.10gb@0, 3g.40gb@x", "3g.40gb@x"), (" , ", "")])
def test_token_is_the_stripped_piece(text: str, token: str) -> None:
    with pytest.raises(LayoutSyntaxError) as info:
        Layout.parse(text)
    assert info.value.token == token


@pytest.mark.parametrize("text", ["3g.40gb@4@5", "3g.40gb@4 1g.10gb@0", "3g.40gb@4;1g.10gb@0"])
def test_two_at_signs_in_one_token_are_a_syntax_error(text: str) -> None:
    with pytest.raises(LayoutSyntaxError):
        Layout.parse(text)


def test_missing_comma_is_a_syntax_error_for_the_geometry_too(h100: Geometry) -> None:
    with pytest.raises(InvalidLayout) as info:
        h100.validate("3g.40gb@4 1g.10gb@0")
    assert info.value.rule == "syntax"


def test_start_must_be_ascii_digits() -> None:
    with pytest.raises(LayoutSyntaxError):
        Layout.parse("3g.40gb@\u0661")
