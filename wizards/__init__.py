from . import account_move_reversal
from . import l10n_pl_ksef_offline_mode
from . import l10n_pl_ksef_purchase_import
from . import l10n_pl_ksef_purchase_import_tax
