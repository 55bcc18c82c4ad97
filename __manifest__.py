{
    'name': 'Poland - KSeF 2.0 e-invoicing',
    'version': '18.0.1.0.0',
    'category': 'Accounting/Localizations/EDI',
    'summary': 'Send sales invoices to and receive purchase invoices from KSeF 2.0 (FA(3), API v2)',
    'author': 'l10n_pl_ksef contributors',
    'website': 'https://github.com/l10n-pl-ksef/l10n_pl_ksef',
    'license': 'LGPL-3',
    'countries': ['pl'],
    'depends': ['account', 'l10n_pl', 'certificate'],
    'external_dependencies': {'python': ['xmlschema', 'qrcode']},
    'data': [
        'security/l10n_pl_ksef_groups.xml',
        'security/ir.model.access.csv',
        'security/l10n_pl_ksef_security.xml',
        'views/account_tax_views.xml',
        'views/res_config_settings_views.xml',
    ],
    'assets': {
        'web.assets_backend': [
            'l10n_pl_ksef/static/src/**/*',
        ],
    },
    'post_init_hook': '_l10n_pl_ksef_post_init',
}
