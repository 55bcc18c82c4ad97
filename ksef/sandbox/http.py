"""Transport-neutral request/response objects and KSeF-shaped errors of the sandbox."""
import json
import os
import uuid

from .util import iso, now

DESCRIPTIONS = {
    9101: "Nieprawidłowy dokument.",
    9102: "Brak podpisu.",
    9103: "Przekroczona liczba dozwolonych podpisów.",
    9105: "Nieprawidłowy podpis.",
    21001: "Nieczytelna treść.",
    21111: "Nieprawidłowe wyzwanie autoryzacyjne.",
    21115: "Nieprawidłowy certyfikat.",
    21117: "Nieprawidłowy identyfikator podmiotu dla wskazanego typu kontekstu.",
    21155: "Przekroczono dozwoloną liczbę faktur w sesji.",
    21157: "Nieprawidłowy rozmiar części pakietu.",
    21161: "Przekroczono dozwoloną liczbę części pakietu.",
    21164: "Faktura o podanym identyfikatorze nie istnieje.",
    21165: "Faktura o podanym numerze KSeF nie jest jeszcze dostępna.",
    21166: "Korekta techniczna niedostępna.",
    21167: "Status faktury nie pozwala na korektę techniczną.",
    21173: "Brak sesji o wskazanym numerze referencyjnym.",
    21175: "Wynik zapytania o podanym identyfikatorze nie istnieje.",
    21178: "Nie znaleziono UPO dla podanych kryteriów.",
    21180: "Status sesji nie pozwala na wykonanie operacji.",
    21181: "Nieprawidłowe żądanie eksportu faktur.",
    21182: "Osiągnięto limit trwających eksportów.",
    21183: "Zakres filtrowania wykracza poza dostępny zakres danych.",
    21205: "Pakiet nie może być pusty.",
    21208: "Czas oczekiwania na requesty upload lub finish został przekroczony.",
    21217: "Nieprawidłowe kodowanie znaków.",
    21301: "Brak autoryzacji.",
    21304: "Brak uwierzytelnienia.",
    21401: "Dokument nie jest zgodny ze schemą (xsd).",
    21402: "Nieprawidłowy rozmiar pliku.",
    21403: "Nieprawidłowy skrót pliku.",
    21405: "Błąd walidacji danych wejściowych.",
    21406: "Konflikt podpisu i typu uwierzytelnienia.",
    21418: "Przekazany token kontynuacji ma nieprawidłowy format.",
    21470: "Przesłany identyfikator klucza jest nieznany lub wskazuje na wycofany klucz.",
    26001: "Nie można nadać tokenowi uprawnień których nie posiadasz.",
    26002: "Nie można wygenerować tokena dla obecnego typu kontekstu.",
}


class Request:
    def __init__(self, method, path, query=None, headers=None, body=b"", client_ip="127.0.0.1",  # noqa: PLR0917
                 host="127.0.0.1", body_file=None):
        self.method = method.upper()
        self.path = path
        self.query = query or {}
        self.headers = {k.lower(): v for k, v in (headers or {}).items()}
        self.body = body
        self.body_file = body_file  # path of a spooled large body (batch part uploads)
        self.client_ip = client_ip
        self.host = host
        self.trace_id = uuid.uuid4().hex

    def header(self, name, default=None):
        return self.headers.get(name.lower(), default)

    def arg(self, name, default=None):
        values = self.query.get(name)
        return values[0] if values else default

    def args(self, name):
        return list(self.query.get(name) or [])

    @property
    def base_url(self):
        return "http://%s" % self.host

    @property
    def problem_format(self):
        return (self.header("x-error-format") or "").lower() == "problem-details"

    def json(self):
        """Parsed JSON body (object); raises a 400 KSeF error when unreadable."""
        if not self.body:
            raise Fail(400, 21405, details=["Treść żądania jest wymagana."])
        try:
            value = json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise Fail(400, 21405, details=["Nieprawidłowy format JSON: %s" % str(exc)[:200]]) from None
        if not isinstance(value, dict):
            raise Fail(400, 21405, details=["Oczekiwano obiektu JSON."])
        return value


