from odoo.exceptions import AccessError
from odoo.modules.neutralize import get_neutralization_queries
from odoo.tests import new_test_user, tagged

from odoo.addons.l10n_pl_ksef.tests.common import TestKsefCommon

SECRET_COMPANY_FIELDS = ('ksef_token', 'ksef_auth_certificate_id', 'ksef_offline_certificate_id')
SECRET_SETTINGS_FIELDS = (
    'ksef_token_input', 'ksef_auth_cert_file', 'ksef_auth_key_file', 'ksef_auth_password',
    'ksef_offline_cert_file', 'ksef_offline_key_file', 'ksef_offline_password',
    'ksef_auth_certificate_id', 'ksef_offline_certificate_id',
)


@tagged('post_install_l10n', 'post_install', '-at_install')
class TestKsefSecurity(TestKsefCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        company = cls.ksef_company
        cls.user_viewer = new_test_user(
            cls.env, login='ksef_viewer', company_id=company.id, company_ids=company.ids,
            groups='base.group_user,l10n_pl_ksef.group_ksef_viewer')
        cls.user_sender = new_test_user(
            cls.env, login='ksef_sender', company_id=company.id, company_ids=company.ids,
            groups='base.group_user,account.group_account_manager')
        cls.user_manager = new_test_user(
            cls.env, login='ksef_manager', company_id=company.id, company_ids=company.ids,
            groups='base.group_user,account.group_account_manager,l10n_pl_ksef.group_ksef_manager')
        cls.user_admin = new_test_user(
            cls.env, login='ksef_admin', company_id=company.id, company_ids=company.ids,
            groups='base.group_user,base.group_system,account.group_account_manager')
        cls.user_plain = new_test_user(
            cls.env, login='ksef_nobody', company_id=company.id, company_ids=company.ids,
            groups='base.group_user')

    def test_group_chain(self):
        viewer = self.env.ref('l10n_pl_ksef.group_ksef_viewer')
        sender = self.env.ref('l10n_pl_ksef.group_ksef_sender')
        manager = self.env.ref('l10n_pl_ksef.group_ksef_manager')
        self.assertIn(viewer, sender.implied_ids)
        self.assertIn(sender, manager.implied_ids)
        self.assertEqual(viewer.category_id, sender.category_id)
        self.assertEqual(viewer.category_id.parent_id, self.env.ref('base.module_category_accounting'))
        self.assertIn(manager, self.env.ref('base.group_system').implied_ids)
        self.assertIn(sender, self.env.ref('account.group_account_manager').implied_ids)
        self.assertIn(viewer, self.env.ref('account.group_account_invoice').implied_ids)
        # the implications reach the users
        self.assertTrue(self.user_sender.has_group('l10n_pl_ksef.group_ksef_sender'))
        self.assertFalse(self.user_sender.has_group('l10n_pl_ksef.group_ksef_manager'))
        self.assertTrue(self.user_manager.has_group('l10n_pl_ksef.group_ksef_viewer'))
        self.assertFalse(self.user_plain.has_group('l10n_pl_ksef.group_ksef_viewer'))

    def test_non_manager_cannot_read_secrets(self):
        self.ksef_configure_certificate(self.ksef_company, usage='offline')
        self.ksef_company.action_ksef_authorize()
        for user in (self.user_viewer, self.user_sender):
            company = self.ksef_company.with_user(user)
            for fname in SECRET_COMPANY_FIELDS:
                with self.assertRaises(AccessError, msg="%s read %s" % (user.login, fname)):
                    company.read([fname])
            with self.assertRaises(AccessError):
                self.env['l10n_pl_ksef.auth_token'].with_user(user).search([])
            with self.assertRaises(AccessError):
                self.env['certificate.certificate'].with_user(user).search([('scope', '=', 'ksef_offline')])
            # what they may see
            values = company.read(['ksef_auth_state', 'ksef_token_set', 'ksef_token_hint'])[0]
            self.assertEqual(values['ksef_auth_state'], 'authorized')
            self.assertTrue(values['ksef_token_set'])
            self.assertNotIn(self.ksef_token, repr(values))

    def test_secret_fields_are_manager_only(self):
        # res.company: the secrets are stripped from what non-managers can see
        for user in (self.user_viewer, self.user_sender):
            fields = self.env['res.company'].with_user(user).fields_get()
            for fname in SECRET_COMPANY_FIELDS:
                self.assertNotIn(fname, fields, "%s sees %s" % (user.login, fname))
            self.assertIn('ksef_auth_state', fields)
        manager_fields = self.env['res.company'].with_user(self.user_manager).fields_get()
        for fname in SECRET_COMPANY_FIELDS:
            self.assertIn(fname, manager_fields)
        # settings: every secret input is restricted to KSeF managers (the page itself needs
        # base.group_system, which implies the manager group)
        Settings = self.env['res.config.settings']
        for fname in SECRET_SETTINGS_FIELDS:
            self.assertEqual(Settings._fields[fname].groups, 'l10n_pl_ksef.group_ksef_manager', fname)
        arch = Settings.with_user(self.user_admin).get_views([(False, 'form')])['views']['form']['arch']
        self.assertIn('ksef_token_input', arch)
        self.assertIn('password="True"', arch.replace("password='True'", 'password="True"'))

    def test_authorize_requires_manager(self):
        for user in (self.user_viewer, self.user_sender):
            with self.assertRaises(AccessError):
                self.env['res.company'].with_user(user).ksef_systray_authorize()
            with self.assertRaises(AccessError):
                self.ksef_company.with_user(user).action_ksef_authorize()
        data = self.env['res.company'].with_user(self.user_manager).ksef_systray_authorize()
        self.assertEqual(data['state'], 'authorized')
        self.assertEqual(self.ksef_company.ksef_auth_state, 'authorized')

    def test_status_service_requires_ksef_user(self):
        with self.assertRaises(AccessError):
            self.ksef_company.with_user(self.user_plain).action_ksef_test_status_service()
        action = self.ksef_company.with_user(self.user_viewer).action_ksef_test_status_service()
        self.assertEqual(action['params']['type'], 'success')

    def test_systray_visibility(self):
        self.assertFalse(self.env['res.company'].with_user(self.user_plain).ksef_systray_data()['visible'])
        data = self.env['res.company'].with_user(self.user_viewer).ksef_systray_data()
        self.assertTrue(data['visible'])
        self.assertFalse(data['can_authorize'])
        self.assertTrue(self.env['res.company'].with_user(self.user_manager).ksef_systray_data()['can_authorize'])

    def test_neutralize_clears_secrets(self):
        company = self.ksef_company
        self.ksef_configure_certificate(company, usage='offline')
        auth_certificate = self.ksef_configure_certificate(company)
        company.action_ksef_authorize()
        company.sudo().write({'ksef_environment': 'prod', 'ksef_token': 'production-token-secret'})
        self.assertTrue(self.env['l10n_pl_ksef.auth_token'].sudo().search([('company_id', '=', company.id)]))
        key = auth_certificate.private_key_id
        queries = list(get_neutralization_queries(['l10n_pl_ksef']))
        self.assertEqual(len(queries), 1)
        self.env.flush_all()
        self.env.cr.execute(queries[0])
        self.env.invalidate_all()
        company = company.sudo()
        self.assertEqual(company.ksef_environment, 'test')
        self.assertFalse(company.ksef_token)
        self.assertFalse(company.ksef_auth_certificate_id)
        self.assertFalse(company.ksef_offline_certificate_id)
        self.assertEqual(company.ksef_auth_state, 'not_configured')
        self.assertFalse(self.env['l10n_pl_ksef.auth_token'].sudo().search([]))
        self.assertFalse(auth_certificate.active)
        self.assertFalse(key.active)
        self.assertFalse(key.with_context(bin_size=False).pem_key)
        self.assertFalse(self.env['certificate.certificate'].sudo().search(
            [('scope', 'in', ('ksef_auth', 'ksef_offline'))]))

    def test_multi_company_rules(self):
        other = self.setup_other_company(name="Other PL", vat='PL5260250274')['company']
        store = self.env['l10n_pl_ksef.auth_token'].sudo()
        store._ksef_save(self.env.cr, self.ksef_company.id, 'fp1', {'accessToken': {'token': 'a'}})
        store._ksef_save(self.env.cr, other.id, 'fp2', {'accessToken': {'token': 'b'}})
        rows = self.env['l10n_pl_ksef.auth_token'].with_user(self.user_manager).search([])
        self.assertEqual(rows.company_id, self.ksef_company)
        self.user_manager.company_ids += other
        rows = self.env['l10n_pl_ksef.auth_token'].with_user(self.user_manager).with_context(
            allowed_company_ids=[self.ksef_company.id, other.id]).search([])
        self.assertEqual(rows.company_id, self.ksef_company | other)
        rule = self.env.ref('l10n_pl_ksef.l10n_pl_ksef_auth_token_rule_company')
        self.assertTrue(rule.active)
