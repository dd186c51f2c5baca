"""The PostgreSQL URL taken apart (`wa_auth._postgres.Target`): any text, a typed answer.

Whatever `--outbox` or `WA_AUTH_OUTBOX` holds, the outbox gets a `Target` or a
`ConfigurationError`, never another exception; and neither its `repr`, its `where` nor the
error's message ever holds the password.
"""

from __future__ import annotations

import urllib.parse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wa_auth._postgres import Target, redact
from wa_auth.errors import ConfigurationError

PASSWORDS = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=6, max_size=30
).filter(lambda p: p.strip() == p and "***" not in p)


@given(st.text(max_size=200))
def test_any_text_is_a_target_or_a_configuration_error(text):
    try:
        target = Target.parse(text)
    except ConfigurationError:
        return
    assert target.where.startswith("PostgreSQL ")


@given(password=PASSWORDS, host=st.sampled_from(["127.0.0.1", "db.internal", "[::1]"]))
def test_the_password_never_shows(password, host):
    quoted = urllib.parse.quote(password, safe="")
    url = f"postgresql://wa:{quoted}@{host}:5432/n8n"
    target = Target.parse(url)
    for text in (repr(target), target.where, target.safe_url, redact(f"failed: {url}")):
        assert quoted not in text
    assert target.database == "n8n"
    with pytest.raises(ConfigurationError) as caught:
        Target.parse(url.replace("postgresql://", "mysql://"))
    assert quoted not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "where"),
    [
        ("postgresql://u:p@h:6543/db", "PostgreSQL h:6543/db"),
        ("postgres://u@h/db", "PostgreSQL h:5432/db"),
        ("postgresql:///db?host=/run/postgresql", "PostgreSQL /run/postgresql:5432/db"),
    ],
    ids=["full", "short-scheme", "unix-socket"],
)
def test_where_names_the_server_and_database(url, where):
    assert Target.parse(url).where == where
