from odoo import api, fields, models

from .account_move import KSEF_STATES, OFFLINE_MODES


class L10nPlKsefTransmission(models.Model):
    """One row of the KSeF history of an invoice (the "KSeF" tab of the invoice form).

    A row is written for every state change of the invoice (queued, verifying, accepted, rejected,
    offline...), newest first, like the KSeF window of the CargoLink manual: status, KSeF number,
    created, invoicing date, description (``message``) and KSeF details, with the UPO / XML attachments.
    """
    _name = 'l10n_pl_ksef.transmission'
    _description = "KSeF transmission log"
    _order = 'create_date DESC, id DESC'
    _check_company_auto = True
    _rec_name = 'state'

    move_id = fields.Many2one(
        comodel_name='account.move',
        string="Invoice",
        required=True,
        index=True,
        ondelete='cascade',
        check_company=True,
    )
    company_id = fields.Many2one(
        comodel_name='res.company',
        string="Company",
        related='move_id.company_id',
        store=True,
        index=True,
    )
    state = fields.Selection(
        selection=[*KSEF_STATES, ('error', "Not sent")],
        string="Status",
        required=True,
        help="KSeF status of the invoice when this row was written (see the invoice's KSeF Status); \"Not sent\" "
             "marks an attempt that stopped before anything went to KSeF (e.g. invalid data).",
    )
    ksef_number = fields.Char(
        string="KSeF Number",
        help="Number assigned by KSeF (accepted invoices), or the number of the original invoice for a duplicate.",
    )
    invoicing_date = fields.Datetime(
        help="Date and time KSeF accepted the invoice (invoicingDate).",
    )
    message = fields.Text(
        string="Description",
        help="What happened, in plain words, and what to do next.",
    )
    details = fields.Text(
        string="KSeF Details",
        help="Status code, description and details exactly as KSeF returned them.",
    )
    status_code = fields.Integer(
        string="KSeF Code",
        help="KSeF status code of the invoice (200 accepted, 4xx rejected...), 0 when not applicable.",
    )
    session_reference = fields.Char()
    invoice_reference = fields.Char()
    offline_mode = fields.Selection(
        selection=OFFLINE_MODES,
    )
    attachment_id = fields.Many2one(
        comodel_name='ir.attachment',
        string="UPO",
        help="Official acknowledgement of receipt (UPO) of the accepted invoice.",
    )
    xml_attachment_id = fields.Many2one(
        comodel_name='ir.attachment',
        string="XML",
        help="The FA(3) file sent to KSeF.",
    )
    user_id = fields.Many2one(
        comodel_name='res.users',
        default=lambda self: self.env.user,
        help="User who started the action (the system user for scheduled actions).",
    )

    # -------------------------------------------------------------------------
    # COMPUTE
    # -------------------------------------------------------------------------

    @api.depends('state', 'move_id.name')
    def _compute_display_name(self):
        labels = dict(self._fields['state']._description_selection(self.env))
        for row in self:
            row.display_name = "%s - %s" % (row.move_id.name or '', labels.get(row.state, row.state or ''))

    # -------------------------------------------------------------------------
    # ACTIONS
    # -------------------------------------------------------------------------

    def action_download_upo(self):
        self.ensure_one()
        return self._download(self.attachment_id)

    def action_download_xml(self):
        self.ensure_one()
        return self._download(self.xml_attachment_id)

    def _download(self, attachment):
        if not attachment:
            return False
        return {
            'type': 'ir.actions.act_url',
            'url': '/web/content/%s?download=true' % attachment.id,
            'target': 'download',
        }
