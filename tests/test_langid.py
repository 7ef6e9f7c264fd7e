"""Language fidelity on a table of labelled answers: prose in the 11 target languages, code-only,
short, mixed, English preambles, Traditional and Simplified Chinese, Romanised Hindi."""

from __future__ import annotations

import pytest

from xlexp.evaluate import langid

CODE_PY = "```python\ndef add(a, b):\n    return a + b\n\nprint(add(2, 3))\n```"
JSON_ONLY = '{\n  "name": "Alice",\n  "age": 42,\n  "city": "Berlin"\n}'
SQL_ONLY = "SELECT name, age\nFROM users\nWHERE age > 30\nORDER BY name;"
PREAMBLE = "Sure! Here is the answer in {lang}:\n\n"

# (answer, the code it must be identified as; None = undetermined)
TABLE: list[tuple[str, str | None]] = [
    # Prose, one or two per language.
    ("Der Hund schläft im Garten, weil es heute sehr warm ist und die Sonne scheint.", "deu"),
    ("Honig kann man zum Backen, als Süßungsmittel und gegen Halsschmerzen verwenden.", "deu"),
    ("O cão está a dormir no jardim porque hoje está muito calor lá fora.", "por"),
    ("A kutya a kertben alszik, mert ma nagyon meleg van, és süt a nap.", "hun"),
    ("Šuo miega sode, nes šiandien labai šilta ir šviečia saulė.", "lit"),
    ("Tá an madra ina chodladh sa ghairdín mar go bhfuil sé an-te inniu.", "gle"),
    ("Il-kelb qed jorqod fil-ġnien għax illum sħun ħafna u x-xemx tiddi.", "mlt"),
    ("Le chien dort dans le jardin parce qu'il fait très chaud aujourd'hui.", "fra"),
    ("Koira nukkuu puutarhassa, koska tänään on todella lämmin ja aurinkoinen päivä.", "fin"),
    ("Köpek bahçede uyuyor çünkü bugün hava çok sıcak ve güneşli.", "tur"),
    ("कुत्ता बगीचे में सो रहा है क्योंकि आज बहुत गर्मी है और धूप निकली है।", "hin"),
    ("The dog is sleeping in the garden because it is very warm today.", "eng"),
    # Traditional and Simplified Chinese: both Chinese.
    ("我今天很高兴，因为天气很好，我们去公园散步了。", "zho"),
    ("我今天很高興，因為天氣很好，我們去公園散步了。", "zho"),
    ("人工智能是计算机科学的一个分支，它研究如何让机器像人一样思考。", "zho"),
    ("人工智慧是電腦科學的一個分支，它研究如何讓機器像人一樣思考。", "zho"),
    # Romanised Hindi counts as Hindi.
    (
        "Mera naam Rahul hai aur main Delhi mein rehta hoon. "
        "Mujhe cricket khelna bahut accha lagta hai.",
        "hin",
    ),
    ("Aap kaise hain? Main theek hoon, lekin aaj bahut kaam hai aur mujhe office jana hai.", "hin"),
    # Code only, data only, numbers, formulas: undetermined (not English, not Chinese).
    (CODE_PY, None),
    (JSON_ONLY, None),
    (SQL_ONLY, None),
    ("42", None),
    ("3.14159", None),
    ("x^2 + y^2 = z^2", None),
    ("$\\frac{a}{b} + \\sqrt{c}$", None),
    ("https://example.com/docs/index.html", None),
    # Short answers: undetermined, whatever py3langid guesses.
    ("Ja.", None),
    ("Sim.", None),
    ("Igen.", None),
    ("Taip.", None),
    ("Evet.", None),
    ("Oui.", None),
    ("是的。", None),
    ("हाँ।", None),
    # Code with prose around it: the prose decides.
    (
        "Hier ist eine Funktion, die zwei Zahlen addiert und das Ergebnis zurückgibt:\n\n"
        + CODE_PY,
        "deu",
    ),
    (
        "Voici une fonction qui additionne deux nombres et renvoie le résultat :\n\n" + CODE_PY,
        "fra",
    ),
    (
        "Bu fonksiyon iki sayıyı toplar ve sonucu döndürür. Örnek: `add(2, 3)` sonucu verir.\n\n"
        + CODE_PY,
        "tur",
    ),
    (
        "Tämä kysely hakee kaikki yli kolmekymmentä vuotta vanhat käyttäjät nimen mukaan:\n\n"
        + SQL_ONLY,
        "fin",
    ),
    (
        "Lisätietoja löydät osoitteesta https://example.com/docs ja dokumentaatiosta, "
        "joka on hyvin kattava.",
        "fin",
    ),
    # An English preamble before a target-language answer: the answer's language.
    (
        PREAMBLE.format(lang="German")
        + (
            "Der Hund schläft im Garten, weil es heute sehr warm ist. "
            "Er liegt im Schatten unter dem großen Baum."
        ),
        "deu",
    ),
    (
        PREAMBLE.format(lang="Hungarian")
        + (
            "A kutya a kertben alszik, mert ma nagyon meleg van. "
            "A nagy fa árnyékában fekszik egész délután."
        ),
        "hun",
    ),
    (
        PREAMBLE.format(lang="Portuguese")
        + (
            "O cão está a dormir no jardim porque hoje está muito calor. "
            "Está deitado à sombra da grande árvore."
        ),
        "por",
    ),
    (
        PREAMBLE.format(lang="Chinese")
        + "我今天很高兴，因为天气很好，我们去公园散步了，还吃了冰淇淋。",
        "zho",
    ),
    # Mixed: most of the prose decides.
    (
        "The dog is sleeping in the garden because it is very warm today "
        "and the sun is shining brightly.\n\n"
        "It will wake up in the evening when it is cooler, "
        "and then it will want its dinner and a long walk.\n\n"
        "Der Hund schläft.",
        "eng",
    ),
    (
        "Il-kelb qed jorqod fil-ġnien għax illum sħun ħafna u x-xemx tiddi fuq il-ħajt.\n\n"
        "Se jqum filgħaxija meta jkun iktar frisk, u mbagħad irid jiekol.\n\nThe dog sleeps.",
        "mlt",
    ),
    # Markdown around the prose does not change it.
    (
        "## Vastaus\n\n- **Koira** nukkuu puutarhassa.\n"
        "- Tänään on *todella* lämmin ja aurinkoinen päivä.",
        "fin",
    ),
    (
        "| Nome | Idade |\n|---|---|\n| Ana | 30 |\n\n"
        "A Ana tem trinta anos e mora em Lisboa com a família dela.",
        "por",
    ),
]


