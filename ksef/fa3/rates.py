"""VAT rate codes (``P_12``), their summary buckets (``P_13_x``/``P_14_x``/``P_14_xW``) and the tax summary.

Bucket mapping (DIGEST §15, XSD documentation of ``P_13_x``):

======================  ===========  ========================================
``P_12``                bucket       fields
======================  ===========  ========================================
23, 22                  ``1``        P_13_1, P_14_1, P_14_1W
8, 7                    ``2``        P_13_2, P_14_2, P_14_2W
5                       ``3``        P_13_3, P_14_3, P_14_3W
4, 3                    ``4``        P_13_4, P_14_4, P_14_4W (taxi flat rate)
(``P_12_XII`` set)      ``5``        P_13_5, P_14_5 (OSS special procedure)
0 KR                    ``6_1``      P_13_6_1
0 WDT                   ``6_2``      P_13_6_2
0 EX                    ``6_3``      P_13_6_3
zw                      ``7``        P_13_7
np I                    ``8``        P_13_8
np II                   ``9``        P_13_9
oo                      ``10``       P_13_10
(margin, no ``P_12``)   ``11``       P_13_11
======================  ===========  ========================================

FA(2) used ``0`` and ``np`` instead of the three 0 % codes and ``np I``/``np II``: they map to ``6_1`` and
``8`` (best effort; the FA(2) document itself says which bucket it used).

Rounding (:func:`compute_summary`): per bucket and rate the net values ``P_11`` of the lines are added
(rows marked ``StanPrzed`` are subtracted — corrections show "before" and "after" rows); the VAT is
``round_half_up(net_sum x rate, 2)`` per rate (not per line), summed per bucket. Lines that carry
``P_11Vat`` (art. 106e ust. 10) use the sum of those instead. Gross-method lines (``P_11A`` without
``P_11``, art. 106e ust. 7-8) get ``VAT = round_half_up(gross x r / (1 + r), 2)`` and ``net = gross - VAT``.
For a foreign currency ``P_14_xW`` = ``round_half_up(Σ line VAT (unrounded) x line KursWaluty)`` (or
``KursWalutyZ``) — this is what MF examples 20 and 21 show. ``P_15`` = Σ nets + Σ VAT (not the W fields).
The MF examples are consistent with these rules; some of them round per line or from gross prices, which
differs by at most 0.01 per bucket — :func:`ksef.fa3.validate` tolerates that.
"""
import dataclasses
from decimal import ROUND_HALF_UP, Decimal

RATE_23 = "23"
RATE_22 = "22"
RATE_8 = "8"
RATE_7 = "7"
RATE_5 = "5"
RATE_4 = "4"
RATE_3 = "3"
RATE_0_KR = "0 KR"
RATE_0_WDT = "0 WDT"
RATE_0_EX = "0 EX"
RATE_ZW = "zw"
RATE_OO = "oo"
RATE_NP_I = "np I"
RATE_NP_II = "np II"

#: all ``P_12`` codes of FA(3), in XSD order
RATE_CODES = (RATE_23, RATE_22, RATE_8, RATE_7, RATE_5, RATE_4, RATE_3, RATE_0_KR, RATE_0_WDT, RATE_0_EX,
              RATE_ZW, RATE_OO, RATE_NP_I, RATE_NP_II)
#: FA(2) ``P_12`` codes
FA2_RATE_CODES = ("23", "22", "8", "7", "5", "4", "3", "0", "zw", "oo", "np")

#: percentage of the numeric rates
RATE_PERCENT = {code: Decimal(code) for code in (RATE_23, RATE_22, RATE_8, RATE_7, RATE_5, RATE_4, RATE_3)}
RATE_PERCENT.update({RATE_0_KR: Decimal(0), RATE_0_WDT: Decimal(0), RATE_0_EX: Decimal(0), "0": Decimal(0)})

BUCKET_1, BUCKET_2, BUCKET_3, BUCKET_4, BUCKET_5 = "1", "2", "3", "4", "5"
BUCKET_6_1, BUCKET_6_2, BUCKET_6_3 = "6_1", "6_2", "6_3"
BUCKET_7, BUCKET_8, BUCKET_9, BUCKET_10, BUCKET_11 = "7", "8", "9", "10", "11"
BUCKETS = (BUCKET_1, BUCKET_2, BUCKET_3, BUCKET_4, BUCKET_5, BUCKET_6_1, BUCKET_6_2, BUCKET_6_3, BUCKET_7,
           BUCKET_8, BUCKET_9, BUCKET_10, BUCKET_11)
