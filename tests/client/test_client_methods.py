"""The clients' endpoint methods as users see them: `help()`, IDEs and the API page show the
real method (`self`, its parameters, the model it returns) and a docstring about it."""

from __future__ import annotations

import inspect

import pytest

import wa_auth
from wa_auth import _endpoints

CLIENTS = [wa_auth.WhatsAppClient, wa_auth.AsyncWhatsAppClient, wa_auth.FastAsyncWhatsAppClient]
METHODS = list(_endpoints.__all__)


@pytest.mark.parametrize("cls", CLIENTS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", METHODS)
def test_method_signature_is_the_bound_method(cls, name):
    """`self` unannotated first, the flow's own parameters after it, the model as the result."""
    method = getattr(cls, name)
    sig = inspect.signature(method)
    first, *rest = sig.parameters.values()
    assert first.name == "self"
    assert first.annotation is inspect.Parameter.empty
    assert "ctx" not in [p.name for p in rest]
    assert not str(sig.return_annotation).startswith("Flow")
    assert sig.return_annotation is not inspect.Signature.empty
    if cls is not wa_auth.WhatsAppClient:
        assert inspect.iscoroutinefunction(method)


@pytest.mark.parametrize("name", METHODS)
def test_method_docstring_documents_the_method(name):
    """Every endpoint has Args (when it takes any) and Returns, and never mentions `ctx`."""
    method = getattr(wa_auth.WhatsAppClient, name)
    doc = inspect.getdoc(method) or ""
    assert "ctx" not in doc
    params = list(inspect.signature(method).parameters)[1:]
    if params:
        assert "Args:" in doc, name
        for param in params:
            assert f"{param}:" in doc, (name, param)
    assert "Returns:" in doc, name
    assert "Raises:" in doc, name
