{
    'name': 'Poland - KSeF 2.0 e-invoicing',
    'version': '18.0.1.0.0',
    'category': 'Accounting/Localizations/EDI',
    'summary': 'Send sales invoices to and receive purchase invoices from KSeF 2.0 (FA(3), API v2)',
    'description': """
KSeF 2.0 integration for Polish companies
=========================================
Send posted customer invoices and credit notes to the Polish National e-Invoicing System
(Krajowy System e-Faktur) in the FA(3) format, online or in the offline modes, with UPO and
QR codes on the printed invoice; receive purchase invoices into a KSeF inbox and import them
as vendor bills.
""",
    'author': 'l10n_pl_ksef contributors',
    'website': 'https://github.com/l10n-pl-ksef/l10n_pl_ksef',
    'license': 'LGPL-3',
    'countries': ['pl'],
    'depends': ['account', 'l10n_pl', 'certificate'],
    'external_dependencies': {'python': ['xmlschema', 'qrcode']},
    'data': [],
    'installable': True,
    'application': False,
}
