"""A small retrieval set written for the memory tests.

``TARGETS``: memories about one user, each with a question that asks for it in other
words (paraphrased, not word for word). ``DISTRACTORS``: other memories of the same user,
many on nearby topics (other pets, trips, foods, relatives), so that finding the right
memory takes more than matching a topic. ``MEMORIES`` is all of them (targets first);
``QUERIES`` pairs each question with the index of its memory in ``MEMORIES``.
"""

from __future__ import annotations

import itertools

TARGETS: list[tuple[str, str]] = [
    ("The user is allergic to shellfish and carries an EpiPen.", "Which seafood can't I eat?"),
    (
        "The user's daughter Mia starts kindergarten in September.",
        "When does my little girl begin school?",
    ),
    ("The user drives a blue 2015 Honda Civic.", "What car do I own?"),
    (
        "The user works night shifts as an ICU nurse at St. Mary's hospital.",
        "What is my profession?",
    ),
    (
        "The user is training for the Berlin marathon in the autumn.",
        "Which long-distance race am I preparing for?",
    ),
    ("The user's favourite author is Haruki Murakami.", "Whose novels do I enjoy most?"),
    (
        "The user plays bass guitar in a jazz trio on weekends.",
        "What instrument do I perform with on Saturdays?",
    ),
    (
        "The user is learning Japanese and practises kanji every morning.",
        "Which foreign language am I studying?",
    ),
    (
        "The user's landlord raised the rent by 8 percent this year.",
        "How much did my housing costs go up?",
    ),
    (
        "The user keeps a sourdough starter named Gerald in the fridge.",
        "What did I call my bread yeast culture?",
    ),
    ("The user is vegetarian but still eats eggs and cheese.", "What are my dietary restrictions?"),
    ("The user's flight to Reykjavik leaves on March 3rd at 7am.", "When is my trip to Iceland?"),
    ("The user has a fear of heights and avoids glass elevators.", "What phobia do I have?"),
    ("The user's cat Pixel needs thyroid medication twice a day.", "What pills does my pet take?"),
    (
        "The user prefers dark roast coffee with oat milk and no sugar.",
        "How do I take my morning brew?",
    ),
    ("The user stores all passwords in Bitwarden.", "Which app keeps my logins safe?"),
    (
        "The user is saving for a down payment on a flat in Lyon.",
        "What am I putting money aside for?",
    ),
    ("The user broke their left wrist skiing in 2019.", "Have I ever fractured a bone?"),
    (
        "The user's brother Tomas lives in Buenos Aires and is a chef.",
        "Where does my sibling live?",
    ),
    (
        "The user meditates for twenty minutes before bed to sleep better.",
        "What is my evening relaxation routine?",
    ),
    (
        "The user's company runs its services on Kubernetes in Google Cloud.",
        "What container orchestration platform do we use at work?",
    ),
    ("The user hates cilantro because it tastes like soap to them.", "Which herb do I dislike?"),
    (
        "The user volunteers at an animal shelter every second Sunday.",
        "Where do I do charity work?",
    ),
    ("The user's wedding anniversary is on June 14th.", "What date did I get married?"),
    ("The user is red-green colour-blind.", "Do I have any problems with my eyesight?"),
    (
        "The user's PhD thesis is about coral reef bleaching.",
        "What is the topic of my dissertation?",
    ),
    (
        "The user takes the 7:40 train to work from Central Station.",
        "How do I commute to the office?",
    ),
    (
        "The user's grandmother taught them to knit scarves.",
        "Who showed me how to make woollen clothes?",
    ),
    (
        "The user wants to run for the city council next year.",
        "Am I planning to go into local politics?",
    ),
    ("The user's blood type is O negative.", "What is my blood group?"),
    (
        "The user is nervous about giving a talk at the conference in May.",
        "Which presentation am I anxious about?",
    ),
    (
        "The user grows tomatoes, basil and chillies on the balcony.",
        "What plants do I cultivate at home?",
    ),
    (
        "The user's laptop is a ThinkPad X1 Carbon running Fedora Linux.",
        "What computer and operating system do I use?",
    ),
    (
        "The user supports Liverpool FC and never misses a match.",
        "Which football club am I a fan of?",
    ),
    ("The user's son Leo is obsessed with dinosaurs.", "What is my boy fascinated by?"),
    ("The user owes their friend Priya 200 euros.", "Do I have any debts to pay back?"),
    ("The user is lactose intolerant.", "Can I drink milk?"),
    ("The user's car insurance renews on October 1st.", "When is my vehicle policy due?"),
    (
        "The user's book club is reading The Brothers Karamazov this month.",
        "What novel is my reading group discussing?",
    ),
    (
        "The user's doctor told them to eat less salt because of high blood pressure.",
        "What health advice did my physician give me?",
    ),
]

