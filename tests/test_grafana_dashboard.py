"""The Grafana dashboard of examples/grafana/: every query names what `/metrics` really emits.

A real `wa-auth serve` (with an outbox, in front of the sandbox) goes through what each panel
shows (a delivered send, a queued one, a dead letter, an account-state failure, a token with
an expiry); then every PromQL expression of the dashboard (panels, variables, annotations) is
read for its metric names and label names, and each must be among the samples `/metrics`
served, with those labels.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from running import text_intent
from serving import KEY, serving
from wa_auth.sandbox import Sandbox

prometheus_parser = pytest.importorskip("prometheus_client.parser")

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "examples" / "grafana" / "wa-auth-dashboard.json"

# --- reading PromQL -------------------------------------------------------------------------------

#: Words that are PromQL syntax, never a metric name.
_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool"}
    | {"and", "or", "unless", "atan2", "start", "end", "inf", "nan"}
)
#: The clauses whose parenthesised list holds label names.
_LABEL_LISTS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
_TOKEN = re.compile(
    r"""
    (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    | (?P<range>\[[^\]]*\])
    | (?P<matchers>\{(?:[^}"']|"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')*\})
    | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[smhdwy]*)
    | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
    | (?P<punct>[()\[\],])
    | (?P<op>[-+*/%^=!<>~]+)
    | (?P<space>\s+)
    """,
    re.VERBOSE,
)
_MATCHER = re.compile(r"""\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*")\s*,?""")
#: Grafana's variables, replaced by what they stand for before the PromQL is read.
_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


class Selector:
    """A metric a PromQL expression reads, with the label names of its matchers."""

    def __init__(self, name: str, labels: frozenset[str]) -> None:
        self.name = name
        self.labels = labels

    def __repr__(self) -> str:
        return f"Selector({self.name!r}, {sorted(self.labels)})"


def read_promql(expr: str) -> tuple[list[Selector], set[str]]:
    """Return the metric selectors of *expr* and the label names its by/on/... clauses name."""
    for variable, value in _VARIABLES.items():
        expr = expr.replace(variable, value)
    expr = re.sub(r"\$\{?[A-Za-z_]\w*\}?", "x", expr)  # $consumer, ${consumer}: in strings
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        if match is None:
            raise ValueError(f"unreadable PromQL at {pos}: {expr[pos:]!r}")
        pos = match.end()
        if match.lastgroup != "space":
            tokens.append((match.lastgroup or "", match.group()))
    selectors: list[Selector] = []
    grouped: set[str] = set()
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        after = tokens[i + 1] if i + 1 < len(tokens) else ("", "")
        if kind == "ident" and text in _LABEL_LISTS and after[1] == "(":
            i += 2
            while i < len(tokens) and tokens[i][1] != ")":
                if tokens[i][0] == "ident":
                    grouped.add(tokens[i][1])
                i += 1
        elif kind == "ident" and text not in _KEYWORDS and after[1] not in {"(", "by", "without"}:
            # Not a function call, nor an aggregation written `sum by (...) (...)`.
            labels = frozenset(_matchers(after[1])) if after[0] == "matchers" else frozenset()
            selectors.append(Selector(text, labels))
        elif kind == "matchers" and (i == 0 or tokens[i - 1][0] != "ident"):
            raise ValueError(f"a selector without a metric name: {text}")
        i += 1
    return selectors, grouped


def grafana_query(definition: str) -> str:
    """Return a variable's query as PromQL: `label_values(q, l)` reads l of q's series."""
    match = re.fullmatch(r"\s*label_values\((.+),\s*([A-Za-z_]\w*)\s*\)\s*", definition)
    return f"count by ({match.group(2)}) ({match.group(1)})" if match else definition


def _matchers(text: str) -> list[str]:
    body = text[1:-1]
    names, pos = [], 0
    while pos < len(body.strip()):
        match = _MATCHER.match(body, pos)
        if match is None:
            raise ValueError(f"unreadable label matchers: {text}")
        names.append(match.group(1))
        pos = match.end()
    if "__name__" in names:
        raise ValueError(f"a metric named by __name__ cannot be checked: {text}")
    return names


def test_reading_promql_finds_metrics_and_labels():
    """The reader finds names in functions, binary expressions and aggregations, never a
    function, a keyword, a label or a duration."""
    selectors, grouped = read_promql(
        'sum by (category, token_fingerprint) (increase(a_total{category=~"x|y", c="$v"}'
        "[$__rate_interval])) / on (category) group_left (token_fingerprint) "
        "(time() - max without (state) (b_seconds offset 5m)) > bool 0 and c"
    )
    assert [(s.name, sorted(s.labels)) for s in selectors] == [
        ("a_total", ["c", "category"]),
        ("b_seconds", []),
        ("c", []),
    ]
    assert grouped == {"category", "token_fingerprint", "state"}
    selectors, grouped = read_promql(grafana_query('label_values(m_total{a="1"}, consumer)'))
    assert ([(s.name, set(s.labels)) for s in selectors], grouped) == (
        [("m_total", {"a"})],
        {"consumer"},
    )
    with pytest.raises(ValueError, match="__name__"):
        read_promql('{__name__="m"}')


_NAMES = st.from_regex(r"[a-z_][a-z0-9_]{0,20}", fullmatch=True).filter(
    lambda n: n not in _KEYWORDS
)


@given(metric=_NAMES, label=_NAMES, value=st.text(max_size=10), fn=st.sampled_from(["rate", "abs"]))
def test_reading_promql_finds_any_selector(metric, label, value, fn):
    """Any metric name with any matcher value, inside a function and an aggregation, is found."""
    quoted = json.dumps(value)
    selectors, grouped = read_promql(f"sum by ({label}) ({fn}({metric}{{{label}={quoted}}}[5m]))")
    assert [(s.name, set(s.labels)) for s in selectors] == [(metric, {label})]
    assert grouped == {label}


# --- the dashboard ---------------------------------------------------------------------------------


def _dashboard() -> dict:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def _queries(dashboard: dict) -> Iterator[tuple[str, str]]:
    """Yield (where, PromQL) for every query: panel targets, variables and annotations."""
    for panel in dashboard["panels"]:
        for target in panel.get("targets", ()):
            yield f"panel {panel['title']!r} {target['refId']}", target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            yield f"variable {variable['name']}", grafana_query(variable["definition"])
    for annotation in dashboard["annotations"]["list"]:
        yield f"annotation {annotation['name']!r}", annotation["expr"]


def test_the_dashboard_is_an_importable_grafana_model():
    """Unique panel ids, every panel on the 24-column grid with a title, a description and a
    query over the `datasource` variable; every non-row panel has at least one target."""
    dashboard = _dashboard()
    assert dashboard["uid"] == "wa-auth"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["description"], panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
    names = {v["name"] for v in dashboard["templating"]["list"]}
    assert names == {"datasource", "consumer"}


# --- a real /metrics -------------------------------------------------------------------------------


def _exercise(sandbox: Sandbox, http: httpx.Client) -> str:
    """Go through what each panel shows; return the /metrics text after it."""

    def send(**extra: object) -> dict:
        answer = http.post("/send", json=text_intent("dashboard", **extra))
        assert answer.status_code == 200, answer.text
        return answer.json()

    assert send()["state"] == "delivered"
    sandbox.fail_next(131009)  # Meta refuses a parameter: a dead letter
    assert send()["category"] == "invalid_request"
    sandbox.fail_next(131048)  # the spam cap: queued in the outbox, and the number held
    assert send()["state"] == "queued"
    assert http.post("/check", json={}).json()["valid"] is True
    sandbox.set_account_state("locked")  # an auth failure: the account (the WABA's, so the
    other = sandbox.phone_number_ids[1]  # other number, which the spam cap does not hold)
    assert send(phone_number_id=other)["category"] == "account_state"
    metrics = http.get("/metrics")
    assert metrics.status_code == 200
    return metrics.text


@pytest.fixture(scope="module")
def exposition(tmp_path_factory) -> Iterator[str]:
    """The /metrics text of a real serve after `_exercise`: one run for the module's tests."""
    tmp_path = tmp_path_factory.mktemp("dashboard")
    with Sandbox(seed=5) as sandbox:
        token = sandbox.issue_token(expires_in=30 * 86400)
        args = ("--outbox", str(tmp_path / "outbox.db"), "--consumer", "orders")
        with serving(sandbox, token, *args) as svc:
            headers = {"Authorization": f"Bearer {KEY}"}
            with httpx.Client(base_url=svc.url, headers=headers, timeout=60) as http:
                text = _exercise(sandbox, http)
            assert token not in text
            yield text


def _samples(text: str) -> dict[str, set[str]]:
    """Return every sample name /metrics served, with the label names it carries."""
    found: dict[str, set[str]] = {}
    for family in prometheus_parser.text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, set()).update(sample.labels)
    return found


