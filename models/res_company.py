import base64
import hashlib
import logging
import re

from cryptography import x509
from cryptography.hazmat.backends import default_backend
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from odoo import api, fields, models
from odoo.exceptions import AccessError, RedirectWarning, UserError, ValidationError
from odoo.tools import format_datetime

from odoo.addons.l10n_pl_ksef.ksef import crypto as ksef_crypto
from odoo.addons.l10n_pl_ksef.ksef import environments as ksef_environments
from odoo.addons.l10n_pl_ksef.ksef import errors as ksef_errors
from odoo.addons.l10n_pl_ksef.ksef import numbers as ksef_numbers
from odoo.addons.l10n_pl_ksef.ksef.client import (
    AuthenticationFailed,
    CertificateCredential,
    ContextIdentifier,
    KsefClient,
    KsefTokenCredential,
    LatarniaClient,
    OperationPending,
)

_logger = logging.getLogger(__name__)

KSEF_ENVIRONMENTS = [
    ('sandbox', "Local sandbox"),
    ('test', "Test (TE)"),
    ('demo', "Pre-production (Demo)"),
    ('prod', "Production"),
]

AUTH_STATES = [
    ('not_configured', "Not configured"),
    ('authorized', "Authorized"),
    ('error', "Error"),
]

# Fields whose change makes the last authorization result meaningless.
_CREDENTIAL_FIELDS = {
    'ksef_environment', 'ksef_sandbox_url', 'ksef_context_nip', 'ksef_auth_method', 'ksef_token',
    'ksef_auth_certificate_id',
}

# KSeF permissions whose absence disables a function of the addon.
_REQUIRED_PERMISSIONS = ('InvoiceWrite', 'InvoiceRead')


