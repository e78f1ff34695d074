"""The ready scenarios shipped with easload, found by name (``easload run policy-change``) and listed
(``easload scenarios``).

They are the files of ``scenarios/`` at the top of the repository; an installed package carries them as
the package data ``loadgen.scenarios`` (pyproject.toml maps that package to ``scenarios/``), installed as
``loadgen/scenarios/*.toml`` beside the code, so a wheel install finds the same names.  In a checkout
(``PYTHONPATH`` or an editable install) the directory ``scenarios/`` itself is read.
"""

import difflib
import tomllib
from pathlib import Path


def directory():
    """The directory holding the shipped scenarios: the installed package's data (``loadgen/scenarios``,
    a wheel's files on disk), else the checkout's ``scenarios/``; None when neither is there."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "scenarios", package.parent / "scenarios"):
        if candidate.is_dir() and any(candidate.glob("*.toml")):
            return candidate
    return None


def names():
    """{name: path} of every shipped scenario, by file name without ``.toml``, sorted."""
    where = directory()
    if where is None:
        return {}
    return {p.stem: p for p in sorted(where.glob("*.toml"))}


def find(argument):
    """The file ``easload run ARGUMENT`` means: ARGUMENT itself when it is a file; else, for a bare name
    (``policy-change`` or ``policy-change.toml``, no directory), ``./scenarios/NAME.toml`` and then the
    shipped scenario of that name; else None."""
    path = Path(argument)
    if path.is_file():
        return path
    if len(path.parts) != 1:
        return None
    stem = path.stem if path.suffix == ".toml" else path.name
    local = Path("scenarios") / (stem + ".toml")
    if local.is_file():
        return local
    return names().get(stem)


def suggestion(argument):
    """The shipped scenario name closest to ``argument`` (a mistyped name), or None."""
    stem = Path(argument).name
    stem = stem[:-5] if stem.endswith(".toml") else stem
    close = difflib.get_close_matches(stem, list(names()), 1, 0.6)
    return close[0] if close else None


def description(path):
    """The scenario's ``description``; without one, the first sentence of the comment its file opens
    with; "" when neither."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""
    try:
        found = tomllib.loads(text).get("description")
    except tomllib.TOMLDecodeError:
        found = None
    if isinstance(found, str) and found.strip():
        return " ".join(found.split())
    comment = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        comment.append(line.lstrip("#").strip())
    words = " ".join(" ".join(comment).split())
    end = words.find(". ")
    return words[:end + 1] if end >= 0 else words


__all__ = ["directory", "names", "find", "suggestion", "description"]
