"""Class names are data from files (a dataset's `classes`, a model's metadata), never paths or
terminal input: anything that writes by name or shows a name goes through here.

`safe_filename(3, "../../etc")` is `003_etc`: an index prefix (so two names never collide),
then the name with every character that is not a letter, digit, '-', '_' or '.' replaced, no
leading dots, and a bounded length. `printable` shows a name in a one-line message with
control characters (newline, ESC, NUL) escaped; `listed` shows at most a few of many.
"""

from __future__ import annotations

import re

MAX_NAME = 64  # characters of the name kept in a file name, after the index prefix

_UNSAFE = re.compile(r"[^\w.\-]", flags=re.UNICODE)


def safe_filename(index: int, name: str, limit: int = MAX_NAME) -> str:
    """A file or folder name for class `index` called `name`: no separators, no control
    characters, no NUL, nothing hidden or relative, at most 4 + `limit` characters; unique by index."""
    cleaned = _UNSAFE.sub("_", str(name)).lstrip(".")[:limit]
    return f"{int(index):03d}_{cleaned}" if cleaned else f"{int(index):03d}"


def printable(text: str, limit: int = 80) -> str:
    """`text` for a one-line message: control and other unprintable characters escaped, cut at `limit`."""
    out = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in str(text))
    return out if len(out) <= limit else out[:limit - 3] + "..."


def listed(names, most: int = 10) -> str:
    """'a, b, c' for a few names; 'a, b, ..., j (1,000 in all)' for many."""
    names = list(names)
    shown = [printable(n, 40) for n in names[:most]]
    return ", ".join(shown) if len(names) <= most else f"{', '.join(shown)}, ... ({len(names):,} in all)"
