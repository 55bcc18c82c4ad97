"""VAT white-list client against a local fake of wl-api.mf.gov.pl (real HTTP on 127.0.0.1)."""
import datetime
import re

import pytest

from ksef import whitelist as wl
from ksef.tests.fixtures_sandbox import random_nip
from ksef.whitelist import (
    WhiteListClient,
    WhiteListError,
    WhiteListInputError,
    WhiteListLimitError,
    WhiteListResponseError,
    WhiteListUnavailable,
)

# valid NRBs (mod 97 check)
NRB_1 = "61109010140000071219812874"
NRB_2 = "27114020040000300201355387"


@pytest.fixture
def client(whitelist):
    with WhiteListClient(whitelist.url, timeout=(2, 5)) as c:
        yield c


def test_nrb_normalisation_and_checksum():
    assert wl.normalize_account("PL61 1090 1014 0000 0712 1981 2874") == NRB_1
    assert wl.normalize_account("61-1090-1014-0000-0712-1981-2874") == NRB_1
    assert wl.normalize_account("DE89370400440532013000") == ""          # foreign IBAN: not in the register
    assert wl.normalize_account("123") == ""
    assert wl.is_valid_nrb(NRB_1) and wl.is_valid_nrb(NRB_2)
    assert not wl.is_valid_nrb(NRB_1[:-1] + "5")


def test_search_found_maps_the_register_entry(client, whitelist):
    nip = random_nip()
    whitelist.add_subject(nip, "PAPIRUS Sp. z o.o.", regon="123456785", krs="0000123456",
                          accounts=[NRB_1, NRB_2], working_address="ul. Składowa 12, 61-897 Poznań")
    result = client.search_nip("PL " + nip[:3] + "-" + nip[3:])
    assert result.found and result.nip == nip
    assert result.request_id and re.fullmatch(r"[a-z0-9]{5}-[0-9a-f]{7}", result.request_id)
    assert re.fullmatch(r"\d{2}-\d{2}-\d{4} \d{2}:\d{2}:\d{2}", result.request_datetime)
    subject = result.subject
    assert subject.name == "PAPIRUS Sp. z o.o." and subject.regon == "123456785" and subject.krs == "0000123456"
    assert subject.is_active and subject.status_key == "active"
    assert subject.account_numbers == [NRB_1, NRB_2]
    assert subject.address == "ul. Składowa 12, 61-897 Poznań"
    path, query = whitelist.requests[-1]
    assert path == "/api/search/nip/%s" % nip
    assert query == {"date": wl.today_warsaw().isoformat()}


def test_search_unknown_nip_gives_no_subject(client, whitelist):
    result = client.search_nip(random_nip(), date=datetime.date(2026, 3, 2))
    assert not result.found and result.subject is None and result.request_id
    assert whitelist.requests[-1][1] == {"date": "2026-03-02"}


def test_exempt_and_unregistered_status(client, whitelist):
    nip = random_nip()
    whitelist.add_subject(nip, "Jan Kowalski", status="Zwolniony", accounts=[NRB_1])
    subject = client.search_nip(nip).subject
    assert subject.status_key == "exempt" and not subject.is_active
    # an account of a VAT-exempt taxpayer is not "assigned to an active taxpayer"
    assert client.check_account(nip, NRB_1).assigned is False


def test_check_account_yes_and_no(client, whitelist):
    nip = random_nip()
    whitelist.add_subject(nip, "Drukarnia Kolor S.A.", accounts=[NRB_1])
    yes = client.check_account(nip, "PL" + NRB_1, date="2026-11-02")
    assert yes.assigned is True and yes.account == NRB_1 and yes.request_id and yes.date == datetime.date(2026, 11, 2)
    assert whitelist.requests[-1][0] == "/api/check/nip/%s/bank-account/%s" % (nip, NRB_1)
    no = client.check_account(nip, NRB_2)
    assert no.assigned is False and no.request_id and no.request_id != yes.request_id


def test_invalid_input_is_refused_locally_without_spending_the_limit(client, whitelist):
    with pytest.raises(WhiteListInputError) as err:
        client.search_nip("1234567890")
    assert err.value.code == "whitelist_invalid_nip" and err.value.params["field"] == "nip"
    with pytest.raises(WhiteListInputError) as err:
        client.check_account(random_nip(), NRB_1[:-1] + "5")
    assert err.value.code == "whitelist_invalid_account"
    with pytest.raises(WhiteListInputError) as err:
        client.check_account(random_nip(), "DE89370400440532013000")
    assert err.value.code == "whitelist_not_nrb"
    with pytest.raises(WhiteListInputError) as err:
        client.search_nip(random_nip(), date=wl.today_warsaw() + datetime.timedelta(days=2))
    assert err.value.code == "whitelist_future_date"
    with pytest.raises(WhiteListInputError):
        client.search_nip(random_nip(), date="23.11.2026")
    assert whitelist.requests == [] and client.calls == 0


def test_register_errors_are_typed(client, whitelist):
    nip = random_nip()
    whitelist.fail("WL-191", status=400)
    with pytest.raises(WhiteListLimitError) as err:
        client.search_nip(nip)
    assert err.value.wl_code == "WL-191" and err.value.code == "whitelist_limit"
    whitelist.fail("WL-196", status=400)
    with pytest.raises(WhiteListUnavailable) as err:
        client.search_nip(nip)
    assert err.value.wl_code == "WL-196"
    whitelist.fail("WL-100", status=500)
    with pytest.raises(WhiteListUnavailable):
        client.search_nip(nip)
    whitelist.fail("WL-115", status=400)       # the register disagrees with our checksum
    with pytest.raises(WhiteListInputError) as err:
        client.search_nip(nip)
    assert err.value.params["field"] == "nip" and err.value.wl_code == "WL-115"
    # a wrapped error body ({"exception": {...}}) is understood too
    whitelist.fail(raw='{"exception": {"code": "WL-191", "message": "Limit"}}', status=429)
    with pytest.raises(WhiteListLimitError):
        client.search_nip(nip)
    whitelist.fail(raw="<html>Bad gateway</html>", status=502)
    with pytest.raises(WhiteListUnavailable):
        client.search_nip(nip)
    whitelist.fail(raw='{"unexpected": true}', status=200)
    with pytest.raises(WhiteListResponseError):
        client.search_nip(nip)
    whitelist.fail(raw='{"result": {"requestId": "x"}}', status=200, path="/api/check/")
    with pytest.raises(WhiteListResponseError):
        client.check_account(nip, NRB_1)
    whitelist.fail(raw='{"code": "WL-999", "message": "?"}', status=418)
    with pytest.raises(WhiteListError) as err:
        client.search_nip(nip)
    assert err.value.wl_code == "WL-999" and err.value.http_status == 418


def test_database_update_is_retried_once(client, whitelist):
    nip = random_nip()
    whitelist.add_subject(nip, "Energia Pomorze Sp. z o.o.")
    whitelist.fail("WL-195", count=1)
    assert client.search_nip(nip).subject.name == "Energia Pomorze Sp. z o.o."
    assert len(whitelist.requests) == 2 and client.calls == 2
    whitelist.fail("WL-195", count=2)
    with pytest.raises(WhiteListUnavailable):
        client.search_nip(nip)


def test_unreachable_register():
    with WhiteListClient("http://127.0.0.1:9", timeout=(1, 1)) as c, pytest.raises(WhiteListUnavailable) as err:
        c.search_nip(random_nip())
    assert err.value.code == "whitelist_unreachable"
