"""Ready-made valid invoices for tests, benchmarks and the sandbox's seed data."""
import datetime
from decimal import Decimal

from . import model as m
from .rates import apply_summary


def example_invoice(*, seller_nip="9999999999", buyer_nip="1111111111", number="FV/2026/1", lines=1,
                    issue_date=None, currency="PLN", rate="23", created=None):
    """A complete, XSD- and rule-valid VAT invoice with ``lines`` lines (totals computed).

    ``issue_date`` defaults to today; ``created`` (``DataWytworzeniaFa``) to the issue date at 12:00 UTC so
    that the output is deterministic for given arguments. For another ``currency`` every line gets an
    exchange rate of 4.25 and the ``P_14_xW`` fields are filled.
    """
    issue_date = issue_date or datetime.date.today()
    created = created or datetime.datetime.combine(issue_date, datetime.time(12, 0), datetime.timezone.utc)
    kurs = None if currency == "PLN" else Decimal("4.2500")
    rows = []
    for index in range(lines):
        quantity = Decimal(1 + index % 5)
        price = Decimal("10.00") + Decimal(index % 97)
        rows.append(m.FaWiersz(
            nr_wiersza_fa=index + 1, uu_id="L%06d" % (index + 1), p_7="Towar testowy %d" % (index + 1),
            indeks="SKU-%05d" % (index + 1), p_8a="szt.", p_8b=quantity, p_9a=price,
            p_11=(quantity * price).quantize(Decimal("0.01")), p_12=rate, kurs_waluty=kurs))
    invoice = m.Invoice(
        naglowek=m.Naglowek(data_wytworzenia_fa=created, system_info="ksef-core"),
        podmiot1=m.Podmiot1(
            dane_identyfikacyjne=m.DaneIdentyfikacyjne(nip=seller_nip, nazwa="Sprzedawca Testowy sp. z o.o."),
            adres=m.Adres(adres_l1="ul. Kwiatowa 1 m. 2", adres_l2="00-001 Warszawa"),
            dane_kontaktowe=[m.DaneKontaktowe(email="biuro@example.com", telefon="221234567")]),
        podmiot2=m.Podmiot2(
            dane_identyfikacyjne=m.DaneIdentyfikacyjne(nip=buyer_nip, nazwa="Nabywca Testowy S.A."),
            adres=m.Adres(adres_l1="ul. Polna 1", adres_l2="00-950 Warszawa")),
        fa=m.Fa(
            kod_waluty=currency, p_1=issue_date, p_1m="Warszawa", p_2=number, p_6=issue_date, fa_wiersz=rows,
            platnosc=m.Platnosc(
                termin_platnosci=[m.TerminPlatnosci(termin=issue_date + datetime.timedelta(days=14))],
                forma_platnosci=6,
                rachunek_bankowy=[m.RachunekBankowy(nr_rb="61109010140000071219812874",
                                                    nazwa_banku="Bank Testowy S.A.")])),
    )
    apply_summary(invoice)
    return invoice
