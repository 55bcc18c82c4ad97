import logging

from odoo import api, fields, models
from odoo.exceptions import UserError

from odoo.addons.l10n_pl_ksef.ksef import whitelist as ksef_whitelist

_logger = logging.getLogger(__name__)

WHITELIST_STATES = [
    ('not_checked', "Not checked"),
    ('assigned', "On the white list"),
    ('not_assigned', "Not on the white list"),
    ('not_applicable', "Cannot be checked"),
]


class ResPartnerBank(models.Model):
    _inherit = 'res.partner.bank'

    # -------------------------------------------------------------------------
    # FIELDS
    # -------------------------------------------------------------------------

    ksef_whitelist_state = fields.Selection(
        selection=WHITELIST_STATES,
        string="VAT White List",
        default='not_checked',
        copy=False,
        tracking=True,
        help="Result of the last check of this account in the Ministry of Finance register of VAT taxpayers "
             "(\"biała lista\") for the holder's NIP:\n"
             "- Not checked: never checked.\n"
             "- On the white list: the register confirmed the account belongs to this active VAT taxpayer on the "
             "check date (keep the request ID as proof before paying more than 15 000 PLN).\n"
             "- Not on the white list: the register did not confirm it (the account may belong to someone else, "
             "be a virtual account, or the holder is not an active VAT taxpayer).\n"
             "- Cannot be checked: foreign account or holder without a Polish NIP.",
    )
    ksef_whitelist_date = fields.Date(
        string="White List Check Date",
        copy=False,
        readonly=True,
        help="Day the white-list answer refers to.",
    )
    ksef_whitelist_request_id = fields.Char(
        string="White List Request ID",
        copy=False,
        readonly=True,
        tracking=True,
        help="Identifier the Ministry of Finance register gave to the check (requestId): the proof of the check.",
    )
    ksef_whitelist_checked_at = fields.Datetime(
        string="White List Checked On",
        copy=False,
        readonly=True,
    )
    ksef_whitelist_nip = fields.Char(
        string="White List NIP",
        copy=False,
        readonly=True,
        help="NIP the account was checked against.",
    )

    # -------------------------------------------------------------------------
    # ACTIONS
    # -------------------------------------------------------------------------

    def action_ksef_whitelist_check(self):
        """Check the accounts in the VAT white list now (one request per account) and show the result."""
        results = self._ksef_whitelist_check(raise_errors=True)
        if len(self) == 1:
            bank = self
            if bank.ksef_whitelist_state == 'assigned':
                message = self.env._("Account %(account)s is on the VAT white list for NIP %(nip)s (request ID "
                                     "%(request)s).", account=bank.acc_number, nip=bank.ksef_whitelist_nip,
                                     request=bank.ksef_whitelist_request_id)
                kind = 'success'
            else:
                message = self.env._("Account %(account)s is NOT on the VAT white list for NIP %(nip)s (request ID "
                                     "%(request)s). Confirm the account with the vendor before paying.",
                                     account=bank.acc_number, nip=bank.ksef_whitelist_nip,
                                     request=bank.ksef_whitelist_request_id)
                kind = 'warning'
        else:
            done = sum(1 for r in results.values() if r == 'assigned')
            message = self.env._("%(ok)s of %(count)s accounts are on the VAT white list.", ok=done, count=len(self))
            kind = 'info'
        return {
            'type': 'ir.actions.client',
            'tag': 'display_notification',
            'params': {
                'title': self.env._("VAT white list"),
                'message': message,
                'type': kind,
                'sticky': kind == 'warning',
                'next': {'type': 'ir.actions.client', 'tag': 'soft_reload'},
            },
        }

    # -------------------------------------------------------------------------
    # BUSINESS
    # -------------------------------------------------------------------------

    def _ksef_holder_nip(self):
        """Polish NIP of the account holder (commercial partner), or ``''``."""
        self.ensure_one()
        partner = self.partner_id.commercial_partner_id
        return self.env['res.partner']._ksef_polish_nip(partner.vat, partner.country_id.code)

    def _ksef_whitelist_check(self, date=None, raise_errors=False):
        """Ask the white list whether each account belongs to its holder's NIP; store the answer.

        Returns ``{bank_id: state}``. Register failures raise a translated ``UserError`` with
        ``raise_errors``; otherwise they are logged and the account keeps its previous state.
        """
        results = {}
        client = None
        try:
            for bank in self:
                nip = bank._ksef_holder_nip()
                nrb = ksef_whitelist.normalize_account(bank.acc_number)
                if not nip or not nrb:
                    bank.write({'ksef_whitelist_state': 'not_applicable', 'ksef_whitelist_nip': nip or False})
                    results[bank.id] = 'not_applicable'
                    continue
                client = client or self.env['res.partner']._ksef_whitelist_client()
                try:
                    answer = client.check_account(nip, nrb, date=date)
                except ksef_whitelist.WhiteListError as exc:
                    if raise_errors:
                        raise UserError(self.env['res.partner']._ksef_whitelist_error_message(exc)) from None
                    _logger.warning("VAT white-list check of bank account %s failed: %s", bank.id, exc.code)
                    results[bank.id] = bank.ksef_whitelist_state
                    continue
                bank._ksef_whitelist_store(answer.assigned, answer.request_id, answer.date, nip)
                results[bank.id] = bank.ksef_whitelist_state
        finally:
            if client is not None:
                client.close()
        return results

    def _ksef_whitelist_store(self, assigned, request_id, date, nip):
        state = 'assigned' if assigned else 'not_assigned'
        self.write({
            'ksef_whitelist_state': state,
            'ksef_whitelist_request_id': request_id or False,
            'ksef_whitelist_date': date,
            'ksef_whitelist_checked_at': fields.Datetime.now(),
            'ksef_whitelist_nip': nip,
        })

    @api.model
    def _ksef_find_accounts(self, number, partner=None, company=None):
        """Bank accounts whose sanitized number equals ``number`` (an NRB also matches its ``PL`` IBAN)."""
        sanitized = ''.join((number or '').split()).replace('-', '').upper()
        if not sanitized:
            return self.browse()
        candidates = {sanitized}
        nrb = ksef_whitelist.normalize_account(sanitized)
        if nrb:
            candidates |= {nrb, 'PL' + nrb}
        domain = [('sanitized_acc_number', 'in', sorted(candidates))]
        if partner:
            domain.append(('partner_id', 'child_of', partner.commercial_partner_id.id))
        if company:
            domain += ['|', ('company_id', '=', False), ('company_id', 'parent_of', company.id)]
        return self.with_context(active_test=False).search(domain)
