# Configures the demo database for tools/run. Executed by `odoo-bin shell` (the global `env` is the
# superuser environment); idempotent, safe to run at every start.
#
#   * PL Company (l10n_pl demo company) uses the local KSeF sandbox, logs in with a KSeF token the
#     sandbox issues, and has a self-signed offline certificate for QR code II;
#   * the admin user works in PL Company and holds the KSeF manager group;
#   * a few posted customer invoices wait to be sent; purchase invoices wait in the sandbox.
# ruff: noqa: F821 (env is provided by odoo-bin shell)
import json
import logging
import os
import urllib.request

from odoo.addons.l10n_pl_ksef.ksef import crypto

_logger = logging.getLogger("l10n_pl_ksef.demo")
SANDBOX = os.environ.get("KSEF_SANDBOX_URL", "http://127.0.0.1:8765").rstrip("/")

CUSTOMERS = [
    # name, NIP (valid checksums), street, city, zip
    ("Hurtownia Mazowsze sp. z o.o.", "5260250274", "ul. Marszałkowska 10", "Warszawa", "00-590"),
    ("Drukarnia Wisła S.A.", "6770065406", "ul. Rakowicka 1", "Kraków", "31-511"),
    ("Transport Bałtyk sp.j.", "5840800449", "ul. Wały Jagiellońskie 2", "Gdańsk", "80-887"),
]


def sandbox(path, payload):
    request = urllib.request.Request(SANDBOX + path, data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"{}")


def new_token(nip):
    return sandbox("/_sandbox/tokens", {"nip": nip, "permissions": ["InvoiceRead", "InvoiceWrite"],
                                        "description": "Odoo demo (tools/run)"})["token"]


def main():
    company = env.ref("base.demo_company_pl")
    admin = env.ref("base.user_admin")
    admin.write({
        "company_ids": [(4, company.id)],
        "company_id": company.id,
        "tz": "Europe/Warsaw",
        "groups_id": [(4, env.ref("l10n_pl_ksef.group_ksef_manager").id)],
    })
    nip = company.ksef_context_nip or (company.vat or "").replace("PL", "")
    if not company.street:
        # the l10n_pl demo company has no street; FA(3) requires the seller's address
        company.write({"street": "ul. Długa 12"})
    company.write({"ksef_environment": "sandbox", "ksef_sandbox_url": SANDBOX, "ksef_auth_method": "token"})

    if company.ksef_auth_state != "authorized" or not company.ksef_token_set:
        company.write({"ksef_token": new_token(nip)})
    company.action_ksef_authorize()
    if company.ksef_auth_state != "authorized":
        # e.g. the sandbox data was wiped: the saved token is unknown there, get a new one
        company.write({"ksef_token": new_token(nip)})
        company.action_ksef_authorize()
    print("KSeF authorization of %s: %s %s" % (company.name, company.ksef_auth_state, company.ksef_auth_message or ""))

    if not company.ksef_offline_certificate_id:
        key, cert = crypto.generate_self_signed_certificate(
            crypto.generate_private_key("ec"), nip=nip, organization=company.name, seal=True,
            key_usage="offline", days=730)
        company._ksef_store_certificate("offline", crypto.certificate_pem(cert), crypto.private_key_pem(key))

    icp = env["ir.config_parameter"].sudo()
    if icp.get_param("l10n_pl_ksef.demo_seeded_nip") != nip:
        numbers = sandbox("/_sandbox/seed", {"buyerNip": nip, "count": 12}).get("ksefNumbers", [])
        icp.set_param("l10n_pl_ksef.demo_seeded_nip", nip)
        print("sandbox: %d purchase invoices waiting for %s" % (len(numbers), nip))

    # invoices to Polish customers, created once (the l10n_pl demo invoices go to foreign customers)
    moves = env["account.move"].with_company(company)
    if icp.get_param("l10n_pl_ksef.demo_invoices_created") != str(company.id):
        tax = env["account.tax"].search([("company_id", "=", company.id), ("type_tax_use", "=", "sale"),
                                         ("ksef_rate_code", "=", "23")], limit=1)
        poland = env.ref("base.pl")
        for index, (name, vat, street, city, zip_code) in enumerate(CUSTOMERS):
            partner = env["res.partner"].search([("vat", "in", (vat, "PL" + vat))], limit=1) or \
                env["res.partner"].create({"name": name, "vat": "PL" + vat, "is_company": True, "street": street,
                                           "city": city, "zip": zip_code, "country_id": poland.id})
            invoice = moves.create({
                "move_type": "out_invoice", "partner_id": partner.id, "company_id": company.id,
                "invoice_line_ids": [(0, 0, {
                    "name": line, "quantity": qty, "price_unit": price, "tax_ids": [(6, 0, tax.ids)]})
                    for line, qty, price in (("Usługa doradcza (godziny)", 8 + index, 250.0),
                                             ("Licencja oprogramowania — 12 mies.", 1, 1200.0))],
            })
            invoice.action_post()
            print("posted %s for %s, ready to send to KSeF" % (invoice.name, name))
        icp.set_param("l10n_pl_ksef.demo_invoices_created", str(company.id))
    env.cr.commit()


main()
