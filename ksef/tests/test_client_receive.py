"""Client <-> sandbox: receiving purchase invoices (metadata, download, export, incremental sync)."""
import datetime
import json
import time

import pytest

from ksef import crypto
from ksef.client import IncrementalSync, build_filters
from ksef.errors import BadRequestError
from ksef.tests.fixtures_sandbox import random_nip
from ksef.tests.test_client_sandbox import invoice_xml, make_client


def seed(sandbox, nip, count):
    numbers = sandbox.seed(nip, count=count)
    time.sleep(0.3)                                 # permanent storage follows acceptance shortly
    return numbers


def _utc(**delta):
    return datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(**delta)


@pytest.fixture
def buyer(sandbox):
    sandbox.set_config(hwm_lag=0.0)                 # seeded invoices are below the HWM at once
    client = make_client(sandbox)
    client.authenticate()
    return client


def test_metadata_query_paging_truncation_and_download(sandbox, buyer):
    numbers = set(seed(sandbox, buyer.context.value, count=23))
    sandbox.set_config(query_max_records=10)        # force isTruncated restarts
    filters = build_filters("buyer", _utc(days=1), restrict_to_hwm=False)
    state = {}
    items = list(buyer.iter_invoice_metadata(filters, page_size=10, state=state))
    got = [m["ksefNumber"] for m in items]
    assert len(got) == len(set(got)) == 23 and set(got) == numbers
    assert state["restarts"] >= 2
    dates = [m["permanentStorageDate"] for m in items]
    assert dates == sorted(dates)
    xml = buyer.download_invoice(items[0]["ksefNumber"])
    assert crypto.sha256_b64(xml) == items[0]["invoiceHash"]
    page = buyer.query_invoice_metadata(filters, page_size=10)
    assert page["hasMore"] and len(page["invoices"]) == 10


def test_export_package_decrypts_and_lists_metadata(sandbox, buyer):
    numbers = set(seed(sandbox, buyer.context.value, count=12))
    sandbox.set_config(export_part_size=4096)      # several encrypted parts
    export = buyer.export_invoices(build_filters("Subject2", _utc(days=1), restrict_to_hwm=True))
    status = export.wait(timeout=60)
    assert len(status["package"]["parts"]) > 1
    got = list(export.iter_invoices(status))
    assert {g.ksef_number for g in got} == numbers
    for item in got:
        assert crypto.sha256_b64(item.xml) == item.metadata["invoiceHash"]
    # the export can be resumed from its serialised form (key included) in another process
    state = json.loads(json.dumps(export.to_dict()))
    from ksef.client import InvoiceExport
    resumed = InvoiceExport.from_dict(buyer, state)
    assert [g.ksef_number for g in resumed.iter_invoices()] == [g.ksef_number for g in got]
    assert crypto.b64encode(resumed._key) not in repr(resumed)


def test_incremental_sync_resumable_and_deduplicated(sandbox, buyer):
    nip = buyer.context.value
    first_batch = set(seed(sandbox, nip, count=15))
    sandbox.set_config(export_max_invoices=6)       # truncated packages: several exports per window
    sync = IncrementalSync(buyer, "buyer", start=_utc(days=2))
    delivered = []
    saved = None
    for invoice in sync.run():
        delivered.append(invoice.ksef_number)       # "store" the invoice ...
        saved = json.loads(json.dumps(sync.cursor))  # ... and its cursor together
        if len(delivered) == 7:
            break                                   # "crash" in the middle of a package
    assert saved["pendingExport"] and saved["seen"]
    # a new process resumes from the stored cursor
    sync2 = IncrementalSync(make_client(sandbox, nip, tokens=buyer.export_tokens()), "Subject2", saved)
    delivered += [i.ksef_number for i in sync2.run()]
    assert len(delivered) == len(set(delivered)) == 15
    assert set(delivered) == first_batch
    assert sync.stats["exports"] + sync2.stats["exports"] >= 3      # 15 invoices, packages of 6
    # nothing new: nothing delivered; new invoices: only those
    cursor = sync2.cursor
    assert [i.ksef_number for i in IncrementalSync(buyer, "Subject2", cursor).run()] == []
    more = set(seed(sandbox, nip, count=4))
    time.sleep(1.2)                                 # past the sandbox's HWM lag
    sync3 = IncrementalSync(buyer, "Subject2", cursor)
    assert {i.ksef_number for i in sync3.run()} == more


def test_incremental_sync_backfills_beyond_three_months(sandbox, buyer):
    numbers = set(seed(sandbox, buyer.context.value, count=3))
    sync = IncrementalSync(buyer, "Subject2", start=_utc(days=200), only_metadata=True)
    got = list(sync.run())
    assert {g.ksef_number for g in got} == numbers
    assert all(g.xml is None and g.metadata for g in got)
    assert sync.stats["windows"] >= 3             # 200 days walked in windows of at most 3 months


def test_query_mode_sync(sandbox, buyer):
    numbers = set(seed(sandbox, buyer.context.value, count=5))
    sync = IncrementalSync(buyer, "buyer", start=_utc(days=1), mode="query")
    got = list(sync.run())
    assert {g.ksef_number for g in got} == numbers
    assert sync.stats["downloads"] == 5
    assert sync.cursor["hwm"]


def test_sync_past_hwm_is_quiet_and_filters_are_validated(sandbox, buyer):
    future = _utc(days=-1)
    sync = IncrementalSync(buyer, "Subject2", start=future)
    assert list(sync.run()) == []
    with pytest.raises(BadRequestError) as info:
        buyer.query_invoice_metadata(build_filters("Subject2", _utc(days=200), _utc(days=1)))
    assert 21405 in info.value.exception_codes
    with pytest.raises(ValueError):
        IncrementalSync(buyer, "Subject2", {"subjectType": "Subject1", "from": "2026-01-01T00:00:00Z"})


def test_seller_sees_own_sent_invoice_as_subject1(sandbox):
    seller = make_client(sandbox)
    buyer_nip = random_nip()
    with seller.open_online_session() as session:
        ref = session.send(invoice_xml(seller.context.value, "FV/S1/1", buyer_nip=buyer_nip)).reference_number
        result = session.wait_for_invoice(ref)
    time.sleep(1.2)
    got = list(seller.incremental_sync("seller", start=_utc(hours=1), mode="query").run())
    assert [g.ksef_number for g in got] == [result.ksef_number]
