"""Context words: what the text right before a number says it is, in several languages.

A 9-digit number is an SSN after "SSN:" and an order number after "Bestellnummer"; a
Luhn-valid 16-digit number is a card after "Visa" and a parcel after "tracking". Detectors
read only the few words before a candidate (never after: a stream cannot wait for them),
on the same line, and only the nearest cue counts, so "order 12, card 4111 ..." is a card.

Words are matched lower-case, whole (a cue inside a longer word does not count, except
for Japanese, which does not separate words).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Characters of left context a cue may sit in (detectors' lookbehind covers it).
WINDOW = 40


def _cue_regex(words: Iterable[str]) -> re.Pattern[str]:
    latin = sorted((w for w in words if w.isascii() or not _cjk(w)), key=len, reverse=True)
    cjk = sorted((w for w in words if not w.isascii() and _cjk(w)), key=len, reverse=True)
    parts = []
    if latin:
        parts.append(r"(?<![^\W_])(?:" + "|".join(re.escape(w) for w in latin) + r")(?![^\W_])")
    if cjk:
        parts.append("(?:" + "|".join(re.escape(w) for w in cjk) + ")")
    return re.compile("|".join(parts))


def _cjk(word: str) -> bool:
    return any(
        "\u3040" <= ch <= "\u30ff" or "\u4e00" <= ch <= "\u9fff" or ch in "℡☎" for ch in word
    )


class Cues:
    """Words that say a number is (`yes`) or is not (`no`) of one kind."""

    def __init__(self, yes: Iterable[str], no: Iterable[str]) -> None:
        self._yes = _cue_regex(yes)
        self._no = _cue_regex(no)

    def nearest(self, text: str, start: int, window: int = WINDOW) -> bool | None:
        """True when the nearest cue before `start` says yes, False when it says no, None
        when there is none (in `window` characters, on the same line). A cue with a digit
        between it and `start` names another number ("ref 1234 4111 ..."): it does not count.
        """
        lo = max(0, start - window, text.rfind("\n", 0, start) + 1)
        before = text[lo:start].lower()
        digit = _LAST_DIGIT.search(before)
        floor = digit.end() if digit else 0
        best = -1
        verdict: bool | None = None
        for regex, says in ((self._yes, True), (self._no, False)):
            for m in regex.finditer(before, floor):
                if m.end() > best:
                    best, verdict = m.end(), says
        return verdict


_LAST_DIGIT = re.compile(r"[0-9](?=[^0-9]*\Z)")


# Words shared by most kinds' "no": a number after them identifies a thing, not a person.
_IDENTIFIERS = [
    # en
    "order", "order no", "order number", "order #", "tracking", "tracking number",
    "tracking no", "shipment", "parcel", "package", "invoice", "invoice no", "receipt",
    "transaction", "txn", "ref", "reference", "confirmation", "booking", "ticket", "case",
    "claim", "serial", "serial number", "s/n", "sn", "part", "part no", "part number",
    "p/n", "pn", "sku", "item", "model", "article", "isbn", "issn", "ean", "upc", "gtin",
    "barcode", "imei", "batch", "lot", "build", "version", "release", "id", "uuid",
    "customer id", "account id", "user id", "request id", "trace id", "job", "issue", "pr",
    "commit", "route", "flight", "vin", "container", "policy number", "member id",
    # de
    "bestellung", "bestellnummer", "bestell-nr", "auftrag", "auftragsnummer", "sendung",
    "sendungsnummer", "sendungsverfolgung", "paket", "rechnung", "rechnungsnummer",
    "rechnungs-nr", "referenz", "kundennummer", "artikel", "artikelnummer", "art.-nr",
    "teilenummer", "seriennummer", "vorgang", "buchung", "buchungsnummer",
    # fr
    "commande", "numéro de commande", "n° de commande", "suivi", "numéro de suivi", "colis",
    "facture", "numéro de facture", "référence", "réf", "dossier", "réservation",
    "numéro de série", "numéro de pièce", "pièce", "article",
    # es
    "pedido", "número de pedido", "seguimiento", "número de seguimiento", "envío", "factura",
    "número de factura", "referencia", "reserva", "expediente", "número de serie", "pieza",
    # it
    "ordine", "numero d'ordine", "numero ordine", "spedizione", "tracciamento", "fattura",
    "numero fattura", "riferimento", "prenotazione", "pratica", "numero di serie", "codice",
    "articolo",
    # nl
    "bestelling", "bestelnummer", "zending", "track & trace", "factuur", "factuurnummer",
    "referentie", "boeking", "dossiernummer", "serienummer", "onderdeel", "onderdeelnummer",
    # pt
    "encomenda", "número da encomenda", "rastreamento", "código de rastreio", "rastreio",
    "fatura", "número da fatura", "referência", "reserva", "número de série", "peça",
    # ja
    "注文", "注文番号", "追跡", "追跡番号", "お問い合わせ番号", "請求書", "伝票", "伝票番号",
    "品番", "型番", "部品番号", "製造番号", "シリアル", "予約番号", "受付番号",
]  # fmt: skip

CARD = Cues(
    yes=[
        "card", "card number", "card no", "credit card", "debit card", "visa", "mastercard",
        "master card", "amex", "american express", "discover", "jcb", "diners", "maestro",
        "unionpay", "cc", "ccn", "cc number", "pan",
        "karte", "kreditkarte", "kartennummer", "carte", "carte bancaire", "numéro de carte",
        "carte de crédit", "cb", "tarjeta", "número de tarjeta", "tarjeta de crédito",
        "carta", "carta di credito", "numero di carta", "kaart", "creditcard", "kaartnummer",
        "cartão", "cartão de crédito", "número do cartão",
        "カード", "カード番号", "クレジットカード",
    ],
    no=_IDENTIFIERS + ["phone", "tel", "fax", "iban", "account number", "konto"],
)  # fmt: skip

SSN = Cues(
    yes=[
        "ssn", "ssn#", "ss#", "ss #", "soc sec", "soc. sec.", "social security",
        "social security number", "social security no", "social-security",
        "taxpayer", "tin",
        "sozialversicherungsnummer", "sozialversicherung", "sécurité sociale",
        "numéro de sécurité sociale", "seguro social", "seguridad social",
        "número de seguro social", "previdenza sociale", "sicurezza sociale",
        "sociale zekerheid", "segurança social", "seguro social",
        "社会保障番号", "ソーシャルセキュリティ",
    ],
    no=_IDENTIFIERS + [
        "phone", "tel", "fax", "zip", "zip code", "postcode", "routing", "routing number",
        "aba", "account", "acct", "iban", "plz", "kontonummer",
    ],
)  # fmt: skip

PHONE = Cues(
    yes=[
        "phone", "phone number", "telephone", "tel", "tel.", "mobile", "mob", "cell",
        "cellphone", "fax", "call", "call me", "call us", "reach me", "whatsapp", "sms",
        "text me", "contact", "hotline", "helpline", "landline", "dial", "ring",
        "telefon", "telefonnummer", "rufnummer", "handy", "mobil", "mobilnummer", "anrufen",
        "téléphone", "tél", "portable", "numéro de téléphone", "appelez", "appeler",
        "teléfono", "móvil", "celular", "llamar", "llame", "llámame",
        "telefono", "cellulare", "cell.", "chiamare", "chiamami", "numero di telefono",
        "telefoon", "telefoonnummer", "mobiel", "bellen", "bel",
        "telefone", "telemóvel", "ligar", "ligue",
        "電話", "電話番号", "携帯", "携帯電話", "連絡先", "℡", "☎",
    ],
    no=_IDENTIFIERS + [
        "iban", "bic", "swift", "routing", "account number", "kontonummer", "ssn",
        "zip", "postcode", "plz", "lat", "lon", "lng", "latitude", "longitude", "coords",
        "coordinates", "iso 6709", "position", "location", "geo", "timestamp", "epoch",
        "checksum", "hash", "card", "visa", "mastercard",
    ],
)  # fmt: skip

IP = Cues(
    yes=[
        "ip", "ip address", "ipv4", "ipv6", "host", "hostname", "server", "address", "addr",
        "gateway", "dns", "nameserver", "subnet", "client", "remote", "peer", "proxy",
        "from", "src", "dst", "source", "destination", "ping", "connect", "connected",
        "listen", "listening", "bind", "adresse", "dirección", "indirizzo", "adres", "endereço",
        "アドレス",
    ],
    no=[
        "version", "ver", "ver.", "v", "release", "build", "firmware", "fw", "sdk", "api level",
        "section", "sect", "sec.", "§", "chapter", "clause", "article", "paragraph", "para",
        "step", "item", "rule", "figure", "fig", "table", "appendix", "oid", "snmp",
        "version:", "abschnitt", "kapitel", "absatz", "artikel", "versión", "sección",
        "capítulo", "versione", "sezione", "capitolo", "versão", "seção", "capítulo", "versie",
        "sectie", "hoofdstuk", "artikel", "バージョン", "章", "節", "条",
        "assemblyversion", "fileversion", "productversion", "assembly", "package", "pkg",
    ],
)  # fmt: skip