def test_every_query_names_a_metric_and_labels_that_metrics_emits(exposition):
    """Each metric name of each dashboard query is a sample of a real /metrics, each label it
    matches on is one that metric carries, and each label it groups by is on one of them."""
    samples = _samples(exposition)
    used: set[str] = set()
    for where, expr in _queries(_dashboard()):
        selectors, grouped = read_promql(expr)
        assert selectors, f"{where}: no metric in {expr!r}"
        for selector in selectors:
            assert selector.name in samples, f"{where}: /metrics has no {selector.name}"
            missing = selector.labels - samples[selector.name]
            assert not missing, f"{where}: {selector.name} has no label {sorted(missing)}"
            used.add(selector.name)
        carried = set().union(*(samples[s.name] for s in selectors))
        assert grouped <= carried, f"{where}: no metric of it has {sorted(grouped - carried)}"
    # The dashboard covers what the issue asks for: auth failures, the outbox, token expiry.
    assert {
        "wa_auth_calls_total",
        "wa_auth_outbox_rows",
        "wa_auth_outbox_dead_letters",
        "wa_auth_token_expiry_timestamp_seconds",
    } <= used


def test_the_gauges_read_what_the_run_did(exposition):
    """The outbox and token gauges hold the run's figures: two queued rows, one dead letter,
    an account-state failure, a valid token expiring in about 30 days."""
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in prometheus_parser.text_string_to_metric_families(exposition)
        for s in f.samples
    }

    def value(name: str, **labels: str) -> float:
        matching = [v for (n, ls), v in values.items() if n == name and labels.items() <= set(ls)]
        assert len(matching) == 1, (name, labels, matching)
        return matching[0]

    assert value("wa_auth_outbox_rows", state="queued") == 2  # the cap and the locked account
    assert value("wa_auth_outbox_dead_letters") == 1
    assert value("wa_auth_calls_total", category="account_state", consumer="orders") == 1
    assert value("wa_auth_token_valid", consumer="orders") == 1
    days = (
        value("wa_auth_token_expiry_timestamp_seconds", consumer="orders") - time.time()
    ) / 86400
    assert 29 < days <= 30
