"""Writes corpus.jsonl: a labelled corpus of PII and secrets, and hard negatives, for the
policy detectors' recall and false-positive test (tests/policy/test_policy_corpus.py).

    python tests/policy/corpus/generate.py          # rewrites corpus.jsonl beside it

Deterministic: one seed, Faker (pinned in constraints.txt) seeded per locale, and values
made to be valid by the standards they follow (Luhn and issuer ranges for cards, mod 97
and registry lengths for IBANs, libphonenumber's metadata for phones, SSA rules for SSNs,
providers' published formats for keys). Each value is placed in text shaped like real
traffic (prose in ten locales, code, JSON, logs, CSV, Markdown tables, URLs). The hard
negatives are the things issue 13 saw misfire, and their kin: order and tracking numbers,
Fibonacci lists, part numbers, coordinates, versions, slices, Git remotes, ssh logins,
retina image names, placeholders, and code that reads a secret without holding one.

A positive: {"id", "kind", "label", "value", "text", "locale", "format"}; the value occurs
once in the text and the detector must report `label` over it. A negative: {"id", "kind",
"text", "locale", "format", "note"}: nothing in it may be reported.
"""

from __future__ import annotations

import json
import random
import string
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import phonenumbers
from faker import Faker
from phonenumbers import PhoneNumberFormat, PhoneNumberType

HERE = Path(__file__).resolve().parent
OUT = HERE / "corpus.jsonl"
SEED = 20261202

LOCALES = ["en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pt_PT", "pt_BR", "ja_JP"]
REGION = {
    "en_US": "US",
    "en_GB": "GB",
    "de_DE": "DE",
    "fr_FR": "FR",
    "es_ES": "ES",
    "it_IT": "IT",
    "nl_NL": "NL",
    "pt_PT": "PT",
    "pt_BR": "BR",
    "ja_JP": "JP",
}
LANG = {loc: loc.split("_")[0] for loc in LOCALES}

Record = dict[str, object]


class Gen:
    def __init__(self) -> None:
        self.rng = random.Random(SEED)
        self.fakers: dict[str, Faker] = {}
        for i, loc in enumerate(LOCALES):
            f = Faker(loc)
            f.seed_instance(SEED + i)
            self.fakers[loc] = f
        self.records: list[Record] = []
        self.ids: dict[str, int] = {}

    def pick(self, seq: list[str] | tuple[str, ...]) -> str:
        return seq[self.rng.randrange(len(seq))]

    def add(
        self,
        kind: str,
        label: str | None,
        text: str,
        value: str | None,
        loc: str,
        fmt: str,
        note: str = "",
    ) -> None:
        n = self.ids.get(kind, 0) + 1
        self.ids[kind] = n
        polarity = "pos" if value is not None else "neg"
        rec: Record = {"id": f"{polarity}-{kind}-{n:04d}", "kind": kind}
        if value is not None:
            assert text.count(value) == 1, (kind, value, text)
            rec |= {"label": label, "value": value}
        rec |= {"text": text, "locale": loc, "format": fmt}
        if note:
            rec["note"] = note
        self.records.append(rec)

    def chars(self, alphabet: str, n: int) -> str:
        return "".join(self.rng.choice(alphabet) for _ in range(n))


ALNUM = string.ascii_letters + string.digits
B64URL = ALNUM + "-_"
HEX = "0123456789abcdef"


# --- contexts --------------------------------------------------------------------------


def person(g: Gen, loc: str) -> str:
    return g.fakers[loc].name()


# Our own cities: some of Faker's locales keep theirs in a set, whose order (and so what a
# seeded Faker picks) changes with Python's hash seed.
CITIES = {
    "en": ["Leeds", "Austin", "Bristol", "Denver", "Cork"],
    "de": ["Köln", "Graz", "Bremen", "Zürich"],
    "fr": ["Lyon", "Nantes", "Liège", "Genève"],
    "es": ["Sevilla", "Bilbao", "Málaga", "Valencia"],
    "it": ["Torino", "Bologna", "Bari", "Perugia"],
    "nl": ["Utrecht", "Gent", "Delft", "Zwolle"],
    "pt": ["Porto", "Braga", "Recife", "Curitiba"],
    "ja": ["札幌市", "京都市", "福岡市", "仙台市"],
}


def city(g: Gen, loc: str) -> str:
    return g.pick(CITIES[LANG[loc]])


