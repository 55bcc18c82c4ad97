"""Seeding purchase invoices (placeholder, replaced below)."""


def seed_invoices(sandbox, buyer_nip, count=10, *, seed=None, from_dir=None, xml_documents=(), seller_nips=None):
    raise NotImplementedError
