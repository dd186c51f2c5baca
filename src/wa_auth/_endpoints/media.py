"""The media endpoints: upload, look up, download and delete media objects."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

from wa_auth import _table
from wa_auth._context import Context
from wa_auth._core import (
    BadBodyError,
    Flow,
    Request,
    Response,
    call,
    get_request,
    json_object,
    opt_str,
)
from wa_auth._endpoints._docs import raises
from wa_auth._endpoints.messages import parse_success_flag
from wa_auth._validate import check_id, check_sendable, describe
from wa_auth.errors import RequestValidationError, UnknownApiError
from wa_auth.models import Usage

if TYPE_CHECKING:
    from wa_auth.models import MediaContent, MediaInfo, MediaUpload, SuccessResult

__all__ = ["MEDIA_HOST_SUFFIXES", "delete_media", "download_media", "get_media_url", "upload_media"]


def _multipart(
    fields: Iterable[tuple[str, str]], file: tuple[str, str, bytes]
) -> tuple[str, bytes]:
    boundary = "wa-auth-" + os.urandom(12).hex()
    parts: list[bytes] = []
    for name, value in fields:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode()
            + b"\r\n"
        )
    filename, mime, data = file
    safe = filename.replace('"', "%22").replace("\r", "").replace("\n", "")
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{safe}"\r\n'
        f"Content-Type: {mime}\r\n\r\n".encode()
        + data
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return f"multipart/form-data; boundary={boundary}", b"".join(parts)


@raises(
    "RequestValidationError: Empty data, a malformed MIME type, or a file name UTF-8 cannot "
    "encode; nothing was sent."
)
def upload_media(
    ctx: Context,
    data: bytes,
    mime_type: str,
    *,
    filename: str | None = None,
    phone_number_id: str | None = None,
) -> Flow[MediaUpload]:
    """Upload media bytes and return the media id to send with `send_media(media_id=...)`.

    Args:
        data: The file's bytes.
        mime_type: Its type, such as `image/jpeg` or `application/pdf`.
        filename: The name it is uploaded under (default `upload.<subtype>`).
        phone_number_id: The number the media belongs to, overriding the client's.

    Returns:
        `MediaUpload` with the media id.
    """
    phone = ctx.phone(phone_number_id)
    if not isinstance(data, (bytes, bytearray, memoryview)) or not bytes(data):
        raise RequestValidationError("data must be non-empty bytes")
    if not isinstance(mime_type, str) or "/" not in mime_type:
        raise RequestValidationError(
            f"mime_type must look like 'image/jpeg', got {describe(mime_type)}"
        )
    check_sendable("mime_type", mime_type)
    if filename is not None:
        if not isinstance(filename, str):
            raise RequestValidationError(f"filename must be a string, got {describe(filename)}")
        check_sendable("filename", filename)
    name = filename or "upload." + mime_type.rsplit("/", 1)[-1].split(";", maxsplit=1)[0]
    content_type, body = _multipart(
        [("messaging_product", "whatsapp"), ("type", mime_type)], (name, mime_type, bytes(data))
    )
    request = Request(
        "POST",
        ctx.url(phone, "media"),
        (("Content-Type", content_type),),
        body,
        idempotent=False,
        operation="upload_media",
        route=phone,
    )
    return (yield from call(ctx, request, _parse_upload))


def _parse_upload(response: Response) -> MediaUpload:
    from wa_auth.models import MediaUpload

    data = json_object(response)
    media_id = data.get("id")
    if not media_id:
        raise BadBodyError("no media id")
    return MediaUpload(media_id=str(media_id), usage=Usage.from_headers(response.headers))


@raises()
def get_media_url(
    ctx: Context, media_id: str, *, phone_number_id: str | None = None
) -> Flow[MediaInfo]:
    """Return a media object's short-lived download URL (valid about 5 minutes) and metadata.

    Args:
        media_id: The media object's id (from a webhook or `upload_media`).
        phone_number_id: Ask on behalf of this number (Meta checks it owns the media).

    Returns:
        `MediaInfo`: the URL, MIME type, SHA-256 and size.
    """
    mid = check_id("media_id", media_id)
    query = {"phone_number_id": phone_number_id} if phone_number_id is not None else None
    route = phone_number_id or ctx.phone_number_id
    request = get_request(ctx.url(mid, query=query), "get_media_url", route)
    return (yield from call(ctx, request, _parse_media_info))


def _parse_media_info(response: Response) -> MediaInfo:
    from wa_auth.models import MediaInfo

    data = json_object(response)
    url = data.get("url")
    if not isinstance(url, str) or not url:
        raise BadBodyError("no media url")
    size = data.get("file_size")
    return MediaInfo(
        media_id=str(data.get("id", "")),
        url=url,
        mime_type=opt_str(data.get("mime_type")),
        sha256=opt_str(data.get("sha256")),
        file_size=int(size) if size is not None else None,
        usage=Usage.from_headers(response.headers),
    )


#: Hosts Meta serves media downloads from; the token is sent to these and to base_url's host.
MEDIA_HOST_SUFFIXES: Final = (".fbsbx.com", ".facebook.com", ".fbcdn.net", ".whatsapp.net")


def _trusted_media_host(ctx: Context, url: str) -> bool:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in {"https", "http"} or not host:
        return False
    if host == (urlsplit(ctx.base_url).hostname or "").lower():
        return True
    return parts.scheme == "https" and host.endswith(MEDIA_HOST_SUFFIXES)


@raises()
def download_media(
    ctx: Context, media_id: str, *, phone_number_id: str | None = None
) -> Flow[MediaContent]:
    """Download a media object's bytes: look up its URL, then fetch it with the same token.

    The token goes with the download, so only to Meta's media hosts (or the client's
    `base_url`): any other host in the answer is refused with `UnknownApiError`.

    Args:
        media_id: The media object's id.
        phone_number_id: Ask on behalf of this number.

    Returns:
        `MediaContent`: the bytes and their MIME type and SHA-256.
    """
    from wa_auth.models import MediaContent

    info = yield from get_media_url(ctx, media_id, phone_number_id=phone_number_id)
    if not _trusted_media_host(ctx, info.url):
        # The bearer token goes with the download: never to a host Meta would not use.
        raise UnknownApiError(
            f"refusing to send the access token to the media URL's host "
            f"{urlsplit(info.url).hostname!r}: not Meta's and not base_url's",
            rule=_table.UNKNOWN_RULE.id,
        )
    request = Request(
        "GET",
        info.url,
        idempotent=True,
        operation="download_media",
        route=phone_number_id or ctx.phone_number_id,
    )
    content = yield from call(ctx, request, lambda r: r.content)
    return MediaContent(
        media_id=info.media_id or media_id,
        content=content,
        mime_type=info.mime_type,
        sha256=info.sha256,
    )


@raises()
def delete_media(
    ctx: Context, media_id: str, *, phone_number_id: str | None = None
) -> Flow[SuccessResult]:
    """Delete an uploaded media object; safe to repeat.

    Args:
        media_id: The media object's id.
        phone_number_id: Delete on behalf of this number.

    Returns:
        `SuccessResult` with Meta's `success` flag.
    """
    mid = check_id("media_id", media_id)
    query = {"phone_number_id": phone_number_id} if phone_number_id is not None else None
    request = Request(
        "DELETE",
        ctx.url(mid, query=query),
        idempotent=True,
        operation="delete_media",
        route=phone_number_id or ctx.phone_number_id,
    )
    return (yield from call(ctx, request, parse_success_flag))