PROSE: dict[str, dict[str, list[str]]] = {
    "phone": {
        "en": [
            "Call me at {v} if anything changes.",
            "You can reach {name} on {v}.",
            "Phone: {v}",
            "Our support line is {v} (Mon-Fri).",
            "Text me at {v} when you land.",
        ],
        "de": [
            "Rufen Sie mich unter {v} an.",
            "Telefon: {v}",
            "Sie erreichen {name} unter {v}.",
            "Meine Handynummer ist {v}.",
        ],
        "fr": [
            "Appelez-moi au {v} demain.",
            "Téléphone : {v}",
            "Vous pouvez joindre {name} au {v}.",
            "Mon portable : {v}",
        ],
        "es": [
            "Llámame al {v} mañana.",
            "Teléfono: {v}",
            "Puede contactar a {name} en el {v}.",
            "Mi móvil es {v}.",
        ],
        "it": [
            "Chiamami al {v} domani.",
            "Telefono: {v}",
            "Può contattare {name} al {v}.",
            "Il mio cellulare è {v}.",
        ],
        "nl": [
            "Bel me op {v} morgen.",
            "Telefoon: {v}",
            "U kunt {name} bereiken op {v}.",
            "Mijn mobiel is {v}.",
        ],
        "pt": [
            "Ligue para {v} amanhã.",
            "Telefone: {v}",
            "Pode contactar {name} pelo {v}.",
            "O meu telemóvel é {v}.",
        ],
        "ja": [
            "電話番号は{v}です。",
            "お問い合わせは{v}まで。",
            "{name}の携帯：{v}",
            "電話{v}までご連絡ください。",
        ],
    },
    "email": {
        "en": [
            "Send the report to {v} by Friday.",
            "Contact {name} <{v}> for access.",
            "Email: {v}",
            "Reply to {v} with the signed copy.",
        ],
        "de": ["Schicken Sie den Bericht an {v}.", "E-Mail: {v}", "Kontakt: {name} ({v})"],
        "fr": [
            "Envoyez le rapport à {v} avant vendredi.",
            "Courriel : {v}",
            "Contact : {name}, {v}",
        ],
        "es": [
            "Envía el informe a {v} antes del viernes.",
            "Correo: {v}",
            "Contacto: {name} <{v}>",
        ],
        "it": ["Invia il rapporto a {v} entro venerdì.", "Email: {v}", "Contatto: {name} - {v}"],
        "nl": ["Stuur het rapport naar {v} voor vrijdag.", "E-mail: {v}", "Contact: {name} ({v})"],
        "pt": ["Envie o relatório para {v} até sexta.", "E-mail: {v}", "Contato: {name} <{v}>"],
        "ja": [
            "メールは{v}までお願いします。",
            "連絡先：{v}",
            "{name}さん（{v}）に送ってください。",
        ],
    },
    "card": {
        "en": [
            "Please charge my card {v} for the order.",
            "Visa: {v}, expires 09/28.",
            "Card number {v} was declined.",
            "My credit card is {v}.",
        ],
        "de": ["Bitte belasten Sie meine Kreditkarte {v}.", "Kartennummer: {v}"],
        "fr": ["Veuillez débiter ma carte {v}.", "Numéro de carte : {v}"],
        "es": ["Cargue a mi tarjeta {v}, por favor.", "Número de tarjeta: {v}"],
        "it": ["Addebitate sulla mia carta {v}.", "Numero di carta: {v}"],
        "nl": ["Schrijf het af van mijn creditcard {v}.", "Kaartnummer: {v}"],
        "pt": ["Cobre no meu cartão {v}, por favor.", "Número do cartão: {v}"],
        "ja": ["カード番号は{v}です。", "クレジットカード：{v}"],
    },
    "iban": {
        "en": ["Please transfer the deposit to {v}.", "IBAN: {v}", "Our account is {v}."],
        "de": ["Bitte überweisen Sie auf {v}.", "IBAN: {v}", "Kontoverbindung: {v}"],
        "fr": ["Merci de virer le montant sur {v}.", "IBAN : {v}"],
        "es": ["Transfiera el importe a {v}.", "IBAN: {v}"],
        "it": ["Effettuare il bonifico su {v}.", "IBAN: {v}"],
        "nl": ["Maak het bedrag over naar {v}.", "IBAN: {v}"],
        "pt": ["Transfira o valor para {v}.", "IBAN: {v}"],
        "ja": ["振込先IBAN：{v}", "IBANは{v}です。"],
    },
    "ip": {
        "en": [
            "The server at {v} stopped answering.",
            "Connect to {v} with the VPN.",
            "Whitelist {v} in the firewall.",
        ],
        "de": ["Der Server {v} antwortet nicht.", "Bitte {v} in der Firewall freigeben."],
        "fr": ["Le serveur {v} ne répond plus.", "Autorisez {v} dans le pare-feu."],
        "es": ["El servidor {v} no responde.", "Permita {v} en el cortafuegos."],
        "it": ["Il server {v} non risponde.", "Consenti {v} nel firewall."],
        "nl": ["De server {v} reageert niet.", "Sta {v} toe in de firewall."],
        "pt": ["O servidor {v} não responde.", "Libere {v} no firewall."],
        "ja": ["サーバー{v}が応答しません。", "ファイアウォールで{v}を許可してください。"],
    },
}


def prose(g: Gen, kind: str, loc: str, value: str) -> str:
    lang = LANG[loc]
    template = g.pick(PROSE[kind][lang])
    return template.format(v=value, name=person(g, loc))


def structured(g: Gen, loc: str, key: str, value: str) -> tuple[str, str]:
    """The value in JSON, a log line, CSV, a Markdown table or YAML."""
    f = g.fakers[loc]
    fmt = g.pick(["json", "log", "csv", "markdown", "yaml"])
    name = f.name()
    if fmt == "json":
        return json.dumps({"name": name, key: value, "city": city(g, loc)}, ensure_ascii=False), fmt
    if fmt == "log":
        ts = (
            f"2026-0{g.rng.randint(1, 9)}-1{g.rng.randint(0, 9)}"
            f"T0{g.rng.randint(0, 9)}:1{g.rng.randint(0, 9)}:00Z"
        )
        return f"{ts} INFO svc=crm user_update {key}={value} by={f.user_name()}", fmt
    if fmt == "csv":
        return f"name,{key},city\n{name},{value},{city(g, loc)}", fmt
    if fmt == "markdown":
        return (
            f"| name | {key} | city |\n| --- | --- | --- |\n| {name} | {value} | {city(g, loc)} |",
            fmt,
        )
    return f'contact:\n  name: {name}\n  {key}: "{value}"\n', fmt


# --- phones ----------------------------------------------------------------------------


def valid_number(g: Gen, region: str) -> phonenumbers.PhoneNumber:
    kind = g.pick([PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE])
    example = phonenumbers.example_number_for_type(region, kind)
    assert example is not None
    digits = str(example.national_number)
    for _ in range(200):
        keep = max(2, len(digits) - g.rng.randint(3, 6))
        candidate = digits[:keep] + g.chars("0123456789", len(digits) - keep)
        number = phonenumbers.parse("+" + str(example.country_code) + candidate, None)
        if phonenumbers.is_valid_number(number):
            return number
    return example


def phone_text(g: Gen, loc: str) -> tuple[str, str]:
    region = REGION[loc]
    number = valid_number(g, region)
    style = g.pick(["national", "national", "international", "e164", "dashed", "dotted"])
    if style == "international":
        value = phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)
    elif style == "e164":
        value = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    else:
        value = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
        if style == "dashed" and " " in value and "-" not in value and "(" not in value:
            value = value.replace(" ", "-")
        elif style == "dotted" and region in ("US", "FR", "IT") and "(" not in value:
            value = value.replace(" ", ".").replace("-", ".")
    return value, style


