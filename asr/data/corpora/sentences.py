"""Random English sentences for the synthetic corpus.

In: a ``random.Random`` and a count (and optionally a short word list). Out: lower-case sentences
of 4-14 words made only of letters, apostrophes and spaces ("where did you put my keys",
"the children don't like cold soup"), drawn from a small generative grammar: noun phrases whose
determiners, numbers and adjectives agree with the noun; verbs in eleven tense and modal forms, with
negative and pronoun contractions; objects, prepositional phrases, adverbs and time expressions that fit the verb
and the tense; questions, imperatives, "there is" sentences, compound and reported sentences.

Selectional restrictions (which nouns a verb takes, which adjectives describe a noun, which
prepositions go with a place) keep the sentences meaningful, not just grammatical. :data:`VOCABULARY`
lists every word the grammar can produce, and every one of them appears in a large enough sample.

With ``words`` the grammar is bypassed: each "sentence" is 2-6 words drawn from that list, which is
what a fast test wants.
"""

from __future__ import annotations

import itertools
import random
import re
from dataclasses import dataclass
from typing import Callable, Sequence

MIN_WORDS, MAX_WORDS = 4, 14  # length of a grammar sentence, in words
RANDOM_MIN_WORDS, RANDOM_MAX_WORDS = 2, 6  # length of a sentence drawn from a given word list
_MAX_TRIES = 1000  # draws per sentence before giving up on the length limits (never reached)

# --- lexicon: entries are separated by ";", a head from its tags by ":" ---------------------------
# Count nouns: "singular[/plural]: tags". Tags say which verbs, adjectives and determiners a noun
# goes with: "kin" people take possessives ("my sister", "our teacher"), other people do not.
_COUNT_NOUNS = """
man/men: person; woman/women: person; child/children: person young kin; boy: person young;
girl: person young; baby/babies: person young kin; friend: person kin role; teacher: person kin role;
doctor: person kin role; student: person kin role; farmer: person role; driver: person role;
neighbor: person kin role;
brother: person kin; sister: person kin; mother: person kin; father: person kin;
dog: animal pet; cat: animal pet; horse: animal ride; cow: animal; bird: animal; 
rabbit: animal pet; sheep/sheep: animal; fish/fish: animal pet food catch;
apple: food fruit; orange: food fruit; banana: food fruit; egg: food; cake: food make;
sandwich: food make;
book: small read; letter: small read write send; map: small read;
story/stories: read write; song: write sing;
key: small lose; phone: small fix lose; pen: small lose; ticket: small lose; umbrella: small lose;
ball: small catch; toy: small make; bag: small open container; box/boxes: small open container;
cup: small container break; glass/glasses: small container break; plate: small break;
bottle: small open container break; picture: small; lamp: small fix break; clock: small fix;
hat: wear; coat: wear; shoe: wear;
door: open; window: open break; chair: surface furniture; table: surface furniture;
desk: surface furniture; bed: surface furniture; shelf/shelves: surface; floor: surface;
car: vehicle drive fix; bus/buses: vehicle drive catch; train: vehicle catch; plane: vehicle catch;
boat: vehicle; bicycle: vehicle ride fix; guitar: instrument; piano: instrument; tree: plant;
flower: plant
"""

# Places: "noun: group", with the groups of _PLACE_PREPOSITIONS.
_PLACES = """
school: building; station: building; library: building; market: building; shop: building;
office: building; hospital: building; museum: building; restaurant: building; house: building;
kitchen: room; garden: yard; park: area; forest: area; village: area; city: area; zoo: area;
farm: farm; beach: shore; river: water; lake: water; street: path; bridge: path; hill: height
"""

# Place group -> (prepositions of location, prepositions of motion).
_PLACE_PREPOSITIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "building": (("at", "in", "near", "behind", "outside"), ("to", "into", "from", "past")),
    "room": (("in",), ("into", "to", "from")),
    "yard": (("in",), ("into", "to", "across", "from")),
    "area": (("in", "near"), ("to", "across", "through", "around", "from")),
    "farm": (("on", "at", "near"), ("to", "from")),
    "shore": (("on", "at", "near"), ("to", "along", "from")),
    "water": (("near", "by"), ("to", "across", "along")),
    "path": (("on", "near"), ("across", "along", "to")),
    "height": (("on", "near"), ("up", "down", "to")),
}
_TOWNS = ("city", "village")  # places that hold other places: "many shops in this village"
_OWNED_PLACES = ("building", "room", "yard")  # groups that take "my", "a": "my office", "a garden"

# Mass nouns (no plural, no "a"): "noun: tags". Languages and games take no determiner.
_MASS_NOUNS = """
bread: food; rice: food; soup: food make; cheese: food; water: drink; milk: drink; tea: drink make;
coffee: drink make; juice: drink; music: music; money: money; english: language; football: game;
chess: game
"""

# Verbs: "base[|past[|participle]][:particle]: subjects objects". Subjects: p = people, a = people
# and animals, v = people and vehicles. Objects: noun tags joined by "+", "-" for an intransitive
# verb, "go" for a verb of motion; a leading "~" lets a transitive verb drop its object.
_VERBS = """
eat|ate|eaten: a ~food; drink|drank|drunk: a ~drink; cook: p ~food; make|made: p make;
buy|bought: p small+food+drink+vehicle+wear; bring|brought: p small+food+drink; carry|carried: p small;
want: a small+food+drink+vehicle+pet; need: p small+food+drink+money+wear; find|found: a small+pet;
lose|lost: p lose; like: a food+drink+animal+music+game; love: p food+drink+animal+music+person;
see|saw|seen: a person+animal+vehicle+small; watch: p person+animal+vehicle; hear|heard: a person+animal+music;
open: p open; clean: p room+building+vehicle+surface; fix: p fix;
read|read|read: p ~read; write|wrote|written: p ~write; send|sent: p send; take|took|taken: p small+vehicle;
visit: p building+area+person; call: p person; help: p person; meet|met: p person;
ride|rode|ridden: p ride; drive|drove|driven: p drive; catch|caught: p catch;
break|broke|broken: p break; forget|forgot|forgotten: p lose;
wear|wore|worn: p wear; sing|sang|sung: p ~sing; play: a ~instrument+game; learn: p language+sing+game;
look:at: a person+animal+vehicle+small+plant; listen:to: p person+music+sing; talk:to: p person;
wait:for: a person+vehicle; look:for: a small+pet+person; pick:up: p small;
sleep|slept: a -; laugh: p -; dance: p -; work: p -; sit|sat: a -; wait: a -; stop: v -;
swim|swam|swum: a go; walk: a go; run|ran|run: a go; go|went|gone: a go; come|came|come: a go;
arrive: v go
"""
_STATIVE = ("want", "need", "like", "love", "see", "hear")  # no progressive, no imperative