class Response:
    def __init__(self, status=200, body=b"", content_type="application/json", headers=None):
        self.status = status
        if isinstance(body, (dict, list)):
            body = json.dumps(body, ensure_ascii=False).encode("utf-8")
        elif isinstance(body, str):
            body = body.encode("utf-8")
        self.body = body or b""
        self.content_type = content_type if self.body or status not in (204,) else None
        self.headers = dict(headers or {})
        self.body_path = None  # stream a file instead of ``body``

    @classmethod
    def json(cls, data, status=200, headers=None):
        return cls(status, data, "application/json; charset=utf-8", headers)

    @classmethod
    def empty(cls, status=204):
        return cls(status, b"", None)

    @classmethod
    def file(cls, path, content_type="application/octet-stream", headers=None):
        resp = cls(200, b"", content_type, headers)
        resp.body_path = path
        resp.headers["Content-Length"] = str(os.path.getsize(path))
        return resp


class Fail(Exception):
    """An error answered in KSeF's shape.

    400: ``code`` (exceptionCode) + ``details``; 401/403/410/5xx: problem details with
    ``detail`` (+ ``reason_code``/``security`` for 403).
    """

    def __init__(self, status, code=None, details=None, *, detail=None, reason_code=None, security=None,
                 headers=None, description=None):
        super().__init__("%s %s" % (status, code or detail or ""))
        self.status = status
        self.code = code
        self.details = list(details or [])
        self.detail = detail
        self.reason_code = reason_code
        self.security = security
        self.headers = dict(headers or {})
        self.description = description

    def render(self, request):
        timestamp = iso(now())
        trace = request.trace_id if request else uuid.uuid4().hex
        instance = request.path if request else ""
        if self.status == 400:
            description = self.description or DESCRIPTIONS.get(self.code, "Błąd walidacji danych wejściowych.")
            if request is not None and request.problem_format:
                body = {"title": "Bad Request", "status": 400, "instance": instance,
                        "detail": "Żądanie jest nieprawidłowe.",
                        "errors": [{"code": self.code, "description": description, "details": self.details}],
                        "timestamp": timestamp, "traceId": trace}
                return Response(400, body, "application/problem+json", self.headers)
            body = {"exception": {
                "exceptionDetailList": [{"exceptionCode": self.code, "exceptionDescription": description,
                                         "details": self.details}],
                "serviceCode": "00-%s-%s-00" % (trace, trace[:16]),
                "serviceCtx": "srvSANDBOX",
                "serviceName": "KSeF sandbox",
                "timestamp": timestamp,
            }}
            return Response(400, body, "application/json; charset=utf-8", self.headers)
        titles = {401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
                  410: "Gone", 413: "Payload Too Large", 415: "Unsupported Media Type",
                  500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
                  504: "Gateway Timeout"}
        body = {"title": titles.get(self.status, "Error"), "status": self.status,
                "detail": self.detail or titles.get(self.status, "Error"), "instance": instance,
                "timestamp": timestamp, "traceId": trace}
        if self.status == 403:
            body["reasonCode"] = self.reason_code or "missing-permissions"
            body["security"] = self.security
        return Response(self.status, body, "application/problem+json", self.headers)


def too_many_requests(request, retry_after, message):
    headers = {"Retry-After": str(int(retry_after))}
    if request.problem_format:
        body = {"title": "Too Many Requests", "status": 429, "instance": request.path, "detail": message,
                "timestamp": iso(now()), "traceId": request.trace_id}
        return Response(429, body, "application/problem+json", headers)
    body = {"status": {"code": 429, "description": "Too Many Requests", "details": [message]}}
    return Response(429, body, "application/json; charset=utf-8", headers)
