"""Import wizard of a KSeF purchase invoice, in steps (like the iCargo import):

1. ``checks``  — supported type, the company is the buyer, not imported yet, vendor known by NIP, bank account
   known, currency, taxes, corrected bill (KOR);
2. ``vendor``  — only when the vendor is missing: create it pre-filled from the invoice (name, NIP, address,
   country), optionally enriched from the VAT white list (official name, address, REGON, VAT status,
   registered bank accounts), or pick an existing partner;
3. ``bank``    — only when the invoice's bank account is not known for the vendor: add it, after checking it
   in the VAT white list (the answer and its request id are kept on the bank account);
4. ``options`` — journal, bill or credit note, how lines are built, default product/account, tax per rate;
   then the draft bill opens in the standard vendor bill form.
"""
from markupsafe import Markup

from odoo import api, fields, models
from odoo.exceptions import UserError

from odoo.addons.l10n_pl_ksef.ksef import whitelist as ksef_whitelist
from odoo.addons.l10n_pl_ksef.models.l10n_pl_ksef_inbox import CORRECTION_TYPES

STEPS = [('checks', "Checks"), ('vendor', "Vendor"), ('bank', "Bank Account"), ('options', "Bill")]
CHECK_ICONS = {
    'ok': ('fa-check-circle', 'text-success'),
    'info': ('fa-info-circle', 'text-info'),
    'warning': ('fa-exclamation-triangle', 'text-warning'),
    'fix': ('fa-wrench', 'text-warning'),
    'blocking': ('fa-times-circle', 'text-danger'),
}