class ResCompany(models.Model):
    _inherit = 'res.company'

    ksef_environment = fields.Selection(
        selection=KSEF_ENVIRONMENTS,
        string="KSeF Environment",
        default='test',
        required=True,
        help="Which KSeF installation this company talks to:\n"
             "- Local sandbox: a KSeF simulator on this machine (development, training).\n"
             "- Test (TE): the Ministry of Finance test environment; fictitious data, self-signed certificates.\n"
             "- Pre-production (Demo): same rules as production, invoices have no legal effect.\n"
             "- Production: invoices sent here are legally issued.",
    )
    ksef_sandbox_url = fields.Char(
        string="Sandbox URL",
        default=ksef_environments.SANDBOX_DEFAULT_URL,
        help="Root URL of the local KSeF sandbox (python -m ksef sandbox), used with the Local sandbox environment.",
    )
    ksef_context_nip = fields.Char(
        string="KSeF Context NIP",
        compute='_compute_ksef_context_nip', store=True, readonly=False,
        help="NIP of the taxpayer in whose context the company logs in to KSeF. "
             "Defaults to the company's tax ID without the PL prefix.",
    )
    ksef_auth_method = fields.Selection(
        selection=[
            ('token', "KSeF token"),
            ('certificate', "Certificate"),
        ],
        string="KSeF Authentication",
        default='token',
        required=True,
        help="- KSeF token: a token generated in the KSeF application (Aplikacja Podatnika).\n"
             "- Certificate: a KSeF authentication certificate or a qualified seal/signature with its private key "
             "(XAdES signature).",
    )
    # The secret itself: never put in a view; replaced through res.config.settings.ksef_token_input.
    ksef_token = fields.Char(
        string="KSeF Token",
        groups='l10n_pl_ksef.group_ksef_manager',
        copy=False,
        exportable=False,
        help="KSeF token used to log in (secret, write-only in the settings).",
    )
    ksef_token_set = fields.Boolean(
        string="KSeF Token Is Set",
        compute='_compute_ksef_token_info',
    )
    ksef_token_hint = fields.Char(
        string="Saved KSeF Token",
        compute='_compute_ksef_token_info',
        help="Public part of the saved token (its KSeF reference number) or its last characters.",
    )
    ksef_auth_certificate_id = fields.Many2one(
        comodel_name='certificate.certificate',
        string="KSeF Authentication Certificate",
        domain=[('scope', '=', 'ksef_auth')],
        groups='l10n_pl_ksef.group_ksef_manager',
        check_company=True,
        copy=False,
        help="Certificate with its private key used to sign the KSeF login request (XAdES).",
    )
    ksef_offline_certificate_id = fields.Many2one(
        comodel_name='certificate.certificate',
        string="KSeF Offline Certificate",
        domain=[('scope', '=', 'ksef_offline')],
        groups='l10n_pl_ksef.group_ksef_manager',
        check_company=True,
        copy=False,
        help="KSeF certificate of the Offline type with its private key, used to sign the CERTYFIKAT QR code "
             "(KOD II) of invoices issued in offline mode. It cannot be used to log in.",
    )
    ksef_auth_state = fields.Selection(
        selection=AUTH_STATES,
        string="KSeF Authorization",
        default='not_configured',
        required=True,
        copy=False,
        help="- Not configured: credentials are missing or changed since the last authorization.\n"
             "- Authorized: the last login to KSeF succeeded.\n"
             "- Error: the last login to KSeF failed; see the message.",
    )
    ksef_auth_message = fields.Text(
        string="KSeF Authorization Message",
        copy=False,
        help="Why the last authorization failed.",
    )
    ksef_auth_date = fields.Datetime(
        string="Last KSeF Authorization",
        copy=False,
    )
    ksef_permissions = fields.Char(
        string="KSeF Permissions",
        copy=False,
        help="Permissions of the credential in the company's KSeF context, as found at the last authorization.",
    )
    ksef_permission_warning = fields.Char(
        string="KSeF Permission Warning",
        compute='_compute_ksef_permission_warning',
    )
    ksef_batch_threshold = fields.Integer(
        string="KSeF Batch Threshold",
        default=50,
        help="When more invoices than this wait to be sent for the company, the sending job uses a batch "
             "session (one ZIP package) instead of an online session.",
    )
    ksef_offline_responsible_id = fields.Many2one(
        comodel_name='res.users',
        string="KSeF Offline Responsible",
        help="User who gets an activity when invoices issued offline approach their deadline for sending to KSeF.",
    )
    ksef_send_on_post = fields.Boolean(
        string="Send to KSeF on Posting",
        default=False,
        help="Queue every posted customer invoice and credit note for sending to KSeF.",
    )

    # -------------------------------------------------------------------------
    # CONSTRAINTS
    # -------------------------------------------------------------------------

    @api.constrains('ksef_context_nip')
    def _check_ksef_context_nip(self):
        for company in self:
            if company.ksef_context_nip and not ksef_numbers.is_valid_nip(company.ksef_context_nip):
                raise ValidationError(self.env._(
                    "The KSeF context NIP %(nip)s of company %(company)s is not a valid Polish NIP "
                    "(10 digits with a correct check digit).",
                    nip=company.ksef_context_nip, company=company.name))

    @api.constrains('ksef_batch_threshold')
    def _check_ksef_batch_threshold(self):
        for company in self:
            if company.ksef_batch_threshold < 1:
                raise ValidationError(self.env._("The KSeF batch threshold must be at least 1."))

    @api.constrains('ksef_sandbox_url')
    def _check_ksef_sandbox_url(self):
        for company in self:
            url = (company.ksef_sandbox_url or '').strip()
            if url and not url.lower().startswith(('http://', 'https://')):
                raise ValidationError(self.env._(
                    "The KSeF sandbox URL must start with http:// or https:// (got %s).", url))

    # -------------------------------------------------------------------------
    # COMPUTE
    # -------------------------------------------------------------------------

    @api.depends('vat', 'country_id')
    def _compute_ksef_context_nip(self):
        for company in self:
            nip = ksef_numbers.normalize_nip(company.vat)
            if ksef_numbers.is_valid_nip(nip):
                company.ksef_context_nip = nip
            else:
                company.ksef_context_nip = company.ksef_context_nip or False

    @api.depends_context('uid')
    def _compute_ksef_token_info(self):
        for company in self:
            token = company.sudo().ksef_token
            company.ksef_token_set = bool(token)
            company.ksef_token_hint = _token_hint(token)

    @api.depends('ksef_permissions', 'ksef_auth_state')
    def _compute_ksef_permission_warning(self):
        for company in self:
            company.ksef_permission_warning = company._ksef_permission_warning_text()

    def _ksef_permission_warning_text(self, permissions=None):
        """Translated warning about missing InvoiceWrite/InvoiceRead (``False`` when nothing is missing)."""
        self.ensure_one()
        if permissions is None:
            if self.ksef_auth_state != 'authorized' or not self.ksef_permissions:
                return False
            permissions = [p.strip() for p in self.ksef_permissions.split(',')]
        missing = [p for p in _REQUIRED_PERMISSIONS if p not in permissions]
        lines = []
        if 'InvoiceWrite' in missing:
            lines.append(self.env._("The credential has no InvoiceWrite permission: sending invoices to KSeF "
                                    "will not work."))
        if 'InvoiceRead' in missing:
            lines.append(self.env._("The credential has no InvoiceRead permission: downloading purchase invoices from "
                                    "KSeF will not work."))
        return " ".join(lines) or False

    # -------------------------------------------------------------------------
    # CRUD
    # -------------------------------------------------------------------------

    def write(self, vals):
        # EXTENDS 'base'
        if not self.env.su and any(fname.startswith('ksef_') for fname in vals) \
                and not self.env.user.has_group('l10n_pl_ksef.group_ksef_manager'):
            # "Access Rights" administrators may edit companies, but not point KSeF (and its token) elsewhere
            raise AccessError(self.env._("Only users with the \"KSeF: manage settings\" permission can change the "
                                         "KSeF settings of a company."))
        if 'ksef_token' in vals and isinstance(vals['ksef_token'], str):
            # a KSeF token never contains whitespace: drop what copying from a PDF or e-mail adds
            vals['ksef_token'] = re.sub(r'\s+', '', vals['ksef_token']) or False
        if 'ksef_sandbox_url' in vals and isinstance(vals['ksef_sandbox_url'], str):
            vals['ksef_sandbox_url'] = vals['ksef_sandbox_url'].strip().rstrip('/') or False
        if 'ksef_context_nip' in vals and isinstance(vals['ksef_context_nip'], str):
            vals['ksef_context_nip'] = ksef_numbers.normalize_nip(vals['ksef_context_nip']) or False
        changed = set()
        if _CREDENTIAL_FIELDS.intersection(vals):
            for company in self.sudo():
                for fname in _CREDENTIAL_FIELDS.intersection(vals):
                    old = company[fname]
                    old = old.id if isinstance(old, models.BaseModel) else old
                    if (old or False) != (vals[fname] or False):
                        changed.add(company.id)
        res = super().write(vals)
        if changed and 'ksef_auth_state' not in vals:
            # credentials changed: the last authorization result no longer applies
            self.browse(changed).sudo()._ksef_set_auth_state('not_configured')
        return res

    # -------------------------------------------------------------------------
    # ACTIONS
    # -------------------------------------------------------------------------

    def action_ksef_authorize(self):
        """Log in to KSeF with the company's credentials and record the result (settings, systray)."""
        self.ensure_one()
        self._ksef_check_manager()
        company = self.sudo()
        try:
            client = company._ksef_get_client(force_login=True, timeout=(10, 30), auth_timeout=60)
            permissions = client.current_permissions()
        except (ksef_errors.KsefError, UserError, RedirectWarning) as exc:
            message = company._ksef_error_message(exc) if isinstance(exc, ksef_errors.KsefError) else exc.args[0]
            _logger.info("KSeF authorization of company %s failed (%s)", company.id,
                         getattr(exc, 'code', type(exc).__name__))
            company._ksef_set_auth_state('error', message)
            return False
        perms = permissions.get('permissions') or []
        company._ksef_set_auth_state('authorized', permissions=perms)
        _logger.info("KSeF authorization of company %s succeeded (permissions: %s)", company.id, ", ".join(perms))
        return True

    def action_ksef_test_status_service(self):
        """Ask the KSeF status service (Latarnia) whether KSeF is available; returns a notification."""
        self.ensure_one()
        if not self.env.su and not self.env.user.has_group('l10n_pl_ksef.group_ksef_viewer'):
            raise AccessError(self.env._("Only KSeF users can check the KSeF status service."))
        status = self._ksef_service_status()
        level = {'AVAILABLE': 'success', 'MAINTENANCE': 'warning'}.get(status['status'], 'danger')
        return {
            'type': 'ir.actions.client',
            'tag': 'display_notification',
            'params': {
                'title': self.env._("KSeF status service"),
                'message': status['message'],
                'type': level,
                'sticky': False,
            },
        }

    def action_ksef_open_unmapped_taxes(self):
        self.ensure_one()
        taxes = self.env['account.tax']._ksef_unmapped_taxes(self)
        return {
            'type': 'ir.actions.act_window',
            'name': self.env._("Taxes without a KSeF rate code"),
            'res_model': 'account.tax',
            'view_mode': 'list,form',
            'views': [(self.env.ref('account.view_tax_tree').id, 'list'),
                      (self.env.ref('account.view_tax_form').id, 'form')],
            'domain': [('id', 'in', taxes.ids)],
            'context': {'active_test': False},
        }

    @api.model
    def ksef_systray_data(self):
        """Authorization status of the current company for the top bar (no secrets)."""
        user = self.env.user
        if not user.has_group('l10n_pl_ksef.group_ksef_viewer'):
            return {'visible': False}
        company = self.env.company
        if not company._ksef_is_polish():
            return {'visible': False}
        return company._ksef_systray_values()

    @api.model
    def ksef_systray_authorize(self):
        """Re-authorize the current company from the top bar (KSeF managers only)."""
        company = self.env.company
        company._ksef_check_manager()
        company.action_ksef_authorize()
        return company._ksef_systray_values()

    # -------------------------------------------------------------------------
    # BUSINESS
    # -------------------------------------------------------------------------

    def _ksef_is_polish(self):
        self.ensure_one()
        return (self.account_fiscal_country_id or self.country_id).code == 'PL'

    def _ksef_check_manager(self):
        if not self.env.su and not self.env.user.has_group('l10n_pl_ksef.group_ksef_manager'):
            raise AccessError(self.env._("Only users with the \"KSeF: manage settings\" permission can authorize "
                                         "the company in KSeF."))
        if not self.env.su:
            # a KSeF manager of one company never acts on another one (the work below runs with sudo)
            self.check_access('read')

    def _ksef_systray_values(self):
        self.ensure_one()
        state_labels = dict(self._fields['ksef_auth_state']._description_selection(self.env))
        return {
            'visible': True,
            'company_id': self.id,
            'company_name': self.name,
            'state': self.ksef_auth_state,
            'state_label': state_labels.get(self.ksef_auth_state),
            'message': self.ksef_auth_message or False,
            'date': fields.Datetime.to_string(self.ksef_auth_date) if self.ksef_auth_date else False,
            'date_display': format_datetime(self.env, self.ksef_auth_date, tz=self.env.user.tz or 'Europe/Warsaw')
            if self.ksef_auth_date else False,
            'environment': dict(self._fields['ksef_environment']._description_selection(self.env)).get(
                self.ksef_environment),
            'is_production': self.ksef_environment == 'prod',
            'warning': self.ksef_permission_warning or False,
            'can_authorize': self.env.user.has_group('l10n_pl_ksef.group_ksef_manager'),
            'can_configure': self.env.user.has_group('base.group_system'),
        }

    def _ksef_set_auth_state(self, state, message=False, permissions=None):
        """Record an authorization result (sudo: KSeF managers are not necessarily company admins)."""
        vals = {'ksef_auth_state': state, 'ksef_auth_message': message or False}
        if state == 'authorized':
            vals['ksef_auth_date'] = fields.Datetime.now()
            if permissions is not None:
                vals['ksef_permissions'] = ", ".join(sorted(permissions))
        elif state == 'not_configured':
            vals['ksef_permissions'] = False
        for company in self.sudo():
            changed = {k: v for k, v in vals.items()
                       if k == 'ksef_auth_date' or (company[k] or False) != (v or False)}
            if not changed:
                continue
            company.write(changed)
            company._ksef_notify_auth_state()

    def _ksef_notify_auth_state(self):
        """Tell the top-bar indicators of KSeF users about the new state (bus)."""
        group = self.env.ref('l10n_pl_ksef.group_ksef_viewer', raise_if_not_found=False)
        if not group:
            return
        for company in self:
            group._bus_send('l10n_pl_ksef.auth_state', {
                'company_id': company.id,
                'state': company.ksef_auth_state,
            })

    def _ksef_environment(self):
        """The :class:`ksef.environments.Environment` of the company."""
        self.ensure_one()
        if self.ksef_environment == 'sandbox':
            return ksef_environments.sandbox_environment(self.ksef_sandbox_url or None)
        return ksef_environments.get_environment(self.ksef_environment or 'test')

    def _ksef_qr_base(self):
        """Base URL of the KSeF QR verification links (KOD I / KOD II) for the company's environment."""
        return self._ksef_environment().qr_url

    def _ksef_status_client(self):
        """A client of the KSeF status service (Latarnia) of the company's environment, or ``None``."""
        environment = self._ksef_environment()
        if not environment.latarnia_url:
            return None
        return LatarniaClient(environment.latarnia_url)

    def _ksef_service_status(self):
        """``{'status': AVAILABLE|MAINTENANCE|FAILURE|TOTAL_FAILURE|UNKNOWN, 'message': translated text}``."""
        self.ensure_one()
        labels = {
            'AVAILABLE': self.env._("KSeF is available."),
            'MAINTENANCE': self.env._("KSeF is in scheduled maintenance."),
            'FAILURE': self.env._("KSeF reports a failure."),
            'TOTAL_FAILURE': self.env._("KSeF reports a total failure (invoices may be issued offline)."),
        }
        client = self._ksef_status_client()
        if client is None:
            return {'status': 'UNKNOWN', 'message': self.env._("No status service is known for this KSeF environment.")}
        try:
            data = client.status()
        except ksef_errors.KsefError as exc:
            return {'status': 'UNKNOWN', 'message': self._ksef_error_message(exc)}
        status = data.get('status')
        message = labels.get(status) or self.env._("KSeF status service answered: %s", status)
        titles = [m.get('title') or m.get('text') for m in data.get('messages') or [] if isinstance(m, dict)]
        titles = [t for t in titles if t]
        if titles:
            message = "%s %s" % (message, "; ".join(titles[:3]))
        return {'status': status, 'message': message}

    def _ksef_check_configuration(self):
        """Raise a RedirectWarning to the settings when the company cannot log in to KSeF."""
        self.ensure_one()
        company = self.sudo()
        problems = []
        if not company.ksef_context_nip:
            problems.append(self.env._("the KSeF context NIP is missing"))
        if company.ksef_environment == 'sandbox' and not company.ksef_sandbox_url:
            problems.append(self.env._("the sandbox URL is missing"))
        if company.ksef_auth_method == 'token' and not company.ksef_token:
            problems.append(self.env._("no KSeF token is saved"))
        if company.ksef_auth_method == 'certificate' and not company.ksef_auth_certificate_id:
            problems.append(self.env._("no authentication certificate is selected"))
        if problems:
            message = self.env._("KSeF is not configured for company %(company)s: %(problems)s.",
                                 company=self.name, problems=", ".join(problems))
            raise RedirectWarning(message, self._ksef_settings_action(), self.env._("Go to KSeF settings"))

    def _ksef_settings_action(self):
        action = self.env['ir.actions.actions']._for_xml_id('account.action_account_config')
        action['context'] = {'module': 'account', 'default_search': 'KSeF', 'bin_size': False}
        return action

    def _ksef_credential(self):
        """The login credential (sudo; the only place that reads the secrets)."""
        self.ensure_one()
        company = self.sudo()
        if company.ksef_auth_method == 'token':
            try:
                return KsefTokenCredential(company.ksef_token)
            except ksef_errors.CredentialError as exc:
                raise UserError(self._ksef_error_message(exc)) from None
        certificate = company.ksef_auth_certificate_id
        key_pem, cert_pem = certificate._ksef_key_and_certificate_pem(self.env._("KSeF authentication"))
        try:
            return CertificateCredential(cert_pem, key_pem)
        except ksef_errors.CredentialError as exc:
            raise UserError(self._ksef_error_message(exc)) from None

    def _ksef_credential_fingerprint(self, credential):
        """Identifies environment + context + credential: stored tokens of another one are ignored."""
        self.ensure_one()
        environment = self._ksef_environment()
        if isinstance(credential, KsefTokenCredential):
            secret = hashlib.sha256(credential.token.encode('utf-8')).hexdigest()
        else:
            secret = ksef_crypto.certificate_fingerprint_hex(credential.certificate)
        text = "|".join((environment.api_url, self.sudo().ksef_context_nip or '', credential.method, secret))
        return hashlib.sha256(text.encode('utf-8')).hexdigest()

    def _ksef_get_client(self, authenticate=True, force_login=False, **client_kwargs):
        """A :class:`ksef.client.KsefClient` for the company, authenticated on demand.

        The access/refresh tokens live server-side (``l10n_pl_ksef.auth_token``, manager-only) and are
        restored, refreshed and saved through the client's ``on_tokens_changed`` callback. With
        ``authenticate=True`` (default) a valid access token is obtained right away while holding a
        per-company lock, so that concurrent workers reuse one login instead of each logging in; a
        refused credential is recorded as the company's authorization error (settings, top bar).
        ``authenticate=False`` only restores the stored tokens (the client logs in lazily, unlocked).
        ``force_login=True`` ignores the stored tokens and logs in again (the settings' Authorize button).

        Raises ``RedirectWarning`` (to the settings) when KSeF is not configured, ``UserError`` when the
        credential cannot be loaded, and :class:`ksef.errors.KsefError` subclasses for KSeF failures
        (translate them with :meth:`_ksef_error_message`).
        """
        self.ensure_one()
        self._ksef_check_configuration()
        company = self.sudo()
        credential = company._ksef_credential()
        fingerprint = company._ksef_credential_fingerprint(credential)
        store = self.env['l10n_pl_ksef.auth_token'].sudo()
        saver = store._ksef_saver(company.id, fingerprint)
        kwargs = {'timeout': (10, 60)}
        kwargs.update(client_kwargs)
        client = KsefClient(
            company._ksef_environment(),
            context=ContextIdentifier.nip(company.ksef_context_nip),
            credential=credential,
            on_tokens_changed=saver,
            **kwargs,
        )
        if not authenticate:
            state = store._ksef_load(self.env.cr, company.id, fingerprint)
            if state:
                client.set_tokens(state, notify=False)
            return client
        with store._ksef_locked(company.id) as cr:
            state = None if force_login else store._ksef_load(cr, company.id, fingerprint)
            if state:
                client.set_tokens(state, notify=False)
            saver.cursor = cr
            try:
                logged_in = not (client.tokens and client.tokens.access_valid(client.refresh_margin))
                if force_login:
                    client.authenticate()
                else:
                    client.access_token()
            except (ksef_errors.CredentialError, ksef_errors.AuthenticationError) as exc:
                # the credential itself was refused: show it in the settings and the top bar
                company._ksef_set_auth_state('error', self._ksef_error_message(exc))
                raise
            finally:
                saver.cursor = None
        if logged_in and company.ksef_auth_state != 'authorized':
            company._ksef_set_auth_state('authorized')
        return client

    def _ksef_offline_signer(self):
        """What KOD II needs: ``{'private_key', 'certificate', 'certificate_serial_hex', 'context_type',
        'context_value', 'qr_base'}`` (sudo). Raises a translated UserError without an Offline certificate."""
        self.ensure_one()
        company = self.sudo()
        certificate = company.ksef_offline_certificate_id
        if not certificate:
            raise RedirectWarning(
                self.env._("Company %s has no KSeF offline certificate: the CERTYFIKAT QR code (KOD II) of invoices "
                           "issued offline cannot be signed.", self.name),
                self._ksef_settings_action(), self.env._("Go to KSeF settings"))
        if not company.ksef_context_nip:
            raise UserError(self.env._("The KSeF context NIP of company %s is missing.", self.name))
        key_pem, cert_pem = certificate._ksef_key_and_certificate_pem(self.env._("KSeF offline"))
        try:
            key, cert = ksef_crypto.load_credentials(cert_pem, key_pem)
        except ksef_errors.CredentialError as exc:
            raise UserError(self._ksef_error_message(exc)) from None
        return {
            'private_key': key,
            'certificate': cert,
            'certificate_serial_hex': ksef_crypto.certificate_serial_hex(cert),
            'context_type': 'Nip',
            'context_value': company.ksef_context_nip,
            'qr_base': company._ksef_qr_base(),
        }

    def _ksef_store_certificate(self, usage, certificate_bytes, key_bytes=None, password=None):
        """Create the ``certificate.certificate`` (+ ``certificate.key``) of ``usage`` (``auth``/``offline``)
        from uploaded bytes (PEM/DER/PKCS#12, optionally encrypted key) and link it to the company."""
        self.ensure_one()
        self._ksef_check_manager()
        password = password or None
        certificate_bytes, key_bytes, password = _binary_uploads_to_pem(certificate_bytes, key_bytes, password)
        try:
            key, cert = ksef_crypto.load_credentials(certificate_bytes, key_bytes, password)
        except ksef_errors.CredentialError as exc:
            raise UserError(self._ksef_error_message(exc)) from None
        key_usage_ok = _check_key_usage(cert, usage)
        if not key_usage_ok:
            if usage == 'offline':
                raise UserError(self.env._(
                    "This certificate is not a KSeF Offline certificate (its key usage does not allow "
                    "non-repudiation signatures): it cannot sign the KOD II QR code."))
            raise UserError(self.env._(
                "This certificate is a KSeF Offline certificate: it cannot be used to log in to KSeF."))
        env = self.env(su=True)
        name = ksef_crypto.certificate_common_name(cert) or ksef_crypto.certificate_serial_hex(cert)
        key_record = env['certificate.key'].create({
            'name': "%s.key" % name,
            'content': base64.b64encode(ksef_crypto.private_key_pem(key)),
            'company_id': self.id,
        })
        cert_record = env['certificate.certificate'].create({
            'name': name,
            'content': base64.b64encode(ksef_crypto.certificate_pem(cert)),
            'private_key_id': key_record.id,
            'scope': 'ksef_auth' if usage == 'auth' else 'ksef_offline',
            'company_id': self.id,
        })
        field = 'ksef_auth_certificate_id' if usage == 'auth' else 'ksef_offline_certificate_id'
        self.sudo()[field] = cert_record
        return cert_record

    @api.model
    def _ksef_error_message(self, exc):
        """Translated, user-facing text for a :class:`ksef.errors.KsefError` (never ``str(exc)``)."""
        code = getattr(exc, 'code', None)
        if isinstance(exc, AuthenticationFailed):
            status = exc.status_code
            text = {
                415: self.env._("KSeF refused the login: the credential has no permissions in this context (NIP)."),
                425: self.env._("KSeF refused the login: the authentication was revoked."),
                450: self.env._("KSeF refused the login: the KSeF token is invalid, revoked, inactive or does not "
                                "belong to this NIP."),
                460: self.env._("KSeF refused the login: the certificate is invalid, untrusted, revoked or suspended."),
                470: self.env._("KSeF refused the login: the person identified by the certificate is deceased."),
                480: self.env._("KSeF refused the login: the credential is blocked after a security incident."),
                500: self.env._("KSeF could not complete the login (internal error). Try again later."),
                550: self.env._("KSeF could not complete the login (operation cancelled). Try again later."),
            }.get(status) or self.env._("KSeF refused the login (status %s).", status)
        elif isinstance(exc, OperationPending):
            text = self.env._("KSeF is still processing the login. Try again in a minute.")
        elif isinstance(exc, ksef_errors.CredentialError):
            text = {
                'ksef_token_empty': self.env._("The KSeF token is empty."),
                'certificate_empty': self.env._("The certificate file is empty."),
                'certificate_unreadable': self.env._(
                    "The certificate cannot be read (expected PEM, DER or PKCS#12)."),
                'key_empty': self.env._("The private key is missing."),
                'key_unreadable': self.env._("The private key cannot be read (expected PEM, DER or PKCS#8)."),
                'key_bad_password': self.env._("The password of the private key or of the PKCS#12 file is wrong."),
                'key_password_required': self.env._("The private key is encrypted: enter its password."),
                'key_mismatch': self.env._("The private key does not belong to the certificate."),
                'key_is_certificate': self.env._("A certificate was given where the private key is expected."),
                'key_unsupported': self.env._("This type of private key is not supported (use RSA or EC P-256)."),
                'key_algorithm_mismatch': self.env._("The private key does not belong to the certificate."),
                'pkcs12_incomplete': self.env._("The PKCS#12 file contains no certificate or no private key."),
                'pkcs12_unreadable': self.env._("The PKCS#12 file cannot be read (wrong password or damaged file)."),
                'credential_missing': self.env._("No KSeF credential is configured."),
                'context_missing': self.env._("The KSeF context NIP is missing."),
                'credential_unsupported': self.env._("This authentication method is not supported."),
            }.get(code) or self.env._("The certificate or key cannot be used.")
        elif isinstance(exc, ksef_errors.RateLimitError):
            if exc.retry_after:
                text = self.env._("KSeF limits the number of requests: try again in %s seconds.", int(exc.retry_after))
            else:
                text = self.env._("KSeF limits the number of requests: try again later.")
        elif isinstance(exc, ksef_errors.ServiceUnavailableError):
            text = self.env._("KSeF is unavailable (maintenance or failure). Try again later.")
        elif isinstance(exc, ksef_errors.ServerError):
            text = self.env._("KSeF answered with a server error (HTTP %s). Try again later.", exc.http_status or 500)
        elif isinstance(exc, ksef_errors.RequestTimeout):
            text = self.env._("KSeF did not answer in time. Try again later.")
        elif isinstance(exc, ksef_errors.TransportError):
            if code in ('latarnia_unreachable', 'latarnia_error'):
                text = self.env._("The KSeF status service cannot be reached.")
            elif code == 'malformed_response':
                text = self.env._("KSeF sent an answer that cannot be read.")
            elif code == 'tls':
                text = self.env._("The secure connection to KSeF failed (TLS certificate).")
            else:
                text = self.env._("KSeF cannot be reached at %s. Check the environment, the URL and the network.",
                                  self._ksef_safe_api_url())
        elif isinstance(exc, ksef_errors.BadRequestError):
            codes = set(exc.exception_codes)
            if codes & {21115}:
                text = self.env._("KSeF rejected the certificate.")
            elif codes & {21117}:
                text = self.env._("The identifier in the certificate does not match the KSeF context (NIP).")
            elif codes & {9101, 9102, 9103, 9105, 21406}:
                text = self.env._("KSeF rejected the signature of the login request.")
            elif codes & {21111}:
                text = self.env._("The KSeF login challenge expired. Try again.")
            else:
                codes_text = ", ".join(str(c) for c in exc.exception_codes) or "-"
                text = self.env._("KSeF rejected the request (codes: %s).", codes_text)
        elif isinstance(exc, ksef_errors.ForbiddenError):
            text = self.env._("The credential has no permission for this operation in KSeF.")
        elif isinstance(exc, ksef_errors.AuthenticationError):
            if code == 'reauth_required':
                text = self.env._("The KSeF session expired and no credential is configured to log in again.")
            else:
                text = self.env._("KSeF did not accept the authorization (HTTP %s).", exc.http_status or 401)
        elif isinstance(exc, ksef_errors.ApiError):
            text = self.env._("KSeF answered with an error (HTTP %s).", exc.http_status or "?")
        else:
            text = self.env._("KSeF operation failed (%s).", code or type(exc).__name__)
        details = _ksef_details(exc)
        if details:
            text = self.env._("%(message)s KSeF says: %(details)s", message=text, details=details)
        return text

    def _ksef_safe_api_url(self):
        try:
            return self._ksef_environment().api_url if self else self.env.company._ksef_environment().api_url
        except ValueError:
            return "?"


