from odoo import models


class AccountMoveReversal(models.TransientModel):
    _inherit = 'account.move.reversal'

    def _prepare_default_reversal(self, move):
        # EXTENDS 'account'
        values = super()._prepare_default_reversal(move)
        if self.reason and move.move_type == 'out_invoice':
            # PrzyczynaKorekty of the KSeF correction invoice (KOR)
            values['ksef_correction_reason'] = self.reason[:256]
        return values
