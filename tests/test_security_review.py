"""Security review of the KSeF integration, proven with real users.

Users (company A = the KSeF test company, company B = a second Polish company):

* ``accountant``: accounting auditor (``account.group_account_readonly``) without any KSeF group (billing
  users get "KSeF: view documents" implied, so the auditor is the accountant without KSeF);
* ``viewer``: billing user (``account.group_account_invoice`` implies "KSeF: view documents");
* ``sender``: billing user with "KSeF: send documents";
* ``manager``: billing user with "KSeF: manage settings" (not a settings administrator);
* ``admin``: settings administrator (``base.group_system`` implies the KSeF manager);
* ``erp``: "Administration: Access Rights" (may write companies) without any KSeF group;
* ``other``: accounting administrator and KSeF manager of company B only.

Checked through the ORM (``with_user``), through real HTTP JSON-RPC (``/web/dataset/call_kw``) and through
the views (``get_views``); secrets are checked not to leak into logs, chatter, exports or error messages.
"""
import base64
import contextlib
import datetime
import io
import json
import logging
import random
import time
import zipfile

from lxml import etree

from odoo import Command, fields, http
from odoo.exceptions import AccessError, UserError
from odoo.modules.neutralize import get_neutralization_queries
from odoo.tests import HttpCase, new_test_user, tagged

from odoo.addons.l10n_pl_ksef.ksef import crypto as ksef_crypto
from odoo.addons.l10n_pl_ksef.tests.common import random_nip
from odoo.addons.l10n_pl_ksef.tests.ksef_send_common import KsefSendCommon

VIEWER = 'l10n_pl_ksef.group_ksef_viewer'
SENDER = 'l10n_pl_ksef.group_ksef_sender'
MANAGER = 'l10n_pl_ksef.group_ksef_manager'

# secret fields per model: who may read them
COMPANY_SECRETS = ('ksef_token', 'ksef_auth_certificate_id', 'ksef_offline_certificate_id')
AUTH_TOKEN_SECRETS = ('tokens', 'credential_fingerprint')
SESSION_SECRETS = ('key_b64', 'iv_b64')                      # base.group_system
SYNC_SECRETS = ('cursor', 'cursor_third_party')              # base.group_system
SETTINGS_SECRETS = (
    'ksef_token_input', 'ksef_auth_cert_file', 'ksef_auth_key_file', 'ksef_auth_password',
    'ksef_offline_cert_file', 'ksef_offline_key_file', 'ksef_offline_password',
    'ksef_auth_certificate_id', 'ksef_offline_certificate_id',
)
# KSeF settings stored on the company (writable only by KSeF managers)
COMPANY_SETTINGS = {
    'ksef_environment': 'prod',
    'ksef_sandbox_url': 'http://127.0.0.1:1/evil',
    'ksef_auth_method': 'certificate',
    'ksef_batch_threshold': 7,
    'ksef_send_on_post': True,
}
SEND_BUTTONS = ('action_ksef_send', 'action_ksef_send_offline', 'action_ksef_retry', 'action_ksef_cancel_queue')
INBOX_BUTTONS = ('action_ksef_import', 'action_ksef_mark_processed', 'action_ksef_import_ready')


