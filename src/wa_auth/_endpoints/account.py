"""The account endpoints: phone numbers, the business profile, message templates."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from wa_auth._context import Context
from wa_auth._core import (
    BadBodyError,
    Flow,
    Response,
    call,
    get_request,
    json_object,
    opt_str,
)
from wa_auth._endpoints._docs import raises
from wa_auth.models import Usage

if TYPE_CHECKING:
    from wa_auth.models import BusinessProfile, MessageTemplate, Page, PhoneNumber

__all__ = ["get_business_profile", "get_phone_number", "list_phone_numbers", "list_templates"]

_PHONE_FIELDS: Final = (
    "id,display_phone_number,verified_name,quality_rating,code_verification_status,"
    "platform_type,throughput,name_status,status,health_status"
)


def _phone_from(data: Mapping[str, Any], usage: Usage) -> PhoneNumber:
    from wa_auth.models import PhoneNumber

    throughput = data.get("throughput")
    level = throughput.get("level") if isinstance(throughput, Mapping) else None
    health = data.get("health_status")
    can_send = health.get("can_send_message") if isinstance(health, Mapping) else None
    return PhoneNumber(
        id=str(data["id"]),
        display_phone_number=opt_str(data.get("display_phone_number")),
        verified_name=opt_str(data.get("verified_name")),
        quality_rating=opt_str(data.get("quality_rating")),
        code_verification_status=opt_str(data.get("code_verification_status")),
        platform_type=opt_str(data.get("platform_type")),
        throughput_level=opt_str(level),
        name_status=opt_str(data.get("name_status")),
        usage=usage,
        status=opt_str(data.get("status")),
        can_send_message=opt_str(can_send),
    )


@raises()
def get_phone_number(ctx: Context, *, phone_number_id: str | None = None) -> Flow[PhoneNumber]:
    """Return the business phone number's details (display number, quality, name status...).

    Args:
        phone_number_id: The number, overriding the client's.

    Returns:
        `PhoneNumber`, with its quality rating, verification and throughput level.
    """
    phone = ctx.phone(phone_number_id)
    request = get_request(
        ctx.url(phone, query={"fields": _PHONE_FIELDS}), "get_phone_number", phone
    )
    return (
        yield from call(
            ctx, request, lambda r: _phone_from(json_object(r), Usage.from_headers(r.headers))
        )
    )


def _paged(response: Response) -> tuple[list[Any], str | None, Usage]:
    data = json_object(response)
    items = data.get("data")
    if not isinstance(items, list):
        raise BadBodyError("no 'data' list")
    paging = data.get("paging")
    after = None
    if isinstance(paging, Mapping) and paging.get("next"):
        cursors = paging.get("cursors")
        if isinstance(cursors, Mapping):
            after = opt_str(cursors.get("after"))
    return items, after, Usage.from_headers(response.headers)


@raises("RequestValidationError: The client has no `business_account_id`; nothing was sent.")
def list_phone_numbers(
    ctx: Context, *, limit: int | None = None, after: str | None = None
) -> Flow[Page[PhoneNumber]]:
    """List the phone numbers of the WhatsApp Business Account (`business_account_id`).

    Args:
        limit: The page size.
        after: The cursor of the next page (`Page.after` of the previous one).

    Returns:
        A `Page` of `PhoneNumber`.
    """
    waba = ctx.waba()
    url = ctx.url(
        waba, "phone_numbers", query={"fields": _PHONE_FIELDS, "limit": limit, "after": after}
    )
    request = get_request(url, "list_phone_numbers", waba)

    def parse(r: Response) -> Page[PhoneNumber]:
        from wa_auth.models import Page

        items, cursor, usage = _paged(r)
        return Page(tuple(_phone_from(i, usage) for i in items), cursor, usage)

    return (yield from call(ctx, request, parse))


_PROFILE_FIELDS: Final = "about,address,description,email,profile_picture_url,websites,vertical"


@raises()
def get_business_profile(
    ctx: Context, *, phone_number_id: str | None = None
) -> Flow[BusinessProfile]:
    """Return the WhatsApp business profile of the phone number.

    Args:
        phone_number_id: The number, overriding the client's.

    Returns:
        `BusinessProfile`: about, address, description, email, websites, vertical.
    """
    phone = ctx.phone(phone_number_id)
    url = ctx.url(phone, "whatsapp_business_profile", query={"fields": _PROFILE_FIELDS})
    request = get_request(url, "get_business_profile", phone)

    def parse(r: Response) -> BusinessProfile:
        from wa_auth.models import BusinessProfile

        items, _, usage = _paged(r)
        data = items[0] if items and isinstance(items[0], Mapping) else {}
        websites = data.get("websites") or ()
        return BusinessProfile(
            about=opt_str(data.get("about")),
            address=opt_str(data.get("address")),
            description=opt_str(data.get("description")),
            email=opt_str(data.get("email")),
            profile_picture_url=opt_str(data.get("profile_picture_url")),
            websites=tuple(str(w) for w in websites),
            vertical=opt_str(data.get("vertical")),
            usage=usage,
        )

    return (yield from call(ctx, request, parse))


@raises("RequestValidationError: The client has no `business_account_id`; nothing was sent.")
def list_templates(
    ctx: Context, *, limit: int | None = None, after: str | None = None
) -> Flow[Page[MessageTemplate]]:
    """List the message templates of the WhatsApp Business Account, one page at a time.

    Args:
        limit: The page size.
        after: The cursor of the next page (`Page.after` of the previous one).

    Returns:
        A `Page` of `MessageTemplate` (name, language, status, category, components).
    """
    waba = ctx.waba()
    url = ctx.url(waba, "message_templates", query={"limit": limit, "after": after})
    request = get_request(url, "list_templates", waba)

    def parse(r: Response) -> Page[MessageTemplate]:
        from wa_auth.models import MessageTemplate, Page

        items, cursor, usage = _paged(r)
        templates = tuple(
            MessageTemplate(
                id=str(t.get("id", "")),
                name=str(t.get("name", "")),
                language=opt_str(t.get("language")),
                status=opt_str(t.get("status")),
                category=opt_str(t.get("category")),
                components=tuple(t.get("components") or ()),
            )
            for t in items
            if isinstance(t, Mapping)
        )
        return Page(templates, cursor, usage)

    return (yield from call(ctx, request, parse))
