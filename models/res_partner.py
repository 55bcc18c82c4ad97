import logging
import re

from odoo import api, fields, models, tools
from odoo.exceptions import UserError

from odoo.addons.l10n_pl_ksef.ksef import numbers as ksef_numbers
from odoo.addons.l10n_pl_ksef.ksef import whitelist as ksef_whitelist

_logger = logging.getLogger(__name__)

WHITELIST_URL_PARAM = 'l10n_pl_ksef.whitelist_url'
VAT_STATUSES = [
    ('active', "Active VAT taxpayer"),
    ('exempt', "VAT exempt"),
    ('not_registered', "Not registered for VAT"),
    ('unknown', "Not in the register"),
]
# "ul. Prosta 49, 00-838 Warszawa" / "ul. Prosta 49 00-838 Warszawa" / "00-838 Warszawa, ul. Prosta 49"
_ZIP_CITY_RE = re.compile(r"^(?P<street>.*?)[,\s]+(?P<zip>\d{2}-\d{3})\s+(?P<city>[^,]+?)\s*$")
_ZIP_FIRST_RE = re.compile(r"^(?P<zip>\d{2}-\d{3})\s+(?P<city>[^,]+?)\s*,\s*(?P<street>.+)$")
# normalised partner tax id: upper case letters and digits only
_VAT_NORM_SQL = "regexp_replace(upper(coalesce(vat, '')), '[^A-Z0-9]', '', 'g')"


