"""Classes by id or by name: ids, or names matched case-insensitively (exact name, else a unique prefix)."""
from __future__ import annotations

import re

#: the longest part of a class name echoed in an error message
SHOWN = 60
_ID = re.compile(r"-?[0-9]+")


def shown(spec) -> str:
    """``spec`` as an error message may echo it: repr, at most SHOWN characters (plus an ellipsis)."""
    text = spec if isinstance(spec, str) else str(spec)
    if len(text) > SHOWN:
        return repr(text[:SHOWN]) + f"... ({len(text)} characters)"
    return repr(text)


class ClassLookupError(ValueError):
    pass


def resolve_class(names: list[str], spec) -> int:
    """``spec`` is an id (int or digits) or a name / unique name prefix ("lion", "golden ret")."""
    n = len(names)
    if isinstance(spec, bool):
        raise ClassLookupError(f"no class {spec!r}: pass a class name or id (see `neural-collage classes`)")
    if isinstance(spec, int) or (isinstance(spec, str) and _ID.fullmatch(spec.strip())):
        i = int(spec)
        if not 0 <= i < n:
            raise ClassLookupError(f"unknown class id {i}: this model has classes 0-{n - 1}")
        return i
    if not isinstance(spec, str) or not spec.strip():
        raise ClassLookupError("no class given: pass a class name or id (see `neural-collage classes`)")
    key = spec.strip().lower().replace("_", " ")
    norm = [s.lower().replace("_", " ") for s in names]
    exact = [i for i, s in enumerate(norm) if s == key]
    if exact:
        return exact[0]
    pref = [i for i, s in enumerate(norm) if s.startswith(key)]
    if len(pref) == 1:
        return pref[0]
    if len(pref) > 1:
        matches = ", ".join(f"{names[i]} ({i})" for i in pref[:6])
        more = f" and {len(pref) - 6} more" if len(pref) > 6 else ""
        raise ClassLookupError(f"ambiguous class {shown(spec)}: it matches {matches}{more}")
    sub = [i for i, s in enumerate(norm) if key in s]
    hint = (" Did you mean " + ", ".join(names[i] for i in sub[:5]) + "?") if sub else ""
    raise ClassLookupError(f"unknown class {shown(spec)}: see `neural-collage classes --search TEXT`.{hint}")


def search_classes(names: list[str], text: str | None = None) -> list[dict]:
    key = (text or "").strip().lower()
    return [{"id": i, "name": s} for i, s in enumerate(names) if key in s.lower() or key == str(i)]
