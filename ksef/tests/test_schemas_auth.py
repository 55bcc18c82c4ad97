"""The official auth XSD's ^...$ patterns are read as anchors (as KSeF does), not literals."""
import pytest

from ksef import schemas, xades

CHALLENGE = "20250625-CR-20F5EE4000-DA48AE4124-46"


@pytest.mark.parametrize("context_type,value", [
    ("NipVatUe", "5265877635-DE123456789"),
    ("PeppolId", "PPL123456"),
    ("Nip", "5265877635"),
    ("InternalId", "5265877635-12345"),
])
def test_valid_context_identifiers_pass_the_auth_schema(context_type, value):
    xml = xades.build_auth_token_request(CHALLENGE, context_type, value)
    assert schemas.validate_xsd(xml, "AUTH") == []


def test_literal_dollar_is_still_rejected():
    xml = xades.build_auth_token_request(CHALLENGE, "NipVatUe", "5265877635-DE123456789")
    xml = xml.replace(b"DE123456789<", b"DE123456789$<")
    issues = schemas.validate_xsd(xml, "AUTH")
    assert [i.code for i in issues] == ["xsd"]
    assert "NipVatUe" in issues[0].path
