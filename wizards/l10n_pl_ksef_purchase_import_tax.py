from odoo import fields, models


class L10nPlKsefPurchaseImportTax(models.TransientModel):
    _name = 'l10n_pl_ksef.purchase_import_tax'
    _description = "Purchase Tax of a KSeF Rate"

    wizard_id = fields.Many2one(comodel_name='l10n_pl_ksef.purchase_import', required=True, ondelete='cascade')
    company_id = fields.Many2one(related='wizard_id.company_id')
    rate_code = fields.Char(string="KSeF Rate", readonly=True, help="VAT rate written on the invoice (P_12).")
    line_count = fields.Integer(string="Lines", readonly=True)
    tax_id = fields.Many2one(
        comodel_name='account.tax',
        string="Purchase Tax",
        domain="[('type_tax_use', '=', 'purchase'), ('company_id', 'parent_of', company_id)]",
        help="Tax of the bill lines with this rate (empty: no tax, e.g. supply outside Poland).",
    )
