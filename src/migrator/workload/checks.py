"""Checks for the workload's inputs: each returns the value it checked or raises a
ConfigError naming the field and what it allows, so that bad input never reaches the
arithmetic as NaN, an overflow or a type error."""

from __future__ import annotations

import math
import numbers
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError

__all__ = ["file_path", "flag", "integer_in", "number_in", "read_text", "read_yaml", "shown", "text"]


def number_in(
    value: Any, field: str, *, low: float = -math.inf, high: float = math.inf,
    low_open: bool = False, high_open: bool = False,
) -> float:
    """``value`` as a float when it is a finite real number in the range, else ConfigError.

    Finiteness is asked first because NaN compares false with everything: ``value < low``
    lets it through. Bools are refused although Python counts them as numbers, since YAML
    reads ``yes`` as True.
    """
    result = math.nan
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        try:
            result = float(value)
        except OverflowError:  # an integer beyond the largest float
            result = math.inf
    above = result > low if low_open else result >= low
    below = result < high if high_open else result <= high
    if not (math.isfinite(result) and above and below):
        wanted = _described(low, high, low_open, high_open)
        raise ConfigError(f"{field} must be {wanted}, got {shown(value)}", field=field)
    return result


def integer_in(value: Any, field: str, *, low: int, high: int | None = None) -> int:
    """``value`` as an int when it is an integer in ``[low, high]``, else ConfigError.

    A float, even 3.0, is refused: a count written ``3.5`` is a mistake to report, not round.
    """
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not ok or value < low or (high is not None and value > high):
        bounds = f" >= {low}" if high is None else f" in [{low}, {high}]"
        raise ConfigError(f"{field} must be an integer{bounds}, got {shown(value)}", field=field)
    return int(value)


def flag(value: Any, field: str) -> bool:
    """``value`` when it is True or False: a string such as ``"no"`` would read as true."""
    if not isinstance(value, bool):
        raise ConfigError(f"{field} must be true or false, got {shown(value)}", field=field)
    return value


def text(value: Any, field: str) -> str:
    """``value`` when it is a string with something besides blanks in it, else ConfigError."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{field} must be a non-empty string, got {shown(value)}", field=field)
    return value


def file_path(value: Any, field: str) -> str:
    """``value`` when it can name a file: a non-empty string without NUL, which no file name
    holds (the operating system refuses it with a ValueError, not an OSError)."""
    if "\x00" in text(value, field):
        raise ConfigError(f"{field} must be a file path, got {shown(value)} (it holds a NUL character)",
                          field=field)
    return value


def shown(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for error messages: the bad value may be a
    whole file's worth, or an integer too long for ``repr`` (Python refuses 4300+ digits)."""
    try:
        written = repr(value)
    except ValueError:
        return f"an integer of {int(value).bit_length()} bits"
    return written if len(written) <= limit else f"{written[: limit - 3]}..."


def _described(low: float, high: float, low_open: bool, high_open: bool) -> str:
    if low == 0 and low_open and math.isinf(high):
        return "a positive, finite number"
    if math.isinf(low) and math.isinf(high):
        return "a finite number"
    if math.isinf(high):
        return f"a finite number {'>' if low_open else '>='} {low:g}"
    if math.isinf(low):
        return f"a finite number {'<' if high_open else '<='} {high:g}"
    return f"a finite number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def read_text(path: str | Path, what: str) -> str:
    """The UTF-8 text of the ``what`` file at ``path`` ("scenario", "model table", ...), or a
    ConfigError (field ``path``) saying why it cannot be read; never a word of its content."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}", field="path") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {path} is not UTF-8 text: {exc.reason} at byte {exc.start}",
                          field="path") from exc


def read_yaml(path: str | Path, what: str) -> Any:
    """The YAML document in the ``what`` file at ``path``, as :func:`yaml.safe_load` reads it,
    or a ConfigError. Besides YAML's own errors, PyYAML lets two through: ValueError for an
    integer of 4300+ digits (Python's limit on int()), and RecursionError for brackets nested
    a few thousand deep (its composer recurses per level)."""
    source = read_text(path, what)
    try:
        return yaml.safe_load(source)
    except (yaml.YAMLError, ValueError) as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {exc}") from exc
    except RecursionError:
        raise ConfigError(f"{what} {path}: brackets nested too deeply to read") from None
