"""Shared base of the l10n_pl_ksef Odoo tests.

:class:`TestKsefCommon` sets up a Polish company (chart ``pl``) with a valid random NIP, configured
against a local KSeF sandbox (``ksef.sandbox``) running in a thread of the test process on a free port
of 127.0.0.1 (started once per process, stopped at exit), logging in with a KSeF token issued through
the sandbox admin API. Every test class gets its own NIP (KSeF context) so that stored invoices,
duplicates and rate budgets never leak between classes.

Attributes: ``ksef_company``, ``ksef_nip``, ``ksef_sandbox`` (:class:`SandboxAdmin`), ``ksef_token``,
``ksef_buyer`` (Polish partner with a valid NIP: ``partner_a``), ``ksef_buyer_nip``.
Helpers: :meth:`ksef_configure_token`, :meth:`ksef_configure_certificate`, :meth:`ksef_make_certificate`,
:func:`random_nip`.

When the sandbox package cannot be imported or started, the classes are skipped with the reason.
"""
import atexit
import logging
import random
import shutil
import tempfile
import threading
import urllib.parse
from unittest import SkipTest

import requests

from odoo.tests import common as odoo_tests_common
from odoo.tests import tagged

from odoo.addons.account.tests.common import AccountTestInvoicingCommon
from odoo.addons.l10n_pl_ksef.ksef import crypto as ksef_crypto
from odoo.addons.l10n_pl_ksef.ksef import numbers as ksef_numbers

_logger = logging.getLogger(__name__)

# short processing times keep the suite fast; in-progress statuses remain observable
SANDBOX_CONFIG = {
    'auth_delay': 0.05,
    'invoice_delay': 0.1,
    'session_close_delay': 0.1,
    'export_delay': 0.1,
    'token_activation_delay': 0.1,
}

_sandbox_lock = threading.Lock()
_sandbox = {}


def random_nip(rng=random):
    """A random valid NIP (checksum OK, no leading zero)."""
    while True:
        first9 = "%d%08d" % (rng.randint(1, 9), rng.randint(0, 99999999))
        if first9[1:3] == "00":
            continue
        digit = ksef_numbers.nip_check_digit(first9)
        if digit is not None:
            return first9 + str(digit)


class SandboxAdmin:
    """Remote control of the test sandbox through its admin API (``/_sandbox/...``)."""

    def __init__(self, url):
        self.url = url.rstrip('/')
        self.api_url = self.url + '/v2'
        self.status_url = self.url + '/latarnia'
        self.qr_url = self.url + '/qr'
        self.http = requests.Session()

    def admin(self, method, path, payload=None, **params):
        resp = self.http.request(method, self.url + '/_sandbox' + path, json=payload, params=params or None,
                                 timeout=60)
        if resp.status_code >= 400:
            raise AssertionError("sandbox admin %s %s failed: %s %s" % (method, path, resp.status_code, resp.text))
        return resp.json()

    def reset(self, data=False):
        return self.admin('POST', '/reset', {'data': data})

    def create_token(self, nip, permissions=('InvoiceRead', 'InvoiceWrite'), description="Odoo test token"):
        return self.admin('POST', '/tokens', {'nip': nip, 'permissions': list(permissions),
                                              'description': description})['token']

    def set_faults(self, **spec):
        return self.admin('POST', '/faults', spec)['faults']

    def clear_faults(self):
        self.admin('DELETE', '/faults')

    def set_status(self, status, message=None, api=None):
        return self.admin('POST', '/status', {'status': status, 'message': message, 'api': api})

    def set_rate_limits(self, mode_or_dict):
        return self.admin('POST', '/rate-limits', {'mode': mode_or_dict})

    def set_config(self, **values):
        return self.admin('POST', '/config', values)

    def grant(self, context, subject, permissions):
        return self.admin('POST', '/grants', {'context': context, 'subject': subject,
                                              'permissions': list(permissions)})

    def seed(self, buyer_nip, count=10, **options):
        payload = {'buyerNip': buyer_nip, 'count': count}
        payload.update({_camel(k): v for k, v in options.items()})
        return self.admin('POST', '/seed', payload)['ksefNumbers']

    def invoices(self, **filters):
        return self.admin('GET', '/invoices', None, **{_camel(k): v for k, v in filters.items()})['invoices']

    def wait_idle(self, timeout=60):
        return self.admin('POST', '/wait', {'timeout': timeout})['idle']


def _camel(name):
    head, *rest = name.split('_')
    return head + ''.join(p[:1].upper() + p[1:] for p in rest)


