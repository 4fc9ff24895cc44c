"""Generate the small synthetic multilingual NER sample in data/sample/ (en, de, es, nl, ru).

What it does: fills hand-written sentence templates with names drawn from small per-language
gazetteers (PER, LOC, ORG, MISC), deterministically from a seed, and writes CoNLL 2-column files
(`token TAG`, IOB1 tags, the paper's scheme) plus raw unlabelled text for the cloze tasks:

    data/sample/<lang>/{train,dev,test}.txt     400 / 100 / 100 sentences
    data/sample/unlabeled/<lang>.txt            200 raw sentences, one per line

What it leaves out: any real text. The sample exists so the demo, the tutorials and the tests run
in minutes on a laptop without the licensed corpora; an F1 score on it says nothing about real NER.

Each gazetteer has names used everywhere and names held out of train, which dev/test draw half the
time, so the dev/test score is not pure memorisation. A few sentences are 60-90 words (more than 64
word pieces, to exercise the windows), and "results" lines put two club names side by side, which
is where IOB1 writes B-.

Usage: python data/make_sample.py [--out DIR] [--seed N]   (re-running gives byte-identical files)
"""
import argparse
import random
from pathlib import Path

SPLITS = {"train": 400, "dev": 100, "test": 100}
N_UNLABELED = 200
LONG_FRACTION = 0.04     # share of 60-90 word sentences
RESULTS_FRACTION = 0.08  # share of "ORG ORG 2 1" lines: adjacent same-type entities