_HANDWRITTEN = [
    "The user's neighbour has a golden retriever called Biscuit.",
    "The user went to Lisbon for a long weekend in April.",
    "The user dislikes horror films.",
    "The user's sister Ana is a dentist in Porto.",
    "The user bought a new espresso machine last Christmas.",
    "The user's favourite pizza topping is mushrooms.",
    "The user plans to repaint the kitchen green.",
    "The user's mother calls every Sunday evening.",
    "The user once met a famous violinist at an airport.",
    "The user's gym membership costs 35 euros a month.",
    "The user enjoys watching Formula 1 races.",
    "The user's dentist appointment is on the 12th.",
    "The user thinks open-plan offices are too noisy.",
    "The user's team at work has six engineers.",
    "The user has been to Japan twice.",
    "The user's favourite season is autumn.",
    "The user's dog died two years ago.",
    "The user prefers tea in the afternoon.",
    "The user recently switched banks to get a better savings rate.",
    "The user's best friend from school is called Jonas.",
    "The user is thinking about adopting a rescue dog.",
    "The user's father was a carpenter.",
    "The user likes to cycle along the river on Saturdays.",
    "The user's smartphone screen cracked last week.",
    "The user finds spreadsheets relaxing.",
    "The user wants to learn to sail.",
    "The user's office is on the fourth floor.",
    "The user played chess competitively as a teenager.",
    "The user's partner is allergic to cats.",
    "The user watches cooking shows to unwind.",
    "The user's favourite museum is the Prado.",
    "The user's niece turns ten in July.",
    "The user's winter coat is too small.",
    "The user likes spicy Thai curries.",
    "The user cannot whistle.",
    "The user's manager is called Henrik.",
    "The user is allergic to pollen in spring.",
    "The user's apartment has a small balcony facing south.",
    "The user prefers paper books to e-readers.",
    "The user is planning a road trip through Scotland.",
    "The user's childhood home was near a lake.",
    "The user's cousin works for a bank in Frankfurt.",
    "The user once ran a half marathon in two hours.",
    "The user keeps a journal of dreams.",
    "The user bought concert tickets for a Radiohead show.",
    "The user's favourite dessert is lemon tart.",
    "The user learned to swim at the age of thirty.",
    "The user's houseplants keep dying.",
    "The user uses a standing desk at home.",
    "The user's parents live in a small village in Bavaria.",
    "The user likes crossword puzzles on Sunday mornings.",
    "The user's electricity bill doubled last winter.",
    "The user has a scar on their knee from a bike accident.",
    "The user drinks sparkling water with every meal.",
    "The user's favourite band in college was Blur.",
    "The user is renovating the bathroom.",
    "The user's colleague Sofia just had a baby.",
    "The user's uncle breeds horses in Normandy.",
    "The user wants to visit Patagonia someday.",
    "The user collects vintage postcards.",
]

_PEOPLE = [
    "Marco",
    "Elena",
    "Yusuf",
    "Hannah",
    "Kenji",
    "Lucia",
    "Omar",
    "Freya",
    "Dmitri",
    "Aisha",
    "Pavel",
    "Ingrid",
]
_CITIES = [
    "Vienna",
    "Krakow",
    "Seville",
    "Oslo",
    "Dublin",
    "Bologna",
    "Ghent",
    "Tallinn",
    "Valencia",
    "Zurich",
    "Bergen",
]
_THINGS = [
    "a vintage lamp",
    "running shoes",
    "a cast-iron pan",
    "a rain jacket",
    "noise-cancelling headphones",
    "a board game",
    "a yoga mat",
    "a desk chair",
    "a kettle",
    "hiking boots",
    "a printer",
]
_HOBBIES = [
    "pottery",
    "bouldering",
    "birdwatching",
    "salsa dancing",
    "woodworking",
    "photography",
    "calligraphy",
    "fishing",
    "origami",
    "archery",
    "kayaking",
]
_ROLES = ["colleague", "neighbour", "old classmate", "former flatmate", "gym buddy", "cousin"]
_MONTHS = ["January", "February", "April", "May", "July", "August", "November", "December"]


def _generated() -> list[str]:
    out = []
    combos = itertools.product(range(len(_PEOPLE)), range(len(_CITIES)))
    for n, (p, c) in enumerate(combos):
        person, city = _PEOPLE[p], _CITIES[c]
        role = _ROLES[n % len(_ROLES)]
        hobby = _HOBBIES[(p + c) % len(_HOBBIES)]
        thing = _THINGS[(p * 5 + c) % len(_THINGS)]
        month = _MONTHS[(n + p) % len(_MONTHS)]
        kind = n % 4
        if kind == 0:
            out.append(f"The user's {role} {person} moved to {city} in {month}.")
        elif kind == 1:
            out.append(f"The user's {role} {person} is into {hobby}.")
        elif kind == 2:
            out.append(f"The user bought {thing} in {city} in {month}.")
        else:
            out.append(f"The user tried {hobby} with {person} during a trip to {city}.")
        if len(dict.fromkeys(out)) >= 150:
            break
    return list(dict.fromkeys(out))


DISTRACTORS: list[str] = _HANDWRITTEN + _generated()
MEMORIES: list[str] = [m for m, _ in TARGETS] + DISTRACTORS
QUERIES: list[tuple[str, int]] = [(q, i) for i, (_, q) in enumerate(TARGETS)]