#: buckets that have a VAT amount (``P_14_x``)
VAT_BUCKETS = (BUCKET_1, BUCKET_2, BUCKET_3, BUCKET_4, BUCKET_5)
#: buckets that have a VAT amount in PLN (``P_14_xW``)
VAT_PLN_BUCKETS = (BUCKET_1, BUCKET_2, BUCKET_3, BUCKET_4)

#: ``P_12`` code -> bucket
RATE_BUCKET = {
    RATE_23: BUCKET_1, RATE_22: BUCKET_1, RATE_8: BUCKET_2, RATE_7: BUCKET_2, RATE_5: BUCKET_3,
    RATE_4: BUCKET_4, RATE_3: BUCKET_4, RATE_0_KR: BUCKET_6_1, RATE_0_WDT: BUCKET_6_2, RATE_0_EX: BUCKET_6_3,
    RATE_ZW: BUCKET_7, RATE_NP_I: BUCKET_8, RATE_NP_II: BUCKET_9, RATE_OO: BUCKET_10,
    # FA(2)
    "0": BUCKET_6_1, "np": BUCKET_8,
}

#: bucket -> (net field, VAT field or None, VAT-in-PLN field or None) of :class:`ksef.fa3.model.Fa`
BUCKET_FIELDS = {
    BUCKET_1: ("p_13_1", "p_14_1", "p_14_1w"),
    BUCKET_2: ("p_13_2", "p_14_2", "p_14_2w"),
    BUCKET_3: ("p_13_3", "p_14_3", "p_14_3w"),
    BUCKET_4: ("p_13_4", "p_14_4", "p_14_4w"),
    BUCKET_5: ("p_13_5", "p_14_5", None),
    BUCKET_6_1: ("p_13_6_1", None, None),
    BUCKET_6_2: ("p_13_6_2", None, None),
    BUCKET_6_3: ("p_13_6_3", None, None),
    BUCKET_7: ("p_13_7", None, None),
    BUCKET_8: ("p_13_8", None, None),
    BUCKET_9: ("p_13_9", None, None),
    BUCKET_10: ("p_13_10", None, None),
    BUCKET_11: ("p_13_11", None, None),
}
#: bucket -> XSD element names (net, VAT, VAT in PLN)
BUCKET_ELEMENTS = {b: tuple(("P_" + f[2:].upper()) if f else None for f in fields)
                   for b, fields in BUCKET_FIELDS.items()}

BUCKET_LABELS = {
    BUCKET_1: ("basic rate 23% / 22%", "stawka podstawowa 23% / 22%"),
    BUCKET_2: ("reduced rate 8% / 7%", "stawka obniżona 8% / 7%"),
    BUCKET_3: ("reduced rate 5%", "stawka obniżona 5%"),
    BUCKET_4: ("taxi flat rate 4% / 3%", "ryczałt dla taksówek 4% / 3%"),
    BUCKET_5: ("OSS special procedure", "procedura szczególna (dział XII rozdz. 6a)"),
    BUCKET_6_1: ("0% domestic", "0% w kraju"),
    BUCKET_6_2: ("0% intra-EU supply", "0% WDT"),
    BUCKET_6_3: ("0% export", "0% eksport"),
    BUCKET_7: ("exempt", "zwolnione"),
    BUCKET_8: ("outside Poland", "poza terytorium kraju"),
    BUCKET_9: ("EU services art. 100(1)(4)", "usługi art. 100 ust. 1 pkt 4"),
    BUCKET_10: ("domestic reverse charge", "odwrotne obciążenie"),
    BUCKET_11: ("margin scheme", "procedura marży"),
}

