from . import account_chart_template
from . import account_tax
from . import certificate_certificate
from . import l10n_pl_ksef_auth_token
from . import res_company
from . import res_config_settings
