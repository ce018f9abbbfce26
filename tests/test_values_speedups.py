"""The shortcuts in values.py give the very answer of the library they stand in for.

`phone_problem` skips phonenumbers for a number whose national-number length the library
calls possible whatever the digits (values._always_possible_lengths): checked here for
every country calling code and such length with the digit patterns that a national prefix
or carrier code could strip, and with generated numbers against the library itself.
"""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signals_app.validation import values

COUNTRY_CODES = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
PHONES = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# National numbers that begin as a national prefix, carrier code or trunk code would.
NATIONAL_STARTS = ["", "0", "1", "8", "9", "00", "01", "10", "11", "15", "06", "0549", "20"]


def uncached_phone_problem(value: str) -> str | None:
    return values.phone_problem.__wrapped__(value)


def test_the_shortcut_covers_common_numbers() -> None:
    assert values.is_always_possible("+14035549090")
    assert values.is_always_possible("+447700900123")
    assert not values.is_always_possible("+5491123456789")  # Argentina: a transform rule
    assert not values.is_always_possible("+12345678")  # +1 with 7 digits: local only


@pytest.mark.parametrize("country_code", COUNTRY_CODES)
def test_every_always_possible_length_is_possible_for_prefix_like_digits(
    country_code: int,
) -> None:
    for length in sorted(values._always_possible_lengths(country_code)):
        for start in NATIONAL_STARTS:
            for fill in "0159":
                national = (start + fill * length)[:length]
                number = f"+{country_code}{national}"
                if not values.E164.fullmatch(number):
                    continue
                assert values.is_always_possible(number), number
                assert values.library_phone_problem(number) is None, number


@st.composite
def e164_like(draw: st.DrawFn) -> str:
    """'+', a known country code (or any digits), and a national number that often begins
    like a national prefix, 8 to 15 digits in all."""
    code = str(draw(st.sampled_from(COUNTRY_CODES) | st.integers(1, 999)))
    total = draw(st.integers(8, 15))
    rest = max(total - len(code), 0)
    start = draw(st.sampled_from(NATIONAL_STARTS))[:rest]
    tail = draw(st.text("0123456789", min_size=rest - len(start), max_size=rest - len(start)))
    return f"+{code}{start}{tail}"


@PHONES
@given(e164_like() | st.from_regex(values.E164, fullmatch=True))
def test_phone_problem_answers_as_the_library(number: str) -> None:
    expected = values.library_phone_problem(number)
    if values.is_always_possible(number):
        assert expected is None, number
    assert uncached_phone_problem(number) == expected


# --- date-times: ready decoders instead of msgspec.convert ---------------------------------


def converted_datetime_problem(value: str) -> str | None:
    """What datetime_problem answered through msgspec.convert (kinds of answer only)."""
    import msgspec

    try:
        msgspec.convert(value, values.TzDateTime)
    except msgspec.ValidationError:
        try:
            msgspec.convert(value, values._NaiveOrTz)
        except msgspec.ValidationError:
            return "must"
        return "needs"
    return None


DATE_TIME_LIKE = st.one_of(
    st.text(alphabet='0123456789-:TtZz+. "\\\n\u00e9', max_size=40),
    st.datetimes(timezones=st.none() | st.timezones()).map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat(sep=" ") + "Z"),
)


@settings(max_examples=2000, deadline=None)
@given(DATE_TIME_LIKE)
def test_the_date_time_check_answers_as_msgspec_convert_does(value: str) -> None:
    problem = values.datetime_problem(value)
    expected = converted_datetime_problem(value)
    assert (problem if problem is None else problem.split(" ")[0]) == expected


def test_a_lone_surrogate_is_no_date_time_and_no_crash() -> None:
    assert values.datetime_problem("\ud800") is not None
