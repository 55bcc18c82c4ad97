from odoo import models

from odoo.addons.account.models.chart_template import template
from odoo.addons.l10n_pl_ksef.models.account_tax import L10N_PL_TAX_RATE_CODES


class AccountChartTemplate(models.AbstractModel):
    _inherit = 'account.chart.template'

    @template('pl', 'account.tax')
    def _get_pl_ksef_account_tax(self):
        """KSeF rate codes of the l10n_pl sale taxes, merged into the Polish chart template."""
        return {xmlid: {'ksef_rate_code': code} for xmlid, code in L10N_PL_TAX_RATE_CODES.items()}

    def _ksef_apply_tax_rate_codes(self, companies):
        """Set the rate codes on the l10n_pl taxes of already installed companies (module install)."""
        for company in companies.sorted('parent_path'):
            chart = self.with_company(company)
            for xmlid, code in L10N_PL_TAX_RATE_CODES.items():
                tax = chart.ref(xmlid, raise_if_not_found=False)
                if tax and tax.company_id == company and tax.ksef_rate_code != code:
                    tax.ksef_rate_code = code
