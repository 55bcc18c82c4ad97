import base64

from odoo import fields, models
from odoo.exceptions import UserError


class CertificateCertificate(models.Model):
    _inherit = 'certificate.certificate'

    scope = fields.Selection(
        selection_add=[
            ('ksef_auth', "KSeF authentication"),
            ('ksef_offline', "KSeF offline (KOD II)"),
        ],
        ondelete={'ksef_auth': 'set null', 'ksef_offline': 'set null'},
    )

    # -------------------------------------------------------------------------
    # BUSINESS
    # -------------------------------------------------------------------------

    def _ksef_key_and_certificate_pem(self, what):
        """``(private key PEM, certificate PEM)`` bytes, or a translated UserError naming ``what``."""
        self.ensure_one()
        certificate = self.sudo().with_context(bin_size=False)
        if certificate.loading_error or not certificate.pem_certificate:
            raise UserError(self.env._("Certificate %(name)s (%(what)s) cannot be loaded: %(error)s",
                                       what=what, name=certificate.name or '',
                                       error=certificate.loading_error or self.env._("no certificate content")))
        if not certificate.is_valid:
            raise UserError(self.env._("Certificate %(name)s (%(what)s) is not valid now (valid from %(start)s to "
                                       "%(end)s).",
                                       what=what, name=certificate.name or '',
                                       start=certificate.date_start, end=certificate.date_end))
        key = certificate.private_key_id.with_context(bin_size=False)
        if not key or key.loading_error or not key.pem_key:
            raise UserError(self.env._("Certificate %(name)s (%(what)s) has no usable private key.",
                                       what=what, name=certificate.name or ''))
        return base64.b64decode(key.pem_key), base64.b64decode(certificate.pem_certificate)