# A gazetteer entry is a string, or a tuple of inflected forms: "{LOC.1}" in a template takes form 1
# (e.g. the Russian prepositional case "в Москве"). Each category: (names for all splits, held out).
LANGUAGES = {
    "en": {
        "first": (["John", "Mary", "Peter", "Susan", "David", "Laura", "Michael", "Helen", "James", "Anna"],
                  ["Oliver", "Grace", "Samuel", "Ruth"]),
        "last": (["Smith", "Walker", "Brown", "Turner", "Hughes", "Collins", "Fisher", "Morgan", "Bennett",
                  "Carter", "Parker", "Reed"], ["Whitfield", "Ashworth", "Pemberton", "Lockhart", "Finch"]),
        "LOC": (["London", "Manchester", "New York", "Chicago", "Boston", "Scotland", "Canada", "Texas",
                 "Sydney", "Ireland", "Los Angeles", "Liverpool", "Ohio", "Wales", "Toronto", "Dublin"],
                ["Leeds", "Nova Scotia", "Denver", "Cardiff", "Perth", "San Diego"]),
        "ORG": (["Reuters", "General Motors", "Barclays", "Ford", "British Airways", "Reebok", "Microsoft",
                 "Shell", "HSBC", "IBM", "Boeing", "Nestle"], ["Tesco", "Rolls-Royce", "Unilever", "Glaxo", "Vodafone"]),
        "CLUB": (["Arsenal", "Chelsea", "Leeds United", "Manchester United", "Everton", "Newcastle", "Tottenham",
                  "Rangers", "Blackburn Rovers"], ["Aston Villa", "Celtic", "Sheffield Wednesday"]),
        "MISC": (["British", "American", "French", "German", "Canadian", "Olympic", "Irish", "European"],
                 ["Scottish", "Australian", "Welsh"]),
        "days": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
        "joiners": [", and", ", while", "; meanwhile ,", ", but"],
        "templates": [
            "{PER} , the chairman of {ORG} , said on {DAY} that profits had risen by {NUM} percent .",
            "{ORG} shares fell {NUM} percent in {LOC} after the announcement .",
            "{PER} scored twice as {CLUB} beat {CLUB} {GOALS} - {GOALS} in {LOC} .",
            "The {MISC} government said it would send {NUM} observers to {LOC} .",
            "{PER} won the {MISC} title in {LOC} on {DAY} .",
            "Police in {LOC} arrested {NUM} people after the protest .",
            "{PER} told reporters in {LOC} that {ORG} would not change its plans .",
            "Talks between {LOC} and {LOC} will resume next week , officials said .",
            "The company expects sales to grow slowly this year .",
            "{PER} and {PER} met in {LOC} to discuss the {MISC} elections .",
            "{LOC} {DATE}",
            "A spokesman for {ORG} declined to comment .",
            "{PER} , who moved to {LOC} in {YEAR} , now works for {ORG} .",
            "The {MISC} film festival opens in {LOC} on {DAY} .",
            "{PER} said the agreement with {ORG} was a good result for {LOC} .",
            "Prices were mostly unchanged on {DAY} .",
        ],
    },
    "de": {
        "first": (["Hans", "Anna", "Peter", "Katrin", "Thomas", "Monika", "Stefan", "Ursula", "Jürgen", "Sabine"],
                  ["Wolfgang", "Gisela", "Lothar", "Birgit"]),
        "last": (["Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Becker", "Hoffmann", "Schäfer", "Koch",
                  "Richter", "Klein", "Wolf"], ["Brandauer", "Kessler", "Hölzl", "Vogt", "Lindemann"]),
        "LOC": (["Berlin", "Hamburg", "München", "Köln", "Frankfurt", "Bonn", "Sachsen", "Bayern", "Österreich",
                 "Wien", "Zürich", "Dresden", "Leipzig", "Stuttgart", "Bremen", "Hessen"],
                ["Kassel", "Thüringen", "Graz", "Rostock", "Bad Homburg", "Freiburg"]),
        # No articles: German inflects them by case ("von der SPD"), which templates cannot follow.
        "ORG": (["Siemens", "Volkswagen", "Lufthansa", "BMW", "Daimler-Benz", "Bertelsmann", "Allianz", "Hoechst",
                 "Thyssen", "Bayer", "Deutsche Telekom", "Commerzbank"], ["Bosch", "Krupp", "Henkel", "Degussa", "Linde"]),
        "CLUB": (["Bayern München", "Werder Bremen", "Borussia Dortmund", "Schalke 04", "VfB Stuttgart",
                  "Hamburger SV", "Eintracht Frankfurt", "Bayer Leverkusen", "1. FC Köln"],
                 ["Hertha BSC", "Hansa Rostock", "SC Freiburg"]),
        "MISC": ([("deutsche", "deutschen"), ("französische", "französischen"), ("amerikanische", "amerikanischen"),
                  ("europäische", "europäischen"), ("britische", "britischen"), ("italienische", "italienischen"),
                  ("russische", "russischen"), ("polnische", "polnischen")],
                 [("österreichische", "österreichischen"), ("schweizerische", "schweizerischen"),
                  ("niederländische", "niederländischen")]),
        "days": ["Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag"],
        "joiners": [", und", ", während", "; unterdessen", ", aber"],
        "templates": [
            "{PER} , Vorsitzender von {ORG} , sagte am {DAY} , der Gewinn sei um {NUM} Prozent gestiegen .",
            "Die Aktien von {ORG} fielen in {LOC} um {NUM} Prozent .",
            "{PER} traf zweimal , als {CLUB} in {LOC} mit {GOALS} : {GOALS} gegen {CLUB} gewann .",
            "Die {MISC} Regierung will {NUM} Beobachter nach {LOC} schicken .",
            "{PER} gewann am {DAY} in {LOC} den Titel bei den {MISC.1} Meisterschaften .",
            "Die Polizei in {LOC} nahm nach der Demonstration {NUM} Menschen fest .",
            "{PER} sagte in {LOC} , {ORG} werde an den Plänen festhalten .",
            "Die Gespräche zwischen {LOC} und {LOC} sollen nächste Woche weitergehen .",
            "Das Unternehmen erwartet in diesem Jahr nur ein langsames Wachstum .",
            "{PER} und {PER} trafen sich in {LOC} , um über die {MISC.1} Wahlen zu sprechen .",
            "{LOC} {DATE}",
            "Ein Sprecher von {ORG} wollte sich nicht äußern .",
            "{PER} , der {YEAR} nach {LOC} zog , arbeitet heute für {ORG} .",
            "Das {MISC} Filmfestival beginnt am {DAY} in {LOC} .",
            "{PER} nannte die Einigung mit {ORG} ein gutes Ergebnis für {LOC} .",
            "Die Kurse blieben am {DAY} weitgehend unverändert .",
        ],
    },
    "es": {
        "first": (["Juan", "María", "José", "Carmen", "Antonio", "Lucía", "Javier", "Elena", "Manuel", "Pilar"],
                  ["Ignacio", "Rocío", "Alfonso", "Inés"]),
        "last": (["García", "Martínez", "López", "Sánchez", "Pérez", "Gómez", "Fernández", "Ruiz", "Díaz",
                  "Moreno", "Álvarez", "Romero"], ["Echeverría", "Zubizarreta", "Ibarra", "Quiroga", "Olmedo"]),
        "LOC": (["Madrid", "Barcelona", "Sevilla", "Valencia", "Bilbao", "Andalucía", "Cataluña", "México",
                 "Argentina", "Buenos Aires", "Galicia", "Zaragoza", "Lima", "Chile", "Málaga", "Santander"],
                ["Cádiz", "Extremadura", "Montevideo", "Salamanca", "Las Palmas", "Oviedo"]),
        "ORG": (["Telefónica", "Iberia", "Repsol", "el Banco Santander", "Renfe", "EFE", "Argentaria", "el BBV",
                 "Seat", "Cepsa", "Gas Natural", "Pryca"], ["Endesa", "Banesto", "Tabacalera", "Aceralia", "el Banco Pastor"]),
        "CLUB": (["Real Madrid", "Barcelona", "Valencia", "Atlético de Madrid", "Deportivo", "Athletic", "Espanyol",
                  "Celta", "Tenerife"], ["Betis", "Sevilla", "Zaragoza"]),
        "MISC": ([("español", "española", "españoles"), ("francés", "francesa", "franceses"),
                  ("europeo", "europea", "europeos"), ("argentino", "argentina", "argentinos"),
                  ("mexicano", "mexicana", "mexicanos"), ("alemán", "alemana", "alemanes"),
                  ("italiano", "italiana", "italianos"), ("británico", "británica", "británicos")],
                 [("chileno", "chilena", "chilenos"), ("portugués", "portuguesa", "portugueses"),
                  ("peruano", "peruana", "peruanos")]),
        "days": ["lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"],
        "joiners": [", y", ", mientras", "; entretanto ,", ", pero"],
        "templates": [
            "{PER} , presidente de {ORG} , dijo el {DAY} que los beneficios subieron un {NUM} por ciento .",
            "Las acciones de {ORG} cayeron un {NUM} por ciento en {LOC} tras el anuncio .",
            "{PER} marcó dos goles y el {CLUB} ganó {GOALS} - {GOALS} al {CLUB} en {LOC} .",
            "El Gobierno {MISC} enviará {NUM} observadores a {LOC} .",
            "{PER} ganó el {DAY} en {LOC} el campeonato {MISC} .",
            "La policía de {LOC} detuvo a {NUM} personas tras la manifestación .",
            "{PER} dijo en {LOC} que {ORG} no cambiará sus planes .",
            "Las conversaciones entre {LOC} y {LOC} continuarán la próxima semana .",
            "La empresa espera un crecimiento lento este año .",
            "{PER} y {PER} se reunieron en {LOC} para hablar de los comicios {MISC.2} .",
            "{LOC} , {DD} may ( EFE ) .",
            "Un portavoz de {ORG} declinó hacer comentarios .",
            "{PER} , que se trasladó a {LOC} en {YEAR} , trabaja ahora para {ORG} .",
            "El festival de cine {MISC} comienza el {DAY} en {LOC} .",
            "{PER} calificó el acuerdo con {ORG} de buen resultado para {LOC} .",
            "La Bolsa cerró el {DAY} sin grandes cambios .",
        ],
    },
    "nl": {
        "first": (["Jan", "Anke", "Pieter", "Els", "Willem", "Marieke", "Johan", "Sanne", "Dirk", "Ingrid"],
                  ["Koen", "Liesbeth", "Maarten", "Femke"]),
        "last": (["de Vries", "Jansen", "Bakker", "Visser", "Smit", "Peeters", "Mertens", "van Dijk", "Willems",
                  "de Jong", "Maes", "Hendriks"], ["Verhoeven", "Claessens", "van Leeuwen", "Dekker", "Goossens"]),
        "LOC": (["Amsterdam", "Rotterdam", "Brussel", "Antwerpen", "Gent", "Utrecht", "Vlaanderen", "Nederland",
                 "België", "Leuven", "Den Haag", "Limburg", "Eindhoven", "Brugge", "Groningen", "Wallonië"],
                ["Mechelen", "Zeeland", "Hasselt", "Maastricht", "Oostende", "Friesland"]),
        "ORG": (["Philips", "de KBC", "Sabena", "KLM", "Unilever", "ING", "Ahold", "de Generale Bank", "Akzo",
                 "Agfa-Gevaert", "Solvay", "Belgacom"], ["Heineken", "Fortis", "Petrofina", "Delhaize", "de Kredietbank"]),
        "CLUB": (["Ajax", "PSV", "Feyenoord", "Anderlecht", "Club Brugge", "Standard Luik", "AZ", "Lierse",
                  "Roda JC"], ["Twente", "KV Mechelen", "Vitesse"]),
        "MISC": ([("Belgische",), ("Nederlandse",), ("Franse",), ("Duitse",), ("Europese",), ("Vlaamse",),
                  ("Britse",), ("Amerikaanse",)], [("Waalse",), ("Italiaanse",), ("Spaanse",)]),
        "days": ["maandag", "dinsdag", "woensdag", "donderdag", "vrijdag", "zaterdag", "zondag"],
        "joiners": [", en", ", terwijl", "; intussen", ", maar"],
        "templates": [
            "{PER} , voorzitter van {ORG} , zei {DAY} dat de winst met {NUM} procent gestegen is .",
            "De aandelen van {ORG} daalden in {LOC} met {NUM} procent .",
            "{PER} scoorde twee keer toen {CLUB} in {LOC} met {GOALS} - {GOALS} van {CLUB} won .",
            "De {MISC} regering stuurt {NUM} waarnemers naar {LOC} .",
            "{PER} won {DAY} in {LOC} de {MISC} titel .",
            "De politie van {LOC} arresteerde {NUM} mensen na de betoging .",
            "{PER} zei in {LOC} dat {ORG} zijn plannen niet zal wijzigen .",
            "De gesprekken tussen {LOC} en {LOC} worden volgende week hervat .",
            "Het bedrijf verwacht dit jaar maar een trage groei .",
            "{PER} en {PER} spraken in {LOC} over de {MISC} verkiezingen .",
            "{LOC} , {DD} augustus .",
            "Een woordvoerder van {ORG} wilde geen commentaar geven .",
            "{PER} , die in {YEAR} naar {LOC} verhuisde , werkt nu voor {ORG} .",
            "Het {MISC} filmfestival begint {DAY} in {LOC} .",
            "{PER} noemde het akkoord met {ORG} een goed resultaat voor {LOC} .",
            "De koersen bleven {DAY} vrijwel onveranderd .",
        ],
    },
    "ru": {
        "first": (["Иван", "Михаил", "Сергей", "Олег", "Андрей", "Николай", "Дмитрий", "Виктор", "Алексей", "Юрий"],
                  ["Григорий", "Аркадий", "Тимофей", "Леонид"]),
        "last": (["Иванов", "Смирнов", "Кузнецов", "Попов", "Соколов", "Лебедев", "Козлов", "Новиков", "Морозов",
                  "Волков", "Павлов", "Федоров"], ["Шульгин", "Ермолаев", "Белозеров", "Тихонов", "Горбунов"]),
        # (nominative, prepositional "в ...", genitive "из ...")
        "LOC": ([("Москва", "Москве", "Москвы"), ("Санкт-Петербург", "Санкт-Петербурге", "Санкт-Петербурга"),
                 ("Казань", "Казани", "Казани"), ("Новосибирск", "Новосибирске", "Новосибирска"),
                 ("Киев", "Киеве", "Киева"), ("Минск", "Минске", "Минска"), ("Сибирь", "Сибири", "Сибири"),
                 ("Франция", "Франции", "Франции"), ("Германия", "Германии", "Германии"),
                 ("Нижний Новгород", "Нижнем Новгороде", "Нижнего Новгорода"), ("Самара", "Самаре", "Самары"),
                 ("Урал", "Урале", "Урала"), ("Екатеринбург", "Екатеринбурге", "Екатеринбурга"),
                 ("Польша", "Польше", "Польши"), ("Рига", "Риге", "Риги"), ("Одесса", "Одессе", "Одессы")],
                [("Томск", "Томске", "Томска"), ("Воронеж", "Воронеже", "Воронежа"), ("Карелия", "Карелии", "Карелии"),
                 ("Владивосток", "Владивостоке", "Владивостока"), ("Ростов-на-Дону", "Ростове-на-Дону", "Ростова-на-Дону"),
                 ("Калуга", "Калуге", "Калуги")]),
        # Used in apposition ("компании Газпром") so the name can stay in the nominative.
        "ORG": (["Газпром", "Аэрофлот", "Лукойл", "Сбербанк", "Ростелеком", "Роснефть", "Мосэнерго", "Автоваз",
                 "Сибнефть", "Юкос", "Онэксимбанк", "Инкомбанк"],
                ["Транснефть", "Норильский никель", "Татнефть", "Уралмаш", "Связьинвест"]),
        "CLUB": (["Спартак", "ЦСКА", "Динамо", "Зенит", "Локомотив", "Торпедо", "Ротор", "Алания", "Черноморец"],
                 ["Крылья Советов", "Шинник", "Факел"]),
        # (feminine, genitive plural)
        "MISC": ([("российская", "российских"), ("французская", "французских"), ("американская", "американских"),
                  ("европейская", "европейских"), ("немецкая", "немецких"), ("украинская", "украинских"),
                  ("британская", "британских"), ("польская", "польских")],
                 [("белорусская", "белорусских"), ("японская", "японских"), ("итальянская", "итальянских")]),
        "days": ["в понедельник", "во вторник", "в среду", "в четверг", "в пятницу", "в субботу", "в воскресенье"],
        "joiners": [", и", ", тогда как", "; тем временем", ", но"],
        "templates": [
            "{PER} , председатель правления компании {ORG} , заявил {DAY} , что прибыль выросла на {NUM} процентов .",
            "Акции компании {ORG} упали в {LOC.1} на {NUM} процентов после объявления .",
            "{PER} забил дважды , и клуб {CLUB} обыграл в {LOC.1} команду {CLUB} со счётом {GOALS} : {GOALS} .",
            "{MISC} делегация направит {NUM} наблюдателей в город {LOC} .",
            "{PER} {DAY} выиграл в {LOC.1} титул чемпиона .",
            "Полиция в {LOC.1} задержала {NUM} человек после акции протеста .",
            "{PER} сообщил журналистам в {LOC.1} , что {ORG} не изменит своих планов .",
            "Переговоры между делегациями из {LOC.2} и {LOC.2} возобновятся на следующей неделе .",
            "Компания ожидает в этом году медленного роста продаж .",
            "{PER} и {PER} встретились в {LOC.1} , чтобы обсудить итоги {MISC.1} выборов .",
            "{LOC} , {DD} августа .",
            "Представитель компании {ORG} отказался от комментариев .",
            "{PER} , переехавший в {YEAR} году в город {LOC} , теперь работает в компании {ORG} .",
            "{MISC} выставка откроется {DAY} в {LOC.1} .",
            "{PER} назвал соглашение с компанией {ORG} хорошим результатом для региона .",
            "Котировки {DAY} почти не изменились .",
        ],
    },
}