def gen_phones(g: Gen, n: int) -> None:
    for i in range(n):
        loc = LOCALES[i % len(LOCALES)]
        value, _ = phone_text(g, loc)
        roll = g.rng.random()
        if roll < 0.55:
            text, fmt = prose(g, "phone", loc, value), "prose"
        elif roll < 0.9:
            key = g.pick(["phone", "tel", "mobile", "telefon", "téléphone", "telefono", "fax"])
            text, fmt = structured(g, loc, key, value)
        else:
            number = phonenumbers.parse(value, REGION[loc])
            value = phonenumbers.format_number(number, PhoneNumberFormat.E164)
            text, fmt = f'<a href="tel:{value}">{g.fakers[loc].name()}</a>', "url"
        g.add("phone", "phone", text, value, loc, fmt)


# --- emails ----------------------------------------------------------------------------

IDN_LOCAL = {
    "de": ["jürgen.müller", "björn.weiß", "änne"],
    "fr": ["josé.lefèvre", "hélène", "françois.dupré"],
    "es": ["josé.garcía", "íñigo", "begoña.núñez"],
    "it": ["niccolò", "andrea.cantù"],
    "nl": ["chloë.de.vries", "joëlle"],
    "pt": ["joão.simões", "conceição"],
    "ja": ["山田", "たなか", "佐藤花子"],
    "en": ["zoë", "renée.o'brien"],
}
IDN_DOMAIN = {
    "de": ["bücher.de", "müller-bau.de", "grüße.at"],
    "fr": ["société.fr", "café-paris.fr"],
    "es": ["españa.es", "añejo.com"],
    "it": ["caffè.it", "città.it"],
    "nl": ["café.nl", "ëtiquette.nl"],
    "pt": ["açaí.com.br", "pão.pt"],
    "ja": ["例え.jp", "テスト.jp", "日本語.jp"],
    "en": ["naïve.com", "résumé.io"],
}


def email_value(g: Gen, loc: str) -> str:
    f = g.fakers[loc]
    lang = LANG[loc]
    roll = g.rng.random()
    if roll < 0.45:
        local = f.user_name() if lang != "ja" else f.romanized_name().lower().replace(" ", ".")
        return f"{local}@{f.domain_name()}"
    if roll < 0.6:
        return f"{f.user_name()}+{g.pick(['news', 'shop', 'work', 'x1'])}@{f.free_email_domain()}"
    if roll < 0.85:
        return f"{g.pick(IDN_LOCAL[lang])}@{g.pick(IDN_DOMAIN[lang])}"
    return f"{f.user_name()}@{g.pick(IDN_DOMAIN[lang])}"


def gen_emails(g: Gen, n: int) -> None:
    for i in range(n):
        loc = LOCALES[i % len(LOCALES)]
        value = email_value(g, loc)
        roll = g.rng.random()
        if roll < 0.5:
            text, fmt = prose(g, "email", loc, value), "prose"
        elif roll < 0.8:
            text, fmt = structured(g, loc, "email", value)
        elif roll < 0.9:
            value = value.replace("@", "%40")
            text, fmt = f"https://crm.example.org/users?email={value}&sort=asc", "url"
        else:
            text, fmt = f'<a href="mailto:{value}">write to us</a>', "url"
        g.add("email", "email", text, value, loc, fmt)


# --- cards -----------------------------------------------------------------------------


def luhn_complete(prefix: str, length: int, g: Gen) -> str:
    body = prefix + g.chars("0123456789", length - len(prefix) - 1)
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


SCHEMES = [
    ("visa", ["4"], 16),
    ("visa", ["4"], 19),
    ("mastercard", ["51", "52", "53", "54", "55", "2221", "2720"], 16),
    ("amex", ["34", "37"], 15),
    ("discover", ["6011", "65", "644"], 16),
    ("jcb", ["3528", "3589"], 16),
    ("diners", ["36"], 14),
    ("unionpay", ["62"], 16),
    ("maestro", ["5018", "6759"], 16),
]


def card_value(g: Gen) -> str:
    _, prefixes, length = SCHEMES[g.rng.randrange(len(SCHEMES))]
    digits = luhn_complete(g.pick(prefixes), length, g)
    style = g.pick(["spaced", "spaced", "dashed", "plain"])
    if style == "plain":
        return digits
    sep = " " if style == "spaced" else "-"
    if length == 15 or length == 14:
        parts = [digits[:4], digits[4:10], digits[10:]]
    elif length == 19:
        parts = [digits[i : i + 4] for i in range(0, 16, 4)] + [digits[16:]]
    else:
        parts = [digits[i : i + 4] for i in range(0, length, 4)]
    return sep.join(parts)


def gen_cards(g: Gen, n: int) -> None:
    for i in range(n):
        loc = LOCALES[i % len(LOCALES)]
        value = card_value(g)
        roll = g.rng.random()
        if roll < 0.5:
            text, fmt = prose(g, "card", loc, value), "prose"
        elif roll < 0.85:
            text, fmt = structured(g, loc, g.pick(["card", "card_number", "pan", "cc"]), value)
        else:
            text = f'    charge(amount=4200, card="{value}", currency="EUR")'
            fmt = "code"
        g.add("card", "card", text, value, loc, fmt)


# --- IBANs -----------------------------------------------------------------------------

IBAN_BBAN = {
    "DE": "18n",
    "GB": "4a14n",
    "FR": "23n",
    "ES": "20n",
    "IT": "1a22n",
    "NL": "4a10n",
    "PT": "21n",
    "BE": "12n",
    "AT": "16n",
    "CH": "17n",
}


def iban_value(g: Gen) -> str:
    country = g.pick(list(IBAN_BBAN))
    spec = IBAN_BBAN[country]
    bban = ""
    num = ""
    for ch in spec:
        if ch.isdigit():
            num += ch
        else:
            alphabet = string.digits if ch == "n" else string.ascii_uppercase
            bban += g.chars(alphabet, int(num))
            num = ""
    rearranged = bban + country + "00"
    check = 98 - int("".join(str(int(c, 36)) for c in rearranged)) % 97
    iban = f"{country}{check:02d}{bban}"
    if g.rng.random() < 0.6:
        return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
    return iban


def gen_ibans(g: Gen, n: int) -> None:
    for i in range(n):
        loc = LOCALES[i % len(LOCALES)]
        value = iban_value(g)
        if g.rng.random() < 0.6:
            text, fmt = prose(g, "iban", loc, value), "prose"
        else:
            text, fmt = structured(g, loc, "iban", value)
        g.add("iban", "iban", text, value, loc, fmt)


