"""Where weights live and how files get there: the weights folder, the errors a missing or broken file gives,
resumable checked downloads, the ImageNet class names, and the comparison of a file's state-dict layout with a
model's.  Used by the registry and by the model families; imports none of them.

Files live in ``<cache>/weights/<model name>/`` with ``<cache>`` = ``platformdirs.user_cache_dir("neural-collage")``;
the environment variable ``NEURAL_COLLAGE_WEIGHTS`` replaces the whole ``<cache>/weights`` folder.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import time
import urllib.error
import urllib.request
from functools import lru_cache
from pathlib import Path
from typing import Callable

ENV_VAR = "NEURAL_COLLAGE_WEIGHTS"
DATA_DIR = Path(__file__).resolve().parent.parent / "data"

Progress = Callable[[str, int, "int | None"], None]  # (file name, bytes done, total bytes or None)


class MissingWeights(RuntimeError):
    """A model's files are not there; the message (one line) says what to fetch from where, or what to run."""


class DownloadError(RuntimeError):
    pass


class ChecksumError(DownloadError):
    pass


def weights_dir() -> Path:
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("neural-collage")) / "weights"


@lru_cache(maxsize=1)
def _imagenet_names() -> tuple[str, ...]:
    with open(DATA_DIR / "imagenet_classes.txt", encoding="utf-8") as f:
        names = tuple(line.strip() for line in f if line.strip())
    if len(names) != 1000:
        raise ValueError(f"{DATA_DIR / 'imagenet_classes.txt'} holds {len(names)} names, expected 1000")
    return names


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet class names in id order."""
    return list(_imagenet_names())


def class_names_for_ids(ids) -> list[str]:
    names = _imagenet_names()
    return [names[int(i)] for i in ids]


def sha256_file(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _total_from(resp, offset: int) -> int | None:
    cr = resp.headers.get("Content-Range")
    if cr and "/" in cr:
        tail = cr.rsplit("/", 1)[1].strip()
        if tail.isdigit():
            return int(tail)
    cl = resp.headers.get("Content-Length")
    return offset + int(cl) if cl and cl.isdigit() else None


def download_file(url: str, dest, sha256: str | None = None, progress: Progress | None = None, retries: int = 4,
                  timeout: float = 60.0, chunk: int = 1 << 20) -> Path:
    """Fetch ``url`` to ``dest`` through ``dest.part``, resuming with an HTTP Range request after an interruption
    (within this call, up to ``retries`` times, and across calls); check sha256 when known."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file() and (sha256 is None or sha256_file(dest) == sha256):
        return dest
    part = dest.with_name(dest.name + ".part")
    last_err = ""
    for attempt in range(retries + 1):
        offset = part.stat().st_size if part.is_file() else 0
        headers = {"User-Agent": "neural-collage-weights/1"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as resp:
                if offset and resp.status != 206:  # the server ignored the range: start again
                    offset = 0
                total = _total_from(resp, offset)
                done = offset
                with open(part, "ab" if offset else "wb") as f:
                    while True:
                        block = resp.read(chunk)
                        if not block:
                            break
                        f.write(block)
                        done += len(block)
                        if progress:
                            progress(dest.name, done, total)
            if total is not None and done < total:
                raise DownloadError(f"connection closed at {done} of {total} bytes")
            break
        except urllib.error.HTTPError as e:
            if e.code == 416 and offset:  # nothing left to fetch: the .part is complete
                break
            raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
        except (DownloadError, urllib.error.URLError, http.client.HTTPException, OSError) as e:
            last_err = str(getattr(e, "reason", e))
            if attempt == retries:
                size = part.stat().st_size if part.is_file() else 0
                raise DownloadError(f"{url}: {last_err} ({size} bytes kept in {part}; run again to resume)") from None
            time.sleep(min(0.2 * 2 ** attempt, 5.0))
    if sha256 is not None:
        got = sha256_file(part)
        if got != sha256:
            part.unlink()
            raise ChecksumError(f"{url}: sha256 mismatch (expected {sha256}, got {got}); the file was deleted, "
                                "run the download again")
    os.replace(part, dest)
    return dest


def layout_diff(found: dict, expected: dict) -> str:
    """"ok" when two state-dict layouts (key -> shape) agree, else what differs, in one line."""
    if found == expected:
        return "ok"
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    bad = sorted(k for k in set(found) & set(expected) if tuple(found[k]) != tuple(expected[k]))
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s) e.g. {missing[0]}")
    if extra:
        parts.append(f"{len(extra)} unexpected key(s) e.g. {extra[0]}")
    if bad:
        parts.append(f"{len(bad)} shape mismatch(es) e.g. {bad[0]}")
    return "; ".join(parts)
