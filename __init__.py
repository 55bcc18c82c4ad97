# The repository root is the addon. Tools that collect the Odoo-free `ksef` package (pytest) may
# import this file under another package name; only Odoo (as odoo.addons.l10n_pl_ksef) loads models.
if __name__.startswith('odoo.addons.'):
    from . import models, wizards


def _l10n_pl_ksef_post_init(env):
    """Pre-fill the KSeF rate codes of the l10n_pl taxes of companies that already use the Polish chart."""
    companies = env['res.company'].search([('chart_template', '=', 'pl')])
    env['account.chart.template']._ksef_apply_tax_rate_codes(companies)
