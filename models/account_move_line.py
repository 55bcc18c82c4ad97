from odoo import models
from odoo.exceptions import UserError

from .account_move import LOCKED_STATES

# line fields written into the FA(3) file (FaWiersz)
XML_LINE_FIELDS = frozenset({'name', 'quantity', 'price_unit', 'discount', 'product_id', 'product_uom_id', 'tax_ids',
                             'price_subtotal', 'price_total', 'currency_id', 'display_type'})


class AccountMoveLine(models.Model):
    _inherit = 'account.move.line'

    def write(self, vals):
        # EXTENDS 'account'
        if XML_LINE_FIELDS.intersection(vals) and not self.env.context.get('ksef_skip_guard'):
            locked = self.move_id.filtered(lambda m: m.ksef_state in LOCKED_STATES)
            for move in locked:
                raise UserError(self.env._(
                    "Invoice %(move)s is %(state)s in KSeF: its lines cannot be changed. Issue a credit note "
                    "(correction) instead.", move=move.name, state=move._ksef_state_label()))
        return super().write(vals)