def _ksef_details(exc):
    """KSeF's own description/details of a failure (already scrubbed of secrets by the client)."""
    parts = []
    description = getattr(exc, 'description', None)
    if description:
        parts.append(str(description))
    for detail in getattr(exc, 'details', None) or ():
        if detail and str(detail) not in parts:
            parts.append(str(detail))
    return "; ".join(parts)[:500]


def _token_hint(token):
    """A non-secret hint about a saved token: its reference number, or its last 4 characters."""
    if not token:
        return False
    head = token.split('|', 1)[0]
    if '|' in token and len(head) >= 20:
        return "%s|…" % head
    return "…%s" % token[-4:] if len(token) > 12 else "…"


def _binary_uploads_to_pem(certificate_bytes, key_bytes, password):
    """Turn binary uploads (DER certificate/key, PKCS#12) into PEM before ``ksef.crypto.load_credentials``.

    The core loaders strip surrounding whitespace, which corrupts binary data ending with a byte such
    as 0x0a or 0x20 (a random signature does so once in ~40 files). Anything that cannot be read here
    is passed on unchanged so that the core reports the precise problem (wrong password, mismatch...).
    """
    backend = default_backend()
    pwd = password.encode('utf-8') if isinstance(password, str) else password

    def unencrypted_pem(key):
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    def is_binary(data):
        return bool(data) and b'-----BEGIN' not in data

    if is_binary(certificate_bytes):
        try:
            cert = x509.load_der_x509_certificate(certificate_bytes, backend)
            certificate_bytes = cert.public_bytes(serialization.Encoding.PEM)
        except ValueError:
            if not key_bytes:
                try:
                    key, cert, _extra = pkcs12.load_key_and_certificates(certificate_bytes, pwd, backend)
                except (ValueError, TypeError):
                    key = cert = None
                if key is not None and cert is not None:
                    return cert.public_bytes(serialization.Encoding.PEM), unencrypted_pem(key), None
    if is_binary(key_bytes):
        try:
            key = serialization.load_der_private_key(key_bytes, pwd, backend)
        except (ValueError, TypeError):
            key = None  # the core loader reports what is wrong (password, format)
        if key is not None:
            return certificate_bytes, unencrypted_pem(key), None
    return certificate_bytes, key_bytes, password


def _check_key_usage(cert, usage):
    """``False`` when the certificate's key usage contradicts the intended KSeF use."""
    from cryptography import x509
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return True
    if usage == 'offline':
        return bool(ku.content_commitment)
    # an authentication certificate signs (digitalSignature); a pure offline one only has nonRepudiation
    return bool(ku.digital_signature) or not ku.content_commitment
