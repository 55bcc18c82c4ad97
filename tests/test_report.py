import base64
import io

from odoo import fields
from odoo.tests import tagged

from odoo.addons.l10n_pl_ksef.ksef import crypto as ksef_crypto
from odoo.addons.l10n_pl_ksef.ksef import qr as ksef_qr
from odoo.addons.l10n_pl_ksef.tests.ksef_send_common import KsefSendCommon


@tagged('post_install_l10n', 'post_install', '-at_install')
class TestKsefReport(KsefSendCommon):

    def render_html(self, report_ref, move):
        html, _fmt = self.env['ir.actions.report']._render_qweb_html(report_ref, move.ids)
        return html.decode() if isinstance(html, bytes) else html

    def qr_images(self, html):
        """PNG bytes of the data-URI images of the KSeF block."""
        start = html.index('id="ksef_qr"')
        block = html[start:start + 200000]
        out = []
        for part in block.split('src="data:image/png;base64,')[1:]:
            out.append(base64.b64decode(part.split('"', 1)[0]))
        return out

    def test_accepted_invoice_shows_qr_with_ksef_number(self):
        invoice = self.ksef_send(self.ksef_invoice())
        self.assertKsefAccepted(invoice)
        html = self.render_html('account.account_invoices', invoice)
        self.assertIn('id="ksef_qr"', html)
        self.assertIn(invoice.ksef_number, html)
        self.assertNotIn('>OFFLINE<', html)
        self.assertNotIn('CERTYFIKAT', html)
        images = self.qr_images(html)
        self.assertEqual(len(images), 1)
        # the QR encodes the link with exactly the hash of the stored XML
        url = invoice._ksef_qr_kod1_url()
        self.assertEqual(ksef_qr.parse_invoice_url(url)['invoice_hash'], ksef_crypto.sha256(invoice.ksef_xml_id.raw))
        self.assertEqual(images[0], ksef_qr.render_png(url, box_size=4))
        self.assertIn(url, html)

    def test_offline_invoice_shows_offline_and_certificate_codes(self):
        self.ksef_configure_certificate(self.ksef_company, usage='offline', nip=self.ksef_nip)
        invoice = self.ksef_invoice()
        self.env['l10n_pl_ksef.offline_mode'].create({
            'move_ids': [fields.Command.set(invoice.ids)], 'mode': 'offline24'}).action_confirm()
        html = self.render_html('account.account_invoices', invoice)
        self.assertIn('>OFFLINE<', html)
        self.assertIn('>CERTYFIKAT<', html)
        self.assertEqual(len(self.qr_images(html)), 2)
        self.assertIn(invoice._ksef_qr_kod1_url(), html)

    def test_not_sent_and_total_failure_print_no_qr(self):
        invoice = self.ksef_invoice()
        self.assertNotIn('id="ksef_qr"', self.render_html('account.account_invoices', invoice))
        self.env['l10n_pl_ksef.offline_mode'].create({
            'move_ids': [fields.Command.set(invoice.ids)], 'mode': 'total_failure'}).action_confirm()
        self.assertNotIn('id="ksef_qr"', self.render_html('account.account_invoices', invoice))

    def test_transaction_confirmation(self):
        invoice = self.ksef_send(self.ksef_invoice(amounts=(100.0, 20.0)))
        html = self.render_html('l10n_pl_ksef.action_report_ksef_transaction_confirmation', invoice)
        self.assertIn("Transaction confirmation", html)
        self.assertIn("This document is not an invoice", html)
        self.assertIn(invoice.name, html)
        self.assertIn(invoice.ksef_number, html)
        self.assertIn(self.ksef_company.name, html)
        self.assertIn(self.ksef_buyer.name, html)
        self.assertEqual(len(self.qr_images(html)), 1)

    def test_transaction_confirmation_before_the_number(self):
        invoice = self.ksef_invoice()
        invoice.with_context(ksef_no_send_now=True).action_ksef_send()
        html = self.render_html('l10n_pl_ksef.action_report_ksef_transaction_confirmation', invoice)
        self.assertIn("not assigned yet", html)
        self.assertIn('>OFFLINE<', html)
        self.assertEqual(len(self.qr_images(html)), 1)
        # the invoice printout itself has no code while the online invoice waits for its number
        self.assertNotIn('id="ksef_qr"', self.render_html('account.account_invoices', invoice))

    def test_pdf_renders_and_is_refreshed_after_acceptance(self):
        invoice = self.ksef_invoice()
        invoice.with_context(ksef_no_send_now=True).action_ksef_send()
        # a PDF generated before acceptance (Send & Print) is replaced by one with the QR code
        pdf, _fmt = self.env['ir.actions.report']._render_qweb_pdf('account.account_invoices', invoice.ids)
        self.env['ir.attachment'].create({'name': 'before.pdf', 'raw': pdf, 'res_model': 'account.move',
                                          'res_id': invoice.id, 'res_field': 'invoice_pdf_report_file'})
        invoice.invalidate_recordset(['invoice_pdf_report_id', 'invoice_pdf_report_file'])
        self.assertTrue(invoice.invoice_pdf_report_id)
        self.ksef_run_send()
        self.ksef_run_status(invoice)
        self.assertKsefAccepted(invoice)
        invoice.invalidate_recordset(['invoice_pdf_report_id', 'invoice_pdf_report_file'])
        self.assertFalse(invoice.invoice_pdf_report_id, "the PDF without the KSeF code was detached")
        pdf, _fmt = self.env['ir.actions.report'].with_context(force_report_rendering=True)._render_qweb_pdf(
            'account.account_invoices', invoice.ids)
        self.assertEqual(io.BytesIO(pdf).read(4), b'%PDF')
