from . import test_install
from . import test_security
from . import test_settings
from . import test_tax_rate_codes
from . import test_send
