import base64
import datetime
import logging
import os
import re
import time
from decimal import Decimal

import psycopg2.errors
from markupsafe import Markup

from odoo import api, fields, models, tools
from odoo.exceptions import RedirectWarning, UserError
from odoo.tools import float_is_zero, float_round

from odoo.addons.l10n_pl_ksef.ksef import calendar as ksef_calendar
from odoo.addons.l10n_pl_ksef.ksef import crypto as ksef_crypto
from odoo.addons.l10n_pl_ksef.ksef import fa3
from odoo.addons.l10n_pl_ksef.ksef import numbers as ksef_numbers
from odoo.addons.l10n_pl_ksef.ksef import qr as ksef_qr
from odoo.addons.l10n_pl_ksef.ksef.errors import KsefError, SchemaUnavailableError

_logger = logging.getLogger(__name__)

# -------------------------------------------------------------------------
# KSeF state machine of a customer invoice / credit note (field ``ksef_state``)
# -------------------------------------------------------------------------
# (empty)           not sent. Sendable when posted (customer invoice/credit note of a Polish company).
#   --Send to KSeF-->            to_send   (XML built, validated, frozen: bytes + SHA-256 stored)
#   --Send offline...-->         offline   (XML frozen; QR OFFLINE + CERTYFIKAT printable)
# to_send           waiting in the queue; the send job (cron) picks it up.
#   --send job: session ref stored + committed BEFORE the POST--> sending
#   --Cancel sending (only while nobody holds it)--> (empty)
# sending           in a KSeF session (session ref + hash stored; invoice reference once KSeF answered).
#   --status 200--> accepted / offline_accepted (KSeF number, dates, UPO)
#   --status 440 duplicate--> accepted (originalKsefNumber: the invoice IS in KSeF) or rejected when KSeF
#                             provably holds a different document under that number
#   --status 410/415/430/450 (and 435/500/550/405 after the retry limit)--> rejected
#   --status 405/435/500/550, lost session, provably absent--> to_send / offline again (automatic retry)
#   --crash after the POST, before the reference was stored--> found again by hash in the session list
# accepted          terminal. Corrections go through credit notes (KOR).
# offline_accepted  terminal; an offline invoice that KSeF accepted.
# rejected          KSeF refused it: the message says why and what to do.
#   --Retry (rebuilds the XML from the current data)--> to_send (offline invoices: technical correction)
#   --Reset to draft (allowed)--> (empty), fix, post, send again
# offline           issued offline (offline24 / unavailability / failure): sent by the offline job with
#                   offlineMode=true as soon as the status service says KSeF is available --> sending.
#                   Total failure: issued outside KSeF, no QR, nothing is sent (Send to KSeF is still possible).
# Locked (no reset to draft, no edit of what the XML contains): to_send, sending, accepted, offline,
# offline_accepted.
KSEF_STATES = [
    ('to_send', "Waiting to be sent"),
    ('sending', "Verifying in KSeF"),
    ('accepted', "Accepted"),
    ('rejected', "Rejected"),
    ('offline', "Offline"),
    ('offline_accepted', "Accepted (offline)"),
]
KSEF_STATES_HELP = (
    "KSeF status of the invoice:\n"
    "- (empty): not sent to KSeF.\n"
    "- Waiting to be sent: queued; the sending job sends it in the background.\n"
    "- Verifying in KSeF: sent, KSeF is verifying it.\n"
    "- Accepted: KSeF accepted the invoice and gave it a KSeF number.\n"
    "- Rejected: KSeF refused the invoice; the message says why and what to do.\n"
    "- Offline: issued in an offline mode; it is sent to KSeF automatically when KSeF is available "
    "(except in total failure mode).\n"
    "- Accepted (offline): an invoice issued offline that KSeF accepted later."
)
OFFLINE_MODES = [
    ('offline24', "Offline24"),
    ('unavailability', "KSeF unavailability"),
    ('failure', "KSeF failure"),
    ('total_failure', "KSeF total failure"),
]
LOCKED_STATES = ('to_send', 'sending', 'accepted', 'offline', 'offline_accepted')
ACCEPTED_STATES = ('accepted', 'offline_accepted')
# invoices whose KSeF number is still to come (a correction of them must wait)
PENDING_STATES = ('to_send', 'sending', 'offline')
KSEF_MOVE_TYPES = ('out_invoice', 'out_refund')
# fields whose change would make the frozen XML differ from the invoice
XML_FIELDS = frozenset({
    'partner_id', 'commercial_partner_id', 'invoice_date', 'delivery_date', 'name', 'currency_id',
    'invoice_line_ids', 'line_ids', 'partner_bank_id', 'invoice_payment_term_id', 'invoice_date_due',
    'fiscal_position_id', 'reversed_entry_id', 'company_id', 'move_type', 'journal_id',
    'ksef_correction_reason', 'ksef_correction_type', 'ksef_split_payment', 'ksef_fp', 'ksef_exemption_basis',
    'ksef_corrected_invoice_number', 'ksef_corrected_invoice_date', 'ksef_corrected_ksef_number',
})
MAX_ATTEMPTS = 5
SYSTEM_INFO = "Odoo 18 l10n_pl_ksef"


def _dec(value, digits=2):
    """Float → Decimal with ``digits`` decimals (no binary float noise)."""
    return Decimal(repr(float_round(value or 0.0, precision_digits=digits))).quantize(Decimal(1).scaleb(-digits))


# characters XML 1.0 cannot carry (and C1 controls): invisible in Odoo, so dropped instead of reported
_INVISIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def _clean(text, limit=None):
    text = _INVISIBLE.sub("", re.sub(r"\s+", " ", text or "")).strip()
    return text[:limit] if limit else text


