from odoo import api, fields, models
from odoo.exceptions import UserError, ValidationError
from odoo.tools import float_compare, float_is_zero

# FA(3) P_12 codes (TStawkaPodatku), in XSD order, with the label a Polish accountant expects.
KSEF_RATE_CODES = [
    ('23', "23% - basic rate"),
    ('22', "22% - basic rate (former)"),
    ('8', "8% - first reduced rate"),
    ('7', "7% - first reduced rate (former)"),
    ('5', "5% - second reduced rate"),
    ('4', "4% - flat rate for passenger taxis"),
    ('3', "3% - flat rate for passenger taxis (former)"),
    ('0 KR', "0 KR - 0% domestic (not intra-EU supply, not export)"),
    ('0 WDT', "0 WDT - 0% intra-Community supply of goods"),
    ('0 EX', "0 EX - 0% export of goods"),
    ('zw', "zw - exempt from VAT"),
    ('oo', "oo - domestic reverse charge (buyer accounts for VAT)"),
    ('np I', "np I - outside Poland (not art. 100(1)(4) services)"),
    ('np II', "np II - EU services, art. 100(1)(4) (buyer accounts for VAT)"),
]
NUMERIC_RATE_CODES = {'23': 23.0, '22': 22.0, '8': 8.0, '7': 7.0, '5': 5.0, '4': 4.0, '3': 3.0}

# l10n_pl chart template taxes (sale) -> P_12 code. Tags alone cannot tell some of them apart
# (K_21 covers both WDT and the triangular procedure, K_11 both services abroad kinds).
L10N_PL_TAX_RATE_CODES = {
    'vs_kraj_23': '23',
    'vs_kraj_usl_23': '23',
    'vp_leas_sale': '23',
    'vs_kraj_8': '8',
    'vs_kraj_5': '5',
    'vs_kraj_0': '0 KR',
    'vs_zwrot_podróżnych_0': '0 KR',  # art. 129 (VAT refund for travellers): 0% domestic supply
    'vs_kraj_zw': 'zw',
    'vs_kraj_zw_gold': 'zw',
    'vs_stal': 'oo',  # art. 17(1)(7): the buyer accounts for the VAT
    'vs_unia': '0 WDT',
    'vs_unia_i42': '0 WDT',
    'vs_unia_i63': '0 WDT',
    # second taxpayer of a simplified triangular procedure (art. 135-136): the supply takes place in
    # the member state of arrival, i.e. outside Poland
    'vs_unia_triangular': 'np I',
    'vs_dostu': 'np II',  # B2B services to the EU, art. 100(1)(4)
    'vs_ekspu': 'np I',  # services supplied outside the EU
    'vs_eksp_tow': '0 EX',
}

# JPK_V7 tax report tags of the invoice base line -> P_12 code (suggestion for taxes made by hand)
_TAG_RATE_CODES = [
    ('K_12', 'np II'),
    ('K_11', 'np I'),
    ('K_10', 'zw'),
    ('K_13', '0 KR'),
    ('K_14', '0 KR'),
    ('K_21', '0 WDT'),
    ('K_22', '0 EX'),
    ('K_31', 'oo'),
    ('K_15', '5'),
    ('K_17', '8'),
    ('K_19', '23'),
]