def pick(rng, category, held_out_share, used):
    """A name from (everyone, held_out), held-out ones only for dev/test; never twice in a sentence."""
    common, held_out = category
    pool = held_out if rng.random() < held_out_share else common
    choice = rng.choice(pool)
    while choice in used:  # "Chelsea Chelsea 2 1" would read as nonsense
        choice = rng.choice(pool)
    used.append(choice)
    return choice


def fill(rng, lang, template, held_out_share):
    """One template filled in: a list of (text, entity type or "") pairs, entities still whole."""
    spec, out, used = LANGUAGES[lang], [], []
    for slot in template.split():
        name, _, form = slot.strip("{}").partition(".") if slot.startswith("{") else (slot, "", "")
        form = int(form or 0)
        if name == "PER":
            full = pick(rng, spec["last"], held_out_share, used)
            if rng.random() < 0.6:  # "Peter Smith" more often than "Smith"
                full = pick(rng, spec["first"], held_out_share, used) + " " + full
            out.append((full, "PER"))
        elif name in ("LOC", "ORG", "MISC", "CLUB"):  # a CLUB is an ORG drawn from sports clubs
            entry = pick(rng, spec[name], held_out_share, used)
            text = entry if isinstance(entry, str) else entry[min(form, len(entry) - 1)]
            entity_type = "ORG" if name == "CLUB" else name
            # A leading article ("de KBC", "el PSOE") stays outside the entity, as in CoNLL.
            first, _, rest = text.partition(" ")
            if rest and first in ("el", "la", "de"):
                out += [(first, ""), (rest, entity_type)]
            else:
                out.append((text, entity_type))
            # Spanish contracts "de el" / "a el" to "del" / "al".
            if len(out) > 2 and out[-2] == ("el", "") and out[-3] in (("de", ""), ("a", "")):
                out[-3:-1] = [({"de": "del", "a": "al"}[out[-3][0]], "")]
        elif name == "NUM":
            out.append((str(rng.randint(2, 40)), ""))
        elif name == "GOALS":
            out.append((str(rng.choice([0, 0, 1, 1, 1, 2, 2, 3, 4])), ""))
        elif name == "DAY":
            out.append((rng.choice(spec["days"]), ""))
        elif name == "YEAR":
            out.append((str(rng.randint(1975, 1996)), ""))
        elif name == "DD":
            out.append((str(rng.randint(1, 28)), ""))
        elif name == "DATE":
            out.append((f"1996-08-{rng.randint(1, 28):02d}", ""))
        else:
            out.append((slot, ""))
    return out


