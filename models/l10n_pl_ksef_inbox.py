"""KSeF inbox: purchase invoices downloaded from KSeF, waiting to become vendor bills.

One record per (company, KSeF number), created by the download cron (:mod:`l10n_pl_ksef_inbox_sync`)
with the original XML as attachment and the metadata/fields needed for the list and its filters. The form
renders the invoice from the XML (:func:`ksef.fa3.parse`, FA(3) and FA(2)); the import wizard
(``l10n_pl_ksef.purchase_import``) runs the checks and calls :meth:`_ksef_create_bill`.

Invoice kinds and how they are imported (see :data:`SUPPORTED_TYPES`):

* ``VAT`` (basic), ``UPR`` (simplified): vendor bill, one line per invoice line;
* ``ZAL`` (advance payment): vendor bill with one line per VAT rate for the advance (the ordered goods are in
  ``Zamowienie``, not invoiced yet), on the default account (e.g. a prepayments account);
* ``ROZ`` (settlement after advances): vendor bill with the invoice lines and, per VAT rate, a negative line for
  the advances already invoiced, so that the bill equals what is still due (``P_13_x``/``P_15``);
* ``KOR``, ``KOR_ZAL``, ``KOR_ROZ`` (corrections): the amounts are differences; a negative difference becomes a
  vendor credit note (linked to the corrected bill found by its KSeF number), a positive one a vendor bill.
  "Before" rows (``StanPrzed``) are subtracted from "after" rows.

Not supported (kept visible, can be marked processed): PEF (Peppol) and FA_RR (VAT RR, issued by the buyer).
"""
import base64
import datetime
import logging
from decimal import Decimal

import pytz
from markupsafe import Markup

from odoo import api, fields, models, tools
from odoo.exceptions import UserError, ValidationError
from odoo.tools import float_compare, float_is_zero, float_round
from odoo.tools.misc import format_date, formatLang

from odoo.addons.l10n_pl_ksef.ksef import crypto as ksef_crypto
from odoo.addons.l10n_pl_ksef.ksef import errors as ksef_errors
from odoo.addons.l10n_pl_ksef.ksef import fa3
from odoo.addons.l10n_pl_ksef.ksef import numbers as ksef_numbers
from odoo.addons.l10n_pl_ksef.ksef import qr as ksef_qr
from odoo.addons.l10n_pl_ksef.ksef.fa3 import rates as fa3_rates

_logger = logging.getLogger(__name__)

WARSAW = pytz.timezone('Europe/Warsaw')
_BATCH_PDF_BROKEN = False

INVOICE_TYPES = [
    ('VAT', "VAT"),
    ('KOR', "KOR"),
    ('ZAL', "ZAL"),
    ('ROZ', "ROZ"),
    ('UPR', "UPR"),
    ('KOR_ZAL', "KOR_ZAL"),
    ('KOR_ROZ', "KOR_ROZ"),
    ('VAT_PEF', "PEF"),
    ('VAT_PEF_SP', "PEF (specialised)"),
    ('KOR_PEF', "PEF correction"),
    ('VAT_RR', "VAT RR"),
    ('KOR_VAT_RR', "VAT RR correction"),
]
INVOICE_TYPE_HELP = (
    "Kind of invoice (RodzajFaktury): VAT basic invoice, KOR correction, ZAL advance payment invoice, ROZ "
    "settlement invoice after advances, UPR simplified invoice, KOR_ZAL correction of an advance invoice, KOR_ROZ "
    "correction of a settlement invoice; PEF invoices (Peppol) and VAT RR invoices (farmers, issued by the buyer) "
    "are downloaded but cannot be imported."
)
# API ``invoiceType`` -> FA(3) RodzajFaktury-like key
API_INVOICE_TYPES = {
    'Vat': 'VAT', 'Kor': 'KOR', 'Zal': 'ZAL', 'Roz': 'ROZ', 'Upr': 'UPR', 'KorZal': 'KOR_ZAL', 'KorRoz': 'KOR_ROZ',
    'VatPef': 'VAT_PEF', 'VatPefSp': 'VAT_PEF_SP', 'KorPef': 'KOR_PEF', 'VatRr': 'VAT_RR', 'KorVatRr': 'KOR_VAT_RR',
}
SUPPORTED_TYPES = ('VAT', 'KOR', 'ZAL', 'ROZ', 'UPR', 'KOR_ZAL', 'KOR_ROZ')
CORRECTION_TYPES = ('KOR', 'KOR_ZAL', 'KOR_ROZ')
ADVANCE_TYPES = ('ZAL', 'KOR_ZAL')
SETTLEMENT_TYPES = ('ROZ', 'KOR_ROZ')
# Podmiot3 roles under which the company may book the invoice as its own purchase (DIGEST §15):
# 4 additional buyer, 8 JST recipient (local-government unit), 10 VAT group member - recipient
THIRD_PARTY_BUYER_ROLES = (4, 8, 10)
# representative P_12 code of a summary bucket (when an invoice has no lines for it)
BUCKET_DEFAULT_CODE = {
    '1': '23', '2': '8', '3': '5', '4': '4', '6_1': '0 KR', '6_2': '0 WDT', '6_3': '0 EX', '7': 'zw', '8': 'np I',
    '9': 'np II', '10': 'oo',
}


def _decimals(value):
    """Number of decimal places of a Decimal (at least 2 for money-like values)."""
    exponent = value.normalize().as_tuple().exponent if isinstance(value, Decimal) else -2
    return max(2, -exponent if isinstance(exponent, int) else 2)


def _utc_naive(value):
    """KSeF ISO date-time string -> naive UTC datetime (Odoo's storage), or False."""
    if not value:
        return False
    try:
        moment = fa3.parse_datetime(value) if 'T' in value else datetime.datetime.fromisoformat(value)
    except ValueError:
        return False
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return moment.replace(microsecond=0)


def _date(value):
    if not value:
        return False
    try:
        return datetime.date.fromisoformat(str(value)[:10])
    except ValueError:
        return False


