from markupsafe import Markup

from odoo import api, fields, models
from odoo.exceptions import RedirectWarning, UserError

from odoo.addons.l10n_pl_ksef.models.account_move import OFFLINE_MODES

# Latarnia status -> offline mode to suggest
STATUS_MODES = {'MAINTENANCE': 'unavailability', 'FAILURE': 'failure', 'TOTAL_FAILURE': 'total_failure'}


class L10nPlKsefOfflineMode(models.TransientModel):
    _name = 'l10n_pl_ksef.offline_mode'
    _description = "Issue invoices in a KSeF offline mode"

    move_ids = fields.Many2many(
        comodel_name='account.move',
        string="Invoices",
        required=True,
    )
    mode = fields.Selection(
        selection=OFFLINE_MODES,
        string="Offline Mode",
        required=True,
        default=lambda self: self._default_mode(),
        help="- Offline24: for any reason (e.g. no internet connection); send to KSeF by the next business day "
             "after the issue date (art. 106nda of the VAT Act).\n"
             "- KSeF unavailability: maintenance announced in the BIP of the Ministry of Finance and in the "
             "software; send by the next business day after it ends (art. 106nh).\n"
             "- KSeF failure: failure announced in the BIP and the software; send within 7 business days after "
             "it ends (art. 106nf).\n"
             "- KSeF total failure: announced in the media; the invoice is issued outside KSeF, without QR codes, "
             "and does not have to be sent.",
    )
    event_end = fields.Datetime(
        string="Unavailability / Failure End",
        help="When the announced unavailability or failure ended (or ends). Leave empty while it lasts: the "
             "deadline is then counted once KSeF is available again.",
    )
    service_status = fields.Char(
        string="KSeF Status Service",
        compute='_compute_service_status',
        help="What the KSeF status service says right now.",
    )
    deadline_text = fields.Text(
        string="Deadline",
        compute='_compute_deadline_text',
    )
    explanation = fields.Html(
        compute='_compute_explanation',
        sanitize=False,
    )
    problems = fields.Text(
        compute='_compute_problems',
    )

    # -------------------------------------------------------------------------
    # DEFAULTS
    # -------------------------------------------------------------------------

    @api.model
    def _default_mode(self):
        status = self._service_status_for(self.env.company)
        return STATUS_MODES.get(status['status'], 'offline24')

    @api.model
    def _service_status_for(self, company):
        if not company._ksef_is_polish():
            return {'status': 'UNKNOWN', 'message': ''}
        return company._ksef_service_status()

    # -------------------------------------------------------------------------
    # COMPUTE
    # -------------------------------------------------------------------------

    @api.depends('move_ids')
    def _compute_service_status(self):
        for wizard in self:
            company = wizard.move_ids.company_id[:1] or self.env.company
            wizard.service_status = self._service_status_for(company)['message']

    @api.depends('move_ids', 'mode', 'event_end')
    def _compute_deadline_text(self):
        for wizard in self:
            lines = []
            for move in wizard.move_ids[:20]:
                if wizard.mode == 'total_failure':
                    lines.append(self.env._("%s: no obligation to send", move.name))
                    continue
                deadline = move._ksef_compute_deadline(wizard.mode, wizard.event_end)
                if deadline:
                    lines.append(self.env._("%(move)s: send by %(deadline)s", move=move.name,
                                            deadline=move._ksef_format_datetime(deadline)))
                else:
                    lines.append(self.env._("%s: counted from the end of the unavailability or failure", move.name))
            if len(wizard.move_ids) > 20:
                lines.append(self.env._("... and %s more", len(wizard.move_ids) - 20))
            wizard.deadline_text = "\n".join(lines)

    @api.depends('mode')
    def _compute_explanation(self):
        texts = {
            'offline24': self.env._(
                "Offline24 mode can be used for any reason, e.g. when the internet connection fails. "
                "The invoice is issued now and must be sent to KSeF no later than the next business day "
                "after its issue date (art. 106nda of the VAT Act). Odoo sends it automatically as soon "
                "as KSeF is available."),
            'unavailability': self.env._(
                "KSeF unavailability (maintenance) announced in the BIP of the Ministry of Finance "
                "and in the software. The invoice must be sent no later than the next business day "
                "after the unavailability ends (art. 106nh). Odoo sends it automatically when KSeF "
                "is available again."),
            'failure': self.env._(
                "KSeF failure announced in the BIP of the Ministry of Finance and in the software. The "
                "invoice must be sent within 7 business days after the failure ends; a new failure notice "
                "restarts the count (art. 106nf). Odoo sends it automatically when KSeF works again."),
            'total_failure': self.env._(
                "Total failure of KSeF announced in the media. The invoice is issued outside KSeF "
                "(paper or any electronic form), without QR codes, and there is no obligation to "
                "send it to KSeF later. Corrections during the failure are also issued outside "
                "KSeF."),
        }
        qr = self.env._(
            "Until KSeF gives the invoice its number, the printout handed to the buyer carries two QR codes: "
            "OFFLINE (the invoice) and CERTYFIKAT (the issuer, signed with the company's KSeF offline "
            "certificate).")
        for wizard in self:
            text = texts.get(wizard.mode, "")
            body = Markup("<p>%s</p>") % text
            if wizard.mode != 'total_failure':
                body += Markup("<p>%s</p>") % qr
            wizard.explanation = body

    @api.depends('move_ids', 'mode')
    def _compute_problems(self):
        for wizard in self:
            errors = wizard.move_ids._ksef_check_sendable(offline=True)
            messages = [msg for msgs in errors.values() for msg in msgs]
            if wizard.mode != 'total_failure':
                for company in wizard.move_ids.company_id:
                    try:
                        company._ksef_offline_signer()
                    except (UserError, RedirectWarning) as exc:
                        messages.append(exc.args[0])
            wizard.problems = "\n".join(messages) or False

    # -------------------------------------------------------------------------
    # ACTIONS
    # -------------------------------------------------------------------------

    def action_confirm(self):
        self.ensure_one()
        self.move_ids._ksef_check_sender()
        errors = self.move_ids._ksef_issue_offline(self.mode, self.event_end)
        if errors:
            raise UserError("\n".join(msg for msgs in errors.values() for msg in msgs))
        if len(self.move_ids) == 1:
            return {'type': 'ir.actions.client', 'tag': 'soft_reload'}
        return {'type': 'ir.actions.act_window_close'}
