from odoo import api, models
from odoo.exceptions import RedirectWarning, UserError


class AccountMoveSend(models.AbstractModel):
    _inherit = 'account.move.send'

    @api.model
    def _ksef_is_applicable(self, move):
        return bool(move.ksef_can_send) and self._ksef_may_send((move.sending_data or {}).get('author_user_id'))

    @api.model
    def _ksef_may_send(self, author_user_id=None):
        """Whether the user who sends is a KSeF sender: the wizard's user, or the author of the batch the
        sending cron processes as superuser (so the cron never sends on behalf of a user who may not)."""
        user = self.env['res.users'].sudo().browse(author_user_id) if author_user_id else self.env.user
        return user.has_group('l10n_pl_ksef.group_ksef_sender')

    def _get_all_extra_edis(self) -> dict:
        # EXTENDS 'account'
        res = super()._get_all_extra_edis()
        res['ksef'] = {
            'label': self.env._("Send to KSeF"),
            'is_applicable': self._ksef_is_applicable,
            'help': self.env._("Send the invoice to the Polish National e-Invoicing System (KSeF). The invoice is "
                               "queued and sent in the background; its printout gets the KSeF QR code once KSeF "
                               "accepts it."),
        }
        return res

    # -------------------------------------------------------------------------
    # ALERTS
    # -------------------------------------------------------------------------

    def _get_alerts(self, moves, moves_data):
        # EXTENDS 'account'
        alerts = super()._get_alerts(moves, moves_data)
        ksef_moves = moves.filtered(lambda m: 'ksef' in moves_data[m]['extra_edis'])
        if not ksef_moves:
            return alerts
        for company in ksef_moves.company_id:
            try:
                company._ksef_check_configuration()
            except RedirectWarning as exc:
                alerts['l10n_pl_ksef_configuration_%s' % company.id] = {
                    'level': 'danger',
                    'message': exc.args[0],
                    'action_text': self.env._("Go to KSeF settings"),
                    'action': company._ksef_settings_action(),
                }
        problems, warnings = ksef_moves._ksef_collect_send_problems()
        if problems:
            invalid = moves.browse([m.id for m in problems])
            alerts['l10n_pl_ksef_invalid'] = {
                'level': 'danger',
                'message': "\n".join(msg for msgs in problems.values() for msg in msgs),
                'action_text': self.env._("View invoice(s)"),
                'action': invalid._get_records_action(name=self.env._("Check data for KSeF")),
            }
        if warnings:
            alerts['l10n_pl_ksef_warnings'] = {
                'level': 'warning',
                'message': "\n".join(msg for msgs in warnings.values() for msg in msgs),
            }
        return alerts

    # -------------------------------------------------------------------------
    # SENDING
    # -------------------------------------------------------------------------

    def _get_invoice_extra_attachments(self, move):
        # EXTENDS 'account'
        return super()._get_invoice_extra_attachments(move) + move.ksef_xml_id

    def _generate_and_send_invoices(self, moves, from_cron=False, allow_raising=True, allow_fallback_pdf=False,
                                    **custom_settings):
        # EXTENDS 'account'
        sender = self.with_context(ksef_no_send_now=True) if from_cron else self
        return super(AccountMoveSend, sender)._generate_and_send_invoices(
            moves, from_cron=from_cron, allow_raising=allow_raising, allow_fallback_pdf=allow_fallback_pdf,
            **custom_settings)

    def _hook_invoice_document_before_pdf_report_render(self, invoice, invoice_data):
        # EXTENDS 'account'
        super()._hook_invoice_document_before_pdf_report_render(invoice, invoice_data)
        if 'ksef' not in invoice_data['extra_edis'] or not invoice.ksef_can_send:
            return
        if not self._ksef_may_send(invoice_data.get('author_user_id')):
            # the KSeF checkbox is only offered to senders; a forced one (RPC) is refused
            invoice_data['error'] = {
                'error_title': self.env._("The invoice cannot be sent to KSeF:"),
                'errors': [self.env._("You are not allowed to send invoices to KSeF (\"KSeF: send documents\").")],
            }
            return
        errors = invoice._ksef_check_sendable().get(invoice, [])
        if not errors:
            errors = invoice._ksef_check_fa3()[0]
        if errors:
            invoice_data['error'] = {
                'error_title': self.env._("The invoice cannot be sent to KSeF:"),
                'errors': errors,
            }

    def _call_web_service_before_invoice_pdf_render(self, invoices_data):
        # EXTENDS 'account'
        super()._call_web_service_before_invoice_pdf_render(invoices_data)
        to_send = self.env['account.move']
        for move, move_data in invoices_data.items():
            if 'ksef' in move_data['extra_edis'] and move.ksef_can_send \
                    and self._ksef_may_send(move_data.get('author_user_id')):
                to_send |= move
        if not to_send:
            return
        # queued and frozen now; never raise here: per-invoice problems go to invoice_data
        try:
            errors = to_send._ksef_enqueue()
        except UserError as exc:
            errors = {move: [exc.args[0]] for move in to_send}
        for move, msgs in errors.items():
            invoices_data[move]['error'] = {
                'error_title': self.env._("The invoice cannot be sent to KSeF:"),
                'errors': msgs,
            }
        queued = to_send.filtered(lambda m: m.ksef_state == 'to_send')
        if len(queued) == 1 and len(invoices_data) == 1:
            # one invoice from the wizard: one short attempt so the PDF can carry the KSeF QR code
            queued._ksef_send_now()
