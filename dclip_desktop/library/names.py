"""Attribute names: the ones a user types (checked), the ones a file brings (escaped), and how a name
or an id finds its entry."""

from __future__ import annotations

from typing import Optional

from ..untrusted import check_text, display
from .entry import AttributeEntry
from .errors import LibraryError

_MAX_NAME = 120


def check_name(name: str) -> str:
    """A name the user is giving (save, rename, restore --as, import --name): refused, not repaired,
    when it is empty, too long or holds control or bidi characters (an ESC sequence or U+202E would
    rewrite what `library list` shows); the user can type another."""
    if not isinstance(name, str) or not name.strip():
        raise LibraryError("an attribute name must not be empty")
    name = name.strip()
    if len(name) > _MAX_NAME:
        raise LibraryError(f"an attribute name must be at most {_MAX_NAME} characters")
    return check_text(name, "an attribute name", error=LibraryError)


def received_text(text):
    """A name or text that came in a file (a .dclip manifest, a .pth file name): the user did not
    type it and cannot fix it before the import, so control and bidi characters are kept visible as
    escapes (U+202E becomes the six characters "\\u202e") instead of refusing the whole file, the
    way a file manager shows such a name. The result passes check_name."""
    return display(text) if isinstance(text, str) else text


def resolve(entries: list[AttributeEntry], key: str) -> Optional[AttributeEntry]:
    """Exact id, then exact name (case-insensitive), then a unique id prefix of ≥ 4 characters.

    Ids come first: an id is what scripts and error messages use, and a shared file must not be able
    to take over an entry by naming itself after that entry's id."""
    folded = key.strip().casefold()
    by_id = [e for e in entries if e.id == key.strip().lower()]
    if by_id:
        return by_id[0]
    by_name = [e for e in entries if e.name.casefold() == folded]
    if len(by_name) == 1:
        return by_name[0]
    if len(by_name) > 1:
        ids = ", ".join(e.id for e in by_name)
        raise LibraryError(f"'{key}' names several attributes ({ids}); use an id")
    if len(folded) >= 4:
        by_prefix = [e for e in entries if e.id.startswith(folded)]
        if len(by_prefix) == 1:
            return by_prefix[0]
        if len(by_prefix) > 1:
            raise LibraryError(f"id prefix '{key}' is ambiguous ({', '.join(e.id for e in by_prefix)})")
    return None