class AccountMove(models.Model):
    _inherit = 'account.move'

    # -------------------------------------------------------------------------
    # FIELDS
    # -------------------------------------------------------------------------

    ksef_state = fields.Selection(
        selection=KSEF_STATES,
        string="KSeF Status",
        copy=False,
        readonly=True,
        tracking=True,
        index='btree_not_null',
        help=KSEF_STATES_HELP,
    )
    ksef_number = fields.Char(
        string="KSeF Number",
        copy=False,
        readonly=True,
        index='btree_not_null',
        help="Number KSeF gave the invoice when it accepted it (e.g. 5842816354-20260319-33C61F800000-AD).",
    )
    ksef_session_id = fields.Many2one(
        comodel_name='l10n_pl_ksef.session',
        string="KSeF Session",
        copy=False,
        readonly=True,
        index='btree_not_null',
        help="KSeF session (online or batch) the invoice was sent in.",
    )
    ksef_session_reference = fields.Char(
        string="KSeF Session Reference",
        copy=False,
        readonly=True,
        help="Reference number of the KSeF session the invoice was sent in.",
    )
    ksef_reference = fields.Char(
        string="KSeF Invoice Reference",
        copy=False,
        readonly=True,
        help="Reference number KSeF gave the invoice in its session (before the KSeF number).",
    )
    ksef_acquisition_date = fields.Datetime(
        string="KSeF Acceptance Date",
        copy=False,
        readonly=True,
        help="When KSeF assigned the KSeF number (acquisitionDate).",
    )
    ksef_invoicing_date = fields.Datetime(
        string="KSeF Invoicing Date",
        copy=False,
        readonly=True,
        help="When KSeF received the invoice (invoicingDate): the legal moment of issue of an online invoice.",
    )
    ksef_invoicing_mode = fields.Selection(
        selection=[('online', "Online"), ('offline', "Offline")],
        string="KSeF Invoicing Mode",
        copy=False,
        readonly=True,
        help="How KSeF registered the invoice: Online, or Offline (issued before it was sent).",
    )
    ksef_offline_mode = fields.Selection(
        selection=OFFLINE_MODES,
        string="KSeF Offline Mode",
        copy=False,
        readonly=True,
        help="Offline mode the invoice was issued in:\n"
             "- Offline24: any reason (e.g. no internet); send by the next business day after the issue date.\n"
             "- KSeF unavailability: announced maintenance; send by the next business day after it ends.\n"
             "- KSeF failure: announced failure; send within 7 business days after it ends.\n"
             "- KSeF total failure: no obligation to send, no QR codes.",
    )
    ksef_offline_event_end = fields.Datetime(
        string="Unavailability / Failure End",
        copy=False,
        readonly=True,
        help="End of the KSeF unavailability or failure the offline deadline is counted from.",
    )
    ksef_offline_deadline = fields.Datetime(
        string="KSeF Sending Deadline",
        copy=False,
        readonly=True,
        help="Last moment to send the offline invoice to KSeF (end of day, Warsaw time).",
    )
    ksef_deadline_warning = fields.Selection(
        selection=[('near', "Deadline near"), ('overdue', "Deadline passed")],
        string="KSeF Deadline Warning",
        copy=False,
        readonly=True,
    )
    ksef_xml_file = fields.Binary(
        string="KSeF XML File",
        attachment=True,
        copy=False,
        readonly=True,
        help="The FA(3) file sent (or to be sent) to KSeF, exactly as hashed.",
    )
    ksef_xml_id = fields.Many2one(
        comodel_name='ir.attachment',
        string="KSeF XML",
        compute=lambda self: self._compute_linked_attachment_id('ksef_xml_id', 'ksef_xml_file'),
        depends=['ksef_xml_file'],
    )
    ksef_upo_file = fields.Binary(
        string="KSeF UPO File",
        attachment=True,
        copy=False,
        readonly=True,
        help="Official acknowledgement of receipt (UPO) of the accepted invoice.",
    )
    ksef_upo_id = fields.Many2one(
        comodel_name='ir.attachment',
        string="KSeF UPO",
        compute=lambda self: self._compute_linked_attachment_id('ksef_upo_id', 'ksef_upo_file'),
        depends=['ksef_upo_file'],
    )
    ksef_xml_hash = fields.Char(
        string="KSeF XML Hash",
        copy=False,
        readonly=True,
        help="SHA-256 (Base64) of the exact XML bytes sent to KSeF; the QR code encodes it.",
    )
    ksef_corrected_hash = fields.Char(
        string="Technically Corrected Hash",
        copy=False,
        readonly=True,
        help="Hash of the rejected offline file this invoice is a technical correction of.",
    )
    ksef_sent_at = fields.Datetime(
        string="KSeF Sending Started",
        copy=False,
        readonly=True,
    )
    ksef_attempt_count = fields.Integer(
        string="KSeF Attempts",
        copy=False,
        readonly=True,
    )
    ksef_next_attempt = fields.Datetime(
        string="KSeF Next Attempt",
        copy=False,
        readonly=True,
        help="The sending job does not retry before this time after a temporary failure.",
    )
    ksef_message = fields.Text(
        string="KSeF Message",
        copy=False,
        readonly=True,
        help="What happened last and what to do.",
    )
    ksef_message_level = fields.Selection(
        selection=[('info', "Info"), ('warning', "Warning"), ('danger', "Error")],
        string="KSeF Message Level",
        copy=False,
        readonly=True,
    )
    ksef_banner = fields.Html(
        string="KSeF Banner",
        compute='_compute_ksef_banner',
        sanitize=False,
    )
    ksef_banner_level = fields.Selection(
        selection=[('info', "Info"), ('warning', "Warning"), ('danger', "Error")],
        compute='_compute_ksef_banner',
    )
    ksef_transmission_ids = fields.One2many(
        comodel_name='l10n_pl_ksef.transmission',
        inverse_name='move_id',
        string="KSeF History",
        copy=False,
        readonly=True,
    )
    ksef_enabled = fields.Boolean(
        string="KSeF Applicable",
        compute='_compute_ksef_enabled',
        help="Customer invoice or credit note of a Polish company.",
    )
    ksef_can_send = fields.Boolean(compute='_compute_ksef_enabled')
    ksef_correction_reason = fields.Char(
        string="Correction Reason",
        copy=False,
        help="Reason of the correction written on the KSeF correction invoice (PrzyczynaKorekty). "
             "Filled from the reason of the credit note.",
    )
    ksef_correction_type = fields.Selection(
        selection=[
            ('1', "Effective at the original invoice date"),
            ('2', "Effective at the correction date"),
            ('3', "Effective at another date"),
        ],
        string="Correction Type",
        copy=False,
        default='2',
        help="When the correction takes tax effect (TypKorekty): 1 at the date of the corrected invoice "
             "(e.g. a wrong rate or amount), 2 at the date of the correction (e.g. a discount or a return), "
             "3 at another date.",
    )
    ksef_corrected_invoice_number = fields.Char(
        string="Corrected Invoice Number",
        copy=False,
        help="Number of the corrected invoice when it is not in Odoo (e.g. issued before KSeF).",
    )
    ksef_corrected_invoice_date = fields.Date(
        string="Corrected Invoice Date",
        copy=False,
        help="Issue date of the corrected invoice when it is not in Odoo.",
    )
    ksef_corrected_ksef_number = fields.Char(
        string="Corrected Invoice KSeF Number",
        copy=False,
        help="KSeF number of the corrected invoice when it is not in Odoo; leave empty when it was issued "
             "outside KSeF.",
    )
    ksef_split_payment = fields.Boolean(
        string="Split Payment (MPP)",
        copy=False,
        help="Mark the KSeF invoice with \"mechanizm podzielonej płatności\" (P_18A): mandatory when the gross "
             "amount exceeds PLN 15,000 and the invoice includes goods or services of annex 15 to the VAT Act.",
    )
    ksef_fp = fields.Boolean(
        string="Invoice for a Receipt (FP)",
        copy=False,
        help="The invoice is issued for a sale already registered on a cash register (art. 109 ust. 3d, FP).",
    )
    ksef_exemption_basis = fields.Char(
        string="VAT Exemption Basis",
        copy=False,
        help="Legal basis of the VAT exemption written on invoices with exempt (zw) lines, e.g. "
             "\"art. 43 ust. 1 pkt 37 ustawy o VAT\".",
    )

    _sql_constraints = [
        ('ksef_number_company_uniq', 'unique(company_id, ksef_number)',
         "This KSeF number is already used by another invoice of the company."),
    ]

    # -------------------------------------------------------------------------
    # COMPUTE
    # -------------------------------------------------------------------------

    @api.depends('move_type', 'company_id', 'state', 'ksef_state')
    def _compute_ksef_enabled(self):
        for move in self:
            enabled = move.move_type in KSEF_MOVE_TYPES and bool(move.company_id) and move.company_id._ksef_is_polish()
            move.ksef_enabled = enabled
            move.ksef_can_send = enabled and move.state == 'posted' and move.ksef_state in (False, 'rejected')

    @api.depends('ksef_state', 'ksef_message', 'ksef_message_level', 'ksef_offline_deadline', 'ksef_offline_mode',
                 'ksef_next_attempt')
    def _compute_ksef_banner(self):
        for move in self:
            level, body = move._ksef_banner_content()
            move.ksef_banner_level = level
            move.ksef_banner = body

    def _ksef_banner_content(self):
        """``(level, html)`` of the banner: what happened and what to do (buttons are in the view)."""
        self.ensure_one()
        message = self.ksef_message
        state = self.ksef_state
        if not state:
            if message:
                return self.ksef_message_level or 'danger', _ksef_html(message)
            return False, False
        if state == 'rejected':
            return 'danger', _ksef_html(message or self.env._("KSeF rejected the invoice."))
        if state == 'offline':
            if self.ksef_offline_mode == 'total_failure':
                return 'info', _ksef_html(self.env._(
                    "Issued outside KSeF during a total failure of KSeF: there is no obligation to send it and "
                    "the printout has no QR code."))
            if self.ksef_offline_deadline:
                text = self.env._("Issued offline (%(mode)s). It must be sent to KSeF by %(deadline)s; it will be sent "
                         "automatically as soon as KSeF is available.",
                         mode=self._ksef_offline_mode_label(), deadline=self._ksef_format_datetime(
                             self.ksef_offline_deadline))
            else:
                text = self.env._("Issued offline (%s). The sending deadline starts when the unavailability or failure "
                         "ends; the invoice will be sent automatically as soon as KSeF is available.",
                         self._ksef_offline_mode_label())
            level = 'danger' if self.ksef_deadline_warning == 'overdue' else 'warning'
            if message and self.ksef_message_level in ('warning', 'danger'):
                text = "%s\n%s" % (text, message)
            return level, _ksef_html(text)
        if state == 'to_send':
            if message and self.ksef_message_level in ('warning', 'danger'):
                return self.ksef_message_level, _ksef_html(message)
            return 'info', _ksef_html(self.env._("Waiting to be sent to KSeF: the invoice is sent in the background."))
        if state == 'sending':
            if message:
                return self.ksef_message_level or 'info', _ksef_html(message)
            return 'info', _ksef_html(self.env._("Sent to KSeF; KSeF is verifying the invoice."))
        if message and self.ksef_message_level in ('warning', 'danger'):
            return self.ksef_message_level, _ksef_html(message)
        return False, False

    @api.depends('ksef_state')
    def _compute_show_reset_to_draft_button(self):
        # EXTENDS 'account'
        res = super()._compute_show_reset_to_draft_button()
        for move in self:
            if move.ksef_state in LOCKED_STATES:
                move.show_reset_to_draft_button = False
        return res

    # -------------------------------------------------------------------------
    # CRUD
    # -------------------------------------------------------------------------

    def write(self, vals):
        # EXTENDS 'account'
        if XML_FIELDS.intersection(vals) and not self.env.context.get('ksef_skip_guard'):
            self._ksef_check_locked_write(vals)
        return super().write(vals)

    def _ksef_check_locked_write(self, vals):
        locked = self.filtered(lambda m: m.ksef_state in LOCKED_STATES)
        for move in locked:
            changed = []
            for fname in XML_FIELDS.intersection(vals):
                field = self._fields[fname]
                value = vals[fname]
                if field.type in ('one2many', 'many2many'):
                    if any(not (isinstance(cmd, (list, tuple)) and cmd and cmd[0] == 4) for cmd in value or ()):
                        changed.append(fname)
                    continue
                current = move[fname]
                if field.type == 'many2one':
                    current = current.id
                    value = value.id if isinstance(value, models.BaseModel) else value
                elif field.type == 'date' and value:
                    value = fields.Date.to_date(value)
                if (current or False) != (value or False):
                    changed.append(fname)
            if changed:
                raise UserError(self.env._(
                    "Invoice %(move)s is %(state)s in KSeF: it cannot be changed (%(fields)s). "
                    "Issue a credit note (correction) instead.",
                    move=move.name, state=move._ksef_state_label(),
                    fields=", ".join(self._fields[f].get_description(self.env)['string'] for f in changed)))

    def button_draft(self):
        # EXTENDS 'account'
        for move in self:
            if move.ksef_state in LOCKED_STATES:
                raise UserError(self.env._(
                    "Invoice %(move)s cannot be reset to draft: it is %(state)s in KSeF. Issue a credit note "
                    "(correction) instead.", move=move.name, state=move._ksef_state_label()))
        rejected = self.filtered(lambda m: m.ksef_state == 'rejected')
        res = super().button_draft()
        if rejected:
            rejected._ksef_write(self._ksef_reset_values())
        return res

    def button_cancel(self):
        # EXTENDS 'account'
        for move in self:
            if move.ksef_state in LOCKED_STATES:
                raise UserError(self.env._(
                    "Invoice %(move)s cannot be cancelled: it is %(state)s in KSeF. Issue a credit note "
                    "(correction) instead.", move=move.name, state=move._ksef_state_label()))
        return super().button_cancel()

    def _get_fields_to_detach(self):
        # EXTENDS 'account'
        return [*super()._get_fields_to_detach(), 'ksef_xml_file', 'ksef_upo_file']

    def _post(self, soft=True):
        # EXTENDS 'account'
        posted = super()._post(soft=soft)
        to_queue = posted.filtered(lambda m: m.ksef_enabled and not m.ksef_state and m.company_id.ksef_send_on_post)
        if to_queue:
            to_queue._ksef_enqueue(background=True)
        return posted

    # -------------------------------------------------------------------------
    # ACTIONS
    # -------------------------------------------------------------------------

    def action_ksef_send(self):
        """Send to KSeF (online): validate, freeze the XML, queue; the job sends it in the background.

        A single invoice is tried at once (one short attempt) so that the user usually sees the KSeF
        number without waiting for the job.
        """
        moves = self._ksef_check_sender()
        errors = moves._ksef_enqueue()
        if errors:
            raise UserError("\n".join(msg for msgs in errors.values() for msg in msgs))
        if len(moves) == 1:
            moves._ksef_send_now()
        return moves._ksef_reload_action()

    def action_ksef_send_background(self):
        """List action: queue many invoices; XML is built and checked by the job (problems go to each invoice)."""
        moves = self._ksef_check_sender().filtered(lambda m: m.ksef_can_send)
        moves._ksef_enqueue(background=True)
        return {
            'type': 'ir.actions.client',
            'tag': 'display_notification',
            'params': {
                'title': self.env._("KSeF"),
                'message': self.env._("%s invoice(s) queued for KSeF; they are sent in the background.", len(moves)),
                'type': 'info',
                'next': {'type': 'ir.actions.act_window_close'},
            },
        }

    def action_ksef_send_offline(self):
        moves = self._ksef_check_sender()
        return {
            'type': 'ir.actions.act_window',
            'name': self.env._("Send offline"),
            'res_model': 'l10n_pl_ksef.offline_mode',
            'view_mode': 'form',
            'views': [(False, 'form')],
            'target': 'new',
            'context': {'default_move_ids': [fields.Command.set(moves.ids)]},
        }

    def action_ksef_retry(self):
        """Retry a rejected invoice (rebuilding the XML from the current data) or a failed attempt now."""
        moves = self._ksef_check_sender()
        rejected = moves.filtered(lambda m: m.ksef_state == 'rejected')
        waiting = moves.filtered(lambda m: m.ksef_state in ('to_send', 'offline', 'sending'))
        if rejected:
            errors = rejected._ksef_enqueue(retry=True)
            if errors:
                raise UserError("\n".join(msg for msgs in errors.values() for msg in msgs))
        if waiting:
            waiting._ksef_write({'ksef_next_attempt': False})
            self._ksef_trigger_crons()
        if len(moves) == 1 and moves.ksef_state == 'to_send':
            moves._ksef_send_now()
        elif len(moves) == 1 and moves.ksef_state == 'sending':
            moves._ksef_refresh_now()
        return moves._ksef_reload_action()

    def action_ksef_refresh(self):
        """Ask KSeF for the current status of the invoice(s) now (one short request per session)."""
        moves = self._ksef_check_viewer().filtered(lambda m: m.ksef_state == 'sending'
                                                   or (m.ksef_state in ACCEPTED_STATES and not m.ksef_upo_file))
        if moves:
            moves._ksef_refresh_now()
        return self._ksef_reload_action()

    def action_ksef_cancel_queue(self):
        """Take a queued invoice out of the queue (only while no job holds it)."""
        moves = self._ksef_check_sender()
        for move in moves:
            if move.ksef_state != 'to_send' or not move._ksef_lock(('to_send',)):
                raise UserError(self.env._(
                    "Invoice %s is being sent right now or was already sent: it cannot be taken out of the queue.",
                    move.name))
            move._ksef_set_state(False, self.env._("Taken out of the KSeF queue by %s.", self.env.user.name),
                                 log_state='error', level=False, extra=self._ksef_reset_values())
        return self._ksef_reload_action()

    def action_ksef_download_xml(self):
        attachments = self._ksef_check_viewer().ksef_xml_id
        if not attachments:
            raise UserError(self.env._("There is no KSeF XML file to download yet."))
        return self._ksef_download_action(attachments)

    def action_ksef_download_upo(self):
        attachments = self._ksef_check_viewer().ksef_upo_id
        if not attachments:
            raise UserError(self.env._("There is no UPO to download yet: it comes after KSeF accepts the invoice."))
        return self._ksef_download_action(attachments)

    def action_ksef_open_settings(self):
        return self.env.company._ksef_settings_action()

    def action_ksef_print_confirmation(self):
        return self.env.ref('l10n_pl_ksef.action_report_ksef_transaction_confirmation').report_action(self)

    def get_extra_print_items(self):
        # EXTENDS 'account'
        items = super().get_extra_print_items()
        if not self.env.user.has_group('l10n_pl_ksef.group_ksef_viewer'):
            return items
        if xml := self.ksef_xml_id:
            items.append({'key': 'ksef_xml', 'description': self.env._("KSeF XML"),
                          **self._ksef_download_action(xml)})
        if upo := self.ksef_upo_id:
            items.append({'key': 'ksef_upo', 'description': self.env._("KSeF UPO"),
                          **self._ksef_download_action(upo)})
        return items

    def _ksef_download_action(self, attachments):
        return {
            'type': 'ir.actions.act_url',
            'url': '/account/download_invoice_attachments/%s' % ",".join(str(i) for i in attachments.ids),
            'target': 'download',
        }

    def _ksef_reload_action(self):
        if len(self) == 1:
            return {'type': 'ir.actions.client', 'tag': 'soft_reload'}
        return True

    def _ksef_check_sender(self):
        if not self.env.user.has_group('l10n_pl_ksef.group_ksef_sender'):
            raise UserError(self.env._("You are not allowed to send invoices to KSeF (\"KSeF: send documents\")."))
        return self

    def _ksef_check_viewer(self):
        if not self.env.user.has_group('l10n_pl_ksef.group_ksef_viewer'):
            raise UserError(self.env._("You are not allowed to see KSeF documents (\"KSeF: view documents\")."))
        return self

    # -------------------------------------------------------------------------
    # BUSINESS: labels, helpers
    # -------------------------------------------------------------------------

    def _ksef_state_label(self, state=None):
        state = self.ksef_state if state is None else state
        if not state:
            return self.env._("not sent")
        return dict(self._fields['ksef_state']._description_selection(self.env)).get(state, state)

    def _ksef_offline_mode_label(self, mode=None):
        mode = mode or self.ksef_offline_mode
        return dict(self._fields['ksef_offline_mode']._description_selection(self.env)).get(mode, mode or '')

    def _ksef_format_datetime(self, value):
        if not value:
            return ""
        return tools.format_datetime(self.env, value, tz='Europe/Warsaw', dt_format='short')

    def _ksef_reset_values(self):
        return {
            'ksef_state': False, 'ksef_number': False, 'ksef_session_id': False, 'ksef_session_reference': False,
            'ksef_reference': False, 'ksef_acquisition_date': False, 'ksef_invoicing_date': False,
            'ksef_invoicing_mode': False, 'ksef_offline_mode': False, 'ksef_offline_event_end': False,
            'ksef_offline_deadline': False, 'ksef_deadline_warning': False, 'ksef_xml_hash': False,
            'ksef_sent_at': False, 'ksef_attempt_count': 0, 'ksef_next_attempt': False, 'ksef_message': False,
            'ksef_message_level': False, 'ksef_corrected_hash': False,
        }

    @api.model
    def _ksef_can_commit(self):
        """Commit only outside tests (``account.move._can_commit``: neither ``test_enable`` nor a running
        test); the concurrency test sets the ``ksef_commit`` context key on its own cursors."""
        if 'ksef_commit' in self.env.context:
            return bool(self.env.context['ksef_commit'])
        return self._can_commit()

    def _ksef_commit(self):
        # Each invoice's outcome must survive whatever happens to the next one (and a crash): commit it.
        if self._ksef_can_commit():
            self.env.cr.commit()  # pylint: disable=invalid-commit

    def _ksef_lock(self, states):
        """Lock this invoice for the current transaction if it is (still) in one of ``states``.

        ``SELECT ... FOR UPDATE SKIP LOCKED`` inside a savepoint: returns ``False`` when another worker
        holds the row, when it changed state meanwhile, or on a serialization conflict — never waits.
        """
        self.ensure_one()
        states = tuple(s for s in states if s)
        with_null = False in states or None in states or not states
        try:
            with self.env.cr.savepoint():
                self.env.cr.execute(
                    "SELECT id FROM account_move WHERE id = %s AND (ksef_state IN %s OR (%s AND ksef_state IS NULL)) "
                    "FOR UPDATE SKIP LOCKED",
                    [self.id, states or ('',), with_null])
                row = self.env.cr.fetchone()
        except (psycopg2.errors.SerializationFailure, psycopg2.errors.LockNotAvailable):
            return False
        self.invalidate_recordset()
        return bool(row)

    def _ksef_trigger_crons(self, at=None):
        for xmlid in ('l10n_pl_ksef.ir_cron_ksef_send', 'l10n_pl_ksef.ir_cron_ksef_send_offline'):
            cron = self.env.ref(xmlid, raise_if_not_found=False)
            if cron:
                cron._trigger(at=at)

    def _ksef_trigger_status_cron(self, at=None):
        cron = self.env.ref('l10n_pl_ksef.ir_cron_ksef_update_status', raise_if_not_found=False)
        if cron:
            cron._trigger(at=at)

    # -------------------------------------------------------------------------
    # BUSINESS: state changes, log, chatter
    # -------------------------------------------------------------------------

    def _ksef_set_state(self, state, message, *, level=None, details=None, log_state=None, status_code=0,
                        attachments=None, extra=None, chatter=True):
        """Write a state change, one log row per invoice and one chatter message per invoice (with the
        attachments linked). Works on many invoices at once (one write, one log insert, one batch note)."""
        if not self:
            return
        vals = {'ksef_state': state, 'ksef_message': message or False,
                'ksef_message_level': level if level is not None else (
                    'danger' if state == 'rejected' else ('info' if message else False))}
        vals.update(extra or {})
        self._ksef_write(vals)
        xml_by_move = {}
        if state or log_state != 'error':
            for attachment in self.env['ir.attachment'].sudo().search([
                    ('res_model', '=', self._name), ('res_id', 'in', self.ids),
                    ('res_field', 'in', ('ksef_xml_file', 'ksef_upo_file'))]):
                xml_by_move.setdefault(attachment.res_id, {})[attachment.res_field] = attachment.id
        log_vals = []
        for move in self:
            atts = xml_by_move.get(move.id, {})
            log_vals.append({
                'move_id': move.id,
                'state': log_state or state or 'error',
                'ksef_number': move.ksef_number or False,
                'invoicing_date': move.ksef_invoicing_date,
                'message': message or False,
                'details': details or False,
                'status_code': status_code or 0,
                'session_reference': move.ksef_session_reference or False,
                'invoice_reference': move.ksef_reference or False,
                'offline_mode': move.ksef_offline_mode or False,
                'attachment_id': atts.get('ksef_upo_file', False) if state in ACCEPTED_STATES else False,
                'xml_attachment_id': atts.get('ksef_xml_file', False),
            })
        self.env['l10n_pl_ksef.transmission'].sudo().create(log_vals)
        if not chatter:
            return
        label = self._ksef_state_label(state or log_state)
        body = Markup("<b>%s</b> %s") % (self.env._("KSeF: %s.", label), message or "")
        if details:
            body += Markup("<br/><small>%s</small>") % details
        if attachments:
            for move in self:
                move.with_context(no_new_invoice=True).message_post(
                    body=body, attachment_ids=attachments.filtered(lambda a, m=move: a.res_id == m.id).ids,
                    message_type='notification', subtype_xmlid='mail.mt_note')
        else:
            self._message_log_batch(bodies={move.id: body for move in self})

    def _ksef_queue_state(self):
        """Where a sent invoice goes back to when KSeF provably does not have it."""
        self.ensure_one()
        if self.ksef_offline_mode in ('offline24', 'unavailability', 'failure'):
            return 'offline'
        return 'to_send'

    def _ksef_refresh_pdf(self):
        """After acceptance the printout must show the KSeF number: detach a PDF generated before, so the
        next print renders it again (the old one stays in the attachments)."""
        pdfs = self.env['ir.attachment'].sudo().search([
            ('res_model', '=', self._name), ('res_id', 'in', self.ids), ('res_field', '=', 'invoice_pdf_report_file')])
        for pdf in pdfs:
            pdf.write({'res_field': False, 'name': self.env._("before KSeF acceptance - %s", pdf.name)})
        if pdfs:
            self.invalidate_recordset(['invoice_pdf_report_id', 'invoice_pdf_report_file'])

    def _ksef_write(self, vals):
        """Write KSeF bookkeeping fields. They never touch the journal items, so ``account``'s line
        synchronisation and balance checks are skipped (they cost more than the write itself), and the
        invoice is not flagged as manually modified. Tracking (chatter) still applies."""
        return self.with_context(ksef_skip_guard=True, skip_invoice_sync=True, check_move_validity=False,
                                 skip_is_manually_modified=True).write(vals)

    def _ksef_store_attachment(self, field, filename, content, mimetype='application/xml'):
        """Store ``content`` as the attachment of Binary field ``field`` (``res_field`` set, proper name)."""
        self.ensure_one()
        attachment = self.env['ir.attachment'].sudo().search([
            ('res_model', '=', self._name), ('res_id', '=', self.id), ('res_field', '=', field)], limit=1)
        vals = {'name': filename, 'raw': content, 'mimetype': mimetype}
        if attachment:
            attachment.write(vals)
        else:
            attachment = self.env['ir.attachment'].sudo().create({
                **vals, 'res_model': self._name, 'res_id': self.id, 'res_field': field})
        self.invalidate_recordset([field, 'ksef_xml_id' if field == 'ksef_xml_file' else 'ksef_upo_id'])
        return attachment

    def _ksef_xml_bytes(self):
        self.ensure_one()
        attachment = self.ksef_xml_id
        return attachment.raw if attachment else None

    def _ksef_filename(self, suffix):
        return "%s%s" % (re.sub(r"[^\w.-]+", "_", self.name or 'invoice'), suffix)

    # -------------------------------------------------------------------------
    # BUSINESS: queueing
    # -------------------------------------------------------------------------

    def _ksef_check_sendable(self, offline=False, retry=False):
        """Translated reasons why invoices cannot be sent, ``{move: [message]}`` (no FA(3) check)."""
        errors = {}
        allowed = ('rejected',) if retry else (False, 'rejected')
        if offline:
            allowed = (False, 'rejected')
        for move in self:
            msgs = []
            if move.move_type not in KSEF_MOVE_TYPES:
                msgs.append(self.env._("%s is not a customer invoice or credit note: only those are sent to KSeF.",
                              move.display_name))
            elif not move.company_id._ksef_is_polish():
                msgs.append(self.env._("Invoice %(move)s: company %(company)s is not a Polish company using KSeF.",
                              move=move.name, company=move.company_id.name))
            elif move.state != 'posted':
                msgs.append(self.env._(
                    "Invoice %s is not posted: post it before sending it to KSeF.", move.display_name))
            elif move.ksef_state not in allowed and not (move.ksef_state == 'offline'
                                                          and move.ksef_offline_mode == 'total_failure'
                                                          and not offline):
                msgs.append(self.env._("Invoice %(move)s is already %(state)s in KSeF.", move=move.name,
                              state=move._ksef_state_label()))
            elif move.move_type == 'out_refund':
                original = move.reversed_entry_id
                if original and original.ksef_state in PENDING_STATES and not (
                        original.ksef_state == 'offline' and original.ksef_offline_mode == 'total_failure'):
                    msgs.append(self.env._(
                        "Credit note %(move)s corrects invoice %(original)s, which is still waiting for its KSeF "
                        "number (%(state)s). Send the correction after KSeF has accepted the original invoice.",
                        move=move.name, original=original.name, state=original._ksef_state_label()))
            if msgs:
                errors[move] = msgs
        return errors

    def _ksef_collect_send_problems(self):
        """``({move: [error]}, {move: [warning]})`` of invoices about to be sent (send wizard alerts)."""
        problems = self._ksef_check_sendable()
        warnings = {}
        for move in self - self.browse([m.id for m in problems]):
            errors, warns = move._ksef_check_fa3()
            if errors:
                problems[move] = errors
            if warns:
                warnings[move] = warns
        return problems, warnings

    def _ksef_enqueue(self, background=False, retry=False):
        """Queue invoices for online sending. Returns ``{move: [error]}`` for those that could not be queued.

        ``background``: only mark them (``to_send`` without XML); the job builds, checks and freezes the
        XML and records problems on each invoice. Otherwise the XML is built, validated and frozen now.
        """
        errors = self._ksef_check_sendable(retry=retry)
        for move in self - self.browse([m.id for m in errors]):
            offline_resend = move.ksef_state == 'offline' and move.ksef_offline_mode == 'total_failure'
            previous_hash = move.ksef_xml_hash if move.ksef_state == 'rejected' and move.ksef_offline_mode else False
            extra = {'ksef_attempt_count': 0, 'ksef_next_attempt': False, 'ksef_session_id': False,
                     'ksef_session_reference': False, 'ksef_reference': False, 'ksef_sent_at': False,
                     'ksef_corrected_hash': previous_hash or False}
            if not offline_resend and move.ksef_state != 'rejected':
                extra.update({'ksef_offline_mode': False, 'ksef_offline_deadline': False})
            if background:
                extra.update({'ksef_xml_hash': False})
                move._ksef_set_state('to_send', self.env._("Queued for KSeF by %s.", self.env.user.name),
                                     level=False, extra=extra)
                continue
            xml, problems = move._ksef_generate_xml()
            if problems:
                errors[move] = problems
                continue
            move._ksef_freeze_xml(xml)
            move._ksef_set_state('to_send', self.env._("Queued for KSeF by %s.", self.env.user.name), level=False,
                                 extra=extra, attachments=move.ksef_xml_id)
        self._ksef_trigger_crons()
        return errors

    def _ksef_freeze_xml(self, xml):
        """Store the exact bytes to send and their SHA-256 (the QR code encodes that hash)."""
        self.ensure_one()
        self._ksef_store_attachment('ksef_xml_file', self._ksef_filename('_FA3.xml'), xml)
        self._ksef_write({'ksef_xml_hash': ksef_crypto.sha256_b64(xml)})

    def _ksef_prepare_queued(self, deadline=None):
        """Build, check and freeze the XML of queued invoices that have none (background queueing).

        Invoices with problems go back to "not sent" with the problems on the invoice (nothing is sent).
        Returns the invoices that are ready; stops early at ``deadline`` (``time.monotonic()`` value).
        """
        ready = self.browse()
        for move in self:
            if move.ksef_xml_hash:
                ready |= move
                continue
            if deadline and time.monotonic() > deadline:
                break
            # one record per transaction: a commit empties the cache, keep the next fetch small
            move = move.with_prefetch()
            if not move._ksef_lock(('to_send',)):
                continue
            xml, problems = move._ksef_generate_xml()
            if problems:
                move._ksef_set_state(False, "\n".join(problems), level='danger', log_state='error',
                                     details=self.env._("Nothing was sent to KSeF."))
            else:
                move._ksef_freeze_xml(xml)
                ready |= move
            move._ksef_commit()
        return ready

    def _ksef_send_now(self):
        """One short attempt to send a single queued invoice right away (the job does the rest)."""
        self.ensure_one()
        if self.ksef_state != 'to_send' or self.env.context.get('ksef_no_send_now'):
            return
        # the queued state and the frozen XML must be stored before anything goes to KSeF
        self._ksef_commit()
        self.env['l10n_pl_ksef.session']._ksef_send_online(self, quick=True)

    def _ksef_refresh_now(self):
        self.env['l10n_pl_ksef.session']._ksef_update_status(self, quick=True)

    # -------------------------------------------------------------------------
    # BUSINESS: FA(3) values builder
    # -------------------------------------------------------------------------

    def _ksef_generate_xml(self):
        """``(xml_bytes, [])`` or ``(None, [translated problem, ...])`` — each problem names what to fix."""
        self.ensure_one()
        problems = []
        invoice = self._ksef_prepare_fa3(problems)
        if problems:
            return None, problems
        try:
            xml, issues = fa3.build_and_validate(invoice, **self._ksef_schema_options())
        except SchemaUnavailableError:
            _logger.warning("KSeF schemas unavailable: cannot validate invoice %s", self.id)
            return None, [self.env._(
                "Invoice %s: the official KSeF schemas (XSD) are not available on the server, so the invoice "
                "cannot be checked. Ask your administrator to make them available (internet access to GitHub, "
                "or the KSEF_SCHEMA_DIR environment variable).", self.name)]
        errors = [issue for issue in issues if issue.severity == 'error']
        if errors or xml is None:
            return None, [self._ksef_explain_issue(issue) for issue in errors] or [
                self.env._("Invoice %s cannot be converted to FA(3).", self.name)]
        return xml, []

    def _ksef_check_fa3(self):
        """Translated problems (errors) and warnings of the invoice as FA(3): ``(errors, warnings)``."""
        self.ensure_one()
        problems = []
        invoice = self._ksef_prepare_fa3(problems)
        if problems:
            return problems, []
        try:
            _xml, issues = fa3.build_and_validate(invoice, **self._ksef_schema_options())
        except SchemaUnavailableError:
            return [self.env._("Invoice %s: the official KSeF schemas (XSD) are not available on the server.",
                               self.name)], []
        errors = [self._ksef_explain_issue(i) for i in issues if i.severity == 'error']
        warnings = [self._ksef_explain_issue(i) for i in issues if i.severity != 'error']
        return errors, warnings

    @api.model
    def _ksef_schema_options(self):
        """Where the core finds the official XSDs: ``KSEF_SCHEMA_DIR`` or a cache in Odoo's data dir."""
        if os.environ.get('KSEF_SCHEMA_DIR'):
            return {}
        return {'cache_dir': os.path.join(tools.config['data_dir'], 'ksef_schemas')}

    def _ksef_today(self):
        return datetime.datetime.now(ksef_calendar.WARSAW).date()

    def _ksef_prepare_fa3(self, problems):
        """account.move → :class:`ksef.fa3.Invoice`. Odoo-side gaps are appended to ``problems`` as
        translated sentences naming the invoice, the record and the field to fix."""
        self.ensure_one()
        company = self.company_id
        partner = self.commercial_partner_id
        is_refund = self.move_type == 'out_refund'
        sign = -1 if is_refund else 1
        currency = self.currency_id

        # --- seller --------------------------------------------------------------------------------
        seller_nip = ksef_numbers.normalize_nip(company.vat)
        if not ksef_numbers.is_valid_nip(seller_nip):
            problems.append(self.env._(
                "Invoice %(move)s: company %(company)s has no valid NIP (%(value)s). Set the Tax ID "
                "of the company.", move=self.name, company=company.name, value=company.vat or "-"))
        seller_address = self._ksef_address(company.partner_id, problems, self.env._("company %s", company.name),
                                            required=True)
        contacts = []
        phone = re.sub(r"[^\d+]", "", company.phone or "")[:16]
        if company.email or phone:
            contacts.append(fa3.DaneKontaktowe(email=_clean(company.email, 255) or None, telefon=phone or None))
        podmiot1 = fa3.Podmiot1(
            dane_identyfikacyjne=fa3.DaneIdentyfikacyjne(nip=seller_nip, nazwa=_clean(company.name, 512)),
            adres=seller_address, dane_kontaktowe=contacts)

        # --- buyer ---------------------------------------------------------------------------------
        podmiot2 = fa3.Podmiot2(
            dane_identyfikacyjne=self._ksef_buyer_identification(partner, problems),
            adres=self._ksef_address(partner, problems, self.env._(
                "customer %s", partner.display_name), required=False),
            nr_klienta=_clean(partner.ref, 256) or None)

        # --- lines ---------------------------------------------------------------------------------
        rate = self._ksef_exchange_rate()
        lines = []
        by_code = {}
        product_lines = self.invoice_line_ids.filtered(lambda ln: ln.display_type == 'product')
        for index, line in enumerate(product_lines, 1):
            code = self._ksef_line_rate_code(line, index, problems)
            by_code.setdefault(code, self.env['account.move.line'])
            by_code[code] |= line
            lines.append(self._ksef_line_values(line, index, code, sign, rate, problems))
        if not lines:
            problems.append(self.env._("Invoice %s has no invoice lines to send.", self.name))

        # --- summary from Odoo's own amounts (what the invoice shows) ------------------------------
        summary = self._ksef_summary(by_code, sign, problems)

        # --- annotations -----------------------------------------------------------------------------
        codes = set(by_code)
        adnotacje = fa3.Adnotacje()
        if codes & {fa3.RATE_OO, fa3.RATE_NP_II}:
            adnotacje.p_18 = 1
        if self.ksef_split_payment:
            adnotacje.p_18a = 1
        if fa3.RATE_ZW in codes:
            basis = self._ksef_exemption_basis(by_code[fa3.RATE_ZW])
            if not basis:
                problems.append(self.env._("Invoice %s has VAT-exempt (zw) lines: fill the VAT exemption basis (e.g. "
                                  "\"art. 43 ust. 1 pkt 37 ustawy o VAT\") on the invoice.", self.name))
            adnotacje.zwolnienie = fa3.Zwolnienie(p_19=1, p_19a=_clean(basis, 256) or None)

        fa = fa3.Fa(
            kod_waluty=currency.name,
            p_1=self.invoice_date,
            p_1m=_clean(company.city, 256) or None,
            p_2=_clean(self.name, 256),
            p_6=self.delivery_date if self.delivery_date and self.delivery_date != self.invoice_date else None,
            adnotacje=adnotacje,
            rodzaj_faktury='KOR' if is_refund else 'VAT',
            fp=1 if self.ksef_fp else None,
            tp=1 if partner.l10n_pl_links_with_customer else None,
            fa_wiersz=lines,
            platnosc=None if is_refund else self._ksef_payment(),
        )
        if not self.invoice_date:
            problems.append(self.env._("Invoice %s has no invoice date.", self.name))
        for name, value in summary.items():
            setattr(fa, name, value)
        if is_refund:
            self._ksef_correction_values(fa, problems)
        return fa3.Invoice(
            naglowek=fa3.Naglowek(system_info=SYSTEM_INFO),
            podmiot1=podmiot1,
            podmiot2=podmiot2,
            fa=fa,
            stopka=self._ksef_footer(),
        )

    def _ksef_address(self, partner, problems, who, required):
        street = _clean(" ".join(filter(None, [partner.street, partner.street2])), 512)
        city_line = _clean(" ".join(filter(None, [partner.zip, partner.city])), 512)
        country = partner.country_id.code or (self.company_id.country_id.code if required else None)
        if required and (not street or not partner.city or not country):
            problems.append(self.env._(
                "Invoice %(move)s: the address of %(who)s is incomplete (street, city and country "
                "are required).", move=self.name, who=who))
        if not street and not city_line:
            return None
        if not country:
            problems.append(self.env._(
                "Invoice %(move)s: the address of %(who)s has no country.", move=self.name, who=who))
        return fa3.Adres(kod_kraju=country or None, adres_l1=street or city_line,
                         adres_l2=city_line if street and city_line else None)

    def _ksef_buyer_identification(self, partner, problems):
        """NIP for Polish buyers, KodUE+NrVatUE for EU VAT numbers, KodKraju+NrID for others, BrakID for
        consumers."""
        name = _clean(partner.name or partner.display_name, 512) or None
        vat = re.sub(r"[\s.\-]", "", partner.vat or "").upper()
        country = partner.country_id.code
        eu = self.env.ref('base.europe', raise_if_not_found=False)
        eu_codes = set(eu.country_ids.mapped('code')) if eu else set()
        if vat in ('', '/'):
            if partner.is_company and country in (None, False, 'PL'):
                problems.append(self.env._(
                    "Invoice %(move)s: customer %(partner)s is a company without a NIP. Add its Tax ID, "
                    "or untick \"Company\" when the customer is a consumer.",
                                  move=self.name, partner=partner.display_name))
            return fa3.DaneIdentyfikacyjne(brak_id=1, nazwa=name)
        if country == 'PL' or (not country and (vat.startswith('PL') or re.fullmatch(r"\d{10}", vat))):
            nip = ksef_numbers.normalize_nip(vat)
            if not ksef_numbers.is_valid_nip(nip):
                problems.append(self.env._("Invoice %(move)s: customer %(partner)s has no valid NIP (%(value)s).",
                                  move=self.name, partner=partner.display_name, value=partner.vat))
            return fa3.DaneIdentyfikacyjne(nip=nip, nazwa=name)
        if country in eu_codes or (vat[:2].isalpha() and vat[:2] in ksef_numbers.EU_VAT_FORMATS):
            prefix, number = ksef_numbers.split_eu_vat(vat, country)
            if not prefix or not number:
                problems.append(self.env._(
                    "Invoice %(move)s: the EU VAT number of customer %(partner)s (%(value)s) cannot be "
                    "read.", move=self.name, partner=partner.display_name, value=partner.vat))
            return fa3.DaneIdentyfikacyjne(kod_ue=prefix, nr_vat_ue=number, nazwa=name)
        return fa3.DaneIdentyfikacyjne(kod_kraju=country or None, nr_id=_clean(vat, 50), nazwa=name)

    def _ksef_line_rate_code(self, line, index, problems):
        try:
            return line.tax_ids._ksef_rate_code_for(line) or False
        except UserError as exc:
            problems.append(exc.args[0])
            return False

    def _ksef_exchange_rate(self):
        """PLN per unit of the invoice currency (``None`` for PLN invoices)."""
        if self.currency_id == self.company_id.currency_id or not self.invoice_currency_rate:
            return None
        value = 1.0 / self.invoice_currency_rate
        rounded4 = float_round(value, precision_digits=4)
        if float_is_zero(value - rounded4, precision_digits=6):
            return _dec(rounded4, 4)
        return _dec(value, 6)

    def _ksef_line_values(self, line, index, code, sign, rate, problems):  # noqa: PLR0917
        digits = self.currency_id.decimal_places
        subtotal = line.price_subtotal
        quantity = line.quantity
        discount = line.discount or 0.0
        if float_is_zero(quantity, precision_digits=6):
            problems.append(self.env._("Invoice %(move)s, line %(line)s (%(name)s): the quantity is zero.",
                              move=self.name, line=index, name=line.name or line.product_id.display_name))
            quantity = 1.0
        gross_before_discount = subtotal / (1 - discount / 100.0) if discount < 100 else line.price_unit * quantity
        unit_net = gross_before_discount / quantity
        discount_amount = gross_before_discount - subtotal
        name = _clean(line.name or line.product_id.display_name, 512)
        if not name:
            problems.append(self.env._(
                "Invoice %(move)s, line %(line)s has no description.", move=self.name, line=index))
        gtu = line.product_id.product_tmpl_id.l10n_pl_vat_gtu if line.product_id else False
        procedura = None
        if self.l10n_pl_vat_b_spv:
            procedura = 'B_SPV'
        elif self.l10n_pl_vat_b_spv_dostawa:
            procedura = 'B_SPV_DOSTAWA'
        elif self.l10n_pl_vat_b_mpv_prowizja:
            procedura = 'B_MPV_PROWIZJA'
        return fa3.FaWiersz(
            nr_wiersza_fa=index,
            p_7=name or None,
            indeks=_clean(line.product_id.default_code, 50) or None,
            gtin=_clean(line.product_id.barcode, 20) if line.product_id.barcode and re.fullmatch(
                r"\d{8,14}", line.product_id.barcode) else None,
            p_8a=_clean(line.product_uom_id.name, 256) or None,
            p_8b=_dec(quantity, 6).normalize() if quantity == int(quantity) else _dec(quantity, 6),
            p_9a=sign * _dec(unit_net, 8 if float_round(unit_net, digits) != unit_net else digits),
            p_10=sign * _dec(discount_amount, digits) if not float_is_zero(discount_amount, digits) else None,
            p_11=sign * _dec(subtotal, digits),
            p_12=code or None,
            gtu=gtu or None,
            procedura=procedura,
            kurs_waluty=rate,
        )

    def _ksef_summary(self, by_code, sign, problems):
        """Bucket amounts (P_13_x, P_14_x, P_14_xW) and P_15 from the invoice's own totals."""
        tax_lines = self.line_ids.filtered(lambda ln: ln.display_type == 'tax')
        vat_by_code = {}
        vat_pln_by_code = {}
        for tax_line in tax_lines:
            tax = tax_line.tax_line_id
            code = tax.ksef_rate_code or False
            # document sign: tax lines of a customer invoice are credits (negative balance)
            vat_by_code[code] = vat_by_code.get(code, 0.0) - tax_line.amount_currency * (1 if sign > 0 else -1)
            vat_pln_by_code[code] = vat_pln_by_code.get(code, 0.0) - tax_line.balance * (1 if sign > 0 else -1)
        values = {name: None for fields_ in fa3.BUCKET_FIELDS.values() for name in fields_ if name}
        digits = self.currency_id.decimal_places
        foreign = self.currency_id != self.company_id.currency_id
        for code, lines in by_code.items():
            if not code:
                continue
            bucket = fa3.RATE_BUCKET[code]
            net_f, vat_f, pln_f = fa3.BUCKET_FIELDS[bucket]
            net = sum(lines.mapped('price_subtotal'))
            values[net_f] = (values[net_f] or Decimal(0)) + sign * _dec(net, digits)
            if vat_f:
                values[vat_f] = (values[vat_f] or Decimal(0)) + sign * _dec(vat_by_code.get(code, 0.0), digits)
                if foreign and pln_f:
                    values[pln_f] = (values[pln_f] or Decimal(0)) + sign * _dec(vat_pln_by_code.get(code, 0.0), 2)
        values['p_15'] = sign * _dec(self.amount_total, digits)
        return values

    def _ksef_exemption_basis(self, lines):
        basis = self.ksef_exemption_basis
        if not basis:
            for tax in lines.tax_ids:
                basis = getattr(tax, 'ksef_exemption_basis', False)
                if basis:
                    break
        return basis

    def _ksef_payment(self):
        terms = []
        term_lines = self.line_ids.filtered(lambda ln: ln.display_type == 'payment_term' and ln.date_maturity)
        for due in sorted(set(term_lines.mapped('date_maturity')))[:100]:
            terms.append(fa3.TerminPlatnosci(termin=due))
        accounts = []
        banks = self.partner_bank_id or self.company_id.partner_id.bank_ids[:5]
        for bank in banks:
            number = re.sub(r"\s", "", bank.acc_number or "").upper()
            if not 10 <= len(number) <= 34:
                continue
            accounts.append(fa3.RachunekBankowy(
                nr_rb=number,
                swift=_clean(bank.bank_bic, 11) if bank.bank_bic and 8 <= len(bank.bank_bic.strip()) <= 11 else None,
                nazwa_banku=_clean(bank.bank_name or bank.bank_id.name, 256) or None))
        if not terms and not accounts:
            return None
        return fa3.Platnosc(termin_platnosci=terms, forma_platnosci=6 if accounts else None,
                            rachunek_bankowy=accounts)

    def _ksef_footer(self):
        company = self.company_id
        krs = re.sub(r"\D", "", company.company_registry or "")
        partner = company.partner_id
        regon = re.sub(r"\D", "", getattr(company, 'ksef_regon', None) or getattr(partner, 'ksef_regon', None) or "")
        bdo = re.sub(r"\D", "", getattr(company, 'ksef_bdo', None) or getattr(partner, 'ksef_bdo', None) or "")
        entry = fa3.Rejestry(
            krs=krs if len(krs) == 10 else None,
            regon=regon if len(regon) in (9, 14) else None,
            bdo=bdo if 1 <= len(bdo) <= 9 else None)
        if not (entry.krs or entry.regon or entry.bdo):
            return None
        entry.pelna_nazwa = _clean(company.name, 256)
        return fa3.Stopka(rejestry=[entry])

    def _ksef_correction_values(self, fa, problems):
        """KOR: reason, type and the corrected invoice (NrKSeF + number, or NrKSeFN when issued outside KSeF)."""
        original = self.reversed_entry_id
        fa.przyczyna_korekty = _clean(self.ksef_correction_reason or self._ksef_reason_from_ref(), 256) or None
        fa.typ_korekty = int(self.ksef_correction_type) if self.ksef_correction_type else None
        if original:
            if original.ksef_state in PENDING_STATES and original.ksef_offline_mode != 'total_failure':
                problems.append(self.env._(
                    "Credit note %(move)s corrects invoice %(original)s, which is still waiting for its KSeF number "
                    "(%(state)s). Send the correction after KSeF has accepted the original invoice.",
                    move=self.name, original=original.name, state=original._ksef_state_label()))
            ref = fa3.DaneFaKorygowanej(data_wyst_fa_korygowanej=original.invoice_date,
                                        nr_fa_korygowanej=_clean(original.name, 256))
            if original.ksef_number:
                ref.nr_ksef, ref.nr_ksef_fa_korygowanej = 1, original.ksef_number
            else:
                ref.nr_ksef_n = 1
        elif self.ksef_corrected_invoice_number and self.ksef_corrected_invoice_date:
            ref = fa3.DaneFaKorygowanej(data_wyst_fa_korygowanej=self.ksef_corrected_invoice_date,
                                        nr_fa_korygowanej=_clean(self.ksef_corrected_invoice_number, 256))
            if self.ksef_corrected_ksef_number:
                if not ksef_numbers.is_valid_ksef_number(self.ksef_corrected_ksef_number):
                    problems.append(self.env._("Credit note %(move)s: %(value)s is not a valid KSeF number.",
                                      move=self.name, value=self.ksef_corrected_ksef_number))
                ref.nr_ksef, ref.nr_ksef_fa_korygowanej = 1, self.ksef_corrected_ksef_number.strip()
            else:
                ref.nr_ksef_n = 1
        else:
            problems.append(self.env._(
                "Credit note %s does not say which invoice it corrects: create it with \"Credit Note\" on the "
                "invoice, or fill the corrected invoice number and date.", self.name))
            return
        fa.dane_fa_korygowanej = [ref]

    def _ksef_reason_from_ref(self):
        """The reason typed in the credit note wizard, kept by ``account`` in ``ref`` ("Reversal of: X, reason")."""
        ref = self.ref or ""
        original = self.reversed_entry_id
        if original and original.name and original.name in ref:
            tail = ref.split(original.name, 1)[1].lstrip(", ").strip()
            return tail or False
        return False

    # -------------------------------------------------------------------------
    # BUSINESS: validation messages and KSeF status mapping
    # -------------------------------------------------------------------------

    def _ksef_explain_issue(self, issue):
        """A core ValidationIssue as a sentence naming the invoice, the record and what to fix."""
        path = issue.path or ""
        lang = self.env.lang or 'en_US'
        text = issue.message_pl if lang.startswith('pl') and issue.message_pl else issue.message_en
        value = " (%s)" % issue.value if issue.value not in (None, "") and str(issue.value) not in text else ""
        if "/Podmiot1" in path or path.startswith("Podmiot1"):
            where = self.env._("company %s", self.company_id.name)
        elif "/Podmiot2" in path or path.startswith("Podmiot2"):
            where = self.env._("customer %s", self.commercial_partner_id.display_name)
        elif m := re.search(r"FaWiersz\[(\d+)\]", path):
            index = int(m.group(1))
            product_lines = self.invoice_line_ids.filtered(lambda ln: ln.display_type == 'product')
            line = product_lines[index - 1] if 0 < index <= len(product_lines) else None
            where = self.env._("line %(index)s (%(name)s)", index=index,
                      name=(line.name or line.product_id.display_name) if line else "?")
        elif "/Platnosc" in path:
            where = self.env._("payment terms / bank account")
        elif "DaneFaKorygowanej" in path:
            where = self.env._("corrected invoice")
        else:
            where = self.env._("field %s", path.rsplit("/", 1)[-1] or "-")
        return self.env._("Invoice %(move)s: %(where)s: %(message)s%(value)s", move=self.name, where=where,
                 message=text, value=value)

    @api.model
    def _ksef_status_outcome(self, code, description=None, details=(), extensions=None, attempts=0):
        """Map a KSeF invoice status to ``{'state', 'message', 'retry'}`` — the single place where KSeF
        codes become states and plain explanations with the next step.

        ``state``: ``accepted``, ``rejected``, ``duplicate`` or ``retry`` (send again automatically).
        """
        detail_text = "; ".join(str(d) for d in (details or ()) if d)[:1500]
        extensions = extensions or {}
        if code == 200:
            return {'state': 'accepted', 'message': self.env._("Success."), 'retry': False}
        if code == 440:
            return {'state': 'duplicate', 'retry': False, 'message': self.env._(
                "KSeF already holds this invoice (duplicate: same seller NIP, invoice type and number) under KSeF "
                "number %s. Nothing was sent twice.", extensions.get('originalKsefNumber') or "?")}
        retryable = {
            405: self.env._("KSeF cancelled the processing because of a session error."),
            435: self.env._("KSeF could not decrypt the file."),
            500: self.env._("KSeF reported an unknown error."),
            550: self.env._("KSeF cancelled the processing (system operation)."),
        }
        if code in retryable:
            if attempts < MAX_ATTEMPTS:
                return {'state': 'retry', 'retry': True, 'message': self.env._(
                    "%(what)s The invoice will be sent again automatically.", what=retryable[code])}
            return {'state': 'rejected', 'retry': False, 'message': self.env._(
                "%(what)s It happened %(count)s times; next step: check the KSeF status page and click Retry "
                "later. KSeF says: %(details)s", what=retryable[code], count=attempts,
                details=detail_text or description or "-")}
        explanations = {
            410: self.env._(
                "KSeF refused the invoice: the credentials used by Odoo have no permission to issue invoices "
                "for this seller (status 410). Next step: in the KSeF application grant the \"InvoiceWrite\" "
                "permission to the token or certificate used by Odoo (or fix the company's NIP), then click "
                "Retry."),
            415: self.env._(
                "KSeF refused the invoice: sending invoices with attachments is not enabled for this taxpayer "
                "(status 415). Next step: enable attachments in e-Urząd Skarbowy, or remove the attachment, "
                "then click Retry."),
            430: self.env._(
                "KSeF refused the file: it does not match the FA(3) structure (status 430). Next step: correct "
                "the data named in the details (reset the invoice to draft if needed) and click Retry; if the "
                "details name something Odoo fills in by itself, report it to your integrator."),
            450: self.env._(
                "KSeF refused the invoice content (semantic error, status 450), e.g. an issue date after the "
                "sending date or an invalid NIP. Next step: correct the data named in the details (reset the "
                "invoice to draft if needed) and click Retry."),
        }
        message = explanations.get(code) or self.env._(
            "KSeF rejected the invoice (status %(code)s: %(description)s). Next step: read the details, correct "
            "the invoice and click Retry.", code=code, description=description or "-")
        if detail_text:
            message = self.env._("%(message)s\nKSeF details: %(details)s", message=message, details=detail_text)
        return {'state': 'rejected', 'message': message, 'retry': False}

    # -------------------------------------------------------------------------
    # BUSINESS: offline
    # -------------------------------------------------------------------------

    def _ksef_issue_offline(self, mode, event_end=None):
        """Issue invoices in an offline mode: freeze the XML (its hash goes in the QR codes), compute the
        deadline. Returns ``{move: [error]}``; nothing is sent now."""
        errors = self._ksef_check_sendable(offline=True)
        if mode != 'total_failure':
            for company in self.company_id:
                try:
                    company._ksef_offline_signer()
                except (UserError, RedirectWarning) as exc:
                    for move in self.filtered(lambda m, c=company: m.company_id == c):
                        errors.setdefault(move, []).append(exc.args[0])
        for move in self - self.browse([m.id for m in errors]):
            xml, problems = move._ksef_generate_xml()
            if problems:
                errors[move] = problems
                continue
            previous_hash = move.ksef_xml_hash if move.ksef_state == 'rejected' and move.ksef_offline_mode else False
            move._ksef_freeze_xml(xml)
            deadline = move._ksef_compute_deadline(mode, event_end)
            extra = {'ksef_offline_mode': mode, 'ksef_offline_event_end': event_end or False,
                     'ksef_offline_deadline': deadline, 'ksef_attempt_count': 0, 'ksef_next_attempt': False,
                     'ksef_deadline_warning': False, 'ksef_session_id': False, 'ksef_session_reference': False,
                     'ksef_reference': False, 'ksef_corrected_hash': previous_hash or False}
            if mode == 'total_failure':
                message = self.env._("Issued outside KSeF (total failure of KSeF): no obligation to send it, "
                                     "no QR code on the printout.")
            elif deadline:
                message = self.env._("Issued offline (%(mode)s); send to KSeF by %(deadline)s.",
                                     mode=move._ksef_offline_mode_label(mode),
                                     deadline=move._ksef_format_datetime(deadline))
            else:
                message = self.env._("Issued offline (%s); the deadline is counted from the end of the "
                                     "unavailability or failure.", move._ksef_offline_mode_label(mode))
            move._ksef_set_state('offline', message, level=False, extra=extra, attachments=move.ksef_xml_id)
        if any(mode != 'total_failure' for _m in self):
            self._ksef_trigger_crons()
        return errors

    def _ksef_compute_deadline(self, mode, event_end=None):
        """Naive UTC datetime of the offline deadline (``False`` when none / not known yet)."""
        try:
            if mode == 'offline24':
                deadline = ksef_calendar.offline_deadline(mode, issue_date=self.invoice_date)
            elif mode in ('unavailability', 'failure') and event_end:
                end = fields.Datetime.to_datetime(event_end).replace(tzinfo=datetime.timezone.utc)
                key = 'unavailability_end' if mode == 'unavailability' else 'failure_end'
                deadline = ksef_calendar.offline_deadline(mode, **{key: end.astimezone(ksef_calendar.WARSAW)})
            else:
                return False
        except KsefError:
            return False
        if not deadline:
            return False
        return deadline.astimezone(datetime.timezone.utc).replace(tzinfo=None, microsecond=0)

    # -------------------------------------------------------------------------
    # BUSINESS: QR codes (printouts)
    # -------------------------------------------------------------------------

    def _ksef_qr_mode(self):
        """What the printout shows: ``number`` (KOD I + KSeF number), ``offline`` (KOD I OFFLINE + KOD II
        CERTYFIKAT) or ``False`` (nothing: not sent, waiting online, total failure)."""
        self.ensure_one()
        if not self.ksef_xml_hash:
            return False
        if self.ksef_number and self.ksef_state in ACCEPTED_STATES:
            return 'number'
        if self.ksef_offline_mode and self.ksef_offline_mode != 'total_failure' and self.ksef_state in (
                'offline', 'sending', 'to_send'):
            return 'offline'
        return False

    def _ksef_qr_kod1_url(self):
        self.ensure_one()
        return ksef_qr.invoice_url(self.company_id._ksef_qr_base(), self.company_id.vat, self.invoice_date,
                                   invoice_hash=self.ksef_xml_hash)

    def _ksef_qr_kod2_url(self):
        self.ensure_one()
        signer = self.company_id._ksef_offline_signer()
        return ksef_qr.certificate_url(
            signer.get('qr_base') or self.company_id._ksef_qr_base(), signer['context_type'],
            signer['context_value'], self.company_id.vat, signer['certificate_serial_hex'], self.ksef_xml_hash,
            signer['private_key'])

    def _ksef_report_qr_values(self, confirmation=False):
        """What the QWeb templates print: ``{'mode', 'kod1_png', 'kod1_url', 'kod2_png', 'kod2_url',
        'kod2_error'}``. ``mode``: ``number`` / ``offline`` / ``pending`` (transaction confirmation of an
        online invoice still waiting for its number: KOD I only) / ``False``. Captions are in the templates."""
        self.ensure_one()
        mode = self._ksef_qr_mode()
        if not mode and confirmation and self.ksef_xml_hash and self.ksef_state in ('to_send', 'sending') \
                and self.ksef_offline_mode != 'total_failure':
            mode = 'pending'
        values = {'mode': mode, 'kod1_png': False, 'kod1_url': False, 'kod2_png': False, 'kod2_url': False,
                  'kod2_error': False}
        if not mode:
            return values
        values['kod1_url'] = self._ksef_qr_kod1_url()
        values['kod1_png'] = base64.b64encode(ksef_qr.render_png(values['kod1_url'], box_size=4))
        if mode == 'offline':
            try:
                values['kod2_url'] = self._ksef_qr_kod2_url()
            except (UserError, RedirectWarning) as exc:
                values['kod2_error'] = exc.args[0]
            except KsefError as exc:
                values['kod2_error'] = self.company_id._ksef_error_message(exc)
            else:
                values['kod2_png'] = base64.b64encode(ksef_qr.render_png(values['kod2_url'], box_size=3))
        return values

    def _ksef_qr_png_b64(self, kind='invoice'):
        """Base64 PNG of KOD I (``invoice``) or KOD II (``certificate``) for ``image_data_uri``."""
        self.ensure_one()
        url = self._ksef_qr_kod1_url() if kind == 'invoice' else self._ksef_qr_kod2_url()
        return base64.b64encode(ksef_qr.render_png(url, box_size=4))

    # -------------------------------------------------------------------------
    # CRON
    # -------------------------------------------------------------------------

    @api.model
    def _ksef_job_env(self):
        """Environment of the scheduled KSeF jobs: the messages they store (KSeF status texts, chatter,
        validation problems) are written in Polish when Polish is installed, not in the language of
        OdooBot (English), since the readers are Polish accountants."""
        lang = self.env.context.get('ksef_job_lang')
        if not lang:
            installed = dict(self.env['res.lang'].get_installed())
            lang = 'pl_PL' if 'pl_PL' in installed else (self.env.context.get('lang') or self.env.user.lang)
        return self.with_context(lang=lang, ksef_job_lang=lang)

    @api.model
    def _cron_ksef_send(self):
        """Send the queue (online session per company, batch above the company's threshold)."""
        self._ksef_job_env().env['l10n_pl_ksef.session']._ksef_cron_send()

    @api.model
    def _cron_ksef_update_status(self):
        """Follow statuses of sent invoices, fetch UPOs, close idle sessions."""
        self._ksef_job_env().env['l10n_pl_ksef.session']._ksef_cron_update_status()

    @api.model
    def _cron_ksef_send_offline(self):
        """Send offline invoices as soon as the status service says KSeF is available."""
        self._ksef_job_env().env['l10n_pl_ksef.session']._ksef_cron_send(offline=True)

    @api.model
    def _cron_ksef_offline_deadlines(self):
        """Warn the responsible user (activity) before an offline invoice's deadline and when it passed."""
        self._ksef_job_env()._ksef_warn_offline_deadlines()

    @api.model
    def _ksef_warn_offline_deadlines(self):
        now = fields.Datetime.now()
        moves = self.search([('ksef_state', '=', 'offline'), ('ksef_offline_deadline', '!=', False),
                             ('ksef_offline_mode', '!=', 'total_failure')])
        todo = self.env.ref('mail.mail_activity_data_todo', raise_if_not_found=False)
        for move in moves:
            move = move.with_prefetch()
            deadline = move.ksef_offline_deadline
            if deadline <= now:
                level = 'overdue'
            else:
                local_deadline = deadline.replace(tzinfo=datetime.timezone.utc).astimezone(ksef_calendar.WARSAW)
                today = datetime.datetime.now(ksef_calendar.WARSAW).date()
                level = 'near' if ksef_calendar.business_days_between(today, local_deadline.date()) < 1 else False
            if not level or move.ksef_deadline_warning == level or (
                    move.ksef_deadline_warning == 'overdue' and level == 'near'):
                continue
            user = move.company_id.ksef_offline_responsible_id or move.invoice_user_id or move.create_uid
            if level == 'overdue':
                summary = self.env._("KSeF deadline passed: send invoice %s", move.name)
                note = self.env._("The offline invoice %(move)s had to be sent to KSeF by %(deadline)s. Send it now "
                                  "(Retry on the invoice) and check why it was not sent.",
                                  move=move.name, deadline=move._ksef_format_datetime(deadline))
            else:
                summary = self.env._("KSeF deadline near: send invoice %s", move.name)
                note = self.env._("The offline invoice %(move)s must be sent to KSeF by %(deadline)s. It is sent "
                                  "automatically when KSeF is available; check that it is.",
                                  move=move.name, deadline=move._ksef_format_datetime(deadline))
            if todo and user:
                move.activity_schedule(activity_type_id=todo.id, summary=summary, note=note, user_id=user.id,
                                       date_deadline=fields.Date.context_today(move))
            move._ksef_write({'ksef_deadline_warning': level})
            move._ksef_commit()


def _ksef_html(text):
    """Plain text → safe HTML paragraph (line breaks kept)."""
    return Markup("<p>%s</p>") % Markup("<br/>").join((text or "").split("\n"))