# Adjectives: "adjective: noun tags it can describe"; "pred" marks one used only after "be".
_ADJECTIVES = """
big: small vehicle building area yard farm water animal height; small: small vehicle building area yard farm animal;
old: person small vehicle building area farm wear; new: small vehicle building wear; young: person animal;
long: read path water; beautiful: building area yard plant sing shore height; happy: person animal;
sad: person read sing; tired: person animal; hungry: person animal; angry: person animal;
busy: person building path; sick: person animal; kind: person; friendly: person animal;
funny: person read; quiet: person room building area; noisy: room building animal;
empty: container room building; full: container building; dirty: room vehicle wear;
heavy: small furniture; broken: fix break; expensive: small vehicle wear building; cheap: small vehicle wear;
red: small vehicle wear plant; blue: small vehicle wear; green: small vehicle wear plant;
white: small vehicle wear animal; black: small vehicle wear animal; hot: food drink room;
cold: food drink room water; warm: drink room wear; fresh: food; sweet: fruit drink; fast: vehicle animal;
slow: vehicle animal; dark: room area; famous: person building; interesting: read building person;
afraid: pred person animal; ready: pred person; late: pred person vehicle
"""

# Pronouns: (subject, object, person), person being "1s", "2", "3s", "1p" or "3p".
_PRONOUNS = (("i", "me", "1s"), ("you", "you", "2"), ("he", "him", "3s"), ("she", "her", "3s"),
             ("we", "us", "1p"), ("they", "them", "3p"))  # fmt: skip