# --- SSNs ------------------------------------------------------------------------------

SSN_WORDS = {
    "en": [
        "SSN: {v}",
        "Social Security Number {v}",
        "my social security number is {v}",
        "SSN#: {v}",
        "ssn={v}",
    ],
    "de": ["US-Sozialversicherungsnummer (SSN): {v}"],
    "fr": ["numéro de sécurité sociale américain : {v}"],
    "es": ["número de seguro social: {v}"],
    "it": ["numero di previdenza sociale USA: {v}"],
    "nl": ["Amerikaans social security number: {v}"],
    "pt": ["número de seguro social: {v}"],
    "ja": ["社会保障番号：{v}"],
}


def ssn_digits(g: Gen) -> str:
    while True:
        area = g.rng.randint(1, 899)
        if area != 666:
            break
    return f"{area:03d}{g.rng.randint(1, 99):02d}{g.rng.randint(1, 9999):04d}"


def gen_ssns(g: Gen, n: int) -> None:
    for i in range(n):
        loc = LOCALES[i % len(LOCALES)]
        d = ssn_digits(g)
        style = g.pick(["dashed", "dashed", "plain", "spaced"])
        value = {
            "dashed": f"{d[:3]}-{d[3:5]}-{d[5:]}",
            "plain": d,
            "spaced": f"{d[:3]} {d[3:5]} {d[5:]}",
        }[style]
        if style == "dashed" and g.rng.random() < 0.4:
            text = f"{g.fakers[loc].name()},{value},{city(g, loc)}"
            fmt = "csv"
        else:
            text = g.pick(SSN_WORDS[LANG[loc]]).format(v=value)
            fmt = "prose"
            if g.rng.random() < 0.3:
                text = json.dumps({"name": g.fakers[loc].name(), "ssn": value}, ensure_ascii=False)
                fmt = "json"
        g.add("ssn", "ssn", text, value, loc, fmt)


# --- IPs -------------------------------------------------------------------------------


def ip_value(g: Gen) -> tuple[str, str]:
    if g.rng.random() < 0.7:
        first = g.pick(["10", "172", "192", "203", "81", "45", "8", "151", "62"])
        value = ".".join([first] + [str(g.rng.randint(0, 255)) for _ in range(3)])
        return value, "ipv4"
    groups = [f"{g.rng.randint(0, 0xFFFF):x}" for _ in range(8)]
    style = g.pick(["full", "compressed", "short"])
    if style == "full":
        return ":".join(["2001", "db8"] + groups[2:]), "ipv6"
    if style == "compressed":
        return f"2001:db8:{groups[2]}::{groups[6]}:{int(groups[7], 16) % 9 + 1}", "ipv6"
    return f"fe80::{groups[4]}:{groups[5]}:{g.rng.randint(1, 9)}{groups[7][:3]}", "ipv6"


def gen_ips(g: Gen, n: int) -> None:
    for i in range(n):
        loc = LOCALES[i % len(LOCALES)]
        value, label = ip_value(g)
        roll = g.rng.random()
        if roll < 0.4:
            text, fmt = prose(g, "ip", loc, value), "prose"
        elif roll < 0.7:
            host = f"[{value}]" if label == "ipv6" else value
            text = (
                f"{value} - - [12/Mar/2026:10:0{i % 10}:11 +0000] "
                '"GET /api/v1/items HTTP/1.1" 200 512'
            )
            if g.rng.random() < 0.5:
                text = f"2026-03-12 10:04:11 WARN conn refused peer={host}:5432 retry=3"
            fmt = "log"
        elif roll < 0.85:
            host = f"[{value}]" if label == "ipv6" else value
            text, fmt = f"curl -s http://{host}:8080/health", "url"
        else:
            text, fmt = structured(g, loc, "ip", value)
        g.add("ip", label, text, value, loc, fmt)


# --- secrets ---------------------------------------------------------------------------


