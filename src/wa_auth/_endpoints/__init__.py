"""One generator flow per Cloud API endpoint, by family; the clients bind them as methods."""

from __future__ import annotations

from wa_auth._endpoints.account import (
    get_business_profile,
    get_phone_number,
    list_phone_numbers,
    list_templates,
)
from wa_auth._endpoints.media import delete_media, download_media, get_media_url, upload_media
from wa_auth._endpoints.messages import (
    mark_as_read,
    send,
    send_interactive_buttons,
    send_interactive_list,
    send_location,
    send_media,
    send_reaction,
    send_template,
    send_text,
)
from wa_auth._endpoints.tokens import debug_token, token_health

__all__ = [
    "debug_token",
    "delete_media",
    "download_media",
    "get_business_profile",
    "get_media_url",
    "get_phone_number",
    "list_phone_numbers",
    "list_templates",
    "mark_as_read",
    "send",
    "send_interactive_buttons",
    "send_interactive_list",
    "send_location",
    "send_media",
    "send_reaction",
    "send_template",
    "send_text",
    "token_health",
    "upload_media",
]
