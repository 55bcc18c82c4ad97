"""Odoo-free KSeF 2.0 core: FA(3) model, validation, API client, crypto, QR codes, calendar, sandbox.

This package never imports ``odoo``. The Odoo addon imports it as
``odoo.addons.l10n_pl_ksef.ksef``; on its own it is importable as ``ksef``.
"""
__version__ = "18.0.1.0.0"