class L10nPlKsefPurchaseImport(models.TransientModel):
    _name = 'l10n_pl_ksef.purchase_import'
    _description = "Import a KSeF Purchase Invoice"
    _check_company_auto = True

    # -------------------------------------------------------------------------
    # FIELDS
    # -------------------------------------------------------------------------

    inbox_id = fields.Many2one(comodel_name='l10n_pl_ksef.inbox', string="KSeF Invoice", required=True,
                               readonly=True, ondelete='cascade')
    company_id = fields.Many2one(related='inbox_id.company_id')
    currency_id = fields.Many2one(related='inbox_id.currency_id')
    step = fields.Selection(selection=STEPS, default='checks', required=True)
    checks_html = fields.Html(string="Checks", readonly=True, sanitize=False)
    blocking = fields.Boolean(string="Cannot Be Imported", readonly=True)
    needs_vendor = fields.Boolean(readonly=True)
    needs_bank = fields.Boolean(readonly=True)
    partner_id = fields.Many2one(
        comodel_name='res.partner',
        string="Vendor",
        check_company=True,
        help="Vendor of the bill. When the invoice's vendor is not found by its tax number, pick an existing "
             "partner (its tax number is then completed) or create a new one.",
    )
    # --- vendor creation (pre-filled from the invoice) ---
    vendor_name = fields.Char(string="Name")
    vendor_vat = fields.Char(string="Tax ID")
    vendor_street = fields.Char(string="Street")
    vendor_zip = fields.Char(string="ZIP")
    vendor_city = fields.Char(string="City")
    vendor_country_id = fields.Many2one(comodel_name='res.country', string="Country")
    vendor_email = fields.Char(string="Email")
    vendor_phone = fields.Char(string="Phone")
    vendor_regon = fields.Char(string="REGON")
    vendor_company_registry = fields.Char(string="KRS")
    vendor_vat_status = fields.Selection(selection=[
        ('active', "Active VAT taxpayer"), ('exempt', "VAT exempt"), ('not_registered', "Not registered for VAT"),
        ('unknown', "Not in the register")], string="VAT Status")
    vendor_whitelist_request_id = fields.Char(string="Lookup Request ID", readonly=True)
    vendor_whitelist_date = fields.Date(string="White List Date", readonly=True)
    vendor_whitelist_accounts = fields.Text(string="Registered Bank Accounts", readonly=True)
    vendor_whitelist_message = fields.Char(readonly=True)
    vendor_can_whitelist = fields.Boolean(compute='_compute_vendor_can_whitelist')
    # --- bank account ---
    bank_acc_number = fields.Char(string="Account Number", readonly=True)
    bank_name = fields.Char(string="Bank", readonly=True)
    bank_swift = fields.Char(string="SWIFT", readonly=True)
    bank_whitelist_state = fields.Selection(selection=[
        ('not_checked', "Not checked"), ('assigned', "On the white list"), ('not_assigned', "Not on the white list"),
        ('not_applicable', "Cannot be checked")], string="VAT White List", default='not_checked', readonly=True)
    bank_whitelist_request_id = fields.Char(string="Account Check Request ID", readonly=True)
    bank_whitelist_date = fields.Date(string="Checked For", readonly=True)
    bank_whitelist_message = fields.Char(readonly=True)
    bank_other_partner_id = fields.Many2one(comodel_name='res.partner', string="Account Registered For",
                                            readonly=True)
    partner_bank_id = fields.Many2one(comodel_name='res.partner.bank', string="Bank Account For Payment",
                                      check_company=True, domain="[('partner_id', '=', partner_id)]")
    # --- bill options ---
    journal_id = fields.Many2one(comodel_name='account.journal', check_company=True,
                                 domain="[('type', '=', 'purchase')]")
    move_type = fields.Selection(selection=[('in_invoice', "Vendor Bill"), ('in_refund', "Vendor Credit Note")],
                                 string="Create")
    line_mode = fields.Selection(selection=[('lines', "One line per invoice line"),
                                            ('per_rate', "One line per VAT rate")], string="Bill Lines",
                                 default='lines')
    default_product_id = fields.Many2one(comodel_name='product.product',
                                         check_company=True,
                                         help="Product of lines that match no vendor product.")
    default_account_id = fields.Many2one(
        comodel_name='account.account', string="Default Account (Category)", check_company=True,
        domain="[('account_type', 'not in', ('asset_receivable', 'liability_payable', 'asset_cash', "
               "'liability_credit_card', 'off_balance'))]",
        help="Expense category of lines without a matched product.")
    tax_line_ids = fields.One2many(comodel_name='l10n_pl_ksef.purchase_import_tax', inverse_name='wizard_id',
                                   string="Taxes")
    is_correction = fields.Boolean(readonly=True)
    original_move_id = fields.Many2one(comodel_name='account.move', string="Corrected Bill", readonly=True)
    summary = fields.Char(string="Invoice", readonly=True)

    # -------------------------------------------------------------------------
    # COMPUTE
    # -------------------------------------------------------------------------

    @api.depends('vendor_vat', 'vendor_country_id')
    def _compute_vendor_can_whitelist(self):
        for wizard in self:
            wizard.vendor_can_whitelist = bool(self.env['res.partner']._ksef_polish_nip(
                wizard.vendor_vat, wizard.vendor_country_id.code))

    # -------------------------------------------------------------------------
    # ACTIONS
    # -------------------------------------------------------------------------

    @api.model
    def _ksef_open_for(self, inbox):
        """Create the wizard of ``inbox`` (checks done) and open it."""
        inbox.ensure_one()
        wizard = self.create({'inbox_id': inbox.id})
        wizard._ksef_run_checks(prefill=True)
        return wizard._reopen()

    def _reopen(self):
        self.ensure_one()
        titles = dict(self._fields['step']._description_selection(self.env))  # translated step names
        return {
            'type': 'ir.actions.act_window',
            'name': self.env._("Import KSeF invoice: %s", titles[self.step]),
            'res_model': self._name,
            'res_id': self.id,
            'view_mode': 'form',
            'views': [(False, 'form')],
            'target': 'new',
            'context': dict(self.env.context, dialog_size='large'),
        }

    def action_next(self):
        """From the checks: go to the first step that still needs the user."""
        self.ensure_one()
        self._ksef_run_checks()
        if self.blocking:
            raise UserError(self.env._("This invoice cannot be imported: see the checks."))
        if self.needs_vendor:
            self.step = 'vendor'
        elif self.needs_bank:
            self.step = 'bank'
        else:
            self._ksef_prepare_options()
            self.step = 'options'
        return self._reopen()

    def action_back(self):
        self.ensure_one()
        self._ksef_run_checks()
        self.step = 'checks'
        return self._reopen()

    def action_vendor_whitelist(self):
        """Fill the vendor from the VAT white list (official name, address, REGON, VAT status, accounts)."""
        self.ensure_one()
        Partner = self.env['res.partner']
        nip = Partner._ksef_polish_nip(self.vendor_vat, self.vendor_country_id.code)
        if not nip:
            raise UserError(self.env._("Only vendors with a Polish NIP are in the VAT white list."))
        result = Partner._ksef_whitelist_search(nip)
        vals = {'vendor_whitelist_request_id': result.request_id, 'vendor_whitelist_date': result.date}
        if result.found:
            pvals = Partner._ksef_whitelist_partner_vals(result.subject)
            vals.update({
                'vendor_name': pvals['name'], 'vendor_street': pvals.get('street') or self.vendor_street,
                'vendor_zip': pvals.get('zip') or self.vendor_zip, 'vendor_city': pvals.get('city') or self.vendor_city,
                'vendor_country_id': pvals['country_id'], 'vendor_regon': result.subject.regon or False,
                'vendor_company_registry': result.subject.krs or False,
                'vendor_vat_status': result.subject.status_key,
                'vendor_whitelist_accounts': "\n".join(result.subject.account_numbers) or False,
                'vendor_whitelist_message': Partner._ksef_whitelist_summary(result),
            })
        else:
            vals.update({'vendor_vat_status': 'unknown',
                         'vendor_whitelist_message': Partner._ksef_whitelist_summary(result)})
        self.write(vals)
        return self._reopen()

    def action_create_vendor(self):
        """Create the vendor from the (possibly white-list enriched) fields, with its registered accounts."""
        self.ensure_one()
        if not self.vendor_name:
            raise UserError(self.env._("The vendor needs a name."))
        self._ksef_check_may_create('res.partner')
        Partner = self.env['res.partner']
        vals = {
            'name': self.vendor_name, 'vat': self.vendor_vat or False, 'is_company': True,
            'street': self.vendor_street or False, 'zip': self.vendor_zip or False, 'city': self.vendor_city or False,
            'country_id': self.vendor_country_id.id or False, 'email': self.vendor_email or False,
            'phone': self.vendor_phone or False, 'ksef_regon': self.vendor_regon or False,
            'supplier_rank': 1,
        }
        if self.vendor_company_registry:
            vals['company_registry'] = self.vendor_company_registry
        if self.vendor_vat_status:
            vals.update(ksef_vat_status=self.vendor_vat_status, ksef_vat_status_date=self.vendor_whitelist_date,
                        ksef_whitelist_request_id=self.vendor_whitelist_request_id)
        partner = Partner.create(vals)
        accounts = [a for a in (self.vendor_whitelist_accounts or '').split() if a]
        if accounts and self.vendor_vat_status == 'active':
            for number in accounts:
                bank = self.env['res.partner.bank'].create({'partner_id': partner.id, 'acc_number': 'PL%s' % number})
                bank._ksef_whitelist_store(True, self.vendor_whitelist_request_id, self.vendor_whitelist_date,
                                           Partner._ksef_polish_nip(partner.vat))
        partner.message_post(body=self.env._("Created from KSeF invoice %s.", self.inbox_id.ksef_number))
        self.partner_id = partner
        return self.action_next()

    def _ksef_check_may_create(self, model):
        """A clear message instead of Odoo's access error when the user may not create vendors/accounts."""
        if not self.env[model].has_access('create'):
            what = (self.env._("vendors") if model == 'res.partner' else self.env._("vendor bank accounts"))
            raise UserError(self.env._(
                "You are not allowed to create %(what)s (Odoo's \"Contact Creation\" permission). Ask an "
                "administrator to create it or to give you that permission, or choose an existing one.", what=what))

    def action_use_vendor(self):
        """Use the chosen existing partner (its missing tax number is completed from the invoice)."""
        self.ensure_one()
        if not self.partner_id:
            raise UserError(self.env._("Choose a vendor first."))
        partner = self.partner_id.commercial_partner_id
        if not partner.vat and self.vendor_vat:
            partner.vat = self.vendor_vat
        self.partner_id = partner
        return self.action_next()

    def action_bank_whitelist(self):
        """Check the invoice's account against the vendor's NIP in the VAT white list."""
        self.ensure_one()
        Partner = self.env['res.partner']
        partner = self.partner_id.commercial_partner_id
        nip = Partner._ksef_polish_nip(partner.vat, partner.country_id.code)
        nrb = ksef_whitelist.normalize_account(self.bank_acc_number)
        if not nip or not nrb:
            self.write({'bank_whitelist_state': 'not_applicable', 'bank_whitelist_message': self.env._(
                "Only Polish accounts of vendors with a Polish NIP can be checked in the VAT white list.")})
            return self._reopen()
        try:
            with Partner._ksef_whitelist_client() as client:
                answer = client.check_account(nip, nrb)
        except ksef_whitelist.WhiteListError as exc:
            raise UserError(Partner._ksef_whitelist_error_message(exc)) from None
        self.write({
            'bank_whitelist_state': 'assigned' if answer.assigned else 'not_assigned',
            'bank_whitelist_request_id': answer.request_id, 'bank_whitelist_date': answer.date,
            'bank_whitelist_message': self.env._(
                "The account is on the VAT white list for NIP %(nip)s (request ID %(request)s).", nip=nip,
                request=answer.request_id) if answer.assigned else self.env._(
                "The account is NOT on the VAT white list for NIP %(nip)s (request ID %(request)s): confirm it with "
                "the vendor before paying.", nip=nip, request=answer.request_id),
        })
        return self._reopen()

    def action_add_bank(self):
        """Add the invoice's account to the vendor (with the white-list answer, if checked)."""
        self.ensure_one()
        self._ksef_check_may_create('res.partner.bank')
        partner = self.partner_id.commercial_partner_id
        number = self.bank_acc_number
        nrb = ksef_whitelist.normalize_account(number)
        bank = self.env['res.partner.bank'].create({
            'partner_id': partner.id,
            'acc_number': 'PL%s' % nrb if nrb else number,
        })
        if self.bank_whitelist_state in ('assigned', 'not_assigned'):
            bank._ksef_whitelist_store(self.bank_whitelist_state == 'assigned', self.bank_whitelist_request_id,
                                       self.bank_whitelist_date, self.env['res.partner']._ksef_polish_nip(partner.vat))
        elif self.bank_whitelist_state == 'not_applicable':
            bank.ksef_whitelist_state = 'not_applicable'
        self.partner_bank_id = bank
        return self.action_next()

    def action_skip_bank(self):
        """Continue without adding the account (the bill gets no bank account)."""
        self.ensure_one()
        self._ksef_prepare_options()
        self.step = 'options'
        return self._reopen()

    def action_create_bill(self):
        """Create the draft bill/credit note and open it in the vendor bill form."""
        self.ensure_one()
        if not self.partner_id:
            raise UserError(self.env._("Choose or create the vendor first."))
        tax_map = {line.rate_code: line.tax_id for line in self.tax_line_ids}
        move = self.inbox_id._ksef_create_bill(
            self.partner_id,
            journal=self.journal_id,
            move_type=self.move_type,
            line_mode=self.line_mode,
            tax_map=tax_map,
            default_product=self.default_product_id,
            default_account=self.default_account_id,
            partner_bank=self.partner_bank_id,
        )
        action = move._get_records_action(name=self.env._("Vendor Bill"))
        action['target'] = 'main'
        return action

    # -------------------------------------------------------------------------
    # BUSINESS
    # -------------------------------------------------------------------------

    def _ksef_run_checks(self, prefill=False):
        """Run the inbox record's checks and store their rendering and outcome."""
        self.ensure_one()
        inbox = self.inbox_id
        checks, found = inbox._ksef_import_checks(partner=self.partner_id.commercial_partner_id or None)
        partner = self.partner_id or found['partner']
        levels = {c['key']: c['level'] for c in checks}
        vals = {
            'checks_html': self._ksef_checks_html(checks),
            'blocking': any(c['level'] == 'blocking' for c in checks),
            'needs_vendor': not partner,
            'needs_bank': levels.get('bank') == 'fix' and bool(partner),
            'partner_id': partner.id,
        }
        if found['bank'] and not self.partner_bank_id:
            vals['partner_bank_id'] = found['bank'].id
        invoice = found['invoice']
        if invoice is not None and prefill:
            vals.update(self._ksef_prefill_vals(invoice, partner))
        self.write(vals)

    def _ksef_checks_html(self, checks):
        rows = Markup()
        for check in checks:
            icon, color = CHECK_ICONS[check['level']]
            rows += Markup('<li class="list-group-item d-flex align-items-start gap-2">'
                           '<i class="fa fa-fw %s %s mt-1" role="img"></i><span>%s</span></li>') % (
                icon, color, check['message'])
        return Markup('<ul class="list-group o_ksef_import_checks">%s</ul>') % rows

    def _ksef_prefill_vals(self, invoice, partner):
        inbox = self.inbox_id
        Partner = self.env['res.partner']
        identity = inbox._ksef_seller_identity(invoice)
        podmiot = invoice.podmiot1
        address = podmiot and podmiot.adres
        addr_text = ", ".join(x for x in ((address and address.adres_l1), (address and address.adres_l2)) if x)
        addr = Partner._ksef_address_vals(addr_text) if (identity['country_code'] or 'PL') == 'PL' else {
            'street': (address and address.adres_l1) or False, 'city': (address and address.adres_l2) or False}
        country = self.env['res.country'].search([('code', '=', identity['country_code'] or 'PL')], limit=1)
        if identity['nip']:
            vat = 'PL%s' % identity['nip']
        elif identity['eu_number']:
            prefix = identity['eu_prefix'] or ''
            vat = identity['eu_number'] if identity['eu_number'].startswith(prefix) else prefix + identity['eu_number']
        else:
            vat = identity['other_id'] or False
        contacts = (podmiot and podmiot.dane_kontaktowe) or []
        vals = {
            'vendor_name': identity['name'], 'vendor_vat': vat, 'vendor_street': addr.get('street') or False,
            'vendor_zip': addr.get('zip') or False, 'vendor_city': addr.get('city') or False,
            'vendor_country_id': country.id or False,
            'vendor_email': next((c.email for c in contacts if c.email), False),
            'vendor_phone': next((c.telefon for c in contacts if c.telefon), False),
            'summary': "%s %s: %s %s" % (invoice.fa.rodzaj_faktury, invoice.fa.p_2 or '', invoice.fa.p_15 or '',
                                          invoice.fa.kod_waluty or ''),
            'is_correction': invoice.fa.rodzaj_faktury in CORRECTION_TYPES,
        }
        accounts = inbox._ksef_invoice_accounts(invoice)
        if accounts:
            vals.update(bank_acc_number=accounts[0].nr_rb, bank_name=accounts[0].nazwa_banku or False,
                        bank_swift=accounts[0].swift or False)
            others = self.env['res.partner.bank']._ksef_find_accounts(accounts[0].nr_rb, company=inbox.company_id)
            if others and (not partner or others[0].partner_id.commercial_partner_id != partner):
                vals['bank_other_partner_id'] = others[0].partner_id.id
        return vals

    def _ksef_prepare_options(self):
        """Defaults of the last step: company settings, bill or credit note, tax per rate code."""
        self.ensure_one()
        inbox = self.inbox_id
        invoice = inbox._ksef_invoice()
        defaults = self.env['l10n_pl_ksef.inbox_sync']._ksef_import_defaults(inbox.company_id)
        vals = {}
        if not self.journal_id:
            vals['journal_id'] = (defaults.get('journal') or self.env['account.journal'].search([
                *self.env['account.journal']._check_company_domain(inbox.company_id),
                ('type', '=', 'purchase')], limit=1)).id
        if not self.move_type:
            total = invoice.fa.p_15 or 0
            vals['move_type'] = 'in_refund' if invoice.fa.rodzaj_faktury in CORRECTION_TYPES and total < 0 \
                else 'in_invoice'
        if not self.tax_line_ids:
            vals['line_mode'] = defaults.get('line_mode', 'lines')
            vals['default_product_id'] = defaults.get('default_product', self.env['product.product']).id
            vals['default_account_id'] = defaults.get('default_account', self.env['account.account']).id
            counts = {}
            for line in invoice.fa.fa_wiersz:
                if line.p_12:
                    counts[line.p_12] = counts.get(line.p_12, 0) + 1
            vals['tax_line_ids'] = [fields.Command.create({
                'rate_code': code, 'tax_id': tax.id, 'line_count': counts.get(code, 0)})
                for code, tax in inbox._ksef_default_tax_map(invoice).items()]
        originals = inbox._ksef_find_original_bills(invoice)
        vals['original_move_id'] = originals[:1].id
        self.write(vals)