def get_sandbox():
    """The process-wide test sandbox (started on first use); raises SkipTest when unavailable."""
    with _sandbox_lock:
        if 'error' in _sandbox:
            raise SkipTest(_sandbox['error'])
        if 'admin' in _sandbox:
            return _sandbox['admin']
        try:
            from odoo.addons.l10n_pl_ksef.ksef.sandbox import SandboxServer
        except ImportError as exc:
            _sandbox['error'] = "KSeF sandbox (ksef.sandbox) not importable: %s" % exc
            raise SkipTest(_sandbox['error']) from None
        data_dir = tempfile.mkdtemp(prefix='odoo-ksef-sandbox-')
        try:
            server = SandboxServer(host='127.0.0.1', port=0, data_dir=data_dir, rate_limits='off',
                                   config=dict(SANDBOX_CONFIG)).start()
        except Exception as exc:
            shutil.rmtree(data_dir, ignore_errors=True)
            _sandbox['error'] = "KSeF sandbox could not start: %s" % exc
            raise SkipTest(_sandbox['error']) from None
        _logger.info("KSeF test sandbox running at %s", server.url)

        def stop():
            try:
                server.stop()
            finally:
                shutil.rmtree(data_dir, ignore_errors=True)

        atexit.register(stop)
        _sandbox.update(server=server, admin=SandboxAdmin(server.url))
        return _sandbox['admin']


@tagged('post_install_l10n', 'post_install', '-at_install')
class TestKsefCommon(AccountTestInvoicingCommon):

    @classmethod
    def _request_handler(cls, s, r, /, **kw):
        # Odoo 18's test harness compares the timeout with a number; the KSeF client passes a
        # (connect, read) tuple. Requests to the local sandbox keep the tuple (raised to >= 10 s
        # like the harness does); anything else goes through the harness (which blocks it).
        timeout = kw.get('timeout')
        if isinstance(timeout, tuple):
            host = urllib.parse.urlsplit(r.url).hostname
            if host in ('127.0.0.1', 'localhost'):
                kw['timeout'] = tuple(max(t, 10) if t else t for t in timeout)
                return odoo_tests_common._super_send(s, r, **kw)
            kw['timeout'] = max(t or 0 for t in timeout) or None
        return super()._request_handler(s, r, **kw)

    @classmethod
    @AccountTestInvoicingCommon.setup_country('pl')
    def setUpClass(cls):
        super().setUpClass()
        cls.ksef_sandbox = get_sandbox()
        cls.ksef_sandbox.reset()
        cls.ksef_nip = random_nip()
        cls.ksef_company = cls.company_data['company']
        cls.ksef_company.write({
            'name': "KSeF Test Sp. z o.o.",
            'vat': 'PL%s' % cls.ksef_nip,
            'street': "ul. Testowa 1",
            'zip': "00-001",
            'city': "Warszawa",
            'country_id': cls.env.ref('base.pl').id,
        })
        cls.ksef_buyer_nip = random_nip()
        cls.ksef_buyer = cls.partner_a
        cls.ksef_buyer.write({
            'name': "Nabywca Sp. z o.o.",
            'is_company': True,
            'vat': 'PL%s' % cls.ksef_buyer_nip,
            'street': "ul. Kupiecka 2",
            'zip': "30-001",
            'city': "Kraków",
            'country_id': cls.env.ref('base.pl').id,
        })
        cls.ksef_token = cls.ksef_configure_token(cls.ksef_company)

    def setUp(self):
        super().setUp()
        # faults, Latarnia status and rate limits set by a test never leak into the next one
        self.ksef_sandbox.reset()

    @classmethod
    def ksef_configure_token(cls, company, permissions=('InvoiceRead', 'InvoiceWrite'), nip=None):
        """Point ``company`` at the sandbox and give it a fresh KSeF token; returns the token."""
        nip = nip or company.ksef_context_nip
        token = cls.ksef_sandbox.create_token(nip, permissions=permissions)
        company.sudo().write({
            'ksef_environment': 'sandbox',
            'ksef_sandbox_url': cls.ksef_sandbox.url,
            'ksef_context_nip': nip,
            'ksef_auth_method': 'token',
            'ksef_token': token,
        })
        return token

    @classmethod
    def ksef_make_certificate(cls, nip, usage='auth', organization="KSeF Test Sp. z o.o.", days=365):
        """A self-signed company-seal certificate for ``nip``: ``(key PEM, certificate PEM)`` bytes."""
        key, cert = ksef_crypto.generate_self_signed_certificate(
            nip=nip, organization=organization, common_name=organization, days=days,
            key_usage='offline' if usage == 'offline' else 'authentication')
        return ksef_crypto.private_key_pem(key), ksef_crypto.certificate_pem(cert)

    @classmethod
    def ksef_configure_certificate(cls, company, usage='auth', nip=None):
        """Generate a seal certificate for the company NIP, store it as certificate.certificate and (for
        ``auth``) switch the company to certificate login against the sandbox. Returns the record."""
        nip = nip or company.ksef_context_nip
        key_pem, cert_pem = cls.ksef_make_certificate(nip, usage=usage)
        record = company.sudo()._ksef_store_certificate(usage, cert_pem, key_pem)
        if usage == 'auth':
            company.sudo().write({
                'ksef_environment': 'sandbox',
                'ksef_sandbox_url': cls.ksef_sandbox.url,
                'ksef_auth_method': 'certificate',
            })
        return record
