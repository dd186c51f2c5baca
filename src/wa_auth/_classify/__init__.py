"""The classifier behind `wa_auth.errors.from_response`, in four modules by what they read.

- `_body`: the body: its JSON or its text, a cut body salvaged field by field, the helpers
  that turn a JSON value into well-formed text.
- `_fields`: where the error object is (Meta's, a webhook's, debug_token's, a health_status
  entity's, a BSP's envelope) and its fields, each read on its own.
- `_rule`: the row of `wa_auth._table` the fields match (a code inferred from the text when
  there is none, the HTTP status last), and the wait: Retry-After, the usage header, the row.
- `_classifier`: `classify`, `classify_webhook`, `classify_token_info`: the fields, the row
  and the class `wa_auth.errors` gives for its category, into one error. Pure, never raise.

Each helper is total: a field it cannot read (a 5,000-digit code, a body nested too deep for
`json`, a usage number beyond any float) is dropped or clamped, and the fields around it still
classify. Imports go `_table` <- `_classify` <- `errors`; nothing here knows about HTTP
clients, shells or providers, nor about the exception classes.
"""

from __future__ import annotations

from wa_auth._classify._body import (
    BODY_EXCERPT_CHARS,
    TEXT_CUT,
    fallback_message,
    is_map,
    parse_body,
    salvage_truncated,
    to_text,
)
from wa_auth._classify._classifier import (
    Classes,
    classify,
    classify_token_info,
    classify_webhook,
)
from wa_auth._classify._fields import (
    Fields,
    code_in_text,
    find_error_object,
    read_www_authenticate,
)
from wa_auth._classify._rule import MAX_RETRY_AFTER, parse_retry_after, retry_after, rule_for

__all__ = [
    "BODY_EXCERPT_CHARS",
    "MAX_RETRY_AFTER",
    "TEXT_CUT",
    "Classes",
    "Fields",
    "classify",
    "classify_token_info",
    "classify_webhook",
    "code_in_text",
    "fallback_message",
    "find_error_object",
    "is_map",
    "parse_body",
    "parse_retry_after",
    "read_www_authenticate",
    "retry_after",
    "rule_for",
    "salvage_truncated",
    "to_text",
]