class ResPartner(models.Model):
    _inherit = 'res.partner'

    # -------------------------------------------------------------------------
    # FIELDS
    # -------------------------------------------------------------------------

    ksef_regon = fields.Char(
        string="REGON",
        help="Statistical number of the business (REGON), e.g. from the VAT white list.",
    )
    ksef_vat_status = fields.Selection(
        selection=VAT_STATUSES,
        string="VAT Status (White List)",
        copy=False,
        tracking=True,
        help="VAT status in the Ministry of Finance register of VAT taxpayers (\"biała lista\") on the date of "
             "the last check:\n- Active VAT taxpayer (czynny)\n- VAT exempt (zwolniony)\n"
             "- Not registered for VAT (niezarejestrowany / wykreślony)\n- Not in the register: the NIP is unknown.",
    )
    ksef_vat_status_date = fields.Date(
        string="VAT Status Date",
        copy=False,
        help="Day the white-list VAT status refers to.",
    )
    ksef_whitelist_request_id = fields.Char(
        string="White List Request ID",
        copy=False,
        help="Identifier the Ministry of Finance register gave to the last lookup of this partner (proof).",
    )

    def init(self):
        res = super().init()
        # vendors are matched by their normalised tax id on every KSeF import
        tools.create_index(self._cr, 'res_partner_ksef_vat_norm_index', self._table, [_VAT_NORM_SQL])
        return res

    # -------------------------------------------------------------------------
    # ACTIONS
    # -------------------------------------------------------------------------

    def action_ksef_whitelist_refresh(self):
        """Update VAT status, REGON and registered bank accounts from the VAT white list."""
        self.ensure_one()
        partner = self.commercial_partner_id
        nip = self._ksef_polish_nip(partner.vat, partner.country_id.code)
        if not nip:
            raise UserError(self.env._("%s has no valid Polish NIP: it cannot be looked up in the VAT white list.",
                                       partner.display_name))
        result = self._ksef_whitelist_search(nip)
        partner._ksef_apply_whitelist(result, update_identity=False)
        return {
            'type': 'ir.actions.client',
            'tag': 'display_notification',
            'params': {
                'title': self.env._("VAT white list"),
                'message': partner._ksef_whitelist_summary(result),
                'type': 'success' if result.found else 'warning',
                'next': {'type': 'ir.actions.client', 'tag': 'soft_reload'},
            },
        }

    # -------------------------------------------------------------------------
    # BUSINESS: tax identifiers and matching
    # -------------------------------------------------------------------------

    @api.model
    def _ksef_polish_nip(self, vat, country_code=None):
        """The Polish NIP in a partner's tax id (``PL`` prefix or a Polish partner), or ``''``."""
        text = re.sub(r"[^A-Za-z0-9]", "", vat or "").upper()
        if text.startswith('PL'):
            text = text[2:]
        elif text[:2].isalpha() or (country_code and country_code != 'PL'):
            return ''
        return text if ksef_numbers.is_valid_nip(text) else ''

    @api.model
    def _ksef_tax_id_candidates(self, nip=None, eu_prefix=None, eu_number=None, other_id=None):
        """Normalised forms a partner's ``vat`` may take for the given identifiers of an invoice party."""
        values = set()
        if nip:
            nip = ksef_numbers.normalize_nip(nip)
            values |= {nip, 'PL' + nip}
        if eu_number:
            number = re.sub(r"[^A-Za-z0-9]", "", eu_number).upper()
            prefix = (eu_prefix or '').upper()
            if prefix and number.startswith(prefix):
                number = number[len(prefix):]
            values |= {prefix + number, number} if prefix else {number}
            if prefix == 'EL':
                values.add('GR' + number)
        if other_id:
            values.add(re.sub(r"[^A-Za-z0-9]", "", other_id).upper())
        values.discard('')
        return values

    @api.model
    def _ksef_find_by_tax_id(self, company, *, nip=None, eu_prefix=None, eu_number=None, other_id=None,
                             country_code=None):
        """The vendor of ``company`` with this tax identifier (commercial partner), or an empty recordset.

        Matching ignores spaces, dashes and the country prefix of ``vat`` (``PL 526-104-08-28`` matches NIP
        ``5261040828``). Partners of the company (or its parents) win over shared partners, companies
        over contacts, and the oldest record wins a tie. A bare foreign number (``NrID``) also needs the
        same country when the partner has one.
        """
        values = self._ksef_tax_id_candidates(nip, eu_prefix, eu_number, other_id)
        if not values:
            return self.browse()
        self.env['res.partner'].flush_model(['vat', 'company_id', 'active', 'parent_id', 'is_company', 'country_id'])
        # _VAT_NORM_SQL is a constant expression (the one the index is built on); values are parameters
        query = ("SELECT id FROM res_partner WHERE active AND %s IN %%s "  # noqa: S608
                 "ORDER BY (parent_id IS NULL) DESC, is_company DESC, id" % _VAT_NORM_SQL)
        self.env.cr.execute(query, [tuple(sorted(values))])
        ids = [row[0] for row in self.env.cr.fetchall()]
        if not ids:
            return self.browse()
        partners = self.browse(ids).filtered_domain(self._check_company_domain(company))
        if other_id and not nip and not eu_number and country_code:
            partners = partners.filtered(lambda p: not p.country_id or p.country_id.code == country_code)
        own = partners.filtered(lambda p: p.company_id)
        best = (own or partners)[:1]
        return best.commercial_partner_id

    # -------------------------------------------------------------------------
    # BUSINESS: VAT white list
    # -------------------------------------------------------------------------

    @api.model
    def _ksef_whitelist_url(self):
        """Base URL of the white-list API (system parameter ``l10n_pl_ksef.whitelist_url``; the MF one by default)."""
        return self.env['ir.config_parameter'].sudo().get_param(WHITELIST_URL_PARAM) or ksef_whitelist.PROD_URL

    @api.model
    def _ksef_whitelist_client(self):
        return ksef_whitelist.WhiteListClient(self._ksef_whitelist_url(), timeout=(5, 20))

    @api.model
    def _ksef_whitelist_error_message(self, exc):
        """Translated text for a :class:`ksef.whitelist.WhiteListError`."""
        code = getattr(exc, 'code', '')
        params = getattr(exc, 'params', {}) or {}
        if isinstance(exc, ksef_whitelist.WhiteListLimitError):
            return self.env._(
                "The VAT white list refused the request: the daily limit of requests for this server's IP "
                "address is used up. Try again tomorrow.")
        if isinstance(exc, ksef_whitelist.WhiteListUnavailable):
            return self.env._("The VAT white list is not available right now (%s). Try again later.",
                     getattr(exc, 'wl_code', None) or code)
        if isinstance(exc, ksef_whitelist.WhiteListInputError):
            return {
                'whitelist_invalid_nip': self.env._("%s is not a valid Polish NIP.", params.get('value') or ''),
                'whitelist_invalid_account': self.env._("Account number %s has a wrong check sum.",
                                                        params.get('value') or ''),
                'whitelist_not_nrb': self.env._(
                    "Only Polish account numbers (NRB, 26 digits) are in the VAT white list."),
                'whitelist_future_date': self.env._("The VAT white list cannot be asked about a future date."),
            }.get(code) or self.env._("The VAT white list rejected the %(field)s (%(code)s).",
                             field=params.get('field') or '?', code=getattr(exc, 'wl_code', None) or code)
        if isinstance(exc, ksef_whitelist.WhiteListResponseError):
            return self.env._("The VAT white list sent an answer that cannot be read.")
        return self.env._("The VAT white list answered with an error (%s).", getattr(exc, 'wl_code', None) or code)

    @api.model
    def _ksef_whitelist_search(self, nip, date=None):
        """``ksef.whitelist.SearchResult`` for ``nip`` (translated ``UserError`` on failure)."""
        try:
            with self._ksef_whitelist_client() as client:
                return client.search_nip(nip, date=date)
        except ksef_whitelist.WhiteListError as exc:
            raise UserError(self._ksef_whitelist_error_message(exc)) from None

    @api.model
    def _ksef_address_vals(self, text):
        """``{street, zip, city}`` from a Polish one-line address ("ul. Prosta 49, 00-838 Warszawa")."""
        text = ' '.join((text or '').split()).strip(' ,')
        if not text:
            return {}
        match = _ZIP_CITY_RE.match(text) or _ZIP_FIRST_RE.match(text)
        if not match:
            return {'street': text}
        vals = {'zip': match.group('zip'), 'city': match.group('city').strip()}
        street = match.group('street').strip(' ,')
        if street:
            vals['street'] = street
        return vals

    @api.model
    def _ksef_whitelist_partner_vals(self, subject):
        """Partner values from a white-list ``Subject`` (official name, address, REGON, KRS, status)."""
        vals = {
            'name': subject.name,
            'vat': 'PL%s' % subject.nip,
            'is_company': True,
            'country_id': self.env.ref('base.pl').id,
            'ksef_regon': subject.regon or False,
            'ksef_vat_status': subject.status_key if subject.status_key != 'unknown' else False,
        }
        if subject.krs:
            vals['company_registry'] = subject.krs
        vals.update(self._ksef_address_vals(subject.address))
        return vals

    def _ksef_apply_whitelist(self, result, update_identity=True):
        """Store a white-list ``SearchResult`` on the partner: status, REGON, KRS and its registered bank
        accounts (marked as on the white list with the lookup's request id). ``update_identity`` also
        overwrites name and address with the register's."""
        self.ensure_one()
        if not result.found:
            self.write({'ksef_vat_status': 'unknown', 'ksef_vat_status_date': result.date,
                        'ksef_whitelist_request_id': result.request_id or False})
            return self.env['res.partner.bank']
        vals = self._ksef_whitelist_partner_vals(result.subject)
        if not update_identity:
            vals = {k: v for k, v in vals.items() if k in ('ksef_regon', 'ksef_vat_status', 'company_registry')}
            if self.company_registry:
                vals.pop('company_registry', None)
        vals.update({'ksef_vat_status_date': result.date, 'ksef_whitelist_request_id': result.request_id or False})
        self.write(vals)
        return self._ksef_add_whitelist_accounts(result)

    def _ksef_add_whitelist_accounts(self, result):
        """Create the bank accounts the register lists for the partner (existing ones are only marked)."""
        self.ensure_one()
        banks = self.env['res.partner.bank']
        if not result.found or result.subject.status_key != 'active':
            return banks
        for number in result.subject.account_numbers:
            bank = self.env['res.partner.bank']._ksef_find_accounts(number, partner=self)[:1]
            if not bank:
                bank = self.env['res.partner.bank'].create({
                    'partner_id': self.id,
                    'acc_number': 'PL%s' % number if ksef_whitelist.normalize_account(number) else number,
                })
            bank._ksef_whitelist_store(True, result.request_id, result.date, result.nip)
            banks |= bank
        return banks

    def _ksef_whitelist_summary(self, result):
        if not result.found:
            return self.env._("NIP %(nip)s is not in the VAT white list (request ID %(request)s).",
                              nip=result.nip, request=result.request_id or "-")
        return self.env._(
            "%(name)s: %(status)s, %(count)s registered bank account(s) (request ID %(request)s).",
            name=result.subject.name,
            status=dict(self._fields['ksef_vat_status']._description_selection(self.env)).get(
                result.subject.status_key, result.subject.status_key),
            count=len(result.subject.account_numbers), request=result.request_id or "-")