def make_sentence(rng, lang, held_out_share):
    """A normal sentence, a results line ("CLUB CLUB 2 1"), or a 60-90 word run of joined clauses."""
    spec, roll = LANGUAGES[lang], rng.random()
    if roll < RESULTS_FRACTION:
        return fill(rng, lang, "{CLUB} {CLUB} {GOALS} {GOALS}", held_out_share)
    if roll >= RESULTS_FRACTION + LONG_FRACTION:
        return capitalize(fill(rng, lang, rng.choice(spec["templates"]), held_out_share))
    while True:
        # Clauses from distinct templates ending in "." (not datelines), glued by ", and" etc.
        templates = rng.sample([t for t in spec["templates"] if t.endswith(" .")], 8)
        pairs = []
        for template in templates:
            clause = fill(rng, lang, template, held_out_share)
            if pairs:
                pairs[-1:] = [(word, "") for word in rng.choice(spec["joiners"]).split()]  # replaces "."
                if not clause[0][1]:  # "The company ..." -> "..., and the company ..."
                    clause[0] = (clause[0][0].lower(), "")
            pairs += clause
            length = sum(len(text.split()) for text, _ in pairs)
            if length >= 60:
                break
        if 60 <= length <= 90:
            return capitalize(pairs)


def capitalize(pairs):
    """Upper-case the sentence's first letter ("российская выставка ..." -> "Российская ...")."""
    text, entity_type = pairs[0]
    return [(text[:1].upper() + text[1:], entity_type)] + pairs[1:]