class L10nPlKsefInbox(models.Model):
    _name = 'l10n_pl_ksef.inbox'
    _description = "KSeF Purchase Invoice"
    _inherit = ['mail.thread']
    _order = 'issue_date desc, id desc'
    _rec_names_search = ['ksef_number', 'invoice_number', 'seller_name', 'seller_nip']
    _check_company_auto = True

    # -------------------------------------------------------------------------
    # FIELDS
    # -------------------------------------------------------------------------

    company_id = fields.Many2one(
        comodel_name='res.company',
        required=True,
        readonly=True,
        index=True,
        default=lambda self: self.env.company,
    )
    ksef_number = fields.Char(
        string="KSeF Number",
        required=True,
        readonly=True,
        index=True,
        help="Number KSeF gave the invoice (e.g. 5842816354-20260319-33C61F800000-AD).",
    )
    invoice_number = fields.Char(readonly=True, help="Number given by the seller (P_2).")
    issue_date = fields.Date(readonly=True, index=True, help="Issue date of the invoice (P_1).")
    download_date = fields.Datetime(
        string="Downloaded On",
        readonly=True,
        index=True,
        default=fields.Datetime.now,
        help="When Odoo downloaded the invoice from KSeF.",
    )
    download_day = fields.Date(
        compute='_compute_download_day',
        store=True,
        index=True,
        help="Day (Polish time) the invoice was downloaded; used by the \"Downloaded from/to\" search.",
    )
    acquisition_date = fields.Datetime(
        string="Received in KSeF",
        readonly=True,
        help="When KSeF assigned the KSeF number: the legal date of receipt of the invoice by the buyer.",
    )
    permanent_storage_date = fields.Datetime(string="Stored in KSeF", readonly=True)
    subject_type = fields.Selection(
        selection=[('buyer', "Buyer"), ('third_party', "Third party")],
        string="Our Role",
        readonly=True,
        default='buyer',
        help="Buyer: the company is the buyer (Podmiot2). Third party: the company is named in Podmiot3 "
             "(e.g. recipient, payer, additional buyer, local-government unit, VAT group member).",
    )
    seller_nip = fields.Char(string="Vendor NIP", readonly=True, index=True)
    seller_name = fields.Char(string="Vendor", readonly=True, index='trigram')
    seller_country_code = fields.Char(
        string="Vendor Country",
        readonly=True,
        help="Country code of the seller (EU prefix or address country).",
    )
    seller_vat_ue = fields.Char(string="Vendor EU VAT", readonly=True)
    buyer_nip = fields.Char(string="Buyer NIP", readonly=True)
    buyer_name = fields.Char(string="Buyer", readonly=True)
    currency_code = fields.Char(readonly=True)
    currency_id = fields.Many2one(comodel_name='res.currency', readonly=True)
    # invoices of one list mix currencies: no totals
    amount_net = fields.Monetary(string="Net", readonly=True, currency_field='currency_id', aggregator=None)
    amount_vat = fields.Monetary(string="VAT", readonly=True, currency_field='currency_id', aggregator=None)
    amount_gross = fields.Monetary(string="Gross", readonly=True, currency_field='currency_id', index=True,
                                   aggregator=None)
    invoice_type = fields.Selection(
        selection=INVOICE_TYPES,
        readonly=True,
        index=True,
        help=INVOICE_TYPE_HELP,
    )
    form_code = fields.Char(string="Form", readonly=True, help="Structure of the document, e.g. FA (3).")
    is_self_invoicing = fields.Boolean(
        string="Self-billing",
        readonly=True,
        help="The buyer issued the invoice on behalf of the seller (samofakturowanie, P_17).",
    )
    invoicing_mode = fields.Selection(
        selection=[('online', "Online"), ('offline', "Offline")],
        string="Issued",
        readonly=True,
        help="Offline: the seller issued the invoice in an offline mode and sent it to KSeF later.",
    )
    has_attachment = fields.Boolean(readonly=True)
    invoice_hash = fields.Char(readonly=True, help="SHA-256 of the XML file (Base64).")
    is_supported = fields.Boolean(
        string="Supported",
        compute='_compute_is_supported',
        store=True,
        help="Odoo can import this kind of invoice as a vendor bill or credit note.",
    )
    support_group = fields.Selection(
        selection=[('vat', "Invoice"), ('kor', "Correction"), ('none', "Not supported")],
        string="Supported Kind",
        compute='_compute_is_supported',
        store=True,
    )
    corrected_ksef_numbers = fields.Char(
        string="Corrected KSeF Numbers",
        readonly=True,
        help="KSeF numbers of the invoices this correction corrects.",
    )
    bank_account_number = fields.Char(string="Bank Account", readonly=True, help="First account for payment.")
    due_date = fields.Date(readonly=True)
    state = fields.Selection(
        selection=[('new', "To process"), ('processed', "Processed")],
        string="Status",
        default='new',
        required=True,
        readonly=True,
        index=True,
        tracking=True,
        help="To process: the invoice waits to be imported or checked.\n"
             "Processed: the invoice was imported as a vendor bill or marked as processed (cannot be undone).",
    )
    move_id = fields.Many2one(
        comodel_name='account.move',
        string="Vendor Bill",
        readonly=True,
        copy=False,
        index='btree_not_null',
        check_company=True,
        tracking=True,
    )
    processed_by_id = fields.Many2one(comodel_name='res.users', readonly=True)
    processed_date = fields.Datetime(string="Processed On", readonly=True)
    xml_file = fields.Binary(string="XML File", attachment=True, readonly=True, copy=False)
    xml_filename = fields.Char(string="XML File Name", readonly=True)
    error_message = fields.Text(
        string="Error",
        readonly=True,
        help="Why the downloaded document cannot be read (it stays here so that no invoice is lost).",
    )
    has_error = fields.Boolean(compute='_compute_has_error', store=True)
    preview_html = fields.Html(string="Invoice", compute='_compute_preview_html', sanitize=False)

    _sql_constraints = [
        ('ksef_number_company_uniq', 'unique(company_id, ksef_number)',
         "This KSeF number is already in the KSeF inbox of the company."),
    ]

    # -------------------------------------------------------------------------
    # COMPUTE
    # -------------------------------------------------------------------------

    @api.depends('invoice_type', 'error_message')
    def _compute_is_supported(self):
        for record in self:
            supported = record.invoice_type in SUPPORTED_TYPES and not record.error_message
            record.is_supported = supported
            if not supported:
                record.support_group = 'none'
            else:
                record.support_group = 'kor' if record.invoice_type in CORRECTION_TYPES else 'vat'

    @api.depends('download_date')
    def _compute_download_day(self):
        for record in self:
            moment = record.download_date
            record.download_day = moment and pytz.utc.localize(moment).astimezone(WARSAW).date()

    @api.depends('error_message')
    def _compute_has_error(self):
        for record in self:
            record.has_error = bool(record.error_message)

    def _compute_display_name(self):
        for record in self:
            parts = [record.invoice_number or record.ksef_number, record.seller_name]
            record.display_name = " - ".join(p for p in parts if p)

    @api.depends('xml_file', 'error_message')
    def _compute_preview_html(self):
        for record in self:
            record.preview_html = record._ksef_render_preview()

    # -------------------------------------------------------------------------
    # CRUD
    # -------------------------------------------------------------------------

    @api.ondelete(at_uninstall=False)
    def _unlink_except_downloaded(self):
        if not self.env.is_superuser() and not self.env.user.has_group('l10n_pl_ksef.group_ksef_manager'):
            raise UserError(self.env._("Downloaded KSeF invoices cannot be deleted: mark them as processed instead."))

    # -------------------------------------------------------------------------
    # ACTIONS
    # -------------------------------------------------------------------------

    def action_ksef_import(self):
        """Open the import wizard (checks, vendor, bank account, options, bill)."""
        self.ensure_one()
        return self.env['l10n_pl_ksef.purchase_import']._ksef_open_for(self)

    def action_ksef_mark_processed(self):
        """Mark as processed without importing (irreversible; the form asks for confirmation)."""
        todo = self.filtered(lambda r: r.state != 'processed')
        # the status tracking in the chatter records who did it and when
        todo.write({'state': 'processed', 'processed_by_id': self.env.uid, 'processed_date': fields.Datetime.now()})
        return True

    def action_ksef_back(self):
        """"Cancel" of the form: back to the inbox list (nothing is changed)."""
        action = self.env['ir.actions.act_window']._for_xml_id('l10n_pl_ksef.l10n_pl_ksef_inbox_action')
        action['target'] = 'main'
        return action

    def action_ksef_open_bill(self):
        self.ensure_one()
        return self.move_id._get_records_action(name=self.env._("Vendor Bill"))

    def action_ksef_download_xml(self):
        self.ensure_one()
        return {
            'type': 'ir.actions.act_url',
            'url': '/web/content/%s/%s/xml_file/%s?download=true' % (self._name, self.id, self.xml_filename),
            'target': 'download',
        }

    def action_ksef_open_corrected(self):
        """The inbox records of the invoices this correction corrects."""
        self.ensure_one()
        numbers = [n for n in (self.corrected_ksef_numbers or '').split(',') if n]
        originals = self.search([('company_id', '=', self.company_id.id), ('ksef_number', 'in', numbers)])
        return originals._get_records_action(name=self.env._("Corrected Invoices"))

    def action_ksef_import_ready(self):
        """Import, with the default options, every selected invoice that passes all checks without any
        question (vendor and bank account known, taxes mapped); report the others."""
        done, skipped = self._ksef_import_ready()
        message = self.env._("%(done)s invoice(s) imported as vendor bills, %(skipped)s left for the import "
                             "wizard (vendor, bank account or tax to confirm, or not importable).",
                             done=len(done), skipped=len(skipped))
        return {
            'type': 'ir.actions.client',
            'tag': 'display_notification',
            'params': {
                'title': self.env._("KSeF import"),
                'message': message,
                'type': 'success' if done else 'warning',
                'sticky': bool(skipped),
                'next': {'type': 'ir.actions.client', 'tag': 'soft_reload'},
            },
        }

    @api.model
    def _ksef_action_open_for_moves(self, moves):
        """Server action of the vendor bill form: the inbox record of the bill."""
        records = self.search([('move_id', 'in', moves.ids)])
        if not records:
            numbers = [n for n in moves.mapped('ksef_number') if n]
            records = self.search([('ksef_number', 'in', numbers), ('company_id', 'in', moves.company_id.ids)])
        if not records:
            raise UserError(self.env._("This bill was not imported from the KSeF inbox."))
        return records._get_records_action(name=self.env._("KSeF Inbox"))

    # -------------------------------------------------------------------------
    # BUSINESS: storing downloaded invoices
    # -------------------------------------------------------------------------

    @api.model
    def _ksef_vals_from_download(self, company, item, subject_type='buyer'):
        """Record values of one :class:`ksef.client.ExportedInvoice` (never raises: problems are kept in
        ``error_message`` so the invoice stays visible)."""
        meta = item.metadata or {}
        number = item.ksef_number or meta.get('ksefNumber')
        vals = {
            'company_id': company.id,
            'ksef_number': number,
            'subject_type': subject_type,
            'invoice_number': meta.get('invoiceNumber') or False,
            'issue_date': _date(meta.get('issueDate')),
            'acquisition_date': _utc_naive(meta.get('acquisitionDate')),
            'permanent_storage_date': _utc_naive(meta.get('permanentStorageDate')),
            'seller_nip': (meta.get('seller') or {}).get('nip') or False,
            'seller_name': (meta.get('seller') or {}).get('name') or False,
            'buyer_nip': ((meta.get('buyer') or {}).get('identifier') or {}).get('value') or False,
            'buyer_name': (meta.get('buyer') or {}).get('name') or False,
            'currency_code': meta.get('currency') or False,
            'amount_net': meta.get('netAmount') or 0.0,
            'amount_vat': meta.get('vatAmount') or 0.0,
            'amount_gross': meta.get('grossAmount') or 0.0,
            'invoice_type': API_INVOICE_TYPES.get(meta.get('invoiceType')) or False,
            'form_code': (meta.get('formCode') or {}).get('systemCode') or False,
            'is_self_invoicing': bool(meta.get('isSelfInvoicing')),
            'invoicing_mode': {'Online': 'online', 'Offline': 'offline'}.get(meta.get('invoicingMode'), False),
            'has_attachment': bool(meta.get('hasAttachment')),
            'invoice_hash': meta.get('invoiceHash') or False,
        }
        errors = []
        if item.xml is None:
            errors.append(self.env._("KSeF sent no XML for this invoice."))
        else:
            vals['xml_file'] = base64.b64encode(item.xml)
            vals['xml_filename'] = '%s.xml' % (number or 'invoice')
            digest = ksef_crypto.sha256_b64(item.xml)
            if vals['invoice_hash'] and vals['invoice_hash'] != digest:
                errors.append(self.env._("The XML does not match the hash KSeF gave (%s).", vals['invoice_hash']))
            vals['invoice_hash'] = digest
            if vals['form_code'] and not vals['form_code'].startswith('FA ('):
                pass  # PEF / FA_RR: not an FA(3)/FA(2) document, metadata is all we show
            else:
                try:
                    invoice = fa3.parse(item.xml)
                except ksef_errors.XmlParseError as exc:
                    errors.append(self._ksef_parse_error_text(exc))
                except Exception:
                    _logger.exception("unexpected error parsing KSeF invoice %s", number)
                    errors.append(self.env._("The XML cannot be read."))
                else:
                    self._ksef_update_vals_from_invoice(vals, invoice)
        if not number or not ksef_numbers.is_valid_ksef_number(number):
            errors.append(self.env._("Invalid KSeF number %s.", number or '-'))
            vals['ksef_number'] = number or 'INVALID-%s' % fields.Datetime.now().timestamp()
        vals['error_message'] = "\n".join(errors) or False
        return vals

    @api.model
    def _ksef_parse_error_text(self, exc):
        params = exc.params or {}
        reason = params.get('reason') or exc.code
        where = params.get('path') or params.get('line') or ''
        return self.env._("The XML cannot be read as an FA(3)/FA(2) invoice (%(reason)s%(where)s).",
                          reason=reason, where=(" at %s" % where) if where else "")

    @api.model
    def _ksef_update_vals_from_invoice(self, vals, invoice):
        """Fill what the metadata lacks (or a metadata-less download) from the parsed invoice."""
        fa = invoice.fa
        seller = invoice.podmiot1 and invoice.podmiot1.dane_identyfikacyjne
        buyer = invoice.podmiot2 and invoice.podmiot2.dane_identyfikacyjne
        if seller:
            vals['seller_nip'] = vals.get('seller_nip') or seller.nip or False
            vals['seller_name'] = vals.get('seller_name') or seller.nazwa or False
        country = invoice.podmiot1 and invoice.podmiot1.adres and invoice.podmiot1.adres.kod_kraju
        vals['seller_country_code'] = (invoice.podmiot1 and invoice.podmiot1.prefiks_podatnika) or country or False
        if buyer:
            vals['buyer_nip'] = vals.get('buyer_nip') or buyer.nip or buyer.nr_vat_ue or buyer.nr_id or False
            vals['buyer_name'] = vals.get('buyer_name') or buyer.nazwa or False
        if fa is None:
            return
        vals['invoice_number'] = vals.get('invoice_number') or fa.p_2 or False
        vals['issue_date'] = vals.get('issue_date') or fa.p_1 or False
        vals['currency_code'] = vals.get('currency_code') or fa.kod_waluty or False
        vals['invoice_type'] = vals.get('invoice_type') or fa.rodzaj_faktury or False
        buckets = fa3_rates.bucket_values(fa)
        if not vals.get('amount_gross') and fa.p_15 is not None:
            vals['amount_gross'] = float(fa.p_15)
            vals['amount_net'] = float(sum((n or 0) for n, _v, _p in buckets.values()))
            vals['amount_vat'] = float(sum((v or 0) for _n, v, _p in buckets.values()))
        elif (fa.kod_waluty or 'PLN') != 'PLN' and buckets:
            # the metadata's vatAmount is in PLN (P_14_xW); the inbox shows amounts in the invoice currency
            vals['amount_vat'] = float(sum((v or 0) for _n, v, _p in buckets.values()))
        if fa.adnotacje and fa.adnotacje.p_17 == 1:
            vals['is_self_invoicing'] = True
        numbers = [d.nr_ksef_fa_korygowanej for d in fa.dane_fa_korygowanej if d.nr_ksef_fa_korygowanej]
        vals['corrected_ksef_numbers'] = ",".join(numbers) or False
        platnosc = fa.platnosc
        if platnosc:
            accounts = [r.nr_rb for r in platnosc.rachunek_bankowy if r.nr_rb]
            vals['bank_account_number'] = accounts[0] if accounts else False
            dues = [t.termin for t in platnosc.termin_platnosci if t.termin]
            vals['due_date'] = min(dues) if dues else False

    @api.model
    def _ksef_store_downloaded(self, company, items, subject_type='buyer'):
        """Store downloaded invoices once: KSeF numbers already in the inbox of ``company`` are skipped.
        Returns the new records. An invoice that cannot be read is stored with its error."""
        company = company.sudo()
        numbers = [i.ksef_number for i in items if i.ksef_number]
        existing = set()
        if numbers:
            self.env.cr.execute("SELECT ksef_number FROM l10n_pl_ksef_inbox WHERE company_id = %s "
                                "AND ksef_number IN %s", [company.id, tuple(numbers)])
            existing = {row[0] for row in self.env.cr.fetchall()}
        vals_list, seen = [], set()
        for item in items:
            if item.ksef_number in existing or item.ksef_number in seen:
                continue
            seen.add(item.ksef_number)
            vals_list.append(self._ksef_vals_from_download(company, item, subject_type))
        if not vals_list:
            return self.browse()
        currencies = {c.name: c.id for c in self.env['res.currency'].with_context(active_test=False).search(
            [('name', 'in', list({v['currency_code'] for v in vals_list if v.get('currency_code')}))])}
        for vals in vals_list:
            vals['currency_id'] = currencies.get(vals.get('currency_code')) or company.currency_id.id
        inbox = self.sudo().with_context(mail_create_nolog=True, mail_create_nosubscribe=True, tracking_disable=True)
        try:
            with self.env.cr.savepoint():
                return inbox.create(vals_list)
        except Exception:
            _logger.info("KSeF inbox: batch insert failed, storing %s invoices one by one", len(vals_list))
        records = self.browse()
        for vals in vals_list:
            try:
                with self.env.cr.savepoint():
                    records |= inbox.create([vals])
            except Exception:
                _logger.info("KSeF inbox: %s not stored (already there)", vals.get('ksef_number'))
        return records

    # -------------------------------------------------------------------------
    # BUSINESS: parsed invoice, preview
    # -------------------------------------------------------------------------

    def _ksef_xml(self):
        self.ensure_one()
        return base64.b64decode(self.with_context(bin_size=False).xml_file or b'')

    def _ksef_invoice(self):
        """The parsed :class:`ksef.fa3.Invoice` (raises ``UserError`` when the XML cannot be read)."""
        self.ensure_one()
        xml = self._ksef_xml()
        if not xml:
            raise UserError(self.env._("KSeF invoice %s has no XML file.", self.ksef_number))
        try:
            return fa3.parse(xml)
        except ksef_errors.XmlParseError as exc:
            raise UserError(self._ksef_parse_error_text(exc)) from None

    def _ksef_qr_url(self):
        """KOD I verification link of the invoice (seller NIP, P_1, hash of the XML)."""
        self.ensure_one()
        if not (self.seller_nip and self.issue_date and self.invoice_hash):
            return False
        try:
            base = self.company_id._ksef_qr_base()
        except Exception:
            base = 'prod'
        try:
            return ksef_qr.invoice_url(base, self.seller_nip, self.issue_date, invoice_hash=self.invoice_hash)
        except ksef_errors.KsefError:
            return False

    def _ksef_qr_png_b64(self):
        url = self._ksef_qr_url()
        if not url:
            return False
        return base64.b64encode(ksef_qr.render_png(url, label=self.ksef_number, box_size=4))

    def _ksef_render_preview(self):
        self.ensure_one()
        if not self.xml_file:
            return False
        try:
            values = self._ksef_display_values()
        except UserError as exc:
            return Markup('<div class="alert alert-danger" role="alert">%s</div>') % exc.args[0]
        return self.env['ir.qweb']._render('l10n_pl_ksef.ksef_inbox_invoice_body', {'inv': values, 'record': self})

    def _ksef_display_values(self):
        """Plain values of the invoice for the QWeb rendering (form and PDF)."""
        self.ensure_one()
        invoice = self._ksef_invoice()
        fa = invoice.fa
        lang_pl = (self.env.lang or '').startswith('pl')
        env = self.env

        def money(value):
            return formatLang(env, float(value), digits=2) if value is not None else ''

        def number(value):
            return formatLang(env, float(value), digits=_decimals(value)) if value is not None else ''

        def qty(value):
            return fa3.format_decimal(value) if value is not None else ''

        def day(value):
            return format_date(env, value) if value else ''

        def term_text(term):
            if term.termin:
                return day(term.termin)
            opis = term.termin_opis
            if not opis:
                return ''
            return (opis.tekst or " ".join(str(x) for x in (opis.ilosc, opis.jednostka, opis.zdarzenie_poczatkowe)
                                           if x)).strip()

        def party(podmiot, role=None):
            if podmiot is None:
                return None
            ident = podmiot.dane_identyfikacyjne
            address = podmiot.adres
            tax_id = ''
            if ident:
                if ident.nip:
                    tax_id = "NIP %s" % ident.nip
                elif ident.nr_vat_ue:
                    tax_id = "VAT UE %s%s" % (ident.kod_ue or '', ident.nr_vat_ue)
                elif ident.nr_id:
                    tax_id = "ID %s %s" % (ident.kod_kraju or '', ident.nr_id)
            lines = [line for line in ((address and address.adres_l1), (address and address.adres_l2)) if line]
            return {
                'name': (ident and ident.nazwa) or '',
                'tax_id': tax_id,
                'address': lines,
                'country': (address and address.kod_kraju) or '',
                'contacts': [c.email or c.telefon for c in getattr(podmiot, 'dane_kontaktowe', [])
                             if c.email or c.telefon],
                'role': role,
            }

        thirds = []
        for p3 in invoice.podmiot3:
            role = fa3_rates.ROLE_NAMES.get(p3.rola)
            role_text = (role[1] if lang_pl else role[0]) if role else (p3.opis_roli or '')
            thirds.append(party(p3, role_text))
        currency = fa.kod_waluty or 'PLN'
        lines = []
        for w in fa.fa_wiersz:
            lines.append({
                'no': w.nr_wiersza_fa, 'name': w.p_7 or '', 'code': w.indeks or w.gtin or '',
                'unit': w.p_8a or '', 'qty': qty(w.p_8b), 'price': number(w.p_9a if w.p_9a is not None else w.p_9b),
                'discount': money(w.p_10), 'net': money(w.p_11 if w.p_11 is not None else w.p_11a),
                'rate': ('%s%%' % w.p_12) if (w.p_12 or '').isdigit() else (w.p_12 or ''),
                'before': bool(w.stan_przed), 'gross_method': w.p_11 is None and w.p_11a is not None,
            })
        buckets = []
        for bucket, (net, vat, pln) in fa3_rates.bucket_values(fa).items():
            label = fa3_rates.BUCKET_LABELS.get(bucket, (bucket, bucket))
            buckets.append({'label': label[1] if lang_pl else label[0], 'net': money(net), 'vat': money(vat),
                            'vat_pln': money(pln)})
        platnosc = fa.platnosc
        payment = None
        if platnosc:
            forms_of_payment = {  # FormaPlatnosci codes
                1: self.env._("cash"), 2: self.env._("card"), 3: self.env._("voucher"), 4: self.env._("cheque"),
                5: self.env._("credit"), 6: self.env._("bank transfer"), 7: self.env._("mobile payment"),
            }
            payment = {
                'paid': bool(platnosc.zaplacono), 'paid_date': day(platnosc.data_zaplaty),
                'form': forms_of_payment.get(platnosc.forma_platnosci) or platnosc.opis_platnosci or '',
                'terms': [term for term in map(term_text, platnosc.termin_platnosci) if term],
                'accounts': [{'number': r.nr_rb, 'swift': r.swift or '', 'bank': r.nazwa_banku or '',
                              'description': r.opis_rachunku or ''} for r in platnosc.rachunek_bankowy],
                'factor_accounts': [{'number': r.nr_rb, 'bank': r.nazwa_banku or ''}
                                    for r in platnosc.rachunek_bankowy_faktora],
                'partial': [{'amount': money(z.kwota_zaplaty_czesciowej), 'date': day(z.data_zaplaty_czesciowej)}
                            for z in platnosc.zaplata_czesciowa],
                'discount': platnosc.skonto and "%s: %s" % (platnosc.skonto.warunki_skonta or '',
                                                            platnosc.skonto.wysokosc_skonta or ''),
                'link': platnosc.link_do_platnosci or '', 'ipksef': platnosc.ipksef or '',
            }
        adn = fa.adnotacje
        notes = []
        if adn:
            if adn.p_16 == 1:
                notes.append(self.env._("Cash accounting (metoda kasowa)"))
            if adn.p_17 == 1:
                notes.append(self.env._("Self-billing (samofakturowanie)"))
            if adn.p_18 == 1:
                notes.append(self.env._("Reverse charge (odwrotne obciążenie)"))
            if adn.p_18a == 1:
                notes.append(self.env._("Split payment (mechanizm podzielonej płatności)"))
            if adn.zwolnienie and adn.zwolnienie.p_19 == 1:
                basis = adn.zwolnienie.p_19a or adn.zwolnienie.p_19b or adn.zwolnienie.p_19c or ''
                notes.append(self.env._("VAT exemption: %s", basis))
            if adn.p_23 == 1:
                notes.append(self.env._("Simplified triangular procedure"))
            if adn.pmarzy and adn.pmarzy.p_pmarzy == 1:
                notes.append(self.env._("Margin scheme (procedura marży)"))
        corrections = [{
            'date': day(d.data_wyst_fa_korygowanej), 'number': d.nr_fa_korygowanej or '',
            'ksef_number': d.nr_ksef_fa_korygowanej or (self.env._("outside KSeF") if d.nr_ksef_n else ''),
        } for d in fa.dane_fa_korygowanej]
        advances = [f.nr_ksef_fa_zaliczkowej or f.nr_fa_zaliczkowej or '' for f in fa.faktura_zaliczkowa]
        footer = []
        if invoice.stopka:
            footer = [i.stopka_faktury for i in invoice.stopka.informacje if i.stopka_faktury]
            for reg in invoice.stopka.rejestry:
                bits = [("KRS %s" % reg.krs) if reg.krs else '', ("REGON %s" % reg.regon) if reg.regon else '',
                        ("BDO %s" % reg.bdo) if reg.bdo else '']
                if any(bits):
                    footer.append(" ".join(b for b in bits if b))
        kind_labels = {
            'VAT': self.env._("VAT invoice"), 'KOR': self.env._("Correcting invoice"),
            'ZAL': self.env._("Advance payment invoice"), 'ROZ': self.env._("Settlement invoice"),
            'UPR': self.env._("Simplified invoice"), 'KOR_ZAL': self.env._("Correction of an advance invoice"),
            'KOR_ROZ': self.env._("Correction of a settlement invoice"),
        }
        return {
            'kind': kind_labels.get(fa.rodzaj_faktury, fa.rodzaj_faktury or ''),
            'form': invoice.source_form, 'number': fa.p_2 or '', 'ksef_number': self.ksef_number,
            'issue_date': day(fa.p_1), 'place': fa.p_1m or '',
            'delivery_date': day(fa.p_6),
            'period': (fa.okres_fa and "%s - %s" % (day(fa.okres_fa.p_6_od), day(fa.okres_fa.p_6_do))) or '',
            'currency': currency, 'rate': number(fa.kurs_waluty_z) if fa.kurs_waluty_z else '',
            'seller': party(invoice.podmiot1), 'buyer': party(invoice.podmiot2), 'thirds': thirds,
            'lines': lines, 'buckets': buckets, 'total': money(fa.p_15),
            'rozliczenie': fa.rozliczenie and {
                'charges': [(money(k.kwota), k.powod or '') for k in fa.rozliczenie.obciazenia],
                'deductions': [(money(k.kwota), k.powod or '') for k in fa.rozliczenie.odliczenia],
                'to_pay': money(fa.rozliczenie.do_zaplaty), 'to_settle': money(fa.rozliczenie.do_rozliczenia),
            },
            'payment': payment, 'notes': notes, 'correction_reason': fa.przyczyna_korekty or '',
            'corrections': corrections, 'advances': advances,
            'extra': [(k.klucz or '', k.wartosc or '') for k in fa.dodatkowy_opis],
            'footer': footer, 'orders': (fa.zamowienie and [
                {'name': z.p_7z or '', 'qty': qty(z.p_8bz), 'net': money(z.p_11_netto_z), 'rate': z.p_12z or ''}
                for z in fa.zamowienie.zamowienie_wiersz]) or [],
        }

    # -------------------------------------------------------------------------
    # BUSINESS: import checks
    # -------------------------------------------------------------------------

    def _ksef_company_nips(self):
        self.ensure_one()
        company = self.company_id
        nips = {ksef_numbers.normalize_nip(company.vat)}
        context_nip = company.sudo().ksef_context_nip if 'ksef_context_nip' in company._fields else False
        if context_nip:
            nips.add(ksef_numbers.normalize_nip(context_nip))
        nips.discard('')
        return nips

    def _ksef_seller_identity(self, invoice):
        """``{nip, eu_prefix, eu_number, other_id, country_code, name}`` of the seller of a parsed invoice."""
        podmiot = invoice.podmiot1
        ident = podmiot and podmiot.dane_identyfikacyjne
        country = (podmiot and podmiot.adres and podmiot.adres.kod_kraju) or 'PL'
        return {
            'nip': (ident and ident.nip) or None,
            'eu_prefix': (ident and ident.kod_ue) or (podmiot and podmiot.prefiks_podatnika) or None,
            'eu_number': (ident and ident.nr_vat_ue) or None,
            'other_id': (ident and ident.nr_id) or None,
            'country_code': country,
            'name': (ident and ident.nazwa) or '',
        }

    def _ksef_find_vendor(self, invoice=None):
        self.ensure_one()
        invoice = invoice or self._ksef_invoice()
        identity = self._ksef_seller_identity(invoice)
        return self.env['res.partner']._ksef_find_by_tax_id(
            self.company_id, nip=identity['nip'], eu_prefix=identity['eu_prefix'], eu_number=identity['eu_number'],
            other_id=identity['other_id'], country_code=identity['country_code'])

    @api.model
    def _ksef_invoice_accounts(self, invoice):
        platnosc = invoice.fa and invoice.fa.platnosc
        if not platnosc:
            return []
        return [r for r in platnosc.rachunek_bankowy if r.nr_rb]

    def _ksef_buyer_role(self, invoice):
        """``('buyer', None)`` when Podmiot2 is the company, ``('third_party', role)`` for an accepted
        Podmiot3 role, else ``(False, role_or_None)``."""
        nips = self._ksef_company_nips()
        buyer = invoice.podmiot2 and invoice.podmiot2.dane_identyfikacyjne
        if buyer and buyer.nip and ksef_numbers.normalize_nip(buyer.nip) in nips:
            return 'buyer', None
        for p3 in invoice.podmiot3:
            ident = p3.dane_identyfikacyjne
            nip = ident and (ident.nip or (ident.id_wew or '').split('-')[0])
            if nip and ksef_numbers.normalize_nip(nip) in nips:
                return ('third_party', p3.rola) if p3.rola in THIRD_PARTY_BUYER_ROLES else (False, p3.rola)
        return False, None

    @api.model
    def _ksef_is_zero(self, invoice):
        """True when the invoice carries no amount at all (total, rate sums and lines are zero or absent)."""
        fa = invoice.fa
        values = [fa.p_15] + [v for trio in fa3_rates.bucket_values(fa).values() for v in trio]
        values += [v for w in fa.fa_wiersz for v in (w.p_11, w.p_11a)]
        return all(not v for v in values)

    def _ksef_find_original_bills(self, invoice=None):
        """Bills of the company with the KSeF numbers this correction corrects."""
        self.ensure_one()
        numbers = [n for n in (self.corrected_ksef_numbers or '').split(',') if n]
        if not numbers and invoice is not None and invoice.fa:
            numbers = [d.nr_ksef_fa_korygowanej for d in invoice.fa.dane_fa_korygowanej if d.nr_ksef_fa_korygowanej]
        if not numbers:
            return self.env['account.move']
        return self.env['account.move'].search([
            ('company_id', '=', self.company_id.id), ('ksef_number', 'in', numbers),
            ('move_type', 'in', ('in_invoice', 'in_refund')), ('state', '!=', 'cancel'),
        ])

    def _ksef_import_checks(self, invoice=None, partner=None):
        """The checks of the import, in order: a list of ``{key, level, message}`` where ``level`` is
        ``ok``, ``info``, ``warning`` (import possible), ``fix`` (a step of the wizard fixes it) or
        ``blocking`` (cannot be imported), plus ``{'partner', 'bank', 'invoice'}`` found on the way."""
        self.ensure_one()
        checks = []
        found = {'partner': self.env['res.partner'], 'bank': self.env['res.partner.bank'], 'invoice': None}

        def add(key, level, message):
            checks.append({'key': key, 'level': level, 'message': message})

        if self.move_id or self.env['account.move'].search_count([
                ('company_id', '=', self.company_id.id), ('ksef_number', '=', self.ksef_number)], limit=1):
            add('duplicate', 'blocking', self.env._("This invoice was already imported (%s).",
                                           self.move_id.display_name or self.ksef_number))
            return checks, found
        if self.state == 'processed':
            add('processed', 'blocking', self.env._("This invoice is already marked as processed."))
            return checks, found
        if self.invoice_type not in SUPPORTED_TYPES or not self.xml_file:
            add('type', 'blocking', self.env._("Invoices of type %s cannot be imported; mark it as processed after "
                                      "booking it by hand.", self.invoice_type or '?'))
            return checks, found
        if invoice is None:
            try:
                invoice = self._ksef_invoice()
            except UserError as exc:
                add('xml', 'blocking', exc.args[0])
                return checks, found
        found['invoice'] = invoice
        add('type', 'ok', self.env._("Invoice type %s is supported.", invoice.fa.rodzaj_faktury))
        role, p3_role = self._ksef_buyer_role(invoice)
        if role == 'buyer':
            add('buyer', 'ok',
                self.env._("The company is the buyer (NIP %s).", ", ".join(sorted(self._ksef_company_nips()))))
        elif role == 'third_party':
            add('buyer', 'info',
                self.env._("The company is named as a third party with role %s: the invoice is booked as "
                                   "its purchase.", p3_role))
        else:
            add('buyer', 'blocking', self.env._(
                "The company (NIP %(nips)s) is not the buyer of this invoice (buyer: %(buyer)s).",
                nips=", ".join(sorted(self._ksef_company_nips())) or '-', buyer=self.buyer_nip or '-'))
        partner = partner or self._ksef_find_vendor(invoice)
        found['partner'] = partner
        if partner:
            add('vendor', 'ok', self.env._("Vendor found: %s.", partner.display_name))
        else:
            add('vendor', 'fix',
                self.env._("The vendor %(name)s (%(id)s) is not in Odoo yet.", name=self.seller_name or '',
                                   id=self.seller_nip or self.seller_vat_ue or '-'))
        accounts = self._ksef_invoice_accounts(invoice)
        if accounts and partner:
            banks = self.env['res.partner.bank']
            for account in accounts:
                banks |= self.env['res.partner.bank']._ksef_find_accounts(account.nr_rb, partner=partner,
                                                                           company=self.company_id)
            if banks:
                found['bank'] = banks[:1]
                add('bank', 'ok', self.env._("Bank account %s is known for the vendor.", banks[:1].acc_number))
            else:
                others = self.env['res.partner.bank']._ksef_find_accounts(accounts[0].nr_rb, company=self.company_id)
                if others:
                    add('bank', 'fix',
                        self.env._("Bank account %(account)s of the invoice belongs to %(other)s, not to the "
                                         "vendor: check it before adding it.", account=accounts[0].nr_rb,
                                         other=others[0].partner_id.display_name))
                else:
                    add('bank', 'fix', self.env._("Bank account %s of the invoice is not registered for the vendor.",
                                         accounts[0].nr_rb))
        elif accounts:
            add('bank', 'fix', self.env._("Bank account %s will be checked once the vendor exists.", accounts[0].nr_rb))
        else:
            add('bank', 'ok', self.env._("The invoice gives no bank account."))
        currency = self.env['res.currency'].with_context(active_test=False).search(
            [('name', '=', invoice.fa.kod_waluty or 'PLN')], limit=1)
        if not currency:
            add('currency', 'blocking', self.env._("Currency %s is unknown.", invoice.fa.kod_waluty))
        elif not currency.active:
            add('currency', 'warning', self.env._("Currency %s is not active: it will be activated.", currency.name))
        if self._ksef_is_zero(invoice):
            add('amounts', 'blocking',
                self.env._("This correction changes no amounts (for example only party data): there "
                                         "is nothing to book. Mark it as processed."))
        tax_map = self._ksef_default_tax_map(invoice)
        missing = sorted(code for code, tax in tax_map.items() if not tax and code not in ('np I', 'np II'))
        if missing:
            add('taxes', 'warning', self.env._("No purchase tax for rate(s) %s: choose one in the next step.",
                                      ", ".join(missing)))
        if invoice.fa.rodzaj_faktury in CORRECTION_TYPES:
            originals = self._ksef_find_original_bills(invoice)
            if originals:
                add('original', 'ok',
                    self.env._("Corrected bill found: %s.", ", ".join(originals.mapped('display_name'))))
            else:
                add('original', 'info',
                    self.env._("The corrected invoice is not among the bills in Odoo: the correction "
                                          "will not be linked."))
        return checks, found

    # -------------------------------------------------------------------------
    # BUSINESS: taxes, products
    # -------------------------------------------------------------------------

    def _ksef_rate_codes(self, invoice):
        """P_12 codes used by the invoice (lines, or the representative code of each summary bucket)."""
        fa = invoice.fa
        codes = [w.p_12 for w in fa.fa_wiersz if w.p_12]
        if not codes or fa.rodzaj_faktury in ADVANCE_TYPES:
            codes += [BUCKET_DEFAULT_CODE[b] for b in fa3_rates.bucket_values(fa) if b in BUCKET_DEFAULT_CODE]
        zal = fa.zamowienie
        if fa.rodzaj_faktury in ADVANCE_TYPES and zal:
            codes += [z.p_12z for z in zal.zamowienie_wiersz if z.p_12z]
        return list(dict.fromkeys(codes))

    def _ksef_default_tax_map(self, invoice):
        """``{P_12 code: account.tax}`` (empty recordset when none fits) for the company's purchase taxes."""
        self.ensure_one()
        return {code: self._ksef_purchase_tax(code) for code in self._ksef_rate_codes(invoice)}

    def _ksef_purchase_tax(self, code):
        """The company's purchase tax for an FA(3) rate code.

        1. a purchase tax whose ``ksef_rate_code`` is the code (set by hand on purchase taxes);
        2. the l10n_pl chart tax of that rate (23% G, 8%, 5%, 0%, exempt, steel reverse charge, EU services);
        3. any percent purchase tax with that rate. ``np I`` (supply outside Poland) maps to no tax.
        """
        self.ensure_one()
        company = self.company_id
        Tax = self.env['account.tax'].with_company(company)
        base_domain = [*Tax._check_company_domain(company), ('type_tax_use', '=', 'purchase')]
        if 'ksef_rate_code' in Tax._fields:
            tax = Tax.search([*base_domain, ('ksef_rate_code', '=', code)], order='sequence, id', limit=1)
            if tax:
                return tax
        template = {
            '23': 'vz_kraj_23', '22': 'vz_kraj_23', '8': 'vz_kraj_8', '7': 'vz_kraj_8', '5': 'vz_kraj_5',
            '0 KR': 'vz_kraj_0', '0 WDT': 'vz_kraj_0', '0 EX': 'vz_kraj_0', '0': 'vz_kraj_0', 'zw': 'vz_kraj_zw',
            'oo': 'vz_stal', 'np II': 'vz_nabu',
        }.get(code)
        if template and company.chart_template == 'pl':
            tax = self.env['account.chart.template'].with_company(company).ref(template, raise_if_not_found=False)
            if tax and tax.active:
                return tax
        if code in fa3_rates.RATE_PERCENT and code not in ('22', '7', '3'):
            percent = float(fa3_rates.RATE_PERCENT[code])
            taxes = Tax.search([*base_domain, ('amount_type', '=', 'percent')], order='sequence, id')
            tax = taxes.filtered(lambda t: float_compare(t.amount, percent, precision_digits=4) == 0
                                 and not t.price_include)[:1]
            if tax:
                return tax
        return Tax.browse()

    def _ksef_match_product(self, partner, line):
        """Product for an invoice line: the vendor's product code (``Indeks``) or name in the vendor price
        list (``product.supplierinfo``), else the GTIN as barcode; empty when nothing matches."""
        Product = self.env['product.product']
        if not partner:
            return Product
        Info = self.env['product.supplierinfo']
        domain = [('partner_id', 'in', partner.commercial_partner_id.ids),
                  '|', ('company_id', '=', False), ('company_id', '=', self.company_id.id)]
        info = Info.browse()
        if line.indeks:
            info = Info.search([*domain, ('product_code', '=', line.indeks.strip())], limit=1)
        if not info and line.p_7:
            info = Info.search([*domain, ('product_name', '=ilike', line.p_7.strip())], limit=1)
        if info:
            return info.product_id or info.product_tmpl_id.product_variant_id
        if line.gtin:
            return Product.search([('barcode', '=', line.gtin.strip()), *Product._check_company_domain(
                self.company_id)], limit=1)
        return Product

    # -------------------------------------------------------------------------
    # BUSINESS: the bill
    # -------------------------------------------------------------------------

    @api.model
    def _ksef_line_net(self, line):
        """Net value of a line (``P_11``; from the gross ``P_11A`` for gross-method lines)."""
        if line.p_11 is not None:
            return line.p_11
        if line.p_11a is not None:
            rate = fa3_rates.line_rate(line)
            if line.p_11vat is not None:
                return line.p_11a - line.p_11vat
            if rate is None:
                return line.p_11a
            vat = fa3_rates.round_half_up(line.p_11a * rate / (1 + rate))
            return line.p_11a - vat
        if line.p_9a is not None and line.p_8b is not None:
            return fa3_rates.round_half_up(line.p_9a * line.p_8b - (line.p_10 or Decimal(0)))
        return Decimal(0)

    def _ksef_exchange_rate(self, invoice):
        """PLN per unit of the invoice currency written on the invoice, or ``None``."""
        fa = invoice.fa
        for line in fa.fa_wiersz:
            if line.kurs_waluty:
                return line.kurs_waluty
        if fa.kurs_waluty_z:
            return fa.kurs_waluty_z
        for _bucket, (_net, vat, pln) in fa3_rates.bucket_values(fa).items():
            if vat and pln:
                return pln / vat
        return None

    def _ksef_bill_line_vals(self, invoice, partner, tax_map, options):
        """Invoice line values (sign: as on the invoice; the caller flips them for a credit note)."""
        fa = invoice.fa
        kind = fa.rodzaj_faktury
        price_digits = self.env['decimal.precision'].precision_get('Product Price')
        default_product = options.get('default_product')
        default_account = options.get('default_account')
        lines = []

        def tax_for(code, product=None):
            tax = tax_map.get(code) or self.env['account.tax']
            if product and code in fa3_rates.RATE_PERCENT:
                own = product.supplier_taxes_id.filtered(
                    lambda t: t.company_id == self.company_id and (
                        getattr(t, 'ksef_rate_code', False) == code
                        or float_compare(t.amount, float(fa3_rates.RATE_PERCENT[code]), precision_digits=4) == 0))
                if own:
                    return own[:1]
            return tax

        def add(name, net, code, *, product=None, qty=None, note=None):
            product = product or default_product or self.env['product.product']
            vals = {'name': name, 'tax_ids': [fields.Command.set(tax_for(code, product).ids)]}
            if product:
                vals['product_id'] = product.id
            if default_account and not (product and product != default_product):
                vals['account_id'] = default_account.id
            net_f = float(net)
            qty_f = float(qty) if qty else 1.0
            price = float_round(net_f / qty_f, precision_digits=price_digits) if qty_f else net_f
            if qty_f and float_compare(price * qty_f, net_f, precision_digits=2) == 0:
                vals.update(quantity=qty_f, price_unit=price)
            else:
                vals.update(quantity=1.0, price_unit=net_f)
                if note:
                    vals['name'] = "%s (%s)" % (name, note)
            lines.append(vals)
            return vals

        by_bucket, bucket_lines = {}, {}
        # simplified invoices (and some corrections) list goods without amounts: book the summary then
        priced = any(w.p_11 is not None or w.p_11a is not None or (w.p_9a is not None and w.p_8b is not None)
                     for w in fa.fa_wiersz)
        use_lines = (options.get('line_mode', 'lines') == 'lines' and priced and kind not in ADVANCE_TYPES)
        if use_lines:
            for w in fa.fa_wiersz:
                net = self._ksef_line_net(w)
                if w.stan_przed:
                    net = -net
                bucket = fa3_rates.line_bucket(w)
                by_bucket[bucket] = by_bucket.get(bucket, Decimal(0)) + net
                product = self._ksef_match_product(partner, w)
                name = w.p_7 or self.env._("Line %s", w.nr_wiersza_fa or len(lines) + 1)
                if w.indeks:
                    name = "[%s] %s" % (w.indeks, name)
                if w.stan_przed:
                    name = self.env._("%s (before correction)", name)
                note = None
                if w.p_8b is not None and w.p_9a is not None:
                    note = "%s %s x %s" % (fa3.format_decimal(w.p_8b), w.p_8a or '', fa3.format_decimal(w.p_9a))
                vals = add(name, net, w.p_12 or BUCKET_DEFAULT_CODE.get(bucket), product=product,
                           qty=None if w.stan_przed or w.p_8b is None else w.p_8b, note=note)
                bucket_lines.setdefault(bucket, []).append(vals)
        buckets = fa3_rates.bucket_values(fa)
        for bucket, (net, _vat, _pln) in buckets.items():
            if net is None:
                continue
            codes = [w.p_12 for w in fa.fa_wiersz if w.p_12 and fa3_rates.line_bucket(w) == bucket]
            code = codes[0] if codes else BUCKET_DEFAULT_CODE.get(bucket)
            if not use_lines:
                names = [w.p_7 for w in fa.fa_wiersz if w.p_7 and (fa3_rates.line_bucket(w) in (bucket, None))]
                label = {
                    'ZAL': self.env._("Advance payment"), 'KOR_ZAL': self.env._("Correction of the advance payment"),
                }.get(kind) or (", ".join(names)[:200] if names else
                                self.env._("Invoice %s", fa.p_2 or self.ksef_number))
                label = "%s - %s" % (label, fa3_rates.BUCKET_LABELS.get(bucket, (bucket,))[0])
                add(label, net, code)
                continue
            diff = net - by_bucket.get(bucket, Decimal(0))
            if kind in SETTLEMENT_TYPES and diff:
                refs = ", ".join(f.nr_ksef_fa_zaliczkowej or f.nr_fa_zaliczkowej or '' for f in fa.faktura_zaliczkowa)
                add(self.env._("Advance payments already invoiced %s", refs).strip(), diff, code)
            elif diff and abs(diff) <= Decimal('0.01') * (len(bucket_lines.get(bucket, [])) + 1):
                # gross-method lines: the seller rounded the net per rate, not per line
                single = [v for v in bucket_lines.get(bucket, []) if v['quantity'] == 1.0]
                if single:
                    single[-1]['price_unit'] = float(Decimal(str(single[-1]['price_unit'])) + diff)
                else:
                    add(self.env._("Rounding difference"), diff, code)
        if not buckets and not use_lines and fa.p_15:
            # no summary at all (simplified invoice with the gross total only): split the gross by the rate
            codes = list(dict.fromkeys(w.p_12 for w in fa.fa_wiersz if w.p_12))
            names = ", ".join(w.p_7 for w in fa.fa_wiersz if w.p_7)[:200] or self.env._(
                "Invoice %s", fa.p_2 or self.ksef_number)
            rate = fa3_rates.RATE_PERCENT.get(codes[0]) if len(codes) == 1 else None
            if rate is not None:
                add(names, fa3_rates.round_half_up(fa.p_15 * 100 / (100 + rate)), codes[0])
            else:
                add(names, fa.p_15, None)
        return lines

    def _ksef_prepare_bill_vals(self, invoice, partner, options):
        """``account.move`` create values for the bill/credit note of this invoice."""
        self.ensure_one()
        fa = invoice.fa
        kind = fa.rodzaj_faktury
        tax_map = options.get('tax_map') or self._ksef_default_tax_map(invoice)
        line_vals = self._ksef_bill_line_vals(invoice, partner, tax_map, options)
        total = fa.p_15 if fa.p_15 is not None else sum(
            (Decimal(str(v['price_unit'])) * Decimal(str(v['quantity'])) for v in line_vals), Decimal(0))
        move_type = options.get('move_type')
        if not move_type:
            move_type = 'in_refund' if kind in CORRECTION_TYPES and total < 0 else 'in_invoice'
        flipped = move_type == 'in_refund' and total < 0
        if flipped:
            for vals in line_vals:
                vals['price_unit'] = -vals['price_unit']
        currency = self.env['res.currency'].with_context(active_test=False).search(
            [('name', '=', fa.kod_waluty or 'PLN')], limit=1)
        if currency and not currency.active:
            currency.sudo().active = True
        journal = options.get('journal') or self.env['account.journal'].search([
            *self.env['account.journal']._check_company_domain(self.company_id), ('type', '=', 'purchase')], limit=1)
        platnosc = fa.platnosc
        dues = [t.termin for t in (platnosc.termin_platnosci if platnosc else []) if t.termin]
        notes = [self.env._("KSeF number: %s", self.ksef_number)]
        if fa.adnotacje and fa.adnotacje.p_18a == 1:
            notes.append(self.env._("Split payment (MPP) required."))
        if fa.adnotacje and fa.adnotacje.p_18 == 1:
            notes.append(self.env._("Reverse charge: the buyer accounts for the VAT."))
        if fa.adnotacje and fa.adnotacje.p_17 == 1:
            notes.append(self.env._("Self-billing invoice."))
        if platnosc and platnosc.zaplacono == 1:
            notes.append(self.env._("Paid on %s according to the invoice.", platnosc.data_zaplaty or '?'))
        if len(dues) > 1:
            notes.append(self.env._("Payment terms: %s", ", ".join(str(d) for d in dues)))
        if kind in CORRECTION_TYPES:
            outside = self.env._("outside KSeF")
            refs = ", ".join("%s (%s)" % (d.nr_fa_korygowanej or '', d.nr_ksef_fa_korygowanej or outside)
                             for d in fa.dane_fa_korygowanej)
            notes.append(self.env._("Corrects: %s", refs))
            if fa.przyczyna_korekty:
                notes.append(self.env._("Reason: %s", fa.przyczyna_korekty))
        for extra in fa.dodatkowy_opis:
            notes.append("%s: %s" % (extra.klucz or '', extra.wartosc or ''))
        vals = {
            '_ksef_flipped': flipped,
            'move_type': move_type,
            'company_id': self.company_id.id,
            'partner_id': partner.id,
            'journal_id': journal.id,
            'currency_id': (currency or self.company_id.currency_id).id,
            'invoice_date': fa.p_1,
            'ref': fa.p_2 or self.ksef_number,
            'payment_reference': fa.p_2 or False,
            'ksef_number': self.ksef_number,
            'narration': Markup('<br/>').join(notes),
            'invoice_line_ids': [fields.Command.create(v) for v in line_vals],
        }
        delivery = fa.p_6 or (fa.okres_fa and fa.okres_fa.p_6_do)
        if delivery:
            vals['delivery_date'] = delivery
        if dues:
            vals['invoice_date_due'] = min(dues)
            vals['invoice_payment_term_id'] = False
        if options.get('partner_bank'):
            vals['partner_bank_id'] = options['partner_bank'].id
        if currency and currency != self.company_id.currency_id:
            rate = self._ksef_exchange_rate(invoice)
            if rate:
                vals['invoice_currency_rate'] = 1.0 / float(rate)
        if move_type == 'in_refund':
            original = self._ksef_find_original_bills(invoice).filtered(lambda m: m.move_type == 'in_invoice')[:1]
            if original:
                vals['reversed_entry_id'] = original.id
        return vals

    def _ksef_create_bill(self, partner, **options):
        """Create the draft bill/credit note, attach the XML and the PDF visualisation, link both ways and
        mark the inbox record processed. ``options``: ``journal``, ``move_type``, ``tax_map`` ({code: tax}),
        ``line_mode`` (``lines``/``per_rate``), ``default_product``, ``default_account``, ``partner_bank``,
        ``render_pdf`` (default True)."""
        self.ensure_one()
        self.env.cr.execute("SELECT id FROM l10n_pl_ksef_inbox WHERE id = %s FOR UPDATE NOWAIT", [self.id])
        self.invalidate_recordset(['move_id', 'state'])
        if self.move_id or self.env['account.move'].search_count([
                ('company_id', '=', self.company_id.id), ('ksef_number', '=', self.ksef_number)], limit=1):
            raise UserError(self.env._("KSeF invoice %s was already imported.", self.ksef_number))
        if self.invoice_type not in SUPPORTED_TYPES:
            raise UserError(self.env._("KSeF invoices of type %s cannot be imported.", self.invoice_type or '?'))
        invoice = self._ksef_invoice()
        vals = self._ksef_prepare_bill_vals(invoice, partner, options)
        flipped = vals.pop('_ksef_flipped', False)
        rate = vals.pop('invoice_currency_rate', None)
        move = self.env['account.move'].with_company(self.company_id).with_context(
            default_move_type=vals['move_type'], no_new_invoice=True).create(vals)
        if rate:
            # the invoice's own exchange rate (KursWaluty: NBP rate of the day before the tax point), not
            # Odoo's rate of the invoice date; set after creation as the compute would replace it
            move.invoice_currency_rate = rate
        self._ksef_fix_tax_amounts(move, invoice, flipped)
        self._ksef_check_totals(move, invoice)
        attachments = self._ksef_attach_to_move(move, render_pdf=options.get('render_pdf', True))
        move.with_context(no_new_invoice=True).message_post(
            body=Markup("%s %s") % (self.env._("Imported from the KSeF inbox:"),
                                    self._get_html_link(title=self.ksef_number)),
            attachment_ids=attachments.ids)
        self.write({'move_id': move.id, 'state': 'processed', 'processed_by_id': self.env.uid,
                    'processed_date': fields.Datetime.now()})
        self.message_post(body=Markup("%s %s") % (self.env._("Imported as"), move._get_html_link()))
        return move

    def _ksef_fix_tax_amounts(self, move, invoice, flipped):
        """Make the VAT of the bill equal to the invoice's per-rate VAT (``P_14_x``).

        KSeF invoices round the VAT per rate, Odoo may round per line: the tax line of each rate is
        corrected when the difference is a rounding one (at most 0.01 per invoice line + 0.01)."""
        fa = invoice.fa
        percent_bucket = {23.0: '1', 22.0: '1', 8.0: '2', 7.0: '2', 5.0: '3', 4.0: '4', 3.0: '4'}
        doc_sign = -1 if move.move_type == 'in_refund' else 1
        expected = {}
        for bucket, (_net, vat, _pln) in fa3_rates.bucket_values(fa).items():
            if bucket in ('1', '2', '3', '4') and vat is not None:
                expected[bucket] = float(vat) * (-1 if flipped else 1) * doc_sign
        if not expected:
            return
        tax_lines = move.line_ids.filtered(
            lambda line: line.display_type == 'tax' and line.tax_line_id.amount_type == 'percent')
        for bucket, amount in expected.items():
            lines = tax_lines.filtered(lambda line, b=bucket: percent_bucket.get(line.tax_line_id.amount) == b)
            if not lines:
                continue
            count = len(move.invoice_line_ids.filtered(
                lambda line, b=bucket: any(percent_bucket.get(t.amount) == b for t in line.tax_ids)))
            diff = move.currency_id.round(amount - sum(lines.mapped('amount_currency')))
            if diff and abs(diff) <= 0.01 * (count + 1) + 1e-9:
                lines[0].amount_currency += diff

    def _ksef_check_totals(self, move, invoice):
        """Post a warning on the bill when Odoo's totals differ from the invoice (rounding, missing tax)."""
        fa = invoice.fa
        if fa.p_15 is None:
            return
        expected = abs(float(fa.p_15))
        if float_is_zero(move.amount_total - expected, precision_rounding=move.currency_id.rounding):
            return
        move.with_context(no_new_invoice=True).message_post(body=self.env._(
            "The total of the bill (%(odoo)s) differs from the total of the KSeF invoice (%(ksef)s): check the "
            "taxes and lines before posting.", odoo=move.amount_total, ksef=expected))

    def _ksef_attach_to_move(self, move, render_pdf=True):
        """Attach the original XML and (``render_pdf``) the PDF visualisation with the KOD I QR code."""
        self.ensure_one()
        attachments = self.env['ir.attachment'].create({
            'name': self.xml_filename or '%s.xml' % self.ksef_number,
            'raw': self._ksef_xml(),
            'mimetype': 'application/xml',
            'res_model': 'account.move',
            'res_id': move.id,
        })
        if render_pdf:
            attachments |= self._ksef_attach_pdf(move, self._ksef_render_pdfs_safe().get(self.id))
        return attachments

    def _ksef_attach_pdf(self, move, pdf):
        """Attach the visualisation to the bill (and show it in the side preview); a missing PDF (the
        renderer failed) is noted on the bill instead, the import itself stands."""
        self.ensure_one()
        if not pdf:
            move.with_context(no_new_invoice=True).message_post(body=self.env._(
                "The visualisation of KSeF invoice %s could not be rendered; print it from the KSeF inbox.",
                self.ksef_number))
            return self.env['ir.attachment']
        attachment = self.env['ir.attachment'].create({
            'name': 'KSeF-%s.pdf' % self.ksef_number,
            'raw': pdf,
            'mimetype': 'application/pdf',
            'res_model': 'account.move',
            'res_id': move.id,
        })
        move.message_main_attachment_id = attachment
        return attachment

    def _ksef_render_pdfs(self):
        """``{id: pdf bytes}`` of the visualisation of the records (one wkhtmltopdf run for all)."""
        report = self.env.ref('l10n_pl_ksef.action_report_ksef_inbox')
        Report = self.env['ir.actions.report']
        if (tools.config['test_enable'] or tools.config['test_file']) and \
                not self.env.context.get('force_report_rendering'):
            # like ir.actions.report in tests: no wkhtmltopdf run, the HTML stands in for the PDF
            return {res_id: Report._render_qweb_html(report.report_name, [res_id])[0] for res_id in self.ids}
        streams = Report._render_qweb_pdf_prepare_streams(report.report_name, {}, res_ids=self.ids)
        result = {}
        for res_id, data in streams.items():
            result[res_id] = data['stream'].getvalue()
            data['stream'].close()
        return result

    def _ksef_attach_pdfs(self, batch=50):
        """Render the visualisations of imported records (``batch`` per wkhtmltopdf run) and attach them
        to their bills."""
        for start in range(0, len(self), batch):
            chunk = self[start:start + batch]
            pdfs = chunk._ksef_render_pdfs_safe()
            for record in chunk:
                record._ksef_attach_pdf(record.move_id, pdfs.get(record.id))

    def _ksef_render_pdfs_safe(self):
        """:meth:`_ksef_render_pdfs` in one wkhtmltopdf run, or one run per record when the installed
        wkhtmltopdf cannot render several documents at once (builds without the patched Qt). A record
        whose rendering fails is left out of the result (logged), never stopping the others."""
        global _BATCH_PDF_BROKEN  # noqa: PLW0603 - remembered for the life of the worker
        if len(self) > 1 and not _BATCH_PDF_BROKEN:
            try:
                return self._ksef_render_pdfs()
            except Exception:  # wkhtmltopdf/PDF split failure: fall back to one by one
                _logger.warning("wkhtmltopdf cannot render several KSeF visualisations at once: one by one")
                _BATCH_PDF_BROKEN = True
        result = {}
        for record in self:
            try:
                result.update(record._ksef_render_pdfs())
            except Exception:  # a renderer failure must not stop the import of the others
                _logger.warning("KSeF visualisation of %s could not be rendered", record.ksef_number,
                                exc_info=True)
        return result

    def _ksef_import_ready(self, render_pdf=True, **options):
        """Import every record that passes all checks without questions. Returns (imported, skipped).
        One failing invoice never stops the others (each one in its own savepoint)."""
        done, skipped = self.browse(), self.browse()
        defaults = self.env['l10n_pl_ksef.inbox_sync']._ksef_import_defaults
        for record in self:
            try:
                with self.env.cr.savepoint():
                    checks, found = record._ksef_import_checks()
                    if any(c['level'] in ('blocking', 'fix') for c in checks) or any(
                            c['key'] == 'taxes' for c in checks):
                        skipped |= record
                        continue
                    record_options = dict(defaults(record.company_id), **options)
                    record._ksef_create_bill(found['partner'], partner_bank=found['bank'], render_pdf=False,
                                             **record_options)
                    done |= record
            except (UserError, ValidationError) as exc:
                _logger.info("KSeF inbox %s not imported: %s", record.ksef_number, exc.args[0])
                skipped |= record
        if render_pdf and done:
            done._ksef_attach_pdfs()
        return done, skipped
