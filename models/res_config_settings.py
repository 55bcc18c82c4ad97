import base64

from odoo import api, fields, models
from odoo.exceptions import UserError

_MANAGER = 'l10n_pl_ksef.group_ksef_manager'
# write-only inputs (never stored, never read back)
_SECRET_INPUTS = (
    'ksef_token_input',
    'ksef_auth_cert_file', 'ksef_auth_key_file', 'ksef_auth_password',
    'ksef_offline_cert_file', 'ksef_offline_key_file', 'ksef_offline_password',
)
_FILENAME_FIELDS = (
    'ksef_auth_cert_filename', 'ksef_auth_key_filename', 'ksef_offline_cert_filename', 'ksef_offline_key_filename',
)


def _pop_secret_inputs(vals):
    for fname in _FILENAME_FIELDS:
        vals.pop(fname, None)
    return {fname: vals.pop(fname) for fname in _SECRET_INPUTS if fname in vals}


class ResConfigSettings(models.TransientModel):
    _inherit = 'res.config.settings'

    ksef_environment = fields.Selection(related='company_id.ksef_environment', readonly=False)
    ksef_sandbox_url = fields.Char(related='company_id.ksef_sandbox_url', readonly=False)
    ksef_context_nip = fields.Char(related='company_id.ksef_context_nip', readonly=False)
    ksef_auth_method = fields.Selection(related='company_id.ksef_auth_method', readonly=False)
    ksef_auth_state = fields.Selection(related='company_id.ksef_auth_state')
    ksef_auth_message = fields.Text(related='company_id.ksef_auth_message')
    ksef_auth_date = fields.Datetime(related='company_id.ksef_auth_date')
    ksef_permissions = fields.Char(related='company_id.ksef_permissions')
    ksef_permission_warning = fields.Char(related='company_id.ksef_permission_warning')
    ksef_batch_threshold = fields.Integer(related='company_id.ksef_batch_threshold', readonly=False)
    ksef_offline_responsible_id = fields.Many2one(related='company_id.ksef_offline_responsible_id', readonly=False)
    ksef_send_on_post = fields.Boolean(related='company_id.ksef_send_on_post', readonly=False)
    ksef_token_set = fields.Boolean(related='company_id.ksef_token_set')
    ksef_token_hint = fields.Char(related='company_id.ksef_token_hint')
    ksef_auth_certificate_id = fields.Many2one(
        related='company_id.ksef_auth_certificate_id', readonly=False, groups=_MANAGER)
    ksef_offline_certificate_id = fields.Many2one(
        related='company_id.ksef_offline_certificate_id', readonly=False, groups=_MANAGER)
    ksef_auth_certificate_date_end = fields.Datetime(
        string="Authentication Certificate Expiry", related='company_id.ksef_auth_certificate_id.date_end',
        groups=_MANAGER)
    ksef_offline_certificate_date_end = fields.Datetime(
        string="Offline Certificate Expiry", related='company_id.ksef_offline_certificate_id.date_end',
        groups=_MANAGER)

    # Write-only inputs: never filled from the database, applied to the company when saved.
    ksef_token_input = fields.Char(
        string="New KSeF Token",
        compute='_compute_ksef_secret_inputs', inverse='_inverse_ksef_secret_inputs',
        groups=_MANAGER,
        help="Paste a KSeF token to replace the saved one. The saved token is never shown.",
    )
    ksef_auth_cert_file = fields.Binary(
        string="Authentication Certificate File",
        compute='_compute_ksef_secret_inputs', inverse='_inverse_ksef_secret_inputs',
        groups=_MANAGER,
        help="Certificate (.crt/.cer/.pem, DER or PEM) or PKCS#12 bundle (.p12/.pfx) for logging in to KSeF.",
    )
    ksef_auth_cert_filename = fields.Char(
        string="Authentication Certificate File Name",
        compute='_compute_ksef_secret_inputs', inverse='_inverse_ksef_secret_inputs', groups=_MANAGER)
    ksef_auth_key_file = fields.Binary(
        string="Authentication Key File",
        compute='_compute_ksef_secret_inputs', inverse='_inverse_ksef_secret_inputs',
        groups=_MANAGER,
        help="Private key of the authentication certificate (.key/.pem, PKCS#8 or PKCS#1, possibly encrypted). "
             "Not needed with a PKCS#12 bundle.",
    )
    ksef_auth_key_filename = fields.Char(
        string="Authentication Key File Name",
        compute='_compute_ksef_secret_inputs', inverse='_inverse_ksef_secret_inputs', groups=_MANAGER)
    ksef_auth_password = fields.Char(
        string="Authentication Key Password",
        compute='_compute_ksef_secret_inputs', inverse='_inverse_ksef_secret_inputs',
        groups=_MANAGER,
        help="Password of the private key or of the PKCS#12 bundle.",
    )
    ksef_offline_cert_file = fields.Binary(
        string="Offline Certificate File",
        compute='_compute_ksef_secret_inputs', inverse='_inverse_ksef_secret_inputs',
        groups=_MANAGER,
        help="KSeF Offline certificate (PEM, DER or PKCS#12) used to sign the CERTYFIKAT QR code (KOD II).",
    )
    ksef_offline_cert_filename = fields.Char(
        string="Offline Certificate File Name",
        compute='_compute_ksef_secret_inputs', inverse='_inverse_ksef_secret_inputs', groups=_MANAGER)
    ksef_offline_key_file = fields.Binary(
        string="Offline Key File",
        compute='_compute_ksef_secret_inputs', inverse='_inverse_ksef_secret_inputs',
        groups=_MANAGER,
        help="Private key of the offline certificate. Not needed with a PKCS#12 bundle.",
    )
    ksef_offline_key_filename = fields.Char(
        string="Offline Key File Name",
        compute='_compute_ksef_secret_inputs', inverse='_inverse_ksef_secret_inputs', groups=_MANAGER)
    ksef_offline_password = fields.Char(
        string="Offline Key Password",
        compute='_compute_ksef_secret_inputs', inverse='_inverse_ksef_secret_inputs',
        groups=_MANAGER,
        help="Password of the offline private key or PKCS#12 bundle.",
    )
    ksef_unmapped_tax_count = fields.Integer(
        string="Taxes without KSeF rate code",
        compute='_compute_ksef_unmapped_tax_count',
    )
    ksef_is_polish = fields.Boolean(string="Polish Company", compute='_compute_ksef_is_polish')

    # -------------------------------------------------------------------------
    # COMPUTE / INVERSE
    # -------------------------------------------------------------------------

    def _compute_ksef_secret_inputs(self):
        for settings in self:
            for fname in _SECRET_INPUTS + _FILENAME_FIELDS:
                settings[fname] = False

    def _inverse_ksef_secret_inputs(self):
        # The values are taken out of create/write (see _ksef_pop_secret_inputs) and applied to the
        # company directly: they never reach the cache, the database or a later read.
        return

    # -------------------------------------------------------------------------
    # CRUD
    # -------------------------------------------------------------------------

    @api.model_create_multi
    def create(self, vals_list):
        # EXTENDS 'base'
        secrets = [_pop_secret_inputs(vals) for vals in vals_list]
        records = super().create(vals_list)
        for settings, values in zip(records, secrets):
            settings._ksef_apply_secret_inputs(values)
        return records

    def write(self, vals):
        # EXTENDS 'base'
        values = _pop_secret_inputs(vals)
        res = super().write(vals)
        for settings in self:
            settings._ksef_apply_secret_inputs(values)
        return res

    def _ksef_apply_secret_inputs(self, values):
        """Save a pasted token and uploaded certificates on the company (managers only)."""
        self.ensure_one()
        if not any(values.values()):
            return
        company = self.company_id
        company._ksef_check_manager()
        token = (values.get('ksef_token_input') or '').strip()
        if token:
            company.sudo().ksef_token = token  # res.company.write removes any whitespace
        for usage in ('auth', 'offline'):
            cert_b64 = values.get('ksef_%s_cert_file' % usage)
            key_b64 = values.get('ksef_%s_key_file' % usage)
            password = values.get('ksef_%s_password' % usage)
            if not cert_b64:
                if key_b64:
                    raise UserError(self.env._("Upload the certificate file together with its private key."))
                continue
            key = base64.b64decode(key_b64) if key_b64 else None
            company._ksef_store_certificate(usage, base64.b64decode(cert_b64), key, password or None)

    @api.depends('company_id')
    def _compute_ksef_unmapped_tax_count(self):
        for settings in self:
            settings.ksef_unmapped_tax_count = len(self.env['account.tax']._ksef_unmapped_taxes(settings.company_id))

    @api.depends('company_id')
    def _compute_ksef_is_polish(self):
        for settings in self:
            settings.ksef_is_polish = settings.company_id._ksef_is_polish()

    # -------------------------------------------------------------------------
    # ACTIONS
    # -------------------------------------------------------------------------

    def action_ksef_authorize(self):
        """Settings button: the form was saved (values written to the company), now log in."""
        self.ensure_one()
        self.company_id.action_ksef_authorize()
        return self._ksef_reload()

    def action_ksef_test_status_service(self):
        self.ensure_one()
        return self.company_id.action_ksef_test_status_service()

    def action_ksef_open_unmapped_taxes(self):
        self.ensure_one()
        return self.company_id.action_ksef_open_unmapped_taxes()

    def action_ksef_forget_token(self):
        """Remove the saved KSeF token (and the session obtained with it)."""
        self.ensure_one()
        company = self.company_id
        company._ksef_check_manager()
        company.sudo().ksef_token = False
        self.env['l10n_pl_ksef.auth_token'].sudo()._ksef_clear(company)
        return self._ksef_reload()

    def _ksef_reload(self):
        # nothing to open: the settings form reloads its record and shows the new status
        return False
