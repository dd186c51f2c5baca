"""`wa-auth classify`: an error JSON in, its classification out (nothing is sent).

For users who keep n8n's own nodes: the error output of its HTTP Request node and of its
WhatsApp node is read as n8n 2.x produces it, and so is a raw Graph API error body. The
classification is `wa_auth.errors.from_response`'s, the same as the client's.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import re
import sys
from collections.abc import Mapping
from typing import Any, Final

from wa_auth import _json_input as json_input
from wa_auth._cli import _codes
from wa_auth._cli._output import error_object, write
from wa_auth.errors import ApiError, ConfigurationError, from_response, from_webhook_error

#: n8n's `NodeApiError` replaces the message by one per HTTP status (n8n-workflow's
#: `STATUS_CODE_MESSAGES`); its WhatsApp node's error output is `{"error": <that message>}`,
#: so the status is all that is left to classify by.
N8N_STATUS_MESSAGES: Final = {
    "Bad request - please check your parameters": 400,
    "Authorization failed - please check your credentials": 401,
    "Payment required - perhaps check your payment details?": 402,
    "Forbidden - perhaps check your credentials?": 403,
    "The resource you are requesting could not be found": 404,
    "Method not allowed - please check you are using the right HTTP method": 405,
    "The service is receiving too many requests from you": 429,
    "The service was not able to process your request": 500,
    "Bad gateway - the service failed to handle your request": 502,
    "Service unavailable - try again later or consider setting this node to retry "
    "automatically (in the node settings)": 503,
    "Gateway timed out - perhaps try again later?": 504,
}

#: The HTTP Request node's error message with "Continue on fail": `401 - "<the body as a JSON
#: string>"` (axios's status, then the response body JSON-encoded once more).
_STATUS_BODY: Final = re.compile(r"^(\d{3}) - (.*)$", re.DOTALL)


def _body_of(text: str) -> Any:
    """Return the body the n8n message quotes: JSON decoded, twice when it was quoted twice."""
    try:
        value: Any = json.loads(text)
    except ValueError:
        return text
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def classify(data: Any, status: int | None = None) -> tuple[str, ApiError]:
    """Return where *data* comes from and its classification.

    Understood: a Graph error body (`{"error": {"code": ...}}`), a webhook error object
    (`{"code": 131031, "title": ...}`), the HTTP Request node's error output (`{"error":
    {"message": "401 - ...", "status": 401}}`) and its full response (`{"statusCode", "body",
    "headers"}`), n8n's `NodeApiError` JSON (`httpCode`, `description`), the WhatsApp node's
    error output (`{"error": "Authorization failed - ..."}`), and an n8n item (`{"json": ...}`).
    """
    if (
        isinstance(data, Mapping)
        and set(data) <= {"json", "pairedItem", "binary"}
        and "json" in data
    ):
        data = data["json"]
    if not isinstance(data, Mapping):
        return "text", from_response(status, data if isinstance(data, str) else json.dumps(data))
    error = data.get("error")
    if isinstance(error, str):
        found = _STATUS_BODY.match(error)
        if found:
            return "n8n_http_request", from_response(int(found[1]), _body_of(found[2]))
        return "n8n_whatsapp", from_response(
            N8N_STATUS_MESSAGES.get(error, status), {"error": {"message": error}}
        )
    if isinstance(error, Mapping):
        message = error.get("message")
        found = _STATUS_BODY.match(message) if isinstance(message, str) else None
        if found and ("status" in error or error.get("name") == "AxiosError"):
            return "n8n_http_request", from_response(int(found[1]), _body_of(found[2]))
        if "httpCode" in error:
            return _node_api_error(error, status)
        return "graph", from_response(status, data)
    if "statusCode" in data and "body" in data:
        headers = data.get("headers")
        return "n8n_full_response", from_response(
            _int(data.get("statusCode")),
            _body_of(data["body"]) if isinstance(data["body"], str) else data["body"],
            {str(k): str(v) for k, v in headers.items()} if isinstance(headers, Mapping) else None,
        )
    if "httpCode" in data:
        return _node_api_error(data, status)
    if "code" in data and ("title" in data or "message" in data):
        return "webhook", from_webhook_error(data)
    return "graph", from_response(status, data)


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _node_api_error(error: Mapping[str, Any], status: int | None) -> tuple[str, ApiError]:
    """Classify n8n's `NodeApiError` JSON: its `httpCode`, and the Graph text it kept."""
    code = _int(error.get("httpCode")) or status
    text = error.get("description") or error.get("message") or ""
    context = error.get("context")
    body = context.get("data") if isinstance(context, Mapping) else None
    if not isinstance(body, Mapping):
        body = {"error": {"message": str(text)}}
    return "n8n_node_error", from_response(code, body)


def _read(args: argparse.Namespace) -> str:
    """Return the input as text: stdin and `--input FILE` are read alike, as UTF-8 bytes.

    Raises:
        ConfigurationError: No input, a file that cannot be read, or bytes that are not UTF-8.
    """
    if args.input_b64 is not None:
        try:
            data = base64.b64decode(args.input_b64.strip(), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ConfigurationError(f"--input-b64 is not base64: {exc}") from None
        where = "--input-b64"
    elif args.input not in (None, "-"):
        try:
            with open(args.input, "rb") as f:  # noqa: PTH123 - one read
                data = f.read()
        except OSError as exc:
            raise ConfigurationError(f"--input {args.input}: cannot read it ({exc})") from None
        where = f"--input {args.input}"
    elif sys.stdin is None or sys.stdin.isatty():
        raise ConfigurationError("classify reads an error JSON from stdin, --input or --input-b64")
    else:
        from wa_auth._cli._input import stdin_bytes

        data, where = stdin_bytes(), "stdin"
    try:
        return json_input.decode_utf8(data)
    except json_input.JSONInputError as exc:
        raise ConfigurationError(f"{where}: {exc}") from None


def _parse(text: str) -> Any:
    """Return the error JSON *text* holds, or *text* itself when it is no JSON (an HTML page).

    Raises:
        ConfigurationError: JSON refused: a key given twice, NaN, or nested too deep.
    """
    try:
        return json_input.loads(text)
    except json_input.JSONInputError as exc:
        if exc.not_json:
            return text  # a proxy's HTML page: classified by --status
        raise ConfigurationError(f"classify reads one error JSON: {exc}") from None


def line(source: str, error: ApiError) -> dict[str, Any]:
    """Return the classification line of *error*, read from *source* (the schema's `classify`)."""
    err = error_object(error)
    return {
        "ok": False,
        "exit_code": _codes.for_category(err["category"]),
        "category": err["category"],
        "source": source,
        "error": err,
    }


def run(args: argparse.Namespace) -> int:
    """Classify the input; print one line; return the category's exit code."""
    text = _read(args)
    if not text.strip():
        raise ConfigurationError("classify got no input")
    result = line(*classify(_parse(text), args.status))
    err = result["error"]
    if args.format == "text":
        sys.stdout.write(
            f"{err['category']} (exit {result['exit_code']}, "
            f"{'retryable' if err['retryable'] else 'not retryable'}"
            f"{', ambiguous' if err['ambiguous'] else ''}): {err['message']}\n"
            f"operator action: {err['operator_action']}\n"
        )
    else:
        write(result)
    return int(result["exit_code"])
