"""The dashboard's files (``static/``): the HTML shells, script, style sheet and vendored
chart library.

They ship inside the package, next to this module, with no build step, so an installed
Sluice serves its dashboard with nothing else to deploy. The route serves only from that
directory: the requested path is resolved and must stay inside it, with a known extension;
anything else is 404, so no path trick reaches the package's source.
"""

from __future__ import annotations

import hashlib
import mimetypes
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, Response, status

STATIC_DIR = (Path(__file__).parent / "static").resolve()

_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".md": "text/plain; charset=utf-8",
    "": "text/plain; charset=utf-8",  # LICENSE
}

router = APIRouter()


def read_static(name: str) -> str:
    """A text file of ``static/``, for the pages that fill in a template."""
    return (STATIC_DIR / name).read_text(encoding="utf-8")


@router.get("/static/{path:path}")
async def static_file(path: str, request: Request) -> Response:
    """A file of ``static/``; vendored files are cached a day, ours revalidate by ETag."""
    not_found = HTTPException(status.HTTP_404_NOT_FOUND, "not found")
    if not path or "\x00" in path or "\\" in path:
        raise not_found
    try:
        target = (STATIC_DIR / path).resolve()
    except (OSError, ValueError):
        raise not_found from None
    if not target.is_relative_to(STATIC_DIR) or not target.is_file():
        raise not_found
    suffix = target.suffix.lower()
    if suffix not in _CONTENT_TYPES or any(p.startswith(".") for p in target.parts[-1:]):
        raise not_found
    data = target.read_bytes()
    etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
    vendored = "vendor" in target.relative_to(STATIC_DIR).parts
    headers = {
        "ETag": etag,
        "Cache-Control": "public, max-age=86400" if vendored else "no-cache",
        "X-Content-Type-Options": "nosniff",
    }
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    media_type = _CONTENT_TYPES.get(suffix) or mimetypes.guess_type(target.name)[0]
    return Response(data, media_type=media_type, headers=headers)