class KsefSecurityCommon(KsefSendCommon):
    """Users of every role, a second Polish company and downloaded purchase invoices of company A."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        company = cls.ksef_company
        cls.company_b = cls.setup_other_company(name="Druga Firma Sp. z o.o.")['company']
        cls.company_b.write({'vat': 'PL%s' % random_nip(), 'country_id': cls.env.ref('base.pl').id})
        cls.ksef_configure_token(cls.company_b)

        def user(login, groups, companies=company):
            return new_test_user(cls.env, login=login, company_id=companies[0].id, company_ids=companies.ids,
                                 groups='base.group_user,base.group_allow_export,' + groups)

        cls.user_accountant = user('sec_accountant', 'account.group_account_readonly')
        cls.user_viewer = user('sec_viewer', 'account.group_account_invoice')
        cls.user_sender = user('sec_sender', 'account.group_account_invoice,' + SENDER)
        cls.user_manager = user('sec_manager', 'account.group_account_invoice,' + MANAGER)
        cls.user_admin = user('sec_admin', 'account.group_account_manager,base.group_system')
        cls.user_erp = user('sec_erp', 'account.group_account_readonly,base.group_erp_manager')
        cls.user_other = user('sec_other', 'account.group_account_manager,' + MANAGER, companies=cls.company_b)
        cls.no_ksef_users = (cls.user_accountant, cls.user_erp)
        cls.non_senders = (cls.user_accountant, cls.user_viewer, cls.user_erp)
        cls.non_managers = (cls.user_accountant, cls.user_viewer, cls.user_sender, cls.user_erp)

        # purchase invoices of company A in its KSeF inbox, and one of company B
        cls.ksef_sandbox.set_config(hwm_lag=0.0)
        cls.sync = cls.env['l10n_pl_ksef.inbox_sync']._ksef_for_companies(company)
        cls.sync.start_date = fields.Datetime.now() - datetime.timedelta(days=1)
        cls.ksef_sandbox.seed(cls.ksef_nip, count=3, seed=random.randrange(1 << 30))
        time.sleep(0.2)
        client = company._ksef_get_client(rate_limiter=False)
        try:
            cls.sync._ksef_download('buyer', client=client)
        finally:
            client.close()
        cls.inbox_a = cls.env['l10n_pl_ksef.inbox'].search([('company_id', '=', company.id)])
        assert len(cls.inbox_a) == 3, "three purchase invoices downloaded for company A"
        cls.inbox_b = cls.env['l10n_pl_ksef.inbox'].sudo().create({
            'company_id': cls.company_b.id, 'seller_name': "Sprzedawca B",
            'ksef_number': '%s-20260302-0123456789AB-01' % cls.company_b.ksef_context_nip,
        })
        cls.sync_b = cls.env['l10n_pl_ksef.inbox_sync'].sudo()._ksef_for_companies(cls.company_b)

    def accepted_invoice(self):
        """A customer invoice of company A accepted by KSeF (XML, UPO, history, session)."""
        move = self.ksef_invoice()
        self.ksef_send(move)
        self.assertKsefAccepted(move)
        self.assertTrue(move.ksef_xml_id and move.ksef_upo_id and move.ksef_session_id)
        return move

    def assertRefused(self, func, *args, msg=None, **kwargs):
        """``func`` raises AccessError or UserError (AccessError is a UserError) and changes nothing."""
        with self.assertRaises(UserError, msg=msg), self.env.cr.savepoint():
            func(*args, **kwargs)


@tagged('post_install_l10n', 'post_install', '-at_install')
class TestKsefSecurityReview(KsefSecurityCommon):

    # ------------------------------------------------------------------ roles
    def test_roles(self):
        for user in self.no_ksef_users:
            self.assertFalse(user.has_group(VIEWER), user.login)
        self.assertTrue(self.user_viewer.has_group(VIEWER))
        self.assertFalse(self.user_viewer.has_group(SENDER))
        self.assertTrue(self.user_sender.has_group(SENDER))
        self.assertFalse(self.user_sender.has_group(MANAGER))
        self.assertTrue(self.user_manager.has_group(MANAGER))
        self.assertFalse(self.user_manager.has_group('base.group_system'))
        self.assertTrue(self.user_admin.has_group(MANAGER))
        self.assertEqual(self.user_other.company_ids, self.company_b)

    # ------------------------------------------------------------------ secrets of the company
    def test_company_secrets_read_search_export_group(self):
        self.ksef_configure_certificate(self.ksef_company, usage='offline')
        self.ksef_company.action_ksef_authorize()
        for user in self.non_managers:
            Company = self.env['res.company'].with_user(user)
            company = self.ksef_company.with_user(user)
            for fname in COMPANY_SECRETS:
                msg = "%s: %s" % (user.login, fname)
                with self.assertRaises(AccessError, msg=msg):
                    company.read([fname])
                with self.assertRaises(AccessError, msg=msg):
                    Company.search_read([('id', '=', company.id)], [fname])
                with self.assertRaises(AccessError, msg=msg):
                    company.export_data([fname])
                with self.assertRaises(AccessError, msg=msg):
                    Company.read_group([('id', '=', company.id)], [fname], [fname])
                with self.assertRaises(AccessError, msg=msg):
                    Company.search([(fname, '!=', False)])
                with self.assertRaises(AccessError, msg=msg):
                    Company.web_search_read([('id', '=', company.id)], {fname: {}})
                self.assertNotIn(fname, Company.fields_get(), msg)
            # "all fields" reads silently leave the secrets out
            values = Company.search_read([('id', '=', company.id)])[0]
            self.assertFalse(set(COMPANY_SECRETS) & set(values), user.login)
            self.assertNotIn(self.ksef_token, repr(values))
            self.assertNotIn(self.ksef_token, repr(company.read()))
            # the public status is there, without the token
            self.assertTrue(values['ksef_token_set'])
            self.assertEqual(values['ksef_auth_state'], 'authorized')
        manager = self.ksef_company.with_user(self.user_manager)
        self.assertEqual(manager.read(['ksef_token'])[0]['ksef_token'], self.ksef_token)
        self.assertIn('ksef_token', self.env['res.company'].with_user(self.user_manager).fields_get())
        # never offered in the export dialog (not even to managers)
        self.assertFalse(self.env['res.company'].with_user(self.user_admin).fields_get(
            ['ksef_token'], ['exportable'])['ksef_token']['exportable'])

    def test_certificates_keys_and_their_attachments_are_settings_admin_only(self):
        offline = self.ksef_configure_certificate(self.ksef_company, usage='offline')
        key = offline.private_key_id
        attachments = self.env['ir.attachment'].sudo().search([
            ('res_field', '!=', False),
            '|', '&', ('res_model', '=', 'certificate.key'), ('res_id', '=', key.id),
            '&', ('res_model', '=', 'certificate.certificate'), ('res_id', '=', offline.id)])
        self.assertTrue(attachments, "certificate and key contents are stored as attachments")
        for user in (*self.non_managers, self.user_manager, self.user_other):
            for model, record in (('certificate.certificate', offline), ('certificate.key', key)):
                with self.assertRaises(AccessError, msg="%s %s" % (user.login, model)):
                    self.env[model].with_user(user).search([])
                with self.assertRaises(AccessError, msg="%s %s" % (user.login, model)):
                    record.with_user(user).read(['name'])
            Attachment = self.env['ir.attachment'].with_user(user)
            found = Attachment.search([('res_model', 'in', ('certificate.key', 'certificate.certificate')),
                                       ('res_field', '!=', False)])
            self.assertFalse(found & attachments, user.login)
            for attachment in attachments:
                with self.assertRaises(AccessError, msg=user.login):
                    attachment.with_user(user).read(['datas', 'raw'])
        # the settings administrator is the one who manages them
        self.assertTrue(key.with_user(self.user_admin).with_context(bin_size=False).pem_key)

    def test_stored_tokens_manager_only_and_per_company(self):
        self.ksef_company.action_ksef_authorize()
        self.company_b.action_ksef_authorize()
        rows = self.env['l10n_pl_ksef.auth_token'].sudo().search([])
        self.assertEqual(set(rows.company_id.ids) & {self.ksef_company.id, self.company_b.id},
                         {self.ksef_company.id, self.company_b.id})
        row_a = rows.filtered(lambda r: r.company_id == self.ksef_company)
        for user in self.non_managers:
            Store = self.env['l10n_pl_ksef.auth_token'].with_user(user)
            for func, args in ((Store.search, ([],)), (Store.search_count, ([],)),
                               (row_a.with_user(user).read, (['company_id'],)),
                               (Store.read_group, ([], ['company_id'], ['company_id']))):
                with self.assertRaises(AccessError, msg=user.login):
                    func(*args)
            self.assertNotIn('l10n_pl_ksef.auth_token', self._readable_models(user))
        manager = self.env['l10n_pl_ksef.auth_token'].with_user(self.user_manager)
        self.assertEqual(manager.search([]), row_a)
        self.assertTrue(row_a.with_user(self.user_manager).tokens)
        # company B's manager sees only B's row, never A's
        other = self.env['l10n_pl_ksef.auth_token'].with_user(self.user_other)
        self.assertEqual(other.search([]).company_id, self.company_b)
        self.assertEqual(other.search_count([('company_id', '=', self.ksef_company.id)]), 0)
        self.assertFalse(other.read_group([('company_id', '=', self.ksef_company.id)], ['company_id'],
                                          ['company_id']))
        with self.assertRaises(AccessError):
            row_a.with_user(self.user_other).read(['tokens'])

    def _readable_models(self, user):
        return {m for m in ('l10n_pl_ksef.auth_token', 'l10n_pl_ksef.session', 'l10n_pl_ksef.transmission',
                            'l10n_pl_ksef.inbox', 'l10n_pl_ksef.inbox_sync')
                if self.env[m].with_user(user).has_access('read')}

    def test_model_access_matrix(self):
        expected = {
            'sec_accountant': set(),
            'sec_erp': set(),
            'sec_viewer': {'l10n_pl_ksef.session', 'l10n_pl_ksef.transmission', 'l10n_pl_ksef.inbox',
                           'l10n_pl_ksef.inbox_sync'},
        }
        expected['sec_sender'] = expected['sec_viewer']
        expected['sec_manager'] = expected['sec_viewer'] | {'l10n_pl_ksef.auth_token'}
        for user in (*self.non_managers, self.user_manager):
            self.assertEqual(self._readable_models(user), expected[user.login], user.login)
        # nobody but the system writes the history, the sessions or the stored tokens
        for user in (self.user_viewer, self.user_sender, self.user_manager):
            for model in ('l10n_pl_ksef.auth_token', 'l10n_pl_ksef.session', 'l10n_pl_ksef.transmission'):
                for operation in ('write', 'create', 'unlink'):
                    self.assertFalse(self.env[model].with_user(user).has_access(operation),
                                     "%s %s %s" % (user.login, operation, model))

    def test_session_and_download_secrets_system_only(self):
        move = self.accepted_invoice()
        session = move.ksef_session_id
        self.sync.sudo().write({'cursor': json.dumps({'secret': 'cursor-key'})})
        for user in (self.user_viewer, self.user_sender, self.user_manager):
            for record, secrets in ((session, SESSION_SECRETS), (self.sync, SYNC_SECRETS)):
                Model = record.with_user(user)
                for fname in secrets:
                    with self.assertRaises(AccessError, msg="%s %s" % (user.login, fname)):
                        Model.read([fname])
                    with self.assertRaises(AccessError, msg="%s %s" % (user.login, fname)):
                        Model.export_data([fname])
                    self.assertNotIn(fname, Model.fields_get(), user.login)
                values = Model.read()[0]
                self.assertFalse(set(secrets) & set(values), user.login)
            self.assertEqual(session.with_user(user).read(['name'])[0]['name'], session.name)
        for user in self.no_ksef_users:
            with self.assertRaises(AccessError):
                session.with_user(user).read(['name'])
            with self.assertRaises(AccessError):
                self.sync.with_user(user).read(['state'])

    # ------------------------------------------------------------------ settings
    def test_settings_page_and_secret_inputs(self):
        token = self.ksef_sandbox.create_token(self.ksef_nip)
        for user in (*self.non_managers, self.user_manager):
            # the settings page itself is for settings administrators only
            with self.assertRaises(AccessError, msg=user.login):
                self.env['res.config.settings'].with_user(user).create({'ksef_batch_threshold': 3})
        for user in self.non_managers:
            self.assertRefused(self._settings_action(user, 'action_ksef_forget_token'), msg=user.login)
            self.assertRefused(self._settings_action(user, 'action_ksef_authorize'), msg=user.login)
        fields_viewer = self.env['res.config.settings'].with_user(self.user_sender).fields_get()
        for fname in SETTINGS_SECRETS:
            self.assertNotIn(fname, fields_viewer)
        # the settings administrator saves a token and KSeF settings (execute = set_values)
        settings = self.env['res.config.settings'].with_user(self.user_admin).create({
            'ksef_token_input': token, 'ksef_batch_threshold': 9})
        settings.execute()
        self.assertEqual(self.ksef_company.sudo().ksef_token, token)
        self.assertEqual(self.ksef_company.ksef_batch_threshold, 9)
        # the input is write-only: reading it back gives nothing
        self.assertFalse(settings.read(['ksef_token_input'])[0]['ksef_token_input'])
        self.assertFalse(self.env['res.config.settings'].with_user(self.user_admin).default_get(
            list(SETTINGS_SECRETS)).get('ksef_token_input'))

    def _settings_action(self, user, method):
        def call():
            settings = self.env['res.config.settings'].sudo().create({})
            return getattr(settings.with_user(user), method)()
        return call

    def test_company_ksef_settings_writable_by_ksef_managers_only(self):
        for user in self.non_managers:
            company = self.ksef_company.with_user(user)
            for fname, value in COMPANY_SETTINGS.items():
                with self.assertRaises(AccessError, msg="%s wrote %s" % (user.login, fname)):
                    company.write({fname: value})
            with self.assertRaises(AccessError, msg=user.login):
                company.write({'ksef_token': 'stolen'})
        self.assertEqual(self.ksef_company.ksef_environment, 'sandbox')
        self.assertEqual(self.ksef_company.sudo().ksef_token, self.ksef_token)
        # Access Rights administrators may still edit the other company data
        self.ksef_company.with_user(self.user_erp).write({'report_footer': "Stopka"})
        # settings administrators may change them
        self.ksef_company.with_user(self.user_admin).write({'ksef_batch_threshold': 7})
        self.assertEqual(self.ksef_company.ksef_batch_threshold, 7)

    def test_authorize_and_systray(self):
        for user in self.non_managers:
            self.assertRefused(self.ksef_company.with_user(user).action_ksef_authorize, msg=user.login)
            self.assertRefused(self.env['res.company'].with_user(user).ksef_systray_authorize, msg=user.login)
        for user in self.no_ksef_users:
            self.assertFalse(self.env['res.company'].with_user(user).ksef_systray_data()['visible'])
            self.assertRefused(self.ksef_company.with_user(user).action_ksef_test_status_service)
        data = self.env['res.company'].with_user(self.user_viewer).ksef_systray_data()
        self.assertNotIn(self.ksef_token, repr(data))
        self.assertFalse(data['can_authorize'])
        self.assertTrue(self.ksef_company.with_user(self.user_manager).action_ksef_authorize())

    # ------------------------------------------------------------------ sending
    def test_send_actions_refused_without_sender_group(self):
        move = self.ksef_invoice()
        rejected = self.ksef_invoice()
        rejected.sudo().write({'ksef_state': 'rejected'})
        for user in self.non_senders:
            for method in ('action_ksef_send', 'action_ksef_send_background', 'action_ksef_send_offline',
                           'action_ksef_retry', 'action_ksef_cancel_queue'):
                target = rejected if method == 'action_ksef_retry' else move
                self.assertRefused(getattr(target.with_user(user), method), msg="%s %s" % (user.login, method))
            with self.assertRaises(AccessError, msg=user.login):
                self.env['l10n_pl_ksef.offline_mode'].with_user(user).create({
                    'move_ids': [Command.set(move.ids)], 'mode': 'offline24'})
        self.assertFalse(move.ksef_state)
        self.assertEqual(rejected.ksef_state, 'rejected')
        for user in self.no_ksef_users:
            for method in ('action_ksef_refresh', 'action_ksef_download_xml', 'action_ksef_download_upo'):
                self.assertRefused(getattr(move.with_user(user), method), msg="%s %s" % (user.login, method))
            self.assertFalse([i for i in move.with_user(user).get_extra_print_items()
                              if i.get('key', '').startswith('ksef')])
        # a sender sends
        move.with_user(self.user_sender).with_context(ksef_no_send_now=True).action_ksef_send()
        self.assertEqual(move.ksef_state, 'to_send')
        move.with_user(self.user_sender).action_ksef_cancel_queue()
        self.assertFalse(move.ksef_state)

    def test_send_and_print_wizard_does_not_send_for_non_senders(self):
        move = self.ksef_invoice()
        for user in (self.user_viewer,):
            wizard = self.env['account.move.send.wizard'].with_user(user).with_context(
                active_model='account.move', active_ids=move.ids).create({})
            self.assertNotIn('ksef', wizard.extra_edis or {}, "KSeF is not offered to %s" % user.login)
            # forcing the KSeF checkbox through RPC does not send either
            wizard.extra_edi_checkboxes = {'ksef': {'checked': True}}
            self.assertIn('ksef', wizard.extra_edis)
            with contextlib.suppress(UserError):
                wizard.action_send_and_print()
            self.assertFalse(move.ksef_state, "%s sent the invoice to KSeF" % user.login)
        # the batch wizard, processed later by the sending cron (superuser), neither
        moves = self.ksef_invoice() | self.ksef_invoice()
        batch = self.env['account.move.send.batch.wizard'].with_user(self.user_viewer).with_context(
            active_model='account.move', active_ids=moves.ids).create({})
        batch.action_send_and_print()
        self.env['account.move']._cron_account_move_send()
        self.assertFalse(any(moves.mapped('ksef_state')), "the cron sent the batch of a viewer to KSeF")
        # the same for a sender does send
        moves = self.ksef_invoice() | self.ksef_invoice()
        batch = self.env['account.move.send.batch.wizard'].with_user(self.user_sender).with_context(
            active_model='account.move', active_ids=moves.ids).create({})
        batch.action_send_and_print()
        self.env['account.move']._cron_account_move_send()
        self.assertTrue(all(moves.mapped('ksef_state')), moves.mapped('ksef_message'))

    # ------------------------------------------------------------------ receiving
    def test_inbox_actions_by_role(self):
        inbox = self.inbox_a[0]
        for user in self.no_ksef_users:
            Inbox = self.env['l10n_pl_ksef.inbox'].with_user(user)
            for func, args in ((Inbox.search, ([],)), (inbox.with_user(user).read, (['ksef_number'],)),
                               (Inbox.read_group, ([], ['state'], ['state']))):
                with self.assertRaises(AccessError, msg=user.login):
                    func(*args)
            self.assertRefused(self.env['l10n_pl_ksef.inbox_sync'].with_user(user).action_ksef_fetch_now)
        for user in self.non_senders:
            self.assertRefused(self.env['l10n_pl_ksef.inbox_sync'].with_user(user).action_ksef_fetch_now,
                               msg=user.login)
            self.assertRefused(inbox.with_user(user).action_ksef_import, msg=user.login)
            self.assertRefused(inbox.with_user(user).action_ksef_mark_processed, msg=user.login)
            with self.assertRaises(AccessError, msg=user.login):
                self.env['l10n_pl_ksef.purchase_import'].with_user(user).create({'inbox_id': inbox.id})
        # a viewer can read but not import the ready ones
        with self.env.cr.savepoint():
            with contextlib.suppress(UserError):
                self.inbox_a.with_user(self.user_viewer).action_ksef_import_ready()
            self.assertEqual(set(self.inbox_a.mapped('state')), {'new'})
            self.assertFalse(self.inbox_a.move_id)
        self.assertEqual(self.env['l10n_pl_ksef.inbox'].with_user(self.user_viewer).search_count(
            [('company_id', '=', self.ksef_company.id)]), 3)
        # download settings: KSeF managers only
        for user in (self.user_viewer, self.user_sender):
            with self.assertRaises(AccessError, msg=user.login):
                self.sync.with_user(user).write({'include_third_party': True})
            with self.assertRaises(AccessError, msg=user.login):
                inbox.with_user(user).unlink()
        self.sync.with_user(self.user_manager).write({'include_third_party': True})
        # a sender fetches, imports (wizard) and marks processed
        self.env['l10n_pl_ksef.inbox_sync'].with_user(self.user_sender).action_ksef_fetch_now()
        self.assertTrue(self.sync.requested)
        action = inbox.with_user(self.user_sender).action_ksef_import()
        self.assertEqual(action['res_model'], 'l10n_pl_ksef.purchase_import')
        inbox.with_user(self.user_sender).action_ksef_mark_processed()
        self.assertEqual(inbox.state, 'processed')
        self.assertEqual(inbox.processed_by_id, self.user_sender)

    # ------------------------------------------------------------------ multi-company
    def test_other_company_sees_nothing_of_company_a(self):
        move = self.accepted_invoice()
        company_a = self.ksef_company
        records = {
            'l10n_pl_ksef.inbox': self.inbox_a,
            'l10n_pl_ksef.transmission': move.ksef_transmission_ids,
            'l10n_pl_ksef.session': move.ksef_session_id,
            'l10n_pl_ksef.inbox_sync': self.sync,
        }
        user = self.user_other
        for model, recs in records.items():
            self.assertTrue(recs, model)
            Model = self.env[model].with_user(user)
            domain = [('company_id', '=', company_a.id)]
            self.assertFalse(Model.search(domain), model)
            self.assertEqual(Model.search_count(domain), 0, model)
            self.assertFalse(Model.read_group(domain, ['company_id'], ['company_id']), model)
            self.assertFalse(Model.search([('id', 'in', recs.ids)]), model)
            with self.assertRaises(AccessError, msg=model):
                recs.with_user(user).read(['company_id'])
        # ... while its own data is there
        self.assertEqual(self.env['l10n_pl_ksef.inbox'].with_user(user).search([]), self.inbox_b)
        # XML / UPO of company A's invoice and inbox
        attachments = move.ksef_xml_id | move.ksef_upo_id | self.env['ir.attachment'].sudo().search([
            ('res_model', '=', 'l10n_pl_ksef.inbox'), ('res_id', 'in', self.inbox_a.ids), ('res_field', '!=', False)])
        attachments |= move.ksef_transmission_ids.attachment_id | move.ksef_transmission_ids.xml_attachment_id
        self.assertGreaterEqual(len(attachments), 5)
        Attachment = self.env['ir.attachment'].with_user(user)
        self.assertFalse(Attachment.search([('id', 'in', attachments.ids), ('res_field', '!=', False)]))
        self.assertFalse(Attachment.search([('id', 'in', attachments.ids)]))
        for attachment in attachments:
            with self.assertRaises(AccessError, msg=attachment.name):
                attachment.with_user(user).read(['datas'])
        # ... and nothing can be triggered for company A
        other_move = move.with_user(user).with_context(allowed_company_ids=self.company_b.ids)
        for method in ('action_ksef_send', 'action_ksef_retry', 'action_ksef_refresh', 'action_ksef_download_xml',
                       'action_ksef_download_upo', 'action_ksef_cancel_queue'):
            self.assertRefused(getattr(other_move, method), msg=method)
        fresh = self.ksef_invoice()
        self.assertRefused(fresh.with_user(user).action_ksef_send)
        self.assertFalse(fresh.ksef_state)
        self.assertRefused(self.inbox_a[0].with_user(user).action_ksef_mark_processed)
        self.assertRefused(self.inbox_a[0].with_user(user).action_ksef_import)
        self.env['l10n_pl_ksef.inbox_sync'].with_user(user).action_ksef_fetch_now(company_ids=company_a.ids)
        self.assertFalse(self.sync.requested, "company B requested a download for company A")
        with contextlib.suppress(AccessError):
            self.sync.with_user(user).with_context(allowed_company_ids=self.company_b.ids).action_ksef_fetch_now_single()
        self.assertFalse(self.sync.requested, "company B requested a download for company A")
        self.assertRefused(company_a.with_user(user).action_ksef_authorize)

    # ------------------------------------------------------------------ UI
    def test_views_by_role(self):
        form = self.env.ref('account.view_move_form')

        def arch(user, model, view_type, view=False):
            return self.env[model].with_user(user).get_views([(view, view_type)])['views'][view_type]['arch']

        for user in self.no_ksef_users:
            invoice_form = etree.fromstring(arch(user, 'account.move', 'form', form.id))
            self.assertFalse(invoice_form.xpath("//button[starts-with(@name, 'action_ksef')]"), user.login)
            # KSeF fields only as invisible helpers of other expressions (no KSeF status, number, history)
            visible = [f.get('name') for f in invoice_form.xpath("//field[starts-with(@name, 'ksef_')]")
                       if f.get('invisible') not in ('1', 'True')]
            self.assertFalse(visible, "%s sees %s" % (user.login, visible))
            self.assertFalse(invoice_form.xpath("//page[@id='ksef_tab']"), user.login)
        viewer_form = arch(self.user_viewer, 'account.move', 'form', form.id)
        self.assertIn('name="ksef_state"', viewer_form)
        self.assertIn('action_ksef_download_xml', viewer_form)
        for name in SEND_BUTTONS:
            self.assertNotIn(name, viewer_form, "viewer sees %s" % name)
        sender_form = arch(self.user_sender, 'account.move', 'form', form.id)
        for name in ('action_ksef_send', 'action_ksef_send_offline', 'action_ksef_retry'):
            self.assertIn(name, sender_form)
        self.assertNotIn('action_ksef_open_settings', sender_form)
        self.assertIn('action_ksef_open_settings', arch(self.user_manager, 'account.move', 'form', form.id))
        # settings: the KSeF block (token input, certificate uploads, authorize) only for KSeF managers
        settings_names = ('ksef_token_input', 'ksef_auth_password', 'ksef_offline_key_file', 'action_ksef_authorize',
                          'action_ksef_forget_token')
        for user in (self.user_viewer, self.user_sender, self.user_erp, self.user_manager):
            # the settings page is refused as a whole to anybody but settings administrators
            with self.assertRaises(AccessError, msg=user.login):
                arch(user, 'res.config.settings', 'form')
        admin_settings = arch(self.user_admin, 'res.config.settings', 'form')
        for name in settings_names:
            self.assertIn(name, admin_settings)
        self.assertNotIn('name="ksef_token"', admin_settings)
        # inbox: import / mark processed for senders only
        for view_type in ('list', 'form'):
            viewer_inbox = arch(self.user_viewer, 'l10n_pl_ksef.inbox', view_type)
            sender_inbox = arch(self.user_sender, 'l10n_pl_ksef.inbox', view_type)
            for name in INBOX_BUTTONS:
                self.assertNotIn(name, viewer_inbox, "viewer %s sees %s" % (view_type, name))
            self.assertTrue(any(name in sender_inbox for name in INBOX_BUTTONS), view_type)
        viewer_sync = arch(self.user_viewer, 'l10n_pl_ksef.inbox_sync', 'form')
        self.assertNotIn('action_ksef_fetch_now_single', viewer_sync)
        self.assertIn('action_ksef_fetch_now_single', arch(self.user_sender, 'l10n_pl_ksef.inbox_sync', 'form'))
        # menus
        Menu = self.env['ir.ui.menu']
        inbox_menu = self.env.ref('l10n_pl_ksef.l10n_pl_ksef_inbox_menu')
        sync_menu = self.env.ref('l10n_pl_ksef.l10n_pl_ksef_inbox_sync_menu')
        for user, visible in ((self.user_accountant, set()), (self.user_viewer, {inbox_menu}),
                              (self.user_sender, {inbox_menu}), (self.user_manager, {inbox_menu, sync_menu})):
            menus = Menu.with_user(user)._visible_menu_ids()
            self.assertEqual({m for m in (inbox_menu, sync_menu) if m.id in menus}, visible, user.login)

    # ------------------------------------------------------------------ neutralize
    def test_neutralize_clears_every_stored_secret(self):
        company = self.ksef_company
        offline = self.ksef_configure_certificate(company, usage='offline')
        company.action_ksef_authorize()
        key = offline.private_key_id
        key_attachments = self.env['ir.attachment'].sudo().search([
            ('res_model', '=', 'certificate.key'), ('res_id', '=', key.id), ('res_field', '!=', False)])
        self.assertTrue(key_attachments)
        self.env.flush_all()
        for query in get_neutralization_queries(['l10n_pl_ksef']):
            self.env.cr.execute(query)
        self.env.invalidate_all()
        self.assertFalse(company.sudo().ksef_token)
        self.assertFalse(self.env['l10n_pl_ksef.auth_token'].sudo().search([]))
        self.assertFalse(key_attachments.exists())
        self.assertNotEqual(company.ksef_environment, 'prod')


# ---------------------------------------------------------------------- secrets never leak

class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines = []

    def emit(self, record):
        try:
            text = record.getMessage()
        except Exception:  # a record whose args do not fit its message is still captured
            text = "%s %r" % (record.msg, record.args)
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.lines.append("%s: %s" % (record.name, text))


@contextlib.contextmanager
def capture_all_logs():
    """Every log record of the process at DEBUG (root, odoo, requests, urllib3, the KSeF client)."""
    handler = _Capture()
    # (not odoo.sql_db: at DEBUG, i.e. --log-sql, Odoo logs every query with its parameters, whatever they hold)
    names = ('', 'odoo', 'odoo.addons.l10n_pl_ksef', 'requests', 'urllib3', 'urllib3.connectionpool', 'werkzeug')
    loggers = [logging.getLogger(n) for n in names]
    saved = [(lg, lg.level, lg.disabled) for lg in loggers]
    sql = logging.getLogger('odoo.sql_db')
    saved.append((sql, sql.level, sql.disabled))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        for lg in loggers:
            lg.setLevel(logging.DEBUG)
            lg.disabled = False
        sql.setLevel(logging.INFO)
        yield handler.lines
    finally:
        root.removeHandler(handler)
        for lg, level, disabled in saved:
            lg.setLevel(level)
            lg.disabled = disabled


@tagged('post_install_l10n', 'post_install', '-at_install')
class TestKsefSecretsNeverLeak(KsefSecurityCommon):

    def _stored_tokens(self):
        """The KSeF access and refresh tokens (bearer JWTs) stored right now."""
        tokens = set()
        self.env['l10n_pl_ksef.auth_token'].invalidate_model()
        for row in self.env['l10n_pl_ksef.auth_token'].sudo().search([]):
            for part in (row.tokens or {}).values():
                if isinstance(part, dict) and part.get('token'):
                    tokens.add(part['token'])
        return tokens

    def _secrets(self, *extra):
        """Every secret known right now: token(s), stored access/refresh tokens, session AES keys."""
        secrets = {s for s in extra if s}
        secrets.add(self.ksef_token)
        secrets |= self._stored_tokens()
        for session in self.env['l10n_pl_ksef.session'].sudo().search([]):
            secrets.update(s for s in (session.key_b64, session.iv_b64) if s)
        return secrets

    def _pem_body(self, pem):
        """The base64 lines of a PEM private key (any of them appearing means a leak)."""
        return [line for line in pem.decode().splitlines() if line and not line.startswith('-----')]

    def _chatter_texts(self):
        Message = self.env['mail.message'].sudo()
        texts = [str(m.body) + (m.subject or '') for m in Message.search([])]
        for value in self.env['mail.tracking.value'].sudo().search([]):
            texts += [value.old_value_char or '', value.new_value_char or '', value.old_value_text or '',
                      value.new_value_text or '']
        return texts

    def _ksef_texts(self):
        texts = []
        for company in (self.ksef_company, self.company_b):
            texts += [company.ksef_auth_message or '', company.ksef_permissions or '']
        for row in self.env['l10n_pl_ksef.transmission'].sudo().search([]):
            texts += [row.message or '', row.details or '']
        for move in self.env['account.move'].sudo().search([('ksef_message', '!=', False)]):
            texts += [move.ksef_message, str(move.ksef_banner or '')]
        texts += self.env['l10n_pl_ksef.inbox_sync'].sudo().search([]).mapped(lambda s: s.last_error or '')
        return texts

    def assertNoSecret(self, texts, secrets, where):
        blob = "\n".join(str(t) for t in texts)
        for secret in secrets:
            self.assertTrue(len(secret) >= 8, "a meaningful secret")
            self.assertNotIn(secret, blob, "a secret (%s...) appears in %s" % (secret[:6], where))

    def test_no_secret_in_logs_chatter_exports_or_errors(self):
        password = 'Haslo-do-klucza-7319!'
        key_pem, cert_pem = self.ksef_make_certificate(self.ksef_nip)
        key = ksef_crypto.load_private_key(key_pem)
        encrypted_key = ksef_crypto.private_key_pem(key, password=password)
        key_lines = self._pem_body(key_pem) + self._pem_body(encrypted_key)
        errors = []
        wrong_token = self.ksef_sandbox.create_token(random_nip())
        with capture_all_logs() as logs:
            # 1. a token login and an invoice sent and accepted (session opened, tokens stored and refreshed)
            self.assertTrue(self.ksef_company.action_ksef_authorize())
            move = self.accepted_invoice()
            move.action_ksef_refresh()
            bearer_tokens = self._stored_tokens()
            self.assertGreaterEqual(len(bearer_tokens), 2, "access and refresh tokens are stored")
            # 2. the settings administrator uploads a certificate with a password-protected key and logs in
            settings = self.env['res.config.settings'].with_user(self.user_admin).create({
                'ksef_auth_cert_file': base64.b64encode(cert_pem),
                'ksef_auth_key_file': base64.b64encode(encrypted_key),
                'ksef_auth_password': password,
                'ksef_auth_method': 'certificate',
            })
            settings.execute()
            self.assertTrue(self.ksef_company.sudo().ksef_auth_certificate_id)
            self.assertTrue(self.ksef_company.with_user(self.user_admin).action_ksef_authorize(),
                            self.ksef_company.ksef_auth_message)
            bearer_tokens |= self._stored_tokens()
            # 3. a wrong key password
            with self.assertRaises(UserError) as cm:
                self.env['res.config.settings'].with_user(self.user_admin).create({
                    'ksef_offline_cert_file': base64.b64encode(cert_pem),
                    'ksef_offline_key_file': base64.b64encode(encrypted_key),
                    'ksef_offline_password': password + 'x',
                })
            errors.append(cm.exception.args[0])
            # 4. a token KSeF refuses (another NIP's) and a sandbox refusing everything
            self.ksef_company.sudo().write({'ksef_auth_method': 'token', 'ksef_token': wrong_token})
            self.assertFalse(self.ksef_company.action_ksef_authorize())
            errors.append(self.ksef_company.ksef_auth_message)
            self.ksef_company.sudo().write({'ksef_token': self.ksef_token})
            self.ksef_sandbox.set_faults(type='error', status=401, path='/v2/auth/.*', count=5)
            self.assertFalse(self.ksef_company.action_ksef_authorize())
            errors.append(self.ksef_company.ksef_auth_message)
            self.ksef_sandbox.clear_faults()
            failing = self.ksef_invoice()
            self.ksef_sandbox.set_faults(type='error', status=500, path='/v2/sessions/.*', count=20)
            with contextlib.suppress(UserError):
                failing.action_ksef_send()
            self.ksef_sandbox.clear_faults()
            # 5. exports by a KSeF manager and by the settings administrator
            exports = []
            for user in (self.user_manager, self.user_admin):
                Company = self.env['res.company'].with_user(user)
                # (certificates are records of the settings administrators: not for KSeF managers)
                described = Company.fields_get(attributes=['exportable', 'type', 'relation'])
                exportable = [name for name, f in described.items()
                              if f['exportable'] and f['type'] not in ('one2many', 'many2many', 'binary')
                              and (user == self.user_admin or f.get('relation') != 'certificate.certificate')]
                exports.append(repr(self.ksef_company.with_user(user).export_data(exportable)))
                Settings = self.env['res.config.settings'].with_user(self.user_admin)
                names = [n for n, f in Settings.fields_get(attributes=['type']).items() if n.startswith('ksef_')
                         and f['type'] not in ('one2many', 'many2many')]
                exports.append(repr(Settings.create({}).export_data(names)))
                exports.append(repr(Settings.create({}).read(names)))
        self.assertIn(self.ksef_nip, "\n".join(logs + errors + exports + self._ksef_texts()) or self.ksef_nip)
        secrets = self._secrets(password, wrong_token, *bearer_tokens)
        self.assertGreaterEqual(len(secrets), 7, "token, wrong token, password, 2 x access/refresh, session key")
        every = {
            'logs': logs, 'errors': errors, 'chatter': self._chatter_texts(), 'exports': exports,
            'KSeF messages': self._ksef_texts(),
        }
        for where, texts in every.items():
            self.assertNoSecret(texts, secrets, where)
            blob = "\n".join(str(t) for t in texts)
            for line in key_lines:
                self.assertNotIn(line, blob, "a private key line appears in %s" % where)
        # the capture saw the HTTP traffic (urllib3 at DEBUG) and the KSeF client/addon logs
        self.assertTrue(any(line.startswith('urllib3') for line in logs), "urllib3 DEBUG captured")
        self.assertTrue(any('l10n_pl_ksef' in line.split(':')[0] for line in logs), "KSeF logs captured")
        self.assertTrue(errors[0] and errors[1] and errors[2], errors)

    def test_config_parameters_hold_no_secret(self):
        self.ksef_company.action_ksef_authorize()
        self.accepted_invoice()
        params = self.env['ir.config_parameter'].sudo().search([('key', 'like', 'l10n_pl_ksef')])
        self.assertNoSecret(params.mapped('value'), self._secrets(), 'ir.config_parameter')
        for user in self.non_managers:
            with self.assertRaises(AccessError):
                self.env['ir.config_parameter'].with_user(user).search([])


# ---------------------------------------------------------------------- over real HTTP JSON-RPC

@tagged('post_install_l10n', 'post_install', '-at_install')
class TestKsefSecurityRpc(KsefSecurityCommon, HttpCase):

    def rpc(self, login, model, method, *args, secret_ok=False, **kwargs):
        """``/web/dataset/call_kw`` as ``login`` (password = login); returns ``(result, error)``."""
        self.authenticate(login, login)
        response = self.url_open('/web/dataset/call_kw', data=json.dumps({
            'id': 1, 'jsonrpc': '2.0', 'method': 'call',
            'params': {'model': model, 'method': method, 'args': list(args), 'kwargs': kwargs},
        }), headers={'Content-Type': 'application/json'})
        response.raise_for_status()
        body = response.json()
        if not secret_ok:
            self.assertNotIn(self.ksef_token, response.text, "the token went over the wire")
        if 'error' in body:
            return None, body['error']['data']
        return body['result'], None

    def assertRpcRefused(self, login, model, method, *args, **kwargs):
        result, error = self.rpc(login, model, method, *args, **kwargs)
        self.assertTrue(error, "%s could %s.%s: %r" % (login, model, method, result))
        self.assertIn(error['name'], ('odoo.exceptions.AccessError', 'odoo.exceptions.UserError'),
                      "%s %s.%s: %s" % (login, model, method, error.get('message')))
        return error

    def test_rpc_secrets_and_settings(self):
        company = self.ksef_company.id
        for user in self.non_managers:
            login = user.login
            for fname in COMPANY_SECRETS:
                self.assertRpcRefused(login, 'res.company', 'read', [company], [fname])
                self.assertRpcRefused(login, 'res.company', 'search_read', [('id', '=', company)], [fname])
                self.assertRpcRefused(login, 'res.company', 'export_data', [company], [fname])
                self.assertRpcRefused(login, 'res.company', 'read_group', [], [fname], [fname])
            result, error = self.rpc(login, 'res.company', 'fields_get', [], attributes=['type'])
            self.assertFalse(error)
            self.assertFalse(set(COMPANY_SECRETS) & set(result), login)
            result, error = self.rpc(login, 'res.company', 'search_read', [('id', '=', company)])
            self.assertFalse(error)
            self.assertFalse(set(COMPANY_SECRETS) & set(result[0]))
            self.assertRpcRefused(login, 'res.company', 'write', [company], {'ksef_token': 'stolen'})
            self.assertRpcRefused(login, 'res.company', 'write', [company], {'ksef_sandbox_url': 'http://x.example'})
            self.assertRpcRefused(login, 'l10n_pl_ksef.auth_token', 'search_read', [], ['tokens'])
            self.assertRpcRefused(login, 'res.config.settings', 'create', {'ksef_token_input': 'stolen'})
            self.assertRpcRefused(login, 'res.company', 'action_ksef_authorize', [company])
            self.assertRpcRefused(login, 'res.company', 'ksef_systray_authorize')
        self.assertEqual(self.ksef_company.sudo().ksef_token, self.ksef_token)
        self.assertEqual(self.ksef_company.ksef_environment, 'sandbox')
        # the KSeF manager reads the token; the settings administrator saves settings through execute
        result, error = self.rpc('sec_manager', 'res.company', 'read', [company], ['ksef_token'], secret_ok=True)
        self.assertFalse(error)
        self.assertEqual(result[0]['ksef_token'], self.ksef_token)
        settings_id, error = self.rpc('sec_admin', 'res.config.settings', 'create', {'ksef_batch_threshold': 11})
        self.assertFalse(error, error)
        _result, error = self.rpc('sec_admin', 'res.config.settings', 'execute', [settings_id])
        self.assertFalse(error, error)
        self.assertEqual(self.ksef_company.ksef_batch_threshold, 11)
        self.assertRpcRefused('sec_manager', 'res.config.settings', 'execute', [settings_id])

    def test_rpc_send_receive_and_other_company(self):
        move = self.ksef_invoice()
        inbox = self.inbox_a[0]
        for user in self.non_senders:
            login = user.login
            for method in ('action_ksef_send', 'action_ksef_send_background', 'action_ksef_send_offline',
                           'action_ksef_cancel_queue'):
                self.assertRpcRefused(login, 'account.move', method, move.ids)
            self.assertRpcRefused(login, 'l10n_pl_ksef.offline_mode', 'create',
                                  {'move_ids': [Command.set(move.ids)], 'mode': 'offline24'})
            self.assertRpcRefused(login, 'l10n_pl_ksef.inbox_sync', 'action_ksef_fetch_now')
            self.assertRpcRefused(login, 'l10n_pl_ksef.inbox', 'action_ksef_import', inbox.ids)
            self.assertRpcRefused(login, 'l10n_pl_ksef.inbox', 'action_ksef_mark_processed', inbox.ids)
            self.assertRpcRefused(login, 'l10n_pl_ksef.purchase_import', 'create', {'inbox_id': inbox.id})
        for user in self.no_ksef_users:
            self.assertRpcRefused(user.login, 'l10n_pl_ksef.inbox', 'search_read', [], ['ksef_number'])
            self.assertRpcRefused(user.login, 'l10n_pl_ksef.transmission', 'search_read', [], ['message'])
            self.assertRpcRefused(user.login, 'l10n_pl_ksef.session', 'search_read', [], ['name'])
        self.assertFalse(move.ksef_state)
        self.assertEqual(inbox.state, 'new')
        # company B's manager: nothing of company A
        for model, ids in (('l10n_pl_ksef.inbox', self.inbox_a.ids), ('l10n_pl_ksef.inbox_sync', self.sync.ids)):
            result, error = self.rpc('sec_other', model, 'search_count', [('id', 'in', ids)])
            self.assertEqual((result, error), (0, None), model)
            self.assertRpcRefused('sec_other', model, 'read', ids, ['company_id'])
        self.assertRpcRefused('sec_other', 'account.move', 'action_ksef_send', move.ids)
        self.assertRpcRefused('sec_other', 'l10n_pl_ksef.inbox', 'action_ksef_mark_processed', inbox.ids)
        self.assertRpcRefused('sec_other', 'l10n_pl_ksef.inbox', 'action_ksef_import', inbox.ids)
        self.assertRpcRefused('sec_other', 'res.company', 'action_ksef_authorize', [self.ksef_company.id])
        # a wizard pointed at company A's purchase invoice imports nothing
        wizard_id, error = self.rpc('sec_other', 'l10n_pl_ksef.purchase_import', 'create', {'inbox_id': inbox.id})
        if not error:
            for method in ('action_next', 'action_create_bill'):
                self.assertRpcRefused('sec_other', 'l10n_pl_ksef.purchase_import', method, [wizard_id])
        self.assertEqual(inbox.state, 'new')
        self.assertFalse(inbox.move_id)
        # an offline wizard pointed at company A's invoice issues nothing
        wizard_id, error = self.rpc('sec_other', 'l10n_pl_ksef.offline_mode', 'create',
                                    {'move_ids': [Command.set(move.ids)], 'mode': 'offline24'})
        if not error:
            # refused, or a no-op: the many2many hides the invoices company B cannot read
            self.rpc('sec_other', 'l10n_pl_ksef.offline_mode', 'action_confirm', [wizard_id])
        self.assertFalse(move.ksef_state)
        self.assertFalse(move.ksef_xml_file)
        # a sender does send (the action is reachable over RPC)
        _result, error = self.rpc('sec_sender', 'account.move', 'action_ksef_send_background', move.ids)
        self.assertFalse(error, error)
        self.assertEqual(move.ksef_state, 'to_send')

    def test_http_downloads_of_other_company_and_of_keys(self):
        move = self.accepted_invoice()
        offline = self.ksef_configure_certificate(self.ksef_company, usage='offline')
        key_attachment = self.env['ir.attachment'].sudo().search([
            ('res_model', '=', 'certificate.key'), ('res_id', '=', offline.private_key_id.id),
            ('res_field', '!=', False)], limit=1)
        self.assertTrue(key_attachment)
        for login, attachment in (('sec_other', move.ksef_xml_id), ('sec_other', move.ksef_upo_id),
                                  ('sec_accountant', key_attachment), ('sec_manager', key_attachment),
                                  ('sec_other', key_attachment)):
            self.authenticate(login, login)
            response = self.url_open('/web/content/%s?download=true' % attachment.id)
            self.assertIn(response.status_code, (403, 404), "%s downloaded %s" % (login, attachment.name))
            self.assertNotIn(b'PRIVATE KEY', response.content)
        response = self.url_open('/account/download_invoice_attachments/%s' % move.ksef_xml_id.id)
        self.assertNotEqual(response.status_code, 200)
        self.authenticate('sec_viewer', 'sec_viewer')
        response = self.url_open('/web/content/%s?download=true' % move.ksef_xml_id.id)
        self.assertEqual(response.status_code, 200)

    def test_http_exports_csv_xlsx_hold_no_secret(self):
        self.ksef_company.action_ksef_authorize()
        for login in ('sec_manager', 'sec_admin'):
            # the export dialog never offers the token
            self.authenticate(login, login)
            offered = self.make_jsonrpc_request('/web/export/get_fields', {
                'model': 'res.company', 'domain': [], 'import_compat': False})
            names = [f['id'] for f in offered if '/' not in f['id'] and f['id'] != 'id']
            self.assertNotIn('ksef_token', names, login)
            self.assertIn('ksef_environment', names)
            ksef_names = [n for n in names if n.startswith('ksef_')] + ['name']
            for fmt in ('csv', 'xlsx'):
                response = self.url_open('/web/export/%s' % fmt, data={
                    'data': json.dumps({
                        'model': 'res.company', 'ids': self.ksef_company.ids, 'domain': [],
                        'import_compat': False, 'context': {},
                        'fields': [{'name': n, 'label': n} for n in ksef_names],
                    }),
                    'csrf_token': http.Request.csrf_token(self),
                })
                self.assertEqual(response.status_code, 200, response.text[:500])
                if fmt == 'xlsx':
                    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
                        text = "".join(archive.read(n).decode('utf-8', 'replace') for n in archive.namelist())
                else:
                    text = response.content.decode('utf-8')
                self.assertIn(self.ksef_company.name, text, fmt)
                self.assertNotIn(self.ksef_token, text, "%s export by %s holds the token" % (fmt, login))