#: ``Podmiot3/Rola`` values
ROLE_NAMES = {
    1: ("factor", "faktor"), 2: ("recipient", "odbiorca"), 3: ("original entity", "podmiot pierwotny"),
    4: ("additional buyer", "dodatkowy nabywca"), 5: ("invoice issuer", "wystawca faktury"),
    6: ("payer", "dokonujący płatności"), 7: ("JST - issuer", "JST - wystawca"),
    8: ("JST - recipient", "JST - odbiorca"), 9: ("VAT group member - issuer", "członek grupy VAT - wystawca"),
    10: ("VAT group member - recipient", "członek grupy VAT - odbiorca"), 11: ("employee", "pracownik"),
}

INVOICE_KINDS = ("VAT", "KOR", "ZAL", "ROZ", "UPR", "KOR_ZAL", "KOR_ROZ")
CORRECTION_KINDS = ("KOR", "KOR_ZAL", "KOR_ROZ")
ADVANCE_KINDS = ("ZAL", "KOR_ZAL")
SETTLEMENT_KINDS = ("ROZ", "KOR_ROZ")

CENT = Decimal("0.01")
_ZERO = Decimal(0)


def round_half_up(value, exponent=CENT):
    """Round a Decimal half away from zero to ``exponent`` (default 2 decimal places)."""
    return Decimal(value).quantize(exponent, rounding=ROUND_HALF_UP)


def line_bucket(line, margin=False):
    """Bucket of a :class:`~ksef.fa3.model.FaWiersz` (``None`` when it cannot be told).

    ``margin``: the invoice uses a margin scheme (``Adnotacje/PMarzy/P_PMarzy`` = 1); lines without
    ``P_12`` then belong to ``P_13_11``.
    """
    if line.p_12_xii is not None:
        return BUCKET_5
    if line.p_12 is not None:
        return RATE_BUCKET.get(line.p_12)
    if margin:
        return BUCKET_11
    return None


def line_rate(line):
    """VAT rate of a line as a fraction (``Decimal('0.23')``), or ``None`` when it has no VAT rate."""
    if line.p_12_xii is not None:
        return Decimal(line.p_12_xii) / 100
    percent = RATE_PERCENT.get(line.p_12) if line.p_12 is not None else None
    return None if percent is None else percent / 100


def _dec(value):
    if value is None or isinstance(value, Decimal):
        return value
    return Decimal(str(value))


@dataclasses.dataclass
class TaxSummary:
    """Result of :func:`compute_summary`: per bucket ``net``, ``vat`` and ``vat_pln`` (Decimals, 2 places),
    the total ``p_15`` and ``line_count`` per bucket."""

    net: dict
    vat: dict
    vat_pln: dict
    p_15: Decimal
    line_count: dict

    def as_fields(self):
        """``{Fa attribute: value}`` for every bucket field (None for unused ones) and ``p_15``."""
        values = {}
        for bucket, (net_f, vat_f, pln_f) in BUCKET_FIELDS.items():
            values[net_f] = self.net.get(bucket)
            if vat_f:
                values[vat_f] = self.vat.get(bucket) if bucket in self.net else None
            if pln_f:
                values[pln_f] = self.vat_pln.get(bucket)
        values["p_15"] = self.p_15
        return values


def _resolve(target):
    from .model import Fa, Invoice

    if isinstance(target, Invoice):
        target = target.fa
    if isinstance(target, Fa):
        margin = bool(target.adnotacje and target.adnotacje.pmarzy and target.adnotacje.pmarzy.p_pmarzy)
        return target.fa_wiersz, (target.kod_waluty or "PLN"), margin, target.kurs_waluty_z
    return list(target), None, False, None