_NAMES = ("john", "mary", "tom", "anna", "david", "sarah", "peter", "lucy")
_PRONOUN_POSSESSIVES = ("my", "your", "his", "her", "our", "their")
_POSSESSIVES = _PRONOUN_POSSESSIVES + tuple(f"{name}'s" for name in _NAMES[:4])  # "john's"
# Determiners, repeated to weight them; "a" stands for a/an and "" for none.
_SINGULAR_DETERMINERS = ("the",) * 8 + ("a",) * 8 + ("this", "that", "every") + _POSSESSIVES
_PERSON_DETERMINERS = ("the",) * 4 + ("a",) * 4 + ("this", "that", "every")  # "the man", not "my man"
_KIN_DETERMINERS = _POSSESSIVES * 2 + ("the", "a")  # "my sister"
_PLURAL_DETERMINERS = ("the",) * 4 + ("these", "those", "some", "many", "all the") + ("",) * 4
_PLURAL_KIN_DETERMINERS = _PRONOUN_POSSESSIVES + ("the",)
_MASS_DETERMINERS = ("the", "the", "some", "some", "more", "this") + _PRONOUN_POSSESSIVES + ("",) * 4
_PLACE_DETERMINERS = ("the",) * 6 + ("this", "that")
_OWNED_PLACE_DETERMINERS = _PLACE_DETERMINERS + ("a", "my", "our", "their")
_NUMBERS = ("two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "twenty")
_CLOCK_HOURS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve")
_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_MANNER = ("quickly", "slowly", "carefully", "quietly", "happily", "together", "again", "alone")
_FREQUENCY = ("always", "often", "usually", "sometimes", "never")
_DEGREE = ("very", "really", "too", "so")
_FURNITURE_PREPOSITIONS = ("on", "on", "under", "near", "behind")  # "under the bed"
_CONTAINER_PREPOSITIONS = ("in", "into")
_FIXED_LOCATIONS = ("at home", "at work", "in bed", "outside", "upstairs", "downstairs", "here", "there")
_FIXED_DESTINATIONS = ("home", "here", "there", "upstairs", "downstairs", "outside", "inside", "away", "back")
_REPORTING = ("i think", "i know", "i hope", "we believe", "i don't think", "maybe",
              "she said that", "he told me that", "they know that")  # fmt: skip
_CONJUNCTIONS = ("and", "but", "so", "because")
_SEQUENCE_CONJUNCTIONS = ("when", "before", "after")  # both clauses in the past tense
_WEATHER_ADJECTIVES = ("sunny", "cloudy", "windy", "cold", "hot", "warm", "nice", "dark")
_TRANSIENT = ("happy", "sad", "tired", "hungry", "angry", "busy", "sick", "quiet", "noisy", "empty", "full",
              "dirty", "hot", "cold", "warm", "dark", "afraid", "ready", "late")  # states that change
_IMPERATIVE_ADJECTIVES = ("careful", "quiet", "late", "kind", "ready")
_BENEFACTIVE = ("buy", "make", "cook", "bring", "find", "sing")  # "... for my sister"
_DITRANSITIVE = ("send", "read", "bring")  # "... to my sister"
_GIVE_VERBS = "give|gave|given: p small; show|showed|shown: p small+read"  # always with a recipient
_PUT_VERBS = "put|put|put: p small; leave|left: p small"  # "... on the table"
_WEATHER = "rain: p -; snow: p -"  # "it is raining"

# Time expressions that fit each tense; "<day>", "<hour>" and "<number>" are filled in.
_TIMES = {
    "past": ("yesterday", "last night", "last week", "last year", "this morning", "after lunch",
             "an hour ago", "<number> days ago", "on <day>", "at <hour> o'clock"),
    "present": ("every day", "every morning", "in the evening", "at night", "after school", "twice a week",
                "on weekends", "every <day>", "at <hour> o'clock"),
    "future": ("tomorrow", "next week", "tonight", "soon", "later", "this weekend", "after dinner",
               "tomorrow morning", "on <day>", "at <hour> o'clock"),
    "now": ("now", "right now", "at the moment", "today"),
    "perfect": ("already", "this week", "today", "before", "for <number> hours", "since <day>"),
}  # fmt: skip

# Sentence patterns and tenses, with their relative weights.
_PATTERN_WEIGHTS = {
    "transitive": 26, "motion": 10, "intransitive": 7, "copula": 9, "there": 6, "yes_no": 8,
    "wh_question": 9, "imperative": 7, "compound": 8, "reported": 5, "weather": 3, "put": 3,
}  # fmt: skip
_TENSE_WEIGHTS = {
    "present": 20, "past": 28, "future": 12, "going_to": 6, "progressive": 10, "past_progressive": 4,
    "perfect": 7, "can": 5, "should": 3, "must": 2, "might": 3,
}  # fmt: skip
_TENSE_TIME = {"present": "present", "past": "past", "future": "future", "going_to": "future",
               "progressive": "now", "past_progressive": "past", "perfect": "perfect", "can": "future",
               "should": "future", "must": "now", "might": "future"}  # fmt: skip
_QUESTION_TENSES = tuple(t for t in _TENSE_WEIGHTS if t != "must")  # "must you go" is archaic
_PROGRESSIVE_TENSES = ("going_to", "progressive", "past_progressive")
_NEGATIVE = {"can": "can't", "should": "shouldn't", "must": "mustn't", "might": "might not", "will": "won't",
             "do": "don't", "does": "doesn't", "did": "didn't", "is": "isn't", "are": "aren't",
             "was": "wasn't", "were": "weren't", "have": "haven't", "has": "hasn't", "am": "am not"}  # fmt: skip
_CONTRACTIONS = {  # pronoun + auxiliary -> contraction
    ("i", "am"): "i'm", ("you", "are"): "you're", ("he", "is"): "he's", ("she", "is"): "she's",
    ("we", "are"): "we're", ("they", "are"): "they're", ("i", "will"): "i'll", ("you", "will"): "you'll",
    ("he", "will"): "he'll", ("she", "will"): "she'll", ("we", "will"): "we'll", ("they", "will"): "they'll",
    ("i", "have"): "i've", ("you", "have"): "you've", ("we", "have"): "we've", ("they", "have"): "they've",
    ("it", "is"): "it's", ("there", "is"): "there's", ("that", "is"): "that's",
}  # fmt: skip
_QUESTION_STARTERS = frozenset(
    "where when why what who which how do does did will can should must might is are was were have has "
    "am don't doesn't didn't won't can't isn't aren't wasn't weren't haven't hasn't".split()
)
_DOUBLE_FINAL = {"run", "swim", "sit", "stop", "drop", "get", "put", "shop", "plan", "hit", "cut",
                 "forget", "jog", "begin", "shut", "hug"}  # fmt: skip
_AN_EXCEPTIONS = {"one", "useful", "university"}  # vowel letter, consonant sound: "a useful tool"
_WORD = re.compile(r"[a-z']+")  # a word of a sentence

# Probabilities of the optional parts of a sentence.
_P_PRONOUN, _P_NAME = 0.35, 0.1  # subject is a pronoun / a name (else a noun phrase)
_P_PLURAL = 0.3  # a count noun phrase is plural
_P_NUMBER = 0.25  # a plural noun phrase takes a number
_P_ADJECTIVE = 0.3  # a noun phrase takes an adjective
_P_DEGREE = 0.4  # a predicative adjective takes "very", "too"...
_P_NEGATIVE = 0.15  # a clause is negative
_P_CONTRACT = 0.6  # a pronoun and its auxiliary contract ("i'm")
_P_DROP_OBJECT = 0.3  # a verb with an optional object drops it
_P_RECIPIENT = 0.3  # a ditransitive or benefactive verb takes "to/for someone"
_P_PLACE, _P_MANNER, _P_TIME = 0.3, 0.1, 0.35  # extras after the verb phrase
_P_FREQUENCY = 0.15  # a simple-tense clause takes "always", "often"...
_P_TIME_FIRST = 0.25  # a time expression goes first ("yesterday we ...")
_P_OBJECT_PRONOUN = 0.25  # a person object is a pronoun


@dataclass(frozen=True)
class Noun:
    singular: str
    plural: str | None  # None for a mass noun
    tags: frozenset[str]


@dataclass(frozen=True)
class Verb:
    base: str
    third: str  # he/she/it form
    past: str
    participle: str
    ing: str
    particle: str  # "" or the preposition after the verb ("look at")
    subjects: str  # "p" people, "a" people and animals, "v" people and vehicles
    objects: frozenset[str]  # noun tags of the object; empty for an intransitive verb
    optional_object: bool
    motion: bool


@dataclass(frozen=True)
class Phrase:
    """A noun phrase: its words, its grammatical person ("1s" ... "3p") and its head noun."""

    words: tuple[str, ...]
    person: str
    noun: Noun | None = None  # None for pronouns and names


# --- morphology -----------------------------------------------------------------------------------
def _plural(word: str) -> str:
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def _third_person(base: str) -> str:
    return {"go": "goes", "do": "does", "have": "has"}.get(base) or _plural(base)


def _past(base: str) -> str:
    if base in _DOUBLE_FINAL:
        return base + base[-1] + "ed"
    if base.endswith("e"):
        return base + "d"
    if base.endswith("y") and base[-2] not in "aeiou":
        return base[:-1] + "ied"
    return base + "ed"


def _ing(base: str) -> str:
    if base in _DOUBLE_FINAL:
        return base + base[-1] + "ing"
    if base.endswith("e") and not base.endswith("ee"):
        return base[:-1] + "ing"
    return base + "ing"


def _article(next_word: str) -> str:
    return "an" if next_word[0] in "aeiou" and next_word not in _AN_EXCEPTIONS else "a"


# --- parsing the lexicon --------------------------------------------------------------------------
def _entries(table: str) -> list[tuple[str, list[str]]]:
    """ "head: tag tag; head: tag" -> [(head, [tags])]."""
    entries = []
    for entry in table.replace("\n", " ").split(";"):
        head, _, tags = entry.partition(":")
        entries.append((head.strip(), tags.split()))
    return entries


def _parse_nouns() -> tuple[Noun, ...]:
    nouns = []
    for head, tags in _entries(_COUNT_NOUNS):
        singular, _, plural = head.partition("/")
        nouns.append(Noun(singular, plural or _plural(singular), frozenset(tags)))
    for head, (group,) in _entries(_PLACES):
        nouns.append(Noun(head, _plural(head), frozenset({"place", group})))
    for head, tags in _entries(_MASS_NOUNS):
        nouns.append(Noun(head, None, frozenset(tags) | {"mass"}))
    return tuple(nouns)


def _parse_verb(head: str, subjects: str, objects: str) -> Verb:
    forms, _, particle = head.partition(":")
    base, *irregular = forms.split("|")
    past = irregular[0] if irregular else _past(base)
    participle = irregular[1] if len(irregular) > 1 else past
    tags = frozenset() if objects in ("-", "go") else frozenset(objects.lstrip("~").split("+"))
    return Verb(base, _third_person(base), past, participle, _ing(base), particle, subjects, tags,
                objects.startswith("~"), objects == "go")  # fmt: skip


def _parse_verbs(table: str) -> tuple[Verb, ...]:
    verbs = []
    for entry in table.replace("\n", " ").split(";"):
        head, _, rest = entry.strip().rpartition(": ")
        subjects, objects = rest.split()
        verbs.append(_parse_verb(head, subjects, objects))
    return tuple(verbs)


NOUNS: tuple[Noun, ...] = _parse_nouns()
VERBS: tuple[Verb, ...] = _parse_verbs(_VERBS)
ADJECTIVES: dict[str, frozenset[str]] = {head: frozenset(tags) for head, tags in _entries(_ADJECTIVES)}
_GIVE = _parse_verbs(_GIVE_VERBS)
_PUT = _parse_verbs(_PUT_VERBS)
_WEATHER_VERBS = _parse_verbs(_WEATHER)
_TRANSITIVE = tuple(v for v in VERBS if v.objects)
_INTRANSITIVE = tuple(v for v in VERBS if not v.objects and not v.motion)
_MOTION = tuple(v for v in VERBS if v.motion)
_PLACE_NOUNS = tuple(n for n in NOUNS if "place" in n.tags)
_ALL_PREPOSITIONS = {p for pair in _PLACE_PREPOSITIONS.values() for group in pair for p in group} | {
    *_FURNITURE_PREPOSITIONS, *_CONTAINER_PREPOSITIONS, "at"}


def _nouns_with(tags: frozenset[str] | set[str]) -> tuple[Noun, ...]:
    return tuple(n for n in NOUNS if n.tags & tags)


_PEOPLE = _nouns_with({"person"})
_ROLES = _nouns_with({"role"})  # "she is a teacher"
_ANIMALS = _nouns_with({"animal"})
_VEHICLES = _nouns_with({"vehicle"})
_SURFACES = _nouns_with({"surface"})
_CONTAINERS = _nouns_with({"container"})
_SMALL = _nouns_with({"small"})
_FOOD = _nouns_with({"food"})
_PLACEABLE = _nouns_with({"person", "animal", "vehicle", "plant"})  # things found in a place
_DESCRIBABLE = tuple(n for n in NOUNS if any(n.tags & tags for tags in ADJECTIVES.values()))


# --- noun phrases ---------------------------------------------------------------------------------
def _adjectives_for(tags: frozenset[str], predicative: bool = False) -> list[str]:
    return [a for a, a_tags in ADJECTIVES.items() if a_tags & tags and (predicative or "pred" not in a_tags)]


def _determiner(rng: random.Random, noun: Noun, plural: bool) -> str:
    if noun.plural is None:
        return rng.choice(_MASS_DETERMINERS)
    kin, person = "kin" in noun.tags, "person" in noun.tags
    if plural and rng.random() < _P_NUMBER:
        return rng.choice(_NUMBERS)
    if plural:
        return rng.choice(_PLURAL_KIN_DETERMINERS if kin else _PLURAL_DETERMINERS if person
                          else _PLURAL_DETERMINERS + _POSSESSIVES)  # fmt: skip
    return rng.choice(_KIN_DETERMINERS if kin else _PERSON_DETERMINERS if person else _SINGULAR_DETERMINERS)


def _noun_phrase(rng: random.Random, nouns: Sequence[Noun], determiners: Sequence[str] | None = None,
                 plural: bool | None = None) -> Phrase:  # fmt: skip
    """[determiner] [adjective] noun; ``determiners`` overrides the usual choice ("a" means a/an)."""
    noun = rng.choice(nouns)
    if noun.tags & {"language", "game"}:
        return Phrase((noun.singular,), "3s", noun)
    if plural is None:
        plural = rng.random() < _P_PLURAL
    plural = plural and noun.plural is not None
    words = [noun.plural if plural else noun.singular]
    adjectives = _adjectives_for(noun.tags)
    if adjectives and rng.random() < _P_ADJECTIVE:
        words.insert(0, rng.choice(adjectives))
    determiner = rng.choice(determiners) if determiners else _determiner(rng, noun, plural)
    if determiner == "a":
        determiner = _article(words[0])
    return Phrase(tuple(determiner.split() + words), "3p" if plural else "3s", noun)


def _subject(rng: random.Random, kinds: str = "p") -> Phrase:
    """A pronoun, a name or a noun phrase; ``kinds`` as in a verb's ``subjects``."""
    r = rng.random()
    if r < _P_PRONOUN:
        subject, _, person = rng.choice(_PRONOUNS)
        return Phrase((subject,), person)
    if r < _P_PRONOUN + _P_NAME:
        return Phrase((rng.choice(_NAMES),), "3s")
    return _noun_phrase(rng, {"p": _PEOPLE, "a": _PEOPLE + _ANIMALS, "v": _PEOPLE + _VEHICLES}[kinds])


def _object(rng: random.Random, verb: Verb, subject: Phrase) -> list[str]:
    if "person" in verb.objects and rng.random() < _P_OBJECT_PRONOUN:
        return [rng.choice([obj for subj, obj, _ in _PRONOUNS if (subj,) != subject.words])]
    if verb.base == "play" and rng.random() < 0.5:  # "play the piano"
        return ["the", rng.choice(_nouns_with({"instrument"})).singular]
    return list(_noun_phrase(rng, _nouns_with(verb.objects)).words)


def _person_phrase(rng: random.Random, subject: Phrase) -> list[str]:
    """Someone other than the subject: an object pronoun, a name or a noun phrase."""
    r = rng.random()
    if r < _P_OBJECT_PRONOUN:
        return [rng.choice([obj for subj, obj, _ in _PRONOUNS if (subj,) != subject.words])]
    if r < _P_OBJECT_PRONOUN + _P_NAME:
        return [rng.choice(_NAMES)]
    return list(_noun_phrase(rng, _PEOPLE).words)


def _place(rng: random.Random, groups: Sequence[str] | None = None) -> tuple[str, list[str]]:
    """(place group, "the old library")."""
    noun = rng.choice([n for n in _PLACE_NOUNS if groups is None or n.tags & set(groups)])
    group = next(iter(noun.tags & _PLACE_PREPOSITIONS.keys()))
    owned = group in _OWNED_PLACES
    phrase = _noun_phrase(rng, [noun], _OWNED_PLACE_DETERMINERS if owned else _PLACE_DETERMINERS, plural=False)
    return group, list(phrase.words)


def _location(rng: random.Random) -> list[str]:
    """Where something happens: "in the park", "at home"."""
    if rng.random() < 0.2:
        return rng.choice(_FIXED_LOCATIONS).split()
    group, words = _place(rng)
    return [rng.choice(_PLACE_PREPOSITIONS[group][0])] + words


def _spot(rng: random.Random, motion: bool = False) -> list[str]:
    """Where a small thing is ("on the table", "in my bag") or, with ``motion``, goes ("into")."""
    if rng.random() < 0.5:
        phrase = _noun_phrase(rng, _SURFACES, plural=False)
        furniture = "furniture" in phrase.noun.tags  # type: ignore[union-attr]
        return [rng.choice(_FURNITURE_PREPOSITIONS) if furniture else "on"] + list(phrase.words)
    words = _noun_phrase(rng, _CONTAINERS, plural=False).words
    return [rng.choice(_CONTAINER_PREPOSITIONS) if motion else "in"] + list(words)


def _destination(rng: random.Random, verb: Verb) -> list[str]:
    """Where a verb of motion goes: "to the station", "across the river", "home"."""
    if verb.base == "arrive":
        group, words = _place(rng, ("building", "area", "shore", "farm"))
        return [{"building": "at", "area": "in", "shore": "at", "farm": "at"}[group]] + words
    if verb.base in ("go", "come", "walk", "run") and rng.random() < 0.25:
        return [rng.choice(_FIXED_DESTINATIONS)]
    group, words = _place(rng, ("water", "shore") if verb.base == "swim" else None)
    prepositions = _PLACE_PREPOSITIONS[group][1]
    if verb.base in ("drive", "swim"):  # "swim into the lake" or "drive past" is not the point
        prepositions = tuple(p for p in prepositions if p not in ("into", "past"))
    return [rng.choice(prepositions)] + words


def _time(rng: random.Random, tense: str) -> list[str]:
    expression = rng.choice(_TIMES[_TENSE_TIME[tense]])
    fillers = {"<day>": _DAYS, "<hour>": _CLOCK_HOURS, "<number>": _NUMBERS}
    for slot, values in fillers.items():
        if slot in expression:
            expression = expression.replace(slot, rng.choice(values))
    return expression.split()


# --- verbs and clauses ----------------------------------------------------------------------------
def _be(person: str, past: bool) -> str:
    if past:
        return "was" if person in ("1s", "3s") else "were"
    return {"1s": "am", "3s": "is"}.get(person, "are")


def _verb_group(verb: Verb, tense: str, person: str, negative: bool,
                question: bool) -> tuple[list[str], list[str]]:  # fmt: skip
    """(auxiliary words, main words): the auxiliary goes before the subject in a question."""
    third = person == "3s"
    if tense in ("present", "past") and not (negative or question):
        main = [verb.past if tense == "past" else verb.third if third else verb.base]
        aux: list[str] = []
    elif tense in ("present", "past"):
        aux, main = ["did" if tense == "past" else "does" if third else "do"], [verb.base]
    elif tense in ("going_to", "progressive", "past_progressive"):
        aux = [_be(person, tense == "past_progressive")]
        main = ["going", "to", verb.base] if tense == "going_to" else [verb.ing]
    elif tense == "perfect":
        aux, main = ["has" if third else "have"], [verb.participle]
    else:
        aux, main = ["will" if tense == "future" else tense], [verb.base]
    if negative and aux:
        aux = _NEGATIVE[aux[0]].split()
    return aux, main + ([verb.particle] if verb.particle else [])


def _tense(rng: random.Random, allowed: Sequence[str] | None = None, verb: Verb | None = None) -> str:
    """A tense from ``allowed`` (default all); no progressive for a stative verb ("i am wanting")."""
    excluded = _PROGRESSIVE_TENSES if verb is not None and verb.base in _STATIVE else ()
    tenses = [t for t in _TENSE_WEIGHTS if (allowed is None or t in allowed) and t not in excluded]
    return rng.choices(tenses, weights=[_TENSE_WEIGHTS[t] for t in tenses])[0]


def _contract(rng: random.Random, subject: Sequence[str], aux: list[str]) -> tuple[list[str], list[str]]:
    """Merge a one-word subject with its auxiliary ("i am" -> "i'm") some of the time."""
    key = (subject[0], aux[0]) if len(subject) == 1 and aux else None
    if key in _CONTRACTIONS and rng.random() < _P_CONTRACT:
        return [_CONTRACTIONS[key]], aux[1:]
    return list(subject), aux


def _declarative(rng: random.Random, subject: Phrase, verb: Verb, tense: str, negative: bool) -> list[str]:
    """Subject + verb group, with contractions and maybe a frequency adverb ("she often reads")."""
    aux, main = _verb_group(verb, tense, subject.person, negative, question=False)
    if not negative and tense in ("present", "past", "future", "perfect") and rng.random() < _P_FREQUENCY:
        main = [rng.choice(_FREQUENCY)] + main
    head, aux = _contract(rng, subject.words, aux)
    return head + aux + main


def _question(subject: Phrase, verb: Verb, tense: str, negative: bool) -> list[str]:
    """Auxiliary + subject + verb ("did you see", "isn't she coming")."""
    aux, main = _verb_group(verb, tense, subject.person, negative and subject.person != "1s", question=True)
    if len(aux) > 1:  # "might not": the "not" stays after the subject
        main, aux = aux[1:] + main, aux[:1]
    return aux + list(subject.words) + main


def _complement(rng: random.Random, verb: Verb, subject: Phrase) -> list[str]:
    """What follows the verb: object and recipient, destination or nothing."""
    if verb.motion:
        return _destination(rng, verb)
    if not verb.objects or verb.optional_object and rng.random() < _P_DROP_OBJECT:
        return []
    words = _object(rng, verb, subject)
    if verb in _GIVE and rng.random() < 0.5:
        return _person_phrase(rng, subject) + words  # "gave my sister the book"
    if verb in _GIVE or verb.base in _DITRANSITIVE and rng.random() < _P_RECIPIENT:
        return words + ["to"] + _person_phrase(rng, subject)
    if verb.base in _BENEFACTIVE and rng.random() < _P_RECIPIENT:
        return words + ["for"] + _person_phrase(rng, subject)
    return words


def _extras(rng: random.Random, tense: str, place: bool = True, person: str = "3s",
            manner: bool = True) -> tuple[list[str], list[str]]:  # fmt: skip
    """(words before the sentence, words after it): place, manner and time for a subject's ``person``."""
    after: list[str] = []
    if place and rng.random() < _P_PLACE:
        after += _location(rng)
    if manner and rng.random() < _P_MANNER:
        manner = rng.choice(_MANNER)
        if manner not in (("together",) if person in ("1s", "3s") else ("alone",)):
            after.append(manner)
    if rng.random() < _P_TIME:
        time = _time(rng, tense)
        if rng.random() < _P_TIME_FIRST and time[0] not in ("already", "before"):
            return time, after
        after += time
    return [], after


def _pick_verb(rng: random.Random, kind: str, tense: str | None = None, stative: bool = True) -> Verb:
    """A verb of ``kind``; none that is stative if ``tense`` is progressive or ``stative`` is false."""
    pools = {"transitive": _TRANSITIVE + _GIVE, "motion": _MOTION, "intransitive": _INTRANSITIVE}
    if tense in _PROGRESSIVE_TENSES or not stative:
        return rng.choice([v for v in pools[kind] if v.base not in _STATIVE])
    return rng.choice(pools[kind])


def _clause(rng: random.Random, kind: str, tense: str | None = None, extras: bool = True) -> list[str]:
    """A declarative clause: "the children walked to the park yesterday"."""
    verb = _pick_verb(rng, kind, tense)
    tense = tense or _tense(rng, verb=verb)
    subject = _subject(rng, verb.subjects)
    negative = rng.random() < _P_NEGATIVE
    core = _declarative(rng, subject, verb, tense, negative) + _complement(rng, verb, subject)
    if not extras:
        return core
    place = not verb.motion and not verb.objects & _PLACE_PREPOSITIONS.keys()  # not "visit a shop in a park"
    before, after = _extras(rng, tense, place=place, person=subject.person)
    return before + core + after


# --- sentence patterns ----------------------------------------------------------------------------
def _predicate(rng: random.Random, subject: Phrase) -> list[str]:
    """What follows "be": an adjective, a place or (for a person) a role."""
    tags = subject.noun.tags if subject.noun else frozenset({"person"})
    r = rng.random()
    if r < 0.25 and "person" not in tags and tags & {"small", "food"}:
        return _spot(rng)
    if r < 0.35 and tags & {"person", "animal", "vehicle"}:
        return _location(rng)
    if r < 0.45 and "person" in tags:
        if subject.person in ("1s", "2", "3s"):
            return list(_noun_phrase(rng, _ROLES, determiners=("a",), plural=False).words)
        return list(_noun_phrase(rng, _ROLES, determiners=("",), plural=True).words)
    adjective = rng.choice(_adjectives_for(tags, predicative=True))
    return ([rng.choice(_DEGREE)] if rng.random() < _P_DEGREE else []) + [adjective]


def _be_group(rng: random.Random, subject: Phrase, negative: bool) -> tuple[list[str], str]:
    """Subject + a form of "be" ("she isn't", "we'll be", "they might be"), and its tense."""
    tense = rng.choice(("present", "present", "past", "past", "future", "might", "must", "should"))
    if tense in ("present", "past"):
        aux = [_be(subject.person, tense == "past")]
        if negative:
            aux = _NEGATIVE[aux[0]].split()
    else:
        modal = "will" if tense == "future" else tense
        aux = (_NEGATIVE[modal].split() if negative else [modal]) + ["be"]
    head, aux = _contract(rng, subject.words, aux)
    return head + aux, tense


def _copula(rng: random.Random) -> list[str]:
    """ "the soup was too hot", "my brother is a doctor", "that's a beautiful house"."""
    if rng.random() < 0.15:
        head, rest = _contract(rng, [rng.choice(("this", "that"))], [rng.choice(("is", "was"))])
        countable = [n for n in _DESCRIBABLE if n.plural]
        phrase = _noun_phrase(rng, countable, determiners=("a", "my", "your", "our", "the"), plural=False)
        return head + rest + list(phrase.words)
    subject = _subject(rng, "p") if rng.random() < 0.5 else _noun_phrase(rng, _DESCRIBABLE)
    words, tense = _be_group(rng, subject, negative=rng.random() < _P_NEGATIVE)
    predicate = _predicate(rng, subject)
    if (predicate[-1] in _TRANSIENT or predicate[0] in _ALL_PREPOSITIONS) and rng.random() < _P_TIME:
        predicate += _time(rng, tense)  # "she was tired yesterday", not "she was young yesterday"
    return words + predicate


def _there_place(rng: random.Random) -> list[str]:
    """ "there are many shops in this village"."""
    plural = rng.random() < 0.6
    determiners = _NUMBERS[:6] + ("some", "many", "no") if plural else ("a",)
    thing = _noun_phrase(rng, [n for n in _PLACE_NOUNS if n.singular not in _TOWNS], determiners, plural)
    head = ["there", "are" if plural else "is"] if rng.random() < 0.5 else ["there", "were" if plural else "was"]
    town = _noun_phrase(rng, [n for n in _PLACE_NOUNS if n.singular in _TOWNS], _PLACE_DETERMINERS, False)
    return head + list(thing.words) + [rng.choice(("in", "near"))] + list(town.words)


def _there(rng: random.Random) -> list[str]:
    """ "there are two boats on the lake"."""
    if rng.random() < 0.2:
        return _there_place(rng)
    noun = rng.choice(_SMALL + _PLACEABLE + _FOOD + _SURFACES)
    plural = noun.plural is not None and rng.random() < 0.4
    none = ("no",) if noun.tags & {"small", "food"} else ()  # "there is no milk", not "no man"
    if noun.plural is None:
        determiners: tuple[str, ...] = ("some", "some") + none
    elif plural:
        determiners = _NUMBERS[:6] + ("some", "many") + none
    else:
        determiners = ("a", "a") + none
    thing = _noun_phrase(rng, [noun], determiners=determiners, plural=plural)
    tense = rng.choice(("present", "past", "future"))
    if tense == "future":
        head = ["there", "will", "be"]
    else:
        head, rest = _contract(rng, ["there"], [_be(thing.person, tense == "past")])
        head += rest
    where = _spot(rng) if noun.tags & {"small", "food"} else _location(rng)
    return head + list(thing.words) + where + (_time(rng, tense) if rng.random() < 0.2 else [])


def _put(rng: random.Random) -> list[str]:
    """ "she put the keys in her bag", "please put the cups on the shelf"."""
    verb = rng.choice(_PUT)
    thing = list(_noun_phrase(rng, _SMALL).words)
    if rng.random() < 0.3:
        return (["please"] if rng.random() < 0.5 else []) + [verb.base] + thing + _spot(rng, motion=True)
    subject = _subject(rng, "p")
    return _declarative(rng, subject, verb, _tense(rng), rng.random() < _P_NEGATIVE) + thing + _spot(rng, True)


def _yes_no(rng: random.Random) -> list[str]:
    """ "did the children eat the cake", "is your brother at home"."""
    if rng.random() < 0.3:
        subject = _subject(rng, "p") if rng.random() < 0.5 else _noun_phrase(rng, _DESCRIBABLE)
        return [_be(subject.person, rng.random() < 0.3)] + list(subject.words) + _predicate(rng, subject)
    verb = _pick_verb(rng, rng.choice(("transitive", "transitive", "motion", "intransitive")))
    tense = _tense(rng, _QUESTION_TENSES, verb)
    subject = _subject(rng, verb.subjects)
    words = _question(subject, verb, tense, rng.random() < _P_NEGATIVE) + _complement(rng, verb, subject)
    return words + _extras(rng, tense, place=not verb.motion, person=subject.person)[1]


def _wh_object(rng: random.Random) -> list[str]:
    """ "what did you buy at the market", "which book do you want", "who are you waiting for"."""
    verb = rng.choice(_TRANSITIVE)
    tense = _tense(rng, _QUESTION_TENSES, verb)
    subject = _subject(rng, verb.subjects)
    things = [n for n in _nouns_with(verb.objects) if "person" not in n.tags]
    countable = [n for n in things if n.plural]
    r = rng.random()
    if not things or "person" in verb.objects and r < 0.3:
        wh = ["who"]
    elif countable and r < 0.55:
        wh = ["which", rng.choice(countable).singular]
    elif countable and r < 0.7:
        wh = ["how", "many", rng.choice(countable).plural]  # type: ignore[list-item]
    else:
        wh = ["what"]
    return wh + _question(subject, verb, tense, negative=False) + _extras(rng, tense, manner=False)[1]


def _wh_subject(rng: random.Random) -> list[str]:
    """ "who ate my sandwich", "who is playing the piano"."""
    verb = _pick_verb(rng, rng.choice(("transitive", "transitive", "motion", "intransitive")))
    tense = _tense(rng, ("present", "past", "future", "progressive", "perfect", "can"), verb)
    subject = Phrase(("who",), "3s")
    words = _declarative(rng, subject, verb, tense, negative=False) + _complement(rng, verb, subject)
    return words + _extras(rng, tense, place=not verb.motion)[1]


def _wh_adverb(rng: random.Random) -> list[str]:
    """ "where are you going", "why didn't you call me", "how often do you play chess"."""
    wh = rng.choice(("where", "when", "why", "how often"))
    verb = _pick_verb(rng, rng.choice(("transitive", "transitive", "motion", "intransitive")))
    tense = "present" if wh == "how often" else _tense(rng, _QUESTION_TENSES, verb)
    subject = _subject(rng, verb.subjects)
    words = wh.split() + _question(subject, verb, tense, negative=wh == "why" and rng.random() < 0.3)
    if not (wh == "where" and verb.motion):
        words += _complement(rng, verb, subject)
    if wh == "why" and rng.random() < _P_TIME:
        words += _time(rng, tense)
    return words


def _wh_question(rng: random.Random) -> list[str]:
    r = rng.random()
    return _wh_object(rng) if r < 0.4 else _wh_subject(rng) if r < 0.55 else _wh_adverb(rng)


def _imperative(rng: random.Random) -> list[str]:
    """ "please open the window", "don't forget your umbrella", "let's go to the beach"."""
    opener = rng.choice((["please"], [], ["don't"], ["let's"], ["please", "don't"]))
    if rng.random() < 0.15:
        words = opener + ["be", rng.choice(_IMPERATIVE_ADJECTIVES)]
        return words + (_location(rng) if rng.random() < 0.5 else _time(rng, "future"))
    kinds = ("transitive", "transitive", "motion") + (("intransitive",) if opener == ["let's"] else ())
    verb = _pick_verb(rng, rng.choice(kinds), stative=False)
    words = opener + [verb.base] + ([verb.particle] if verb.particle else [])
    words += _complement(rng, verb, Phrase(("you",), "2"))
    words += _extras(rng, "future", place=not verb.motion)[1]
    return words + (["please"] if not opener and rng.random() < 0.3 else [])


def _weather(rng: random.Random) -> list[str]:
    """ "it is raining", "it was very cold last night", "the weather will be nice tomorrow"."""
    subject = Phrase(("it",), "3s") if rng.random() < 0.8 else Phrase(("the", "weather"), "3s")
    if subject.words == ("it",) and rng.random() < 0.5:
        tense = _tense(rng, ("present", "past", "future", "going_to", "progressive", "past_progressive"))
        words = _declarative(rng, subject, rng.choice(_WEATHER_VERBS), tense, rng.random() < _P_NEGATIVE)
    else:
        words, tense = _be_group(rng, subject, negative=rng.random() < _P_NEGATIVE)
        words += ([rng.choice(_DEGREE)] if rng.random() < _P_DEGREE else []) + [rng.choice(_WEATHER_ADJECTIVES)]
    return words + (_time(rng, tense) if rng.random() < 0.6 else [])


def _short_clause(rng: random.Random, tense: str, weather: bool = False) -> list[str]:
    if weather and rng.random() < 0.3:
        return _declarative(rng, Phrase(("it",), "3s"), rng.choice(_WEATHER_VERBS), tense, negative=False)
    return _clause(rng, rng.choice(("transitive", "transitive", "motion", "intransitive")), tense, extras=False)


def _compound(rng: random.Random) -> list[str]:
    """ "if it rains we will stay at home", "she smiled when the teacher arrived"."""
    conjunction = rng.choice(_CONJUNCTIONS + _SEQUENCE_CONJUNCTIONS + ("if",))
    if conjunction == "if":
        return ["if"] + _short_clause(rng, "present", weather=True) + _short_clause(rng, "future")
    tense = "past" if conjunction in _SEQUENCE_CONJUNCTIONS else _tense(rng, ("present", "past", "future"))
    return _short_clause(rng, tense) + [conjunction] + _short_clause(rng, tense)


def _reported(rng: random.Random) -> list[str]:
    """ "i think the bus is late", "she said that they missed the train"."""
    opener = rng.choice(_REPORTING)
    if opener.endswith("that") and opener.split()[1] in ("said", "told"):
        tenses: tuple[str, ...] | None = ("past", "past_progressive")
    elif opener == "i hope":
        tenses = ("future", "present", "going_to")
    else:
        tenses = None
    kind = rng.choice(("transitive", "transitive", "motion", "intransitive"))
    return opener.split() + _clause(rng, kind, _tense(rng, tenses), extras=rng.random() < 0.5)


_PATTERNS: dict[str, Callable[[random.Random], list[str]]] = {
    "transitive": lambda rng: _clause(rng, "transitive"), "motion": lambda rng: _clause(rng, "motion"),
    "intransitive": lambda rng: _clause(rng, "intransitive"), "copula": _copula, "there": _there,
    "yes_no": _yes_no, "wh_question": _wh_question, "imperative": _imperative, "compound": _compound,
    "reported": _reported, "weather": _weather, "put": _put,
}  # fmt: skip
assert _PATTERNS.keys() == _PATTERN_WEIGHTS.keys()
_PATTERN_NAMES = tuple(_PATTERN_WEIGHTS)
_PATTERN_CUMULATIVE = tuple(itertools.accumulate(_PATTERN_WEIGHTS.values()))


# --- public API -----------------------------------------------------------------------------------
def sentence(rng: random.Random) -> str:
    """One grammar sentence of MIN_WORDS..MAX_WORDS words."""
    for _ in range(_MAX_TRIES):
        pattern = rng.choices(_PATTERN_NAMES, cum_weights=_PATTERN_CUMULATIVE)[0]
        words = _PATTERNS[pattern](rng)
        if MIN_WORDS <= len(words) <= MAX_WORDS:
            return " ".join(words)
    raise RuntimeError(f"no sentence of {MIN_WORDS}-{MAX_WORDS} words in {_MAX_TRIES} tries")


def sentences(rng: random.Random, n: int, words: Sequence[str] | None = None) -> list[str]:
    """``n`` grammar sentences, or, given ``words``, ``n`` random sequences of 2-6 of those words."""
    if words is None:
        return [sentence(rng) for _ in range(n)]
    vocabulary = [w.strip().lower() for w in words]
    bad = [w for w in vocabulary if not _WORD.fullmatch(w)]
    if not vocabulary or bad:
        raise ValueError(f"words must be a non-empty list of letters and apostrophes; bad: {bad}")
    lengths = (rng.randint(RANDOM_MIN_WORDS, RANDOM_MAX_WORDS) for _ in range(n))
    return [" ".join(rng.choice(vocabulary) for _ in range(length)) for length in lengths]


def is_question(text: str) -> bool:
    """Whether a grammar sentence is a question (it starts with a wh-word or an auxiliary)."""
    first = text.split(maxsplit=1)[0] if text.strip() else ""
    return first in _QUESTION_STARTERS


def _vocabulary() -> tuple[str, ...]:
    words: set[str] = set()
    for noun in NOUNS:
        words.update(w for w in (noun.singular, noun.plural) if w)
    for verb in VERBS + _GIVE + _PUT + _WEATHER_VERBS:
        ing = "" if verb.base in _STATIVE else verb.ing
        words.update(w for w in (verb.base, verb.third, verb.past, verb.participle, ing, verb.particle) if w)
    phrases = [
        *ADJECTIVES, *_NAMES, *_POSSESSIVES, *_SINGULAR_DETERMINERS, *_PLURAL_DETERMINERS, *_MASS_DETERMINERS,
        *_PLACE_DETERMINERS, *_OWNED_PLACE_DETERMINERS, *_NUMBERS, *_CLOCK_HOURS, *_DAYS, *_MANNER, *_FREQUENCY,
        *_DEGREE, *_ALL_PREPOSITIONS, *_FIXED_LOCATIONS, *_FIXED_DESTINATIONS, *_REPORTING, *_CONJUNCTIONS,
        *_SEQUENCE_CONJUNCTIONS, *_WEATHER_ADJECTIVES, *_IMPERATIVE_ADJECTIVES, *_NEGATIVE.values(),
        *_CONTRACTIONS.values(), *(t for times in _TIMES.values() for t in times),
        *(w for pronoun in _PRONOUNS for w in pronoun[:2]), *_FUNCTION_WORDS,
    ]  # fmt: skip
    for phrase in phrases:
        words.update(w for w in phrase.split() if not w.startswith("<"))
    words.discard("")
    return tuple(sorted(words))


# Words that only the sentence patterns themselves use.
_FUNCTION_WORDS = ("a an to for going be please let's there it weather who what which where when why how "
                   "many often if do does did will am is are was were have has not can should must might no").split()
VOCABULARY: tuple[str, ...] = _vocabulary()