class AccountTax(models.Model):
    _inherit = 'account.tax'

    ksef_rate_code = fields.Selection(
        selection=KSEF_RATE_CODES,
        string="KSeF Rate Code",
        compute='_compute_ksef_rate_code', store=True, readonly=False, copy=True,
        help="Sale taxes: value of the VAT rate (P_12) written on the KSeF invoice (FA(3)) for lines with this tax; "
             "it also decides in which summary field (P_13_x/P_14_x) the line is totalled. Required on every sale "
             "tax of a Polish company used on invoices sent to KSeF.\n"
             "Purchase taxes (optional): the tax proposed for lines with this rate code when a purchase invoice "
             "is imported from KSeF.",
    )

    # -------------------------------------------------------------------------
    # COMPUTE
    # -------------------------------------------------------------------------

    @api.depends('amount', 'amount_type', 'type_tax_use', 'country_id', 'invoice_repartition_line_ids.tag_ids')
    def _compute_ksef_rate_code(self):
        for tax in self:
            # keep what was chosen (or set by the chart template); only suggest for unmapped taxes
            tax.ksef_rate_code = tax.ksef_rate_code or tax._ksef_suggest_rate_code()

    def _ksef_suggest_rate_code(self):
        """A P_12 code guessed from the JPK tags and the amount (``False`` when unsure)."""
        self.ensure_one()
        if self.country_code != 'PL' or self.type_tax_use != 'sale' or self.amount_type == 'group':
            return False
        tag_names = {
            (tag.name or '').lstrip('+-')
            for line in self.invoice_repartition_line_ids.filtered(lambda rl: rl.repartition_type == 'base')
            for tag in line.tag_ids
        }
        for tag, code in _TAG_RATE_CODES:
            if tag in tag_names:
                return code
        if self.amount_type == 'percent':
            for code in ('23', '8', '5', '4'):
                if float_compare(self.amount, NUMERIC_RATE_CODES[code], precision_digits=4) == 0:
                    return code
        return False

    # -------------------------------------------------------------------------
    # CONSTRAINTS
    # -------------------------------------------------------------------------

    @api.constrains('ksef_rate_code', 'amount', 'amount_type')
    def _check_ksef_rate_code(self):
        for tax in self:
            code = tax.ksef_rate_code
            if not code or tax.amount_type != 'percent' or tax.type_tax_use != 'sale':
                continue
            expected = NUMERIC_RATE_CODES.get(code, 0.0)
            if float_compare(tax.amount, expected, precision_digits=4) != 0:
                raise ValidationError(self.env._(
                    "Tax %(tax)s is %(amount)s%% but its KSeF rate code %(code)s means %(expected)s%%. "
                    "Choose the code that matches the rate.",
                    tax=tax.display_name, amount=tax.amount, code=code, expected=expected))

    # -------------------------------------------------------------------------
    # BUSINESS
    # -------------------------------------------------------------------------

    @api.model
    def _ksef_unmapped_taxes(self, companies=None):
        """Active sale taxes of Polish companies (``companies``, default: all allowed) without a rate code."""
        companies = companies if companies is not None else self.env.companies
        domain = [
            ('type_tax_use', '=', 'sale'),
            ('amount_type', '!=', 'group'),
            ('ksef_rate_code', '=', False),
            ('country_id.code', '=', 'PL'),
            ('company_id', 'parent_of', companies.ids),
        ]
        return self.with_context(active_test=True).search(domain)

    def _ksef_rate_code_for(self, record=None):
        """The P_12 code of an invoice line taxed with ``self`` (the line's ``tax_ids``).

        Group taxes are flattened; taxes other than sale taxes are ignored. Returns ``False`` when the
        line carries no sale tax (P_12 is then omitted). Raises a translated ``UserError`` naming the
        tax to map when a sale tax has no code, or naming the taxes when they give different codes.
        ``record`` (invoice or line) only makes the message more precise.
        """
        taxes = self.flatten_taxes_hierarchy().filtered(lambda t: t.type_tax_use == 'sale')
        codes = {}
        for tax in taxes:
            if not tax.ksef_rate_code:
                raise UserError(self._ksef_unmapped_message(tax, record))
            codes.setdefault(tax.ksef_rate_code, self.browse())
            codes[tax.ksef_rate_code] |= tax
        if len(codes) > 1:
            raise UserError(self.env._(
                "%(where)s: the taxes %(taxes)s give different KSeF rate codes (%(codes)s); a line can have only "
                "one VAT rate in KSeF.",
                where=self._ksef_record_label(record) or self.env._("Invoice line"),
                taxes=", ".join(taxes.mapped('display_name')), codes=", ".join(sorted(codes))))
        return next(iter(codes), False)

    def _ksef_unmapped_message(self, tax, record=None):
        """Translated text asking to map ``tax`` (``record``: the invoice or invoice line, for context)."""
        where = self._ksef_record_label(record)
        if where:
            return self.env._(
                "%(where)s: the tax \"%(tax)s\" has no KSeF rate code. Set it in Accounting > Configuration > "
                "Taxes (field KSeF Rate Code) before sending the invoice to KSeF.",
                where=where, tax=tax.display_name)
        return self.env._(
            "The tax \"%(tax)s\" has no KSeF rate code. Set it in Accounting > Configuration > Taxes "
            "(field KSeF Rate Code) before sending invoices to KSeF.",
            tax=tax.display_name)

    def _ksef_record_label(self, record):
        if not record:
            return ""
        if record._name == 'account.move.line':
            move = record.move_id
            return self.env._("Invoice %(move)s, line \"%(line)s\"",
                              move=move.name or move.display_name,
                              line=record.name or record.product_id.display_name or '')
        return self.env._("Invoice %s", record.name or record.display_name)

    def _ksef_rate_is_zero(self):
        """Whether the tax's KSeF code carries no VAT amount (0 %, zw, oo, np)."""
        self.ensure_one()
        return self.ksef_rate_code not in NUMERIC_RATE_CODES or float_is_zero(self.amount, precision_digits=4)
