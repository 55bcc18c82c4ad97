from odoo.tests import TransactionCase, tagged


@tagged('post_install', '-at_install')
class TestInstall(TransactionCase):

    def test_module_installed_and_core_importable(self):
        module = self.env['ir.module.module'].search([('name', '=', 'l10n_pl_ksef')])
        self.assertEqual(module.state, 'installed')
        from odoo.addons.l10n_pl_ksef.ksef import numbers
        self.assertTrue(numbers.is_valid_ksef_number('5842816354-20260319-33C61F800000-AD'))