def to_iob1(pairs):
    """(text, type) pairs -> (words, IOB1 tags): I- opens an entity, B- only after the same type."""
    words, tags, previous = [], [], ""
    for text, entity_type in pairs:
        for position, word in enumerate(text.split()):
            if not entity_type:
                tags.append("O")
            elif position == 0 and previous == entity_type:
                tags.append("B-" + entity_type)  # glued to an entity of the same type
            else:
                tags.append("I-" + entity_type)
            words.append(word)
        previous = entity_type
    return words, tags


def detokenize(words):
    """Raw-looking text for the unlabelled files: no space before punctuation."""
    text = " ".join(words)
    for mark in (" ,", " .", " ;"):
        text = text.replace(mark, mark[1:])
    return text


def write_sample(out, seed=13):
    """Write every file of the sample under `out`; same seed, same bytes."""
    out = Path(out)
    for lang in LANGUAGES:
        (out / lang).mkdir(parents=True, exist_ok=True)
        for split, count in SPLITS.items():
            # One generator per (seed, language, split): changing one split never shifts another.
            rng = random.Random(f"{seed}-{lang}-{split}")
            held_out_share = 0.0 if split == "train" else 0.5
            lines = []
            for _ in range(count):
                words, tags = to_iob1(make_sentence(rng, lang, held_out_share))
                lines += [f"{word} {tag}" for word, tag in zip(words, tags)] + [""]
            (out / lang / f"{split}.txt").write_text("\n".join(lines), encoding="utf-8", newline="\n")
        rng = random.Random(f"{seed}-{lang}-unlabeled")
        raw = [detokenize(to_iob1(make_sentence(rng, lang, 0.3))[0]) for _ in range(N_UNLABELED)]
        (out / "unlabeled").mkdir(parents=True, exist_ok=True)
        (out / "unlabeled" / f"{lang}.txt").write_text("\n".join(raw) + "\n", encoding="utf-8", newline="\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "sample"), help="output folder")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args(argv)
    write_sample(args.out, args.seed)


if __name__ == "__main__":
    main()
