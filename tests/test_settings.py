import base64
import datetime
import logging

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from odoo.exceptions import RedirectWarning, UserError, ValidationError
from odoo.tests import tagged

from odoo.addons.l10n_pl_ksef.ksef import crypto as ksef_crypto
from odoo.addons.l10n_pl_ksef.ksef.client import AuthenticationFailed
from odoo.addons.l10n_pl_ksef.tests.common import TestKsefCommon, random_nip


@tagged('post_install_l10n', 'post_install', '-at_install')
class TestKsefSettings(TestKsefCommon):

    def _settings(self, **vals):
        return self.env['res.config.settings'].with_company(self.ksef_company).create(vals)

    # ------------------------------------------------------------------ authorization
    def test_authorize_with_token(self):
        company = self.ksef_company
        self.assertEqual(company.ksef_auth_state, 'not_configured')
        self.assertTrue(company.action_ksef_authorize())
        self.assertEqual(company.ksef_auth_state, 'authorized')
        self.assertFalse(company.ksef_auth_message)
        self.assertEqual(company.ksef_permissions, 'InvoiceRead, InvoiceWrite')
        self.assertFalse(company.ksef_permission_warning)
        self.assertTrue(company.ksef_auth_date)
        stored = self.env['l10n_pl_ksef.auth_token'].sudo().search([('company_id', '=', company.id)])
        self.assertEqual(len(stored), 1)
        self.assertTrue(stored.tokens['accessToken']['token'])
        self.assertTrue(stored.tokens['refreshToken']['token'])

    def test_stored_tokens_are_reused(self):
        company = self.ksef_company
        company.action_ksef_authorize()
        client = company._ksef_get_client(authenticate=True)
        # a valid access token was restored: no new login (challenge/redeem are "public" calls)
        self.assertEqual(client.stats.get('calls:public', 0), 0, client.stats)
        self.assertTrue(client.tokens.access_valid())

    def test_tokens_of_another_credential_are_ignored(self):
        company = self.ksef_company
        company.action_ksef_authorize()
        first = self.env['l10n_pl_ksef.auth_token'].sudo().search([('company_id', '=', company.id)]).tokens
        self.ksef_configure_token(company)  # a new token replaces the credential
        self.assertEqual(company.ksef_auth_state, 'not_configured')
        client = company._ksef_get_client(authenticate=True)
        self.assertGreater(client.stats.get('calls:public', 0), 0, "a new login was expected")
        self.assertNotEqual(client.tokens.access_token, first['accessToken']['token'])

    def test_authorize_forces_a_new_login(self):
        company = self.ksef_company
        store = self.env['l10n_pl_ksef.auth_token'].sudo()
        company.action_ksef_authorize()
        first = store.search([('company_id', '=', company.id)]).tokens['accessToken']['token']
        company.action_ksef_authorize()
        store.invalidate_model()
        second = store.search([('company_id', '=', company.id)]).tokens['accessToken']['token']
        self.assertNotEqual(first, second)

    def test_get_client_records_a_refused_credential(self):
        company = self.ksef_company
        company.sudo().ksef_token = 'refused-token-%s' % random_nip()
        # (not assertRaises: its savepoint would roll the recorded state back; callers such as the
        # sending cron catch the error and keep the transaction)
        raised = None
        try:
            company._ksef_get_client()
        except AuthenticationFailed as exc:
            raised = exc
        self.assertEqual(raised.status_code, 450)
        self.assertEqual(company.ksef_auth_state, 'error')
        self.assertIn("KSeF refused the login", company.ksef_auth_message)
        self.ksef_configure_token(company)
        client = company._ksef_get_client()
        self.assertTrue(client.tokens.access_valid())
        self.assertEqual(company.ksef_auth_state, 'authorized')

    def test_lazy_client_restores_tokens(self):
        company = self.ksef_company
        company.action_ksef_authorize()
        client = company._ksef_get_client(authenticate=False)
        self.assertTrue(client.tokens.access_valid())
        self.assertEqual(client.stats.get('calls', 0), 0)

    def test_authorize_with_wrong_token(self):
        company = self.ksef_company
        secret = 'wrong-token-%s' % random_nip()
        company.sudo().ksef_token = secret
        with self.assertLogs('odoo.addons.l10n_pl_ksef', level=logging.DEBUG) as logs:
            self.assertFalse(company.action_ksef_authorize())
        self.assertEqual(company.ksef_auth_state, 'error')
        message = company.ksef_auth_message
        self.assertIn("KSeF refused the login", message)
        self.assertIn("token", message)
        self.assertNotIn(secret, message)
        self.assertNotIn("Traceback", message)
        self.assertFalse(any(secret in line for line in logs.output))
        self.assertFalse(company.ksef_permissions)

    def test_authorize_unreachable_sandbox(self):
        company = self.ksef_company
        company.sudo().ksef_sandbox_url = 'http://127.0.0.1:9'
        self.assertFalse(company.action_ksef_authorize())
        self.assertEqual(company.ksef_auth_state, 'error')
        self.assertIn("cannot be reached", company.ksef_auth_message)
        self.assertIn("127.0.0.1:9", company.ksef_auth_message)

    def test_token_without_invoice_write_is_flagged(self):
        company = self.ksef_company
        self.ksef_configure_token(company, permissions=('InvoiceRead',))
        self.assertTrue(company.action_ksef_authorize())
        self.assertEqual(company.ksef_auth_state, 'authorized')
        self.assertEqual(company.ksef_permissions, 'InvoiceRead')
        self.assertIn("InvoiceWrite", company.ksef_permission_warning)
        self.assertIn("sending invoices", company.ksef_permission_warning)
        self.assertNotIn("InvoiceRead permission", company.ksef_permission_warning)

    def test_token_without_invoice_read_is_flagged(self):
        company = self.ksef_company
        self.ksef_configure_token(company, permissions=('InvoiceWrite',))
        company.action_ksef_authorize()
        self.assertIn("InvoiceRead", company.ksef_permission_warning)
        self.assertIn("purchase invoices", company.ksef_permission_warning)

    def test_authorize_with_certificate(self):
        company = self.ksef_company
        certificate = self.ksef_configure_certificate(company)
        self.assertEqual(certificate.scope, 'ksef_auth')
        self.assertEqual(company.sudo().ksef_auth_certificate_id, certificate)
        self.assertTrue(company.action_ksef_authorize(), company.ksef_auth_message)
        self.assertEqual(company.ksef_auth_state, 'authorized')
        # a seal for the context NIP is the owner: every permission, hence no warning
        self.assertIn('InvoiceWrite', company.ksef_permissions)
        self.assertIn('InvoiceRead', company.ksef_permissions)
        self.assertFalse(company.ksef_permission_warning)

    def test_expired_certificate_is_reported(self):
        company = self.ksef_company
        key, cert = ksef_crypto.generate_self_signed_certificate(
            nip=self.ksef_nip, organization="KSeF Test Sp. z o.o.", common_name="Expired seal", days=1,
            not_before=datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=30))
        company.sudo()._ksef_store_certificate(
            'auth', ksef_crypto.certificate_pem(cert), ksef_crypto.private_key_pem(key))
        company.sudo().ksef_auth_method = 'certificate'
        with self.assertRaises(UserError) as caught:
            company._ksef_get_client()
        self.assertIn("Expired seal", caught.exception.args[0])
        self.assertIn("is not valid now", caught.exception.args[0])
        self.assertFalse(company.action_ksef_authorize())
        self.assertIn("is not valid now", company.ksef_auth_message)

    def test_certificate_of_another_nip_is_refused(self):
        company = self.ksef_company
        self.ksef_configure_certificate(company, nip=random_nip())
        self.assertFalse(company.action_ksef_authorize())
        self.assertEqual(company.ksef_auth_state, 'error')
        self.assertIn("KSeF", company.ksef_auth_message)

    def test_not_configured_redirects_to_settings(self):
        company = self.ksef_company
        company.sudo().ksef_token = False
        with self.assertRaises(RedirectWarning) as caught:
            company._ksef_get_client()
        self.assertIn("no KSeF token is saved", caught.exception.args[0])
        self.assertEqual(caught.exception.args[1]['res_model'], 'res.config.settings')
        self.assertFalse(company.action_ksef_authorize())
        self.assertEqual(company.ksef_auth_state, 'error')

    def test_credential_change_resets_state(self):
        company = self.ksef_company
        company.action_ksef_authorize()
        self.assertEqual(company.ksef_auth_state, 'authorized')
        company.sudo().ksef_environment = 'test'
        self.assertEqual(company.ksef_auth_state, 'not_configured')
        self.assertFalse(company.ksef_permissions)

    # ------------------------------------------------------------------ settings page
    def test_token_input_is_trimmed_and_write_only(self):
        token = self.ksef_sandbox.create_token(self.ksef_nip)
        # surrounding whitespace and a line break in the middle (token copied from a wrapped text)
        settings = self._settings(ksef_token_input="  \t%s\n%s \n" % (token[:40], token[40:]))
        settings.execute()
        company = self.ksef_company
        self.assertEqual(company.sudo().ksef_token, token)
        self.assertTrue(company.ksef_token_set)
        secret_part = token.rsplit('|', 1)[-1]
        self.assertNotIn(secret_part, company.ksef_token_hint)
        self.assertTrue(company.ksef_token_hint.startswith(token.split('|', 1)[0]))
        # a new settings record never shows the saved token back
        self.assertFalse(self._settings().ksef_token_input)
        self.assertTrue(company.action_ksef_authorize())

    def test_settings_authorize_button(self):
        settings = self._settings(ksef_environment='sandbox', ksef_sandbox_url=self.ksef_sandbox.url)
        settings.action_ksef_authorize()
        self.assertEqual(self.ksef_company.ksef_auth_state, 'authorized')
        self.assertEqual(self._settings().ksef_auth_state, 'authorized')

    def test_forget_token(self):
        company = self.ksef_company
        company.action_ksef_authorize()
        self._settings().action_ksef_forget_token()
        self.assertFalse(company.ksef_token_set)
        self.assertFalse(self.env['l10n_pl_ksef.auth_token'].sudo().search([('company_id', '=', company.id)]).tokens)

    def test_upload_pkcs12_with_password(self):
        key, cert = ksef_crypto.generate_self_signed_certificate(
            nip=self.ksef_nip, organization="KSeF Test Sp. z o.o.", common_name="KSeF Test Seal")
        p12 = pkcs12.serialize_key_and_certificates(
            b"seal", key, cert, None, serialization.BestAvailableEncryption(b"s3cret"))
        settings = self._settings(
            ksef_auth_method='certificate',
            ksef_auth_cert_file=base64.b64encode(p12),
            ksef_auth_password="s3cret",
        )
        settings.execute()
        company = self.ksef_company
        certificate = company.sudo().ksef_auth_certificate_id
        self.assertEqual(certificate.scope, 'ksef_auth')
        self.assertEqual(certificate.subject_common_name, "KSeF Test Seal")
        self.assertTrue(certificate.private_key_id)
        self.assertTrue(company.action_ksef_authorize(), company.ksef_auth_message)

    def test_upload_pem_with_encrypted_key(self):
        key, cert = ksef_crypto.generate_self_signed_certificate(
            nip=self.ksef_nip, organization="KSeF Test Sp. z o.o.", common_name="KSeF Seal PEM")
        settings = self._settings(
            ksef_auth_method='certificate',
            ksef_auth_cert_file=base64.b64encode(ksef_crypto.certificate_der(cert)),
            ksef_auth_key_file=base64.b64encode(ksef_crypto.private_key_pem(key, password=b"pw")),
            ksef_auth_password="pw",
        )
        settings.execute()
        self.assertEqual(self.ksef_company.sudo().ksef_auth_certificate_id.subject_common_name, "KSeF Seal PEM")
        self.assertTrue(self.ksef_company.action_ksef_authorize(), self.ksef_company.ksef_auth_message)

    def test_upload_der_certificate_ending_with_a_whitespace_byte(self):
        # binary uploads must not be "stripped": find a DER certificate whose last byte is 0x0a, 0x20...
        for _attempt in range(2000):
            key = ksef_crypto.generate_private_key('ec')
            key, cert = ksef_crypto.generate_self_signed_certificate(
                key, nip=self.ksef_nip, organization="KSeF Test Sp. z o.o.", common_name="DER seal")
            der = ksef_crypto.certificate_der(cert)
            if der[-1:] in b" \t\n\r\x0b\x0c":
                break
        else:
            self.skipTest("no DER certificate ending with a whitespace byte was generated")
        self._settings(
            ksef_auth_method='certificate',
            ksef_auth_cert_file=base64.b64encode(der),
            ksef_auth_key_file=base64.b64encode(key.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())),
        )
        self.assertEqual(self.ksef_company.sudo().ksef_auth_certificate_id.subject_common_name, "DER seal")
        self.assertTrue(self.ksef_company.action_ksef_authorize(), self.ksef_company.ksef_auth_message)

    def test_upload_wrong_password(self):
        key, cert = ksef_crypto.generate_self_signed_certificate(
            nip=self.ksef_nip, organization="KSeF Test Sp. z o.o.")
        with self.assertRaises(UserError) as caught:
            self._settings(
                ksef_auth_cert_file=base64.b64encode(ksef_crypto.certificate_pem(cert)),
                ksef_auth_key_file=base64.b64encode(ksef_crypto.private_key_pem(key, password=b"right")),
                ksef_auth_password="Xq7-not-the-password",
            )
        self.assertIn("password", caught.exception.args[0])
        self.assertNotIn("Xq7-not-the-password", caught.exception.args[0])
        self.assertFalse(self.ksef_company.sudo().ksef_auth_certificate_id)

    def test_upload_key_of_another_certificate(self):
        _key, cert = ksef_crypto.generate_self_signed_certificate(nip=self.ksef_nip, organization="A")
        other_key = ksef_crypto.generate_private_key('ec')
        with self.assertRaises(UserError) as caught:
            self._settings(
                ksef_auth_cert_file=base64.b64encode(ksef_crypto.certificate_pem(cert)),
                ksef_auth_key_file=base64.b64encode(ksef_crypto.private_key_pem(other_key)),
            )
        self.assertIn("does not belong to the certificate", caught.exception.args[0])

    def test_offline_certificate_signer(self):
        company = self.ksef_company
        with self.assertRaises(RedirectWarning):
            company._ksef_offline_signer()
        record = self.ksef_configure_certificate(company, usage='offline')
        self.assertEqual(record.scope, 'ksef_offline')
        signer = company._ksef_offline_signer()
        self.assertEqual(signer['context_type'], 'Nip')
        self.assertEqual(signer['context_value'], self.ksef_nip)
        self.assertEqual(signer['certificate_serial_hex'], ksef_crypto.certificate_serial_hex(signer['certificate']))
        self.assertEqual(signer['qr_base'], self.ksef_sandbox.qr_url)
        self.assertTrue(ksef_crypto.public_keys_equal(signer['private_key'].public_key(),
                                                      signer['certificate'].public_key()))

    def test_authentication_certificate_refused_as_offline(self):
        key_pem, cert_pem = self.ksef_make_certificate(self.ksef_nip, usage='auth')
        with self.assertRaises(UserError) as caught:
            self.ksef_company.sudo()._ksef_store_certificate('offline', cert_pem, key_pem)
        self.assertIn("not a KSeF Offline certificate", caught.exception.args[0])
        key_pem, cert_pem = self.ksef_make_certificate(self.ksef_nip, usage='offline')
        with self.assertRaises(UserError) as caught:
            self.ksef_company.sudo()._ksef_store_certificate('auth', cert_pem, key_pem)
        self.assertIn("cannot be used to log in", caught.exception.args[0])

    # ------------------------------------------------------------------ company fields
    def test_context_nip_defaults_to_vat(self):
        company = self.ksef_company
        nip = random_nip()
        company.vat = 'PL %s' % nip
        self.assertEqual(company.ksef_context_nip, nip)
        company.ksef_context_nip = '123-456-32-18'
        self.assertEqual(company.ksef_context_nip, '1234563218')
        with self.assertRaises(ValidationError):
            company.ksef_context_nip = '1234567890'

    def test_defaults(self):
        company = self.env['res.company'].create({'name': "New company"})
        self.assertEqual(company.ksef_environment, 'test')
        self.assertEqual(company.ksef_sandbox_url, 'http://127.0.0.1:8765')
        self.assertEqual(company.ksef_auth_method, 'token')
        self.assertEqual(company.ksef_batch_threshold, 50)
        self.assertFalse(company.ksef_send_on_post)
        self.assertEqual(company.ksef_auth_state, 'not_configured')
        with self.assertRaises(ValidationError):
            company.ksef_batch_threshold = 0

    def test_environment_urls(self):
        company = self.ksef_company
        self.assertEqual(company._ksef_environment().api_url, self.ksef_sandbox.api_url)
        self.assertEqual(company._ksef_qr_base(), self.ksef_sandbox.qr_url)
        company.sudo().ksef_environment = 'prod'
        self.assertEqual(company._ksef_environment().api_url, 'https://api.ksef.mf.gov.pl/v2')
        self.assertEqual(company._ksef_qr_base(), 'https://qr.ksef.mf.gov.pl')
        company.sudo().ksef_environment = 'test'
        self.assertEqual(company._ksef_qr_base(), 'https://qr-test.ksef.mf.gov.pl')

    def test_status_service(self):
        company = self.ksef_company
        action = company.action_ksef_test_status_service()
        self.assertEqual(action['params']['type'], 'success')
        self.assertEqual(action['params']['message'], "KSeF is available.")
        self.ksef_sandbox.set_status('MAINTENANCE', "Prace serwisowe")
        action = company.action_ksef_test_status_service()
        self.assertEqual(action['params']['type'], 'warning')
        self.assertIn("maintenance", action['params']['message'])

    def test_systray_data(self):
        company = self.ksef_company
        company.action_ksef_authorize()
        data = self.env['res.company'].with_company(company).ksef_systray_data()
        self.assertTrue(data['visible'])
        self.assertEqual(data['state'], 'authorized')
        self.assertEqual(data['state_label'], "Authorized")
        self.assertTrue(data['can_authorize'])
        self.assertNotIn(self.ksef_token, repr(data))
        # "Last authorization" in Polish time when the user has no time zone (not UTC)
        company.sudo().ksef_auth_date = datetime.datetime(2026, 1, 15, 11, 5)
        self.env.user.tz = False
        data = self.env['res.company'].with_company(company).ksef_systray_data()
        self.assertIn("12:05", data['date_display'])
        self.env.user.tz = 'UTC'
        data = self.env['res.company'].with_company(company).ksef_systray_data()
        self.assertIn("11:05", data['date_display'])
        company.sudo().ksef_token = 'broken-token-value'
        data = self.env['res.company'].with_company(company).ksef_systray_authorize()
        self.assertEqual(data['state'], 'error')
        self.assertTrue(data['message'])