def key_values(g: Gen) -> Iterator[tuple[str, str, str]]:
    """(kind, label, value) for each key shape, in turn, forever."""
    makers: list[Callable[[], tuple[str, str, str]]] = [
        lambda: ("openai_key", "openai_key", "sk-proj-" + g.chars(B64URL, 100)),
        lambda: (
            "openai_key",
            "openai_key",
            "sk-" + g.chars(ALNUM, 20) + "T3BlbkFJ" + g.chars(ALNUM, 20),
        ),
        lambda: ("anthropic_key", "anthropic_key", "sk-ant-api03-" + g.chars(B64URL, 93) + "AA"),
        lambda: (
            "aws_access_key",
            "aws_access_key",
            g.pick(["AKIA", "ASIA"]) + g.chars("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16),
        ),
        lambda: (
            "github_token",
            "github_token",
            g.pick(["ghp_", "gho_", "ghs_"]) + g.chars(ALNUM, 36),
        ),
        lambda: (
            "github_token",
            "github_token",
            "github_pat_11"
            + g.chars(string.ascii_uppercase + string.digits, 20)
            + "_"
            + g.chars(ALNUM, 59),
        ),
        lambda: ("gitlab_token", "gitlab_token", "glpat-" + g.chars(ALNUM + "_-", 20)),
        lambda: (
            "slack_token",
            "slack_token",
            g.pick(["xoxb-", "xoxp-"])
            + g.chars(string.digits, 12)
            + "-"
            + g.chars(string.digits, 13)
            + "-"
            + g.chars(ALNUM, 24),
        ),
        lambda: (
            "slack_token",
            "slack_token",
            "hooks.slack.com/services/T"
            + g.chars(string.ascii_uppercase + string.digits, 8)
            + "/B"
            + g.chars(string.ascii_uppercase + string.digits, 10)
            + "/"
            + g.chars(ALNUM, 24),
        ),
        lambda: (
            "stripe_key",
            "stripe_key",
            g.pick(["sk_live_", "rk_live_", "sk_test_"]) + g.chars(ALNUM, 24),
        ),
        lambda: ("google_api_key", "google_api_key", "AIza" + g.chars(B64URL, 35)),
        lambda: ("google_api_key", "google_api_key", "GOCSPX-" + g.chars(B64URL, 28)),
        lambda: ("npm_token", "npm_token", "npm_" + g.chars(ALNUM, 36)),
        lambda: ("pypi_token", "pypi_token", "pypi-AgEIcHlwaS5vcmc" + g.chars(B64URL, 60)),
        lambda: (
            "huggingface_token",
            "huggingface_token",
            "hf_" + g.chars(string.ascii_letters, 34),
        ),
        lambda: (
            "sendgrid_key",
            "sendgrid_key",
            "SG." + g.chars(B64URL, 22) + "." + g.chars(B64URL, 43),
        ),
        lambda: ("twilio_key", "twilio_key", "SK" + g.chars(HEX, 32)),
        lambda: ("shopify_token", "shopify_token", g.pick(["shpat_", "shpss_"]) + g.chars(HEX, 32)),
        lambda: ("digitalocean_token", "digitalocean_token", "dop_v1_" + g.chars(HEX, 64)),
        lambda: ("jwt", "jwt", jwt(g)),
    ]
    while True:
        for make in makers:
            yield make()


def b64(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def jwt(g: Gen) -> str:
    header = b64(json.dumps({"alg": g.pick(["HS256", "RS256"]), "typ": "JWT"}).encode())
    body = b64(
        json.dumps(
            {"sub": g.chars(string.digits, 8), "exp": 1790000000 + g.rng.randint(0, 10**6)}
        ).encode()
    )
    return f"{header}.{body}.{g.chars(B64URL, 43)}"


KEY_CONTEXTS = [
    ("prose", "Here is my key: {v} — please rotate it after the demo."),
    ("prose", "Ich habe den Schlüssel {v} aus Versehen gepostet."),
    ("prose", "J'ai collé la clé {v} dans le ticket, désolé."),
    ("prose", "このキー{v}を無効にしてください。"),
    ("code", 'client = Client(api_key="{v}")'),
    ("code", "export SERVICE_CREDENTIAL={v}"),
    ("code", "headers = {{'X-Api-Key': '{v}'}}"),
    ("json", '{{"provider": "acme", "credential": "{v}", "region": "eu-west-1"}}'),
    ("log", "2026-03-12T10:04:11Z DEBUG outgoing request auth={v} status=401"),
    ("url", "https://api.example.com/v2/items?key={v}&limit=10"),
    ("markdown", "| service | key |\n| --- | --- |\n| billing | `{v}` |"),
    ("csv", "service,key,owner\nbilling,{v},ops"),
]


def gen_keys(g: Gen, n: int) -> None:
    values = key_values(g)
    for _ in range(n):
        kind, label, value = next(values)
        fmt, template = KEY_CONTEXTS[g.rng.randrange(len(KEY_CONTEXTS))]
        if kind == "slack_token" and value.startswith("hooks."):
            value_text = "https://" + value
            text = template.format(v=value_text)
        else:
            text = template.format(v=value)
        g.add(kind, label, text, value, "en_US", fmt)


PEM_KINDS = [
    "RSA PRIVATE KEY",
    "EC PRIVATE KEY",
    "OPENSSH PRIVATE KEY",
    "PRIVATE KEY",
    "ENCRYPTED PRIVATE KEY",
]


def gen_private_keys(g: Gen, n: int) -> None:
    for _ in range(n):
        kind = g.pick(PEM_KINDS)
        lines = [g.chars(ALNUM + "+/", 64) for _ in range(g.rng.randint(3, 12))]
        value = f"-----BEGIN {kind}-----\n" + "\n".join(lines) + f"\n-----END {kind}-----"
        template = g.pick(
            [
                "Here's the deploy key:\n{v}\nDon't share it.",
                "```\n{v}\n```",
                "key: |\n  " + "{v}",
                "echo '{v}' > ~/.ssh/id_rsa",
            ]
        )
        if template.startswith("key: |"):
            value = value.replace("\n", "\n  ")
        g.add("private_key", "private_key", template.format(v=value), value, "en_US", "code")


def password_value(g: Gen) -> str:
    words = [
        "Sommer",
        "Blume",
        "soleil",
        "Luna",
        "tigre",
        "Koala",
        "winter",
        "sunshine",
        "dragon",
        "Amsterdam",
        "Lisboa",
        "sakura",
        "Falcon",
        "mango",
        "Rocket",
        "azul",
    ]
    style = g.rng.random()
    if style < 0.4:
        return g.pick(words) + str(g.rng.randint(10, 9999)) + g.pick(["!", "#", "$", "", "?", "*"])
    if style < 0.8:
        return g.chars(ALNUM + "!#$%&*+-=?@^_", g.rng.randint(10, 20))
    return g.pick(words).lower() + "-" + g.pick(words).lower() + "-" + str(g.rng.randint(1, 99))


PASSWORD_FORMS = [
    ("env", "DB_PASSWORD={v}"),
    ("env", "export PGPASSWORD={v}"),
    ("yaml", "database:\n  user: app\n  password: {v}\n"),
    ("yaml", 'smtp:\n  password: "{v}"\n'),
    ("json", '{{"username": "svc-backup", "password": "{v}"}}'),
    ("code", 'conn = psycopg.connect(host="db", user="app", password="{v}")'),
    ("code", 'r = requests.get(url, auth=("admin", "{v}"))'),
    ("code", 'session.auth = HTTPBasicAuth("deploy", "{v}")'),
    ("code", 'client.login("ops", "{v}")'),
    ("ini", "[mysql]\nuser = root\npassword = {v}\n"),
    ("cli", "redis-cli -h cache.internal -p 6379 -a {v} ping"),
    ("cli", "mysql -u root -p{v} app_db"),
    ("cli", "sshpass -p {v} ssh deploy@build-01"),
    ("cli", "docker login registry.example.com -u ci -p {v}"),
    ("cli", 'mongosh "mongodb://db:27017" -u admin -p {v}'),
    ("cli", "ldapsearch -x -D cn=admin,dc=corp -w {v} -b dc=corp"),
    ("cli", "curl -u jenkins:{v} https://ci.example.com/api/json"),
    ("cli", "psql --host db --password {v}"),
    ("cli", "./deploy.sh --admin-password={v}"),
    ("url", "postgres://app:{v}@db.internal:5432/app"),
    ("url", "https://backup:{v}@files.example.com/nightly/"),
    ("url", "redis://default:{v}@cache:6379/0"),
    ("prose", "The wifi password is {v} — it's on the fridge too."),
    ("prose", "the admin password is {v}, change it after login"),
    ("prose", "Password: {v}"),
    ("prose", "Das WLAN-Passwort lautet {v}."),
    ("prose", "Das Passwort ist {v}"),
    ("prose", "Le mot de passe est {v} pour le moment."),
    ("prose", "Mot de passe : {v}"),
    ("prose", "La contraseña es {v}, no la compartas."),
    ("prose", "La password è {v}."),
    ("prose", "Het wachtwoord is {v}."),
    ("prose", "A senha é {v}."),
    ("prose", "A palavra-passe é {v}."),
    ("prose", "パスワードは{v}です。"),
    ("prose", "Wi-Fiのパスワード：{v}"),
]


def gen_passwords(g: Gen, n: int) -> None:
    for i in range(n):
        fmt, template = PASSWORD_FORMS[i % len(PASSWORD_FORMS)]
        value = password_value(g)
        if fmt in ("url",):
            value = value.replace("@", "x").replace("/", "x").replace("#", "x").replace("?", "x")
        if fmt == "cli" or fmt == "env" or fmt == "ini":
            value = value.replace("$", "x").replace("&", "x").replace("*", "x")
        if fmt == "prose":
            value = value.rstrip("!?*#$")
            if value.isalpha():
                value += "7"
        text = template.format(v=value)
        g.add("password", "credential", text, value, "en_US", fmt)


API_SECRET_FORMS = [
    ("env", "STRIPE_WEBHOOK_SECRET={v}"),
    ("env", "AWS_SECRET_ACCESS_KEY={v}"),
    ("json", '{{"client_id": "web", "client_secret": "{v}"}}'),
    ("yaml", "auth:\n  api_token: {v}\n"),
    ("code", 'SECRET_KEY = "{v}"'),
    ("code", 'const apiKey = "{v}";'),
    ("header", "Authorization: Bearer {v}"),
    ("cli", "kubectl --token={v} get pods"),
]


def gen_api_secrets(g: Gen, n: int) -> None:
    for i in range(n):
        fmt, template = API_SECRET_FORMS[i % len(API_SECRET_FORMS)]
        value = g.chars(ALNUM + ("/+" if "AWS" in template else "_-"), g.rng.choice([32, 40, 48]))
        g.add("credential", "credential", template.format(v=value), value, "en_US", fmt)


# --- hard negatives --------------------------------------------------------------------

ORDER_WORDS = {
    "en": [
        "Order #{v} has shipped.",
        "Tracking number: {v}",
        "Your parcel {v} is out for delivery.",
        "Invoice no. {v} is attached.",
        "Ref: {v}",
        "Shipment {v} delayed at customs.",
        "IMEI: {v}",
        "Transaction id {v} completed.",
    ],
    "de": ["Bestellnummer: {v}", "Ihre Sendungsnummer lautet {v}.", "Rechnung Nr. {v}"],
    "fr": ["Numéro de commande : {v}", "Votre colis {v} est en cours de livraison.", "Facture {v}"],
    "es": ["Número de pedido: {v}", "Número de seguimiento {v}", "Factura {v}"],
    "it": ["Numero ordine: {v}", "Spedizione {v} in consegna.", "Fattura n. {v}"],
    "nl": ["Bestelnummer: {v}", "Track & trace: {v}", "Factuurnummer {v}"],
    "pt": ["Número da encomenda: {v}", "Código de rastreio: {v}", "Fatura {v}"],
    "ja": ["注文番号：{v}", "追跡番号{v}で確認できます。", "伝票番号：{v}"],
}


def luhn_number(g: Gen, length: int) -> str:
    _, prefixes, _ = SCHEMES[g.rng.randrange(len(SCHEMES))]
    return luhn_complete(g.pick(prefixes), length, g)


def fib_list(g: Gen) -> str:
    a, b = 0, 1
    seq = []
    start = g.rng.randint(58, 86)
    for i in range(start + 6):
        if i >= start:
            seq.append(str(a))
        a, b = b, a + b
    return ", ".join(seq)


def gen_negatives_numbers(g: Gen) -> None:
    for i in range(140):
        loc = LOCALES[i % len(LOCALES)]
        value = luhn_number(g, g.pick([16, 16, 15, 13]))
        text = g.pick(ORDER_WORDS[LANG[loc]]).format(v=value)
        g.add("card", None, text, None, loc, "prose", "a Luhn-valid order or tracking number")
    for _ in range(40):
        g.add("card", None, f"fib = [{fib_list(g)}]", None, "en_US", "code", "Fibonacci numbers")
    for _ in range(30):
        ts = str(1_700_000_000_000 + g.rng.randint(0, 10**11))
        g.add(
            "card",
            None,
            f'{{"event": "click", "ts": {ts}, "ms": true}}',
            None,
            "en_US",
            "json",
            "ms timestamp",
        )
    for _ in range(30):
        valid = luhn_complete(g.chars("0123456789", 1), 16, g)
        n = valid[:-1] + str((int(valid[-1]) + 5) % 10)  # one digit off: Luhn fails
        g.add("card", None, f"id={n} batch=7", None, "en_US", "log", "Luhn-invalid 16 digits")
    for _ in range(20):
        isbn = "978" + g.chars("0123456789", 10)
        g.add(
            "card",
            None,
            f"ISBN {isbn[:3]}-{isbn[3]}-{isbn[4:7]}-{isbn[7:12]}-{isbn[12]}",
            None,
            "en_US",
            "prose",
            "ISBN",
        )


def gen_negatives_phones(g: Gen) -> None:
    part_words = {
        "en": [
            "Part number {v}",
            "P/N {v}",
            "SKU: {v}",
            "Model {v} is discontinued.",
            "Serial number {v}",
        ],
        "de": ["Artikelnummer: {v}", "Teilenummer {v}", "Seriennummer {v}"],
        "fr": ["Référence pièce : {v}", "Numéro de série {v}"],
        "es": ["Referencia de pieza: {v}", "Número de serie {v}"],
        "it": ["Codice articolo: {v}", "Numero di serie {v}"],
        "nl": ["Onderdeelnummer: {v}", "Serienummer {v}"],
        "pt": ["Referência da peça: {v}", "Número de série {v}"],
        "ja": ["品番：{v}", "型番{v}は販売終了です。", "製造番号：{v}"],
    }
    for i in range(120):
        loc = LOCALES[i % len(LOCALES)]
        value, _ = phone_text(g, loc)
        value = value.lstrip("+").replace("(", "").replace(")", "")
        text = g.pick(part_words[LANG[loc]]).format(v=value)
        g.add("phone", None, text, None, loc, "prose", "a part number with a phone's digits")
    for _ in range(40):
        lat = g.rng.uniform(-80, 80)
        lon = g.rng.uniform(-170, 170)
        iso = f"{lat:+08.4f}{lon:+09.4f}/"
        g.add("phone", None, f"Location (ISO 6709): {iso}", None, "en_US", "prose", "coordinates")
    for _ in range(30):
        y, m, d = g.rng.randint(1990, 2030), g.rng.randint(1, 12), g.rng.randint(1, 28)
        text = g.pick(
            [
                f"released on {y}-{m:02d}-{d:02d} 10:30",
                f"Datum: {d:02d}.{m:02d}.{y}",
                f"due {m:02d}/{d:02d}/{y}",
                f"{y}-{m:02d}-{d:02d}T08:15:00Z ok",
            ]
        )
        g.add("phone", None, text, None, "en_US", "log", "a date")
    for _ in range(30):
        amount = f"{g.rng.randint(1, 999)}.{g.rng.randint(100, 999)}.{g.rng.randint(100, 999)}"
        g.add(
            "phone",
            None,
            g.pick([f"Umsatz: {amount} €", f"total {amount},00 EUR"]),
            None,
            "de_DE",
            "prose",
            "money",
        )
    for _ in range(30):
        text = g.pick(
            [
                f"timeout_ms = {g.rng.randint(1000000, 99999999)}",
                f"SELECT * FROM events WHERE id > {g.rng.randint(10**8, 10**10)};",
                (
                    f"build {g.rng.randint(1000, 9999)}-{g.rng.randint(100, 999)}-"
                    f"{g.rng.randint(1000, 9999)} passed"
                ),
                (
                    f"pages {g.rng.randint(100, 400)}-{g.rng.randint(401, 900)}, "
                    f"vol. {g.rng.randint(1, 40)}"
                ),
                f"epoch {g.rng.randint(1600000000, 1800000000)} seconds",
                f"ports {g.rng.randint(1000, 3000)}-{g.rng.randint(3001, 9000)} open",
            ]
        )
        g.add("phone", None, text, None, "en_US", "code", "numbers in code and logs")


def gen_negatives_emails(g: Gen) -> None:
    for i in range(160):
        loc = LOCALES[i % len(LOCALES)]
        f = g.fakers[loc]
        org, repo, user = f.user_name(), f.word() + "-" + f.word(), f.user_name()
        host = f.domain_name()
        text = g.pick(
            [
                f"git clone git@github.com:{org}/{repo}.git",
                f"git remote add origin git@gitlab.{host}:{org}/{repo}.git",
                f"ssh {user}@{host}",
                f"ssh -i ~/.ssh/id_ed25519 -p 2222 {user}@build.{host}",
                f"scp backup.tar.gz {user}@{host}:/srv/backups/",
                f"rsync -avz ./dist/ deploy@{host}:/var/www/",
                '<img src="logo@2x.png" srcset="logo@3x.png 3x">',
                "background: url(icons/arrow@2x.webp);",
                (
                    f"npm install lodash@4.17.{g.rng.randint(1, 21)} "
                    f"@types/node@20.{g.rng.randint(1, 9)}.0"
                ),
                f"docker pull nginx@sha256:{g.chars(HEX, 64)}",
                f"@{user} can you review this?",
                "@app.route('/users/<id>')",
                f"pip install git+https://{user}@github.com/{org}/{repo}.git",
                f"git+ssh://git@github.com/{org}/{repo}.git#egg=pkg",
                f"Mail server rejected {user}@localhost",
                "@media (max-width: 600px) { .a { color: red; } }",
                "result = a @ b  # matrix product",
                f"https://{user}@{host}/dashboard",
            ]
        )
        g.add("email", None, text, None, loc, "code", "looks like an address")


def gen_negatives_ips(g: Gen) -> None:
    for _ in range(150):
        a, b, c, d = (g.rng.randint(0, 20) for _ in range(4))
        text = g.pick(
            [
                f"Version {a}.{b}.{c}.{d} fixes the crash.",
                f"pip install package=={a}.{b}.{c}.{d}",
                f"<AssemblyVersion>{a}.{b}.{c}.{d}</AssemblyVersion>",
                f'"version": "{a}.{b}.{c}.{d}"',
                f"Mozilla/5.0 (X11; Linux x86_64) Chrome/{a + 100}.0.{c}.{d} Safari/537.36",
                f"See section {a + 1}.{b + 1}.{c + 1}.{d + 1} of the spec.",
                f"§ {a + 1}.{b}.{c}.{d} BGB",
                f"firmware v{a}.{b}.{c}.{d}",
                f"evens = items[{a}::2]",
                f"x = arr[::{b + 1}]",
                f"std::chrono::seconds({a})",
                (
                    f"MAC 00:1a:{g.chars(HEX, 2)}:{g.chars(HEX, 2)}:"
                    f"{g.chars(HEX, 2)}:{g.chars(HEX, 2)}"
                ),
                f"at 12:{b + 10}:{c + 10} the job ran",
                f"OID 1.3.6.1.4.1.{a}.{b}",
                f"Versión {a}.{b}.{c}.{d} disponible",
                f"バージョン{a}.{b}.{c}.{d}をインストール",
            ]
        )
        g.add("ip", None, text, None, "en_US", "code", "a version, section, slice or time")


def gen_negatives_ssn_iban(g: Gen) -> None:
    for i in range(80):
        loc = LOCALES[i % len(LOCALES)]
        d = ssn_digits(g)
        v = g.pick([f"{d[:3]}-{d[3:5]}-{d[5:]}", d, f"{d[:3]} {d[3:5]} {d[5:]}"])
        text = g.pick(ORDER_WORDS[LANG[loc]]).format(v=v)
        g.add("ssn", None, text, None, loc, "prose", "an order number in an SSN's shape")
    for _ in range(40):
        d = ssn_digits(g)
        text = g.pick(
            [
                f"routing number {d}",
                f"ZIP {d[:5]}-{d[5:9]}",
                f"count={d} rows",
                f"SSN format: XXX-XX-{d[5:]}",
                f"ssn 000-{d[3:5]}-{d[5:]}",
                f"ssn 666-{d[3:5]}-{d[5:]}",
            ]
        )
        g.add("ssn", None, text, None, "en_US", "prose", "not an SSN")
    for _ in range(60):
        iban = iban_value(g).replace(" ", "")
        wrong = iban[:2] + f"{(int(iban[2:4]) + g.rng.randint(1, 50)) % 97 + 2:02d}" + iban[4:]
        text = g.pick(
            [
                f"IBAN: {wrong}",
                f"BIC {g.chars(string.ascii_uppercase, 6)}2L",
                f"token {iban[:2]}{g.chars(string.ascii_uppercase, 20)}",
            ]
        )
        g.add("iban", None, text, None, "en_US", "prose", "a wrong check digit or not an IBAN")


def gen_negatives_secrets(g: Gen) -> None:
    fixed = [
        "export OPENAI_API_KEY=sk-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "OPENAI_API_KEY=sk-...",
        "Set OPENAI_API_KEY to your key, e.g. sk-your-key-here",
        "aws_access_key_id = AKIAIOSFODNN7EXAMPLE",
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "SLACK_BOT_TOKEN=xoxb-your-bot-token",
        "GITHUB_TOKEN=ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "api_key: <YOUR_API_KEY>",
        "password: ${DB_PASSWORD}",
        'password: "{{ vault_db_password }}"',
        'DB_PASSWORD = os.environ["DB_PASSWORD"]',
        'token = os.getenv("API_TOKEN")',
        "const secret = process.env.STRIPE_SECRET_KEY;",
        "access_token = get_access_token()",
        'password = getpass.getpass("Password: ")',
        "self.password = password",
        "password = user_password",
        '{"password": password, "user": user}',
        'token = request.headers.get("Authorization")',
        "max_tokens: 4096",
        '"max_tokens": 1024, "temperature": 0.2',
        'token_type: "bearer"',
        'password_reset_url = "https://example.com/reset"',
        "secret_name: db-credentials",
        "secretKeyRef:\n  name: app-secrets\n  key: password",
        "PASSWORD_FILE=/run/secrets/db_password",
        "Your password is too short.",
        "The password is stored as a bcrypt hash.",
        "Passwort vergessen? Klicken Sie hier.",
        "Das Passwort ist falsch.",
        "Mot de passe oublié ?",
        "La contraseña es incorrecta.",
        "La password è obbligatoria.",
        "Het wachtwoord is verlopen.",
        "A senha é obrigatória.",
        "パスワードは8文字以上にしてください。",
        "password: required",
        "password: hidden",
        "We use scikit-learn (sk-learn) for the model.",
        "The task-force met on Monday; risk-free and sk-8 ramps.",
        "AKIA is the prefix of long-term AWS access keys.",
        (
            "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA7\n"
            "-----END PUBLIC KEY-----"
        ),
        (
            "-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUFADBa\n"
            "-----END CERTIFICATE-----"
        ),
        "-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----",
        "docker login --password-stdin < token.txt",
        "mysql -u root -p app_db",
        "mysql -h db -P 3306 -u app -p",
        "redis-cli -a $REDIS_PASSWORD ping",
        "postgres://app:${DB_PASS}@db:5432/app",
        "https://user:password@example.com/",
        "postgres://postgres:postgres@localhost:5432/test",
        'curl -H "Authorization: Bearer <token>" https://api.example.com',
        'curl -H "Authorization: Bearer $TOKEN" https://api.example.com',
        "Stripe publishable key: pk_live_" + "51HxYz2eZvKYlo2C0aBcD3fG4hI5jK6lM7nO8pQ9",
        "eyJhbGciOi.eyJzdWIiOiIx.abc is not a token",
        "the bearer of bad news",
        "pass: true",
        "secret: always be kind",
    ]
    for text in fixed:
        g.add("secrets", None, text, None, "en_US", "code", "placeholder, example or code")
    for _ in range(60):
        text = g.pick(
            [
                f"commit {g.chars(HEX, 40)}",
                f"sha256: {g.chars(HEX, 64)}",
                f"checksum={g.chars(HEX, 32)}",
                (
                    f"request_id: {g.chars(HEX, 8)}-{g.chars(HEX, 4)}-4{g.chars(HEX, 3)}"
                    f"-a{g.chars(HEX, 3)}-{g.chars(HEX, 12)}"
                ),
                (
                    f"Merge pull request #{g.rng.randint(10, 9999)} from "
                    f"{g.chars(string.ascii_lowercase, 6)}/fix-{g.chars(string.ascii_lowercase, 5)}"
                ),
                f"data:image/png;base64,iVBORw0KGgo{g.chars(ALNUM, 40)}",
                f"next_page_token: {g.chars(ALNUM, 32)}",
                f'"nextToken": "{g.chars(ALNUM, 40)}"',
                f'etag: "{g.chars(HEX, 32)}"',
                f'cache_key = "user:{g.rng.randint(1000, 9999)}:profile"',
                f"primary_key: {g.chars(ALNUM, 12)}",
            ]
        )
        g.add("secrets", None, text, None, "en_US", "code", "random but not a secret")


def generate() -> list[Record]:
    g = Gen()
    gen_phones(g, 260)
    gen_emails(g, 220)
    gen_cards(g, 180)
    gen_ibans(g, 100)
    gen_ssns(g, 100)
    gen_ips(g, 120)
    gen_keys(g, 300)
    gen_private_keys(g, 20)
    gen_passwords(g, 180)
    gen_api_secrets(g, 48)
    gen_negatives_numbers(g)
    gen_negatives_phones(g)
    gen_negatives_emails(g)
    gen_negatives_ips(g)
    gen_negatives_ssn_iban(g)
    gen_negatives_secrets(g)
    return g.records


def write(path: Path = OUT) -> None:
    records = generate()
    with path.open("w", encoding="utf-8") as out:
        for rec in records:
            out.write(json.dumps(rec, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parents[2]))
    write()
    print(f"wrote {OUT}")
