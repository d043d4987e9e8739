"""One rule for turning names (encoders, datasets, splits, head tags) into file and folder names.

Records, saved models, tune runs and feature-cache entries are all named by it, so a name a user
gives cannot leave the folder it is written into (no ``/``, no ``..``, no hidden file), two tools
reading the same folder agree on where a result lives, and a very long name still fits the
255-byte limit of common file systems.

The rule is a character-by-character mapping followed by fixed fix-ups, so applying it to a name
an older probe already mapped gives the same result as applying it to the original name:
``probe migrate`` relies on that to bring older names to these.
"""

from __future__ import annotations

import hashlib
import re

#: characters kept as they are; every other character (``/``, spaces, ``:``, non-ASCII) becomes ``_``
_OUTSIDE = re.compile(r"[^A-Za-z0-9_.+-]")
#: longest name written; longer ones keep their start and end in a digest of the whole
MAX_LENGTH = 160
#: how parts of one name are joined: a result's encoders, head tag and so on
SEPARATOR = "__"


def safe_name(*parts: str) -> str:
    """``parts`` joined by ``__`` as one file or folder name.

    Each character outside ``A-Z a-z 0-9 _ . + -`` becomes ``_``; a leading ``.`` becomes ``_`` (so
    ``..`` and hidden names cannot be written); an empty name is ``_``; a name longer than
    :data:`MAX_LENGTH` keeps its first characters and ends in a digest of the whole, so two long
    names that share a start stay apart.
    """
    name = _OUTSIDE.sub("_", SEPARATOR.join(parts))
    if name.startswith("."):
        name = "_" + name[1:]
    if not name:
        return "_"
    if len(name) > MAX_LENGTH:
        digest = hashlib.sha256(name.encode()).hexdigest()[:16]
        name = f"{name[:MAX_LENGTH - len(digest) - 1]}-{digest}"
    return name
