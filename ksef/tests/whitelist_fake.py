"""A local fake of the Ministry of Finance VAT white-list API (``wl-api.mf.gov.pl``) for tests.

A ``http.server`` in a background thread on 127.0.0.1 answering with the documented JSON shapes
(``result.subject`` / ``result.accountAssigned`` + ``requestId`` + ``requestDateTime``; HTTP 400
``{"code": "WL-1xx", "message": …}`` errors) and validating input the way the register does. Used by the
core tests (fixture ``whitelist`` in ``fixtures_whitelist.py``) and by the Odoo tests, which point the
white-list base URL of the company at :attr:`FakeWhiteList.url`.

    with FakeWhiteList() as fake:
        fake.add_subject("5261040828", "Firma Sp. z o.o.", accounts=["61109010140000071219812874"])
        fake.fail("WL-191", count=1)          # next request: daily limit exhausted
        fake.requests                          # [(path, {"date": "2026-11-23"}), ...]
"""
import datetime
import http.server
import json
import random
import re
import threading
import urllib.parse

from ..numbers import is_valid_nip

_MESSAGES = {
    "WL-101": "Pole 'data' nie może być puste.",
    "WL-102": "Pole 'data' ma nieprawidłowy format.",
    "WL-103": "Data nie może być datą przyszłą.",
    "WL-109": "Pole 'numer rachunku' ma nieprawidłową długość. Wymagane 26 znaków.",
    "WL-110": "Pole 'numer rachunku' zawiera niedozwolone znaki. Wymagane tylko cyfry.",
    "WL-111": "Nieprawidłowy numer rachunku.",
    "WL-112": "Pole 'NIP' nie może być puste.",
    "WL-113": "Pole 'NIP' ma nieprawidłową długość. Wymagane 10 znaków.",
    "WL-114": "Pole 'NIP' zawiera niedozwolone znaki. Wymagane tylko cyfry.",
    "WL-115": "Nieprawidłowy NIP.",
    "WL-190": "Niepoprawne żądanie.",
    "WL-191": "Limit żądań dla tego adresu IP został na dziś wyczerpany.",
    "WL-195": "Zaktualizowaliśmy bazę danych. Ponów zapytanie, aby otrzymać aktualne dane.",
    "WL-196": "Trwa aktualizacja bazy danych. Spróbuj ponownie później.",
    "WL-100": "Wystąpił nieoczekiwany błąd serwera.",
}


def _nrb_ok(nrb):
    return int(nrb[2:] + "2521" + nrb[:2]) % 97 == 1


class FakeWhiteList:
    """Fake register. ``subjects``: NIP -> subject JSON (the register's field names)."""

    def __init__(self, host="127.0.0.1", port=0):
        self.subjects = {}
        self.requests = []
        self._faults = []
        self._lock = threading.Lock()
        self._rng = random.Random(7)
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                fake._handle(self)

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = None

    # ------------------------------------------------------------------ control
    @property
    def url(self):
        host, port = self._server.server_address[:2]
        return "http://%s:%s" % (host, port)

    def start(self):
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-whitelist", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def reset(self):
        with self._lock:
            self.subjects.clear()
            self.requests.clear()
            self._faults.clear()

    def add_subject(self, nip, name, *, status="Czynny", accounts=(), regon="", krs="",
                    working_address="ul. Testowa 1, 00-001 Warszawa", residence_address=None,
                    virtual_accounts=False):
        """Register a taxpayer; returns its JSON (edit it to test odd shapes)."""
        subject = {
            "name": name, "nip": nip, "statusVat": status, "regon": regon, "pesel": None, "krs": krs or None,
            "residenceAddress": residence_address, "workingAddress": working_address,
            "representatives": [], "authorizedClerks": [], "partners": [],
            "registrationLegalDate": "2015-03-01", "registrationDenialDate": None, "registrationDenialBasis": None,
            "restorationDate": None, "restorationBasis": None, "removalDate": None, "removalBasis": None,
            "accountNumbers": list(accounts), "hasVirtualAccounts": bool(virtual_accounts),
        }
        with self._lock:
            self.subjects[nip] = subject
        return subject

    def fail(self, wl_code="WL-196", *, status=400, count=1, path=None, raw=None):
        """The next ``count`` matching requests (``path`` regex) fail with ``wl_code`` (or ``raw`` body text)."""
        with self._lock:
            self._faults.append({"code": wl_code, "status": status, "count": count, "path": path, "raw": raw})

    # ------------------------------------------------------------------ serving
    def _request_id(self):
        letters = "abcdefghijklmnopqrstuvwxyz0123456789"
        return "%s-%s" % ("".join(self._rng.choice(letters) for _ in range(5)), "%07x" % self._rng.getrandbits(28))

    def _reply(self, handler, status, body):
        data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode("utf-8")
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json;charset=UTF-8")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _error(self, handler, code, status=400):
        self._reply(handler, status, {"code": code, "message": _MESSAGES.get(code, "Błąd.")})

    def _handle(self, handler):
        parsed = urllib.parse.urlsplit(handler.path)
        query = dict(urllib.parse.parse_qsl(parsed.query))
        path = parsed.path
        with self._lock:
            self.requests.append((path, query))
            fault = next((f for f in self._faults if f["count"] > 0 and
                          (not f["path"] or re.search(f["path"], path))), None)
            if fault:
                fault["count"] -= 1
        if fault:
            if fault["raw"] is not None:
                self._reply(handler, fault["status"], fault["raw"].encode("utf-8"))
            else:
                self._error(handler, fault["code"], fault["status"])
            return
        date = query.get("date")
        if not date:
            return self._error(handler, "WL-101")
        try:
            day = datetime.date.fromisoformat(date)
        except ValueError:
            return self._error(handler, "WL-102")
        if day > datetime.date.today() + datetime.timedelta(days=1):
            return self._error(handler, "WL-103")
        stamp = datetime.datetime.now().strftime("%d-%m-%Y %H:%M:%S")
        m_search = re.fullmatch(r"/api/search/nip/([^/]*)", path)
        m_check = re.fullmatch(r"/api/check/nip/([^/]*)/bank-account/([^/]*)", path)
        if not (m_search or m_check):
            return self._error(handler, "WL-190")
        nip = (m_search or m_check).group(1)
        code = self._nip_error(nip)
        if code:
            return self._error(handler, code)
        with self._lock:
            subject = json.loads(json.dumps(self.subjects.get(nip))) if nip in self.subjects else None
        if m_search:
            return self._reply(handler, 200, {"result": {"subject": subject, "requestDateTime": stamp,
                                                         "requestId": self._request_id()}})
        nrb = m_check.group(2)
        if not nrb:
            return self._error(handler, "WL-108")
        if len(nrb) != 26:
            return self._error(handler, "WL-109")
        if not nrb.isdigit():
            return self._error(handler, "WL-110")
        if not _nrb_ok(nrb):
            return self._error(handler, "WL-111")
        assigned = bool(subject and subject["statusVat"] == "Czynny" and nrb in subject["accountNumbers"])
        return self._reply(handler, 200, {"result": {"accountAssigned": "TAK" if assigned else "NIE",
                                                     "requestDateTime": stamp, "requestId": self._request_id()}})

    @staticmethod
    def _nip_error(nip):
        if not nip:
            return "WL-112"
        if len(nip) != 10:
            return "WL-113"
        if not nip.isdigit():
            return "WL-114"
        if not is_valid_nip(nip):
            return "WL-115"
        return None
