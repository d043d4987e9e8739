"""Reading the catalogues' TOML files (encoders, benchmarks, training presets): one set of errors, each
one line naming the file."""

from __future__ import annotations

import difflib
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from probe.errors import ProbeError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def read_toml(path: str | Path, kind: str) -> dict[str, Any]:
    """The parsed file; a file that cannot be read, is not UTF-8 or is not TOML is a ProbeError
    (``kind`` names what the file is, e.g. "registry", in the message)."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ProbeError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ProbeError(f"cannot read {kind} file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProbeError(f"{path}: malformed TOML: {exc}") from None


def unknown_key(table: dict[str, Any], allowed: Iterable[str], what: str = "field") -> str | None:
    """The rule every catalogue shares for keys it does not know: ``"unknown field 'poolng' (did you
    mean 'pooling'?); valid: ..."`` for the first such key of ``table``, or None when there is none.
    Callers put the file and table in front."""
    allowed = sorted(allowed)
    unknown = sorted(set(table) - set(allowed))
    if not unknown:
        return None
    close = difflib.get_close_matches(unknown[0], allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {what} {unknown[0]!r}{hint}; valid: {', '.join(allowed)}"


def pop_override(table: dict[str, Any], where: str) -> tuple[dict[str, Any], bool]:
    """A catalogue table without its ``override`` key, and whether it may replace an earlier
    definition of its name (the rule every catalogue shares: a name defined twice is an error unless
    the later table says ``override = true``). ``where`` names the table in the error."""
    table = dict(table)
    override = table.pop("override", False)
    if not isinstance(override, bool):
        raise ProbeError(f"{where}: 'override' must be true or false, got {override!r}")
    return table, override