def compute_summary(target, currency=None, margin=None, default_rate=None):
    """Tax summary of the lines of an :class:`Invoice`/:class:`Fa` (or of a list of :class:`FaWiersz`).

    ``currency`` (default: ``Fa.KodWaluty``), ``margin`` (default: from ``Adnotacje/PMarzy``) and
    ``default_rate`` (exchange rate for lines without ``KursWaluty``; default ``Fa.KursWalutyZ``) can be
    overridden. See the module docstring for the rounding rules.
    """
    lines, fa_currency, fa_margin, fa_rate = _resolve(target)
    currency = currency or fa_currency or "PLN"
    margin = fa_margin if margin is None else margin
    default_rate = _dec(default_rate if default_rate is not None else fa_rate)
    groups = {}
    for line in lines:
        bucket = line_bucket(line, margin)
        if bucket is None:
            continue
        net, gross, vat_line = _dec(line.p_11), _dec(line.p_11a), _dec(line.p_11vat)
        if net is None and gross is None:
            continue
        rate = line_rate(line)
        key = (bucket, rate if bucket in VAT_BUCKETS else None)
        group = groups.setdefault(key, {"net": _ZERO, "gross": _ZERO, "vat_lines": _ZERO, "all_vat": True,
                                        "pln": _ZERO, "pln_ok": True, "count": 0})
        sign = -1 if line.stan_przed else 1
        group["count"] += 1
        if net is not None:
            group["net"] += sign * net
        else:
            group["gross"] += sign * gross
        if vat_line is None:
            group["all_vat"] = False
        else:
            group["vat_lines"] += sign * vat_line
        if currency != "PLN" and bucket in VAT_PLN_BUCKETS and rate is not None:
            kurs = _dec(line.kurs_waluty) if line.kurs_waluty is not None else default_rate
            if kurs is None:
                group["pln_ok"] = False
            else:
                if vat_line is not None:
                    exact = vat_line
                elif net is not None:
                    exact = net * rate
                else:
                    exact = gross * rate / (1 + rate)
                group["pln"] += sign * exact * kurs
    net_out, vat_out, pln_out, counts = {}, {}, {}, {}
    pln_ok = {}
    for (bucket, rate), g in groups.items():
        counts[bucket] = counts.get(bucket, 0) + g["count"]
        if bucket in VAT_BUCKETS and rate is not None:
            if g["all_vat"]:
                vat = g["vat_lines"]
                net = g["net"] + g["gross"] - (g["vat_lines"] if g["gross"] else _ZERO)
            else:
                vat_from_gross = round_half_up(g["gross"] * rate / (1 + rate)) if g["gross"] else _ZERO
                vat = round_half_up(g["net"] * rate) + vat_from_gross
                net = g["net"] + g["gross"] - vat_from_gross
            vat_out[bucket] = vat_out.get(bucket, _ZERO) + vat
        else:
            net = g["net"] + g["gross"]
            if bucket in VAT_BUCKETS:
                vat_out.setdefault(bucket, _ZERO)
        net_out[bucket] = net_out.get(bucket, _ZERO) + net
        if currency != "PLN" and bucket in VAT_PLN_BUCKETS:
            pln_out[bucket] = pln_out.get(bucket, _ZERO) + g["pln"]
            pln_ok[bucket] = pln_ok.get(bucket, True) and g["pln_ok"] and rate is not None
    net_out = {b: round_half_up(v) for b, v in net_out.items()}
    vat_out = {b: round_half_up(v) for b, v in vat_out.items()}
    pln_out = {b: round_half_up(v) for b, v in pln_out.items() if pln_ok.get(b)}
    total = sum(net_out.values(), _ZERO) + sum(vat_out.values(), _ZERO)
    order = {b: i for i, b in enumerate(BUCKETS)}
    return TaxSummary(
        net=dict(sorted(net_out.items(), key=lambda kv: order[kv[0]])),
        vat=dict(sorted(vat_out.items(), key=lambda kv: order[kv[0]])),
        vat_pln=dict(sorted(pln_out.items(), key=lambda kv: order[kv[0]])),
        p_15=round_half_up(total), line_count=counts)


def apply_summary(target, summary=None):
    """Write the bucket fields and ``P_15`` of an :class:`Invoice`/:class:`Fa` from its lines.

    Every bucket field is overwritten (unused ones become ``None``). Returns the :class:`TaxSummary`.
    """
    from .model import Invoice

    fa = target.fa if isinstance(target, Invoice) else target
    summary = summary or compute_summary(fa)
    for name, value in summary.as_fields().items():
        setattr(fa, name, value)
    return summary


def bucket_values(fa):
    """``{bucket: (net, vat, vat_pln)}`` of the buckets present on an :class:`Fa`."""
    result = {}
    for bucket, (net_f, vat_f, pln_f) in BUCKET_FIELDS.items():
        net = getattr(fa, net_f)
        vat = getattr(fa, vat_f) if vat_f else None
        pln = getattr(fa, pln_f) if pln_f else None
        if net is not None or vat is not None or pln is not None:
            result[bucket] = (net, vat, pln)
    return result
