"""Client of the public KSeF status service ("Latarnia"): ``GET /status`` and ``GET /messages``.

``status()`` returns ``{"status": "AVAILABLE"|"MAINTENANCE"|"FAILURE"|"TOTAL_FAILURE", "messages": [...]}``;
message items are ``{id, eventId, category, type, title, text, start, end, version, published}``
(DIGEST §1). No authentication, no rate budget.
"""
import json
import logging

import requests

from ..errors import ServerError, TransportError

_logger = logging.getLogger(__name__)

STATUSES = ("AVAILABLE", "MAINTENANCE", "FAILURE", "TOTAL_FAILURE")


class LatarniaClient:
    def __init__(self, base_url, *, http=None, timeout=(5, 15)):
        self.base_url = base_url.rstrip("/")
        self.http = http or requests.Session()
        self.timeout = timeout

    def _get(self, path):
        url = self.base_url + path
        try:
            resp = self.http.get(url, timeout=self.timeout, headers={"Accept": "application/json"})
        except requests.RequestException as exc:
            raise TransportError("KSeF status service unreachable (%s)" % type(exc).__name__,
                                 code="latarnia_unreachable", params={"url": url}) from None
        _logger.debug("GET %s -> %s", url, resp.status_code)
        if resp.status_code >= 300:
            cls = ServerError if resp.status_code >= 500 else TransportError
            raise cls("KSeF status service answered HTTP %s" % resp.status_code, http_status=resp.status_code,
                      code="latarnia_error", params={"url": url})
        try:
            return json.loads(resp.content.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise TransportError("KSeF status service sent a malformed answer", code="malformed_response",
                                 params={"url": url}) from None

    def status(self):
        """``{"status": ..., "messages": [...]}``; an unknown status value is kept as sent."""
        data = self._get("/status")
        if not isinstance(data, dict) or not data.get("status"):
            raise TransportError("KSeF status service: answer without status", code="malformed_response")
        return {"status": str(data["status"]).upper(), "messages": list(data.get("messages") or [])}

    def messages(self):
        data = self._get("/messages")
        if isinstance(data, dict):
            data = data.get("messages") or []
        if not isinstance(data, list):
            raise TransportError("KSeF status service: messages are not a list", code="malformed_response")
        return data