def test_table_covers_the_eleven_languages_and_the_hard_cases() -> None:
    assert len(TABLE) >= 40
    targets = {"deu", "por", "hun", "lit", "gle", "mlt", "zho", "hin", "fra", "fin", "tur"}
    assert targets <= {code for _, code in TABLE}


@pytest.mark.parametrize(
    "text, expected", TABLE, ids=[f"{i}-{c}" for i, (_, c) in enumerate(TABLE)]
)
def test_identified_language(text: str, expected: str | None) -> None:
    assert langid.detect(text) == expected


def test_fidelity_reports_undetermined_beside_the_rate() -> None:
    outputs = [
        "Der Hund schläft im Garten, weil es heute sehr warm ist und die Sonne scheint.",
        "The dog is sleeping in the garden because it is very warm today.",
        CODE_PY,  # undetermined: a correct code answer is not a miss
        "Ja.",
        "",  # an empty answer is in no language: a miss
        None,  # a failed response: counted apart
    ]
    fid = langid.fidelity(outputs, "deu")
    assert fid == {
        "rate": 1 / 3,
        "n_matched": 1,
        "n_determined": 3,
        "n_undetermined": 2,
        "n_missing": 1,
    }
    assert langid.fidelity([CODE_PY], "deu")["rate"] is None
    assert langid.fidelity([], "deu")["rate"] is None


def test_clean_removes_code_urls_numbers_and_markup() -> None:
    text = "See `x = 1` at https://a.b/c, **bold** 42 items:\n\n" + CODE_PY + "\n<b>Done</b>"
    cleaned = langid.clean(text)
    for gone in ("x = 1", "https", "42", "def add", "**", "<b>"):
        assert gone not in cleaned
    assert "See" in cleaned and "bold" in cleaned and "Done" in cleaned
