"""The Polish translation is complete, well-formed and actually used by Odoo.

The template i18n/l10n_pl_ksef.pot and i18n/pl.po are regenerated with tools/i18n_update.
"""
import collections
import re

import polib

from odoo.exceptions import RedirectWarning, ValidationError
from odoo.tests import TransactionCase, tagged
from odoo.tools.misc import file_path

# %s, %d, %(name)s, %% and {name} placeholders; HTML/QWeb tags of view terms.
PLACEHOLDER_RE = re.compile(r"%\([A-Za-z0-9_]+\)[sdfr]|%[sdfr%]|\{\{?[A-Za-z0-9_.]*\}?\}")
POSITIONAL_RE = re.compile(r"%[sdfr]")
TAG_RE = re.compile(r"</?([A-Za-z][A-Za-z0-9_.-]*)")


def _entries(path):
    return [entry for entry in polib.pofile(path, wrapwidth=0) if not entry.obsolete]


@tagged('post_install_l10n', 'post_install', '-at_install')
class TestKsefI18n(TransactionCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pot_path = file_path('l10n_pl_ksef/i18n/l10n_pl_ksef.pot')
        cls.po_path = file_path('l10n_pl_ksef/i18n/pl.po')
        cls.env['res.lang']._activate_lang('pl_PL')
        cls.env['ir.module.module']._load_module_terms(['l10n_pl_ksef'], ['pl_PL'], overwrite=True)

    # ------------------------------------------------------------------ the files
    def test_po_file_is_complete(self):
        self.assertTrue(self.pot_path and self.po_path, "i18n/l10n_pl_ksef.pot and i18n/pl.po must exist")
        po = polib.pofile(self.po_path, wrapwidth=0)
        self.assertIn("nplurals=3", po.metadata.get('Plural-Forms', ''))
        template = {entry.msgid for entry in _entries(self.pot_path)}
        self.assertGreater(len(template), 100)
        translated = {}
        for entry in _entries(self.po_path):
            self.assertNotIn('fuzzy', entry.flags, "fuzzy translation of %r" % entry.msgid)
            translated[entry.msgid] = entry.msgstr
        missing = sorted(msgid for msgid in template if not (translated.get(msgid) or '').strip())
        self.assertFalse(missing, "msgids of the template without a Polish translation (run tools/i18n_update "
                                  "and translate them):\n%s" % "\n".join(missing[:50]))

    def test_placeholders_and_markup_kept(self):
        problems = []
        for entry in _entries(self.po_path):
            if not entry.msgstr:
                continue
            source, target = entry.msgid, entry.msgstr
            placeholders = collections.Counter(PLACEHOLDER_RE.findall(source))
            if placeholders != collections.Counter(PLACEHOLDER_RE.findall(target)):
                problems.append("placeholders differ: %r -> %r" % (source, target))
            elif POSITIONAL_RE.findall(source) != POSITIONAL_RE.findall(target):
                problems.append("positional placeholders reordered: %r -> %r" % (source, target))
            if collections.Counter(TAG_RE.findall(source)) != collections.Counter(TAG_RE.findall(target)):
                problems.append("markup differs: %r -> %r" % (source, target))
        self.assertFalse(problems, "\n".join(problems))

    # ------------------------------------------------------------------ Odoo uses it
    def test_loaded_terms_are_polish(self):
        env_pl = self.env(context=dict(self.env.context, lang='pl_PL'))
        move_fields = env_pl['account.move'].fields_get(['ksef_state', 'ksef_number'], ['string', 'selection'])
        states = dict(move_fields['ksef_state']['selection'])
        self.assertEqual(states['to_send'], "Oczekuje na wysłanie do KSeF")
        self.assertEqual(states['accepted'], "Zaakceptowano")
        self.assertEqual(move_fields['ksef_state']['string'], "Status KSeF")
        self.assertEqual(move_fields['ksef_number']['string'], "Numer KSeF")
        menu = env_pl.ref('l10n_pl_ksef.l10n_pl_ksef_inbox_menu')
        self.assertEqual(menu.name, "Skrzynka KSeF")
        # the English source is still what other languages see
        self.assertEqual(self.env.ref('l10n_pl_ksef.l10n_pl_ksef_inbox_menu').with_context(lang='en_US').name,
                         "KSeF Inbox")

    def test_code_messages_are_polish(self):
        company = self.env.company.with_context(lang='pl_PL')
        with self.assertRaises(ValidationError) as caught:
            company.ksef_batch_threshold = 0
        self.assertEqual(caught.exception.args[0], "Próg wysyłki wsadowej KSeF musi wynosić co najmniej 1.")
        with self.assertRaises(RedirectWarning) as caught:
            company._ksef_offline_signer()
        self.assertIn("nie ma certyfikatu offline KSeF", caught.exception.args[0])
        self.assertEqual(caught.exception.args[2], "Przejdź do ustawień KSeF")
