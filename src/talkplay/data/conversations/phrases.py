"""Phrase templates and synonyms for the conversation simulator.

Plain data: every list is a pool the simulator draws from with its seeded RNG. Slots in
braces are filled from track attributes (see ``simulator.py``). Templates never contain
the next track's title; only ``TITLE_REQUESTS`` does, and the simulator uses those rarely
so that a recommender trained on the conversations learns from attributes, not names.
"""

from __future__ import annotations

# Words that describe a feeling rather than a genre or an instrument; a track's tags that
# appear here are used in "mood" slots, the rest in "style" slots.
MOODS = frozenset("""
happy sad chill chillout mellow energetic upbeat dark melancholic melancholy romantic angry
aggressive calm relaxing relaxed dreamy moody uplifting emotional sexy party fun funny
peaceful nostalgic epic intense atmospheric gloomy hopeful bittersweet groovy playful
sentimental soothing euphoric brooding tender warm cold haunting introspective lonely
confident triumphant anxious serene quiet loud heavy soft catchy sleepy rebellious dramatic
""".split())
# Tags naming an instrument (by the tag or its last word); used in "instrument" slots.
INSTRUMENT_WORDS = frozenset("""
guitar guitars bass drums drum piano keys keyboard keyboards synth synths pad lead organ flute
trumpet saxophone sax cello strings violin viola harp banjo horns brass harmonica accordion
mandolin ukulele 808 percussion machine clarinet choir bells
""".split())

STOPWORDS = frozenset("""
the and you your that this with from have what when where they them then there their
just like into will would could should about been were are was for not but all out our
over down only some more than very can cant dont wont im ive its it's i'm i've oh ooh yeah
baby gonna wanna know let got get make made take come back away through every never ever
still again want need feel said says tell told gone going here time right left side
""".split())

OPEN_VERBS = [
    "Play me", "Can you play", "Could you find", "Put on", "I'd love", "Give me",
    "Find me", "Recommend", "Queue up", "I'm looking for", "I want", "Hit me with",
    "Could you suggest", "I need", "Throw on", "Dig up", "Can I get", "Spin",
]
OPEN_PREFIXES = [
    "", "", "", "Hey! ", "Hi, ", "Hello. ", "Okay, ", "So, ", "Alright, ",
    "Good evening! ", "Yo, ", "Hey there, ",
]
OPEN_CONTEXTS = [
    "", "", "", "", " for a late-night drive", " for studying", " for a dinner party",
    " while I cook", " for my morning run", " to unwind after work", " for a rainy afternoon",
    " for a road trip", " to focus", " for a Sunday morning", " for the gym",
    " to get the party going", " for a quiet evening",
]
OPEN_NAME_ARTIST = [
    "{prefix}I'm in the mood for {artist}{context}.",
    "{prefix}I've been listening to {artist} a lot lately. Start with something of theirs?",
    "{prefix}Play something by {artist}{context}.",
    "{prefix}Can we start with {artist}?",
    "Let's kick off with {artist}{context}.",
    "{prefix}I'm a big fan of {artist}. Play one of their songs.",
]
OPEN_NAME_TRACK = [
    "{prefix}Play {title} by {artist}.",
    "{prefix}I've had {title} by {artist} stuck in my head. Can you put it on?",
    "Start with {title} by {artist}{context}, please.",
    "{prefix}I want to hear {title} by {artist}.",
    "{prefix}Could you play {title}? The one by {artist}.",
]
OPEN_DESCRIBE = [
    "{prefix}{verb} {desc}{context}.",
    "{prefix}Can you find me {desc}{context}?",
    "{prefix}I'm in the mood for {desc}{context}.",
    "{prefix}I feel like {desc} right now.",
    "{prefix}Let's start with {desc}{context}.",
    "{prefix}Any ideas for {desc}{context}?",
    "{prefix}Build me a playlist{context}. Start with {desc}.",
    "{prefix}What have you got in terms of {desc}?",
    "{prefix}I'd like to hear {desc}{context}.",
]

ACCEPTS = [
    "Nice!", "Love it.", "Perfect.", "That's great.", "Oh, I like that.", "Good pick.",
    "This works.", "Yes, exactly.", "Great choice.", "Ooh, nice one.", "That's a vibe.",
    "Spot on.", "Love this one.", "Cool.", "Sounds good.", "Brilliant.", "Yeah, this is it.",
    "That hits the spot.", "Really nice.", "Nailed it.", "Good one.", "Awesome.",
    "I'm into this.", "Solid.", "Beautiful.", "Fantastic, thanks.", "", "",
]
NEXT_SIMILAR = [
    "More like the last one.", "Keep that vibe going.", "Another one in the same vein?",
    "Something similar next.", "Give me more like that.", "Can you keep it in that lane?",
    "More of that, please.", "Something that follows on nicely from it.",
    "What else sounds like that?", "Stay in that mood.", "Another one with that feel.",
    "Find me something that sits well next to it.",
]
NEXT_SIMILAR_ARTIST = [
    "Something by an artist similar to {prev_artist}.",
    "What about an artist in the same world as {prev_artist}?",
    "Give me someone who sounds a bit like {prev_artist}.",
    "Who else is like {prev_artist}? Play me something of theirs.",
    "An artist close to {prev_artist}, maybe?",
    "Something from an artist {prev_artist} fans would like.",
]
NEXT_SAME_ARTIST = [
    "Another one by {artist}.", "More from {artist}, please.", "Stick with {artist}.",
    "Another {artist} song, ideally {desc}.", "Stay with {artist} but go for {desc}.",
    "Same artist again, {desc} this time.", "More {artist}: {desc}, if they have it.",
    "Can we hear another {artist} song?", "Keep going with {artist}.",
    "What else do you have from {artist}?",
]
NEXT_DESCRIBE = [
    "Now {desc}.", "Next, {desc}.", "How about {desc} next?", "Can you find {desc}?",
    "Let's go for {desc}.", "I'd like {desc} now.", "Follow it with {desc}.",
    "Maybe {desc} next?", "Something else: {desc}.", "Could the next one be {desc}?",
    "Give me {desc} now.", "Keep it going with {desc}.",
]
TITLE_REQUESTS = [
    "Can you play {title} next?", "Put on {title} by {artist}.", "I want {title} next.",
    "Queue up {title}, please.",
]
DIRECTION_CHANGES = [
    "Let's change direction.", "Okay, switching it up.", "Time for something different.",
    "Let's take a turn here.", "New mood now.", "I want to shake things up.",
    "Enough of that, let's try another direction.", "Let's go somewhere else.",
    "Okay, different vibe now.", "Change of pace, please.",
]
REJECT_OPENERS = [
    "Hmm, not for me.", "No, skip that.", "Not quite.", "Nah, that's not it.",
    "I don't think so.", "Not really feeling that one.", "Pass.", "That's off.",
    "No thanks.", "Hmm, that misses.", "Not this one.", "Skip, please.",
]
REJECT_REASONS = {
    "style": ["I'm not into {neg} right now.", "{Neg} isn't what I asked for.",
              "I don't want {neg} here.", "Not in the mood for {neg}."],
    "mood": ["It's too {neg}.", "Way too {neg} for me.", "I don't want anything {neg} now."],
    "instrument": ["Too much {neg} for me.", "I don't want {neg} in this.",
                   "The {neg} is not what I had in mind."],
    "vocals": ["I didn't want {neg}.", "Not {neg}, please."],
    "artist": ["I'm not a fan of {neg}.", "I don't really like {neg}.", "Not {neg}, please."],
    "era": ["That sounds too {neg}.", "It's too {neg} for what I want."],
    "tempo": ["It's way too {neg}.", "That's too {neg}."],
}
REJECT_RETRY = [
    "I wanted {desc}.", "I was after {desc}.", "Try {desc} instead.", "Give me {desc}.",
    "Something more like {desc}.", "Can you find {desc}?", "I meant {desc}.",
    "Let's stick to {desc}.",
]

ASSISTANT_INTROS = [
    "Try {title} by {artist}", "Here's {title} by {artist}", "How about {title} by {artist}?",
    "You might like {title} by {artist}", "I'd go with {title} by {artist}",
    "This one should fit: {title} by {artist}", "Let's go with {title} by {artist}",
    "Check out {title} by {artist}", "Up next: {title} by {artist}",
    "{title} by {artist} fits that", "Here you go, {title} by {artist}",
    "Give {title} by {artist} a listen",
]
ASSISTANT_APOLOGY = ["Sorry about that.", "Fair enough.", "Got it.", "Understood.",
                     "My mistake.", "Okay, noted.", "Thanks for telling me."]
ASSISTANT_SWITCH = ["Switching gears.", "Sure, something new.", "Happy to change it up.",
                    "New direction, coming up.", "Okay, different mood."]
ASSISTANT_REASONS = [
    "it's {style} with a {mood} feel",
    "a {mood} {style} cut",
    "{style} from {era}",
    "it has a {mood} vibe",
    "a {tempo} track around {bpm} BPM",
    "it's in {key}, which gives it a {keymood} color",
    "the lyrics keep coming back to \"{theme}\"",
    "it's {style}, released in {year}",
    "it comes from the album {album}",
    "{tempo}, with a {style} sound",
    "it's built around {instrument}",
    "the {instrument} carries it",
    "{style} with {vocals}",
    "{instrument} with {vocals}",
    "a {mood} song from {era}",
]
KEY_MOODS = {"minor": ["darker", "moodier", "wistful"], "major": ["brighter", "sunnier", "open"]}

TEMPO_WORDS = {
    "slow": ["slow", "laid-back", "unhurried", "downtempo"],
    "mid": ["mid-tempo", "steady", "easy-going", "moderately paced"],
    "fast": ["fast", "upbeat", "high-energy", "driving"],
}
TEMPO_CONTRAST = {"slow": "slow", "mid": "middling", "fast": "fast"}
NOUNS = ["track", "song", "tune", "number", "pick", "record", "piece"]
DESCRIBE = [
    "something {mood}",
    "some {style}",
    "a {mood} {style} {noun}",
    "{style} from {era}",
    "a {tempo} {style} {noun}",
    "something {mood} from {era}",
    "{mood} {style} from {era}",
    "a {style} {noun} with {mood} vibes",
    "something {tempo} and {mood}",
    "a {noun} in a {mode} key, {style} if possible",
    "{style} with lyrics that mention {theme}",
    "a {mood} {noun} whose lyrics mention {theme}",
    "a {style} {noun} from around {year}",
    "something {tempo}, maybe {style}",
    "a bit of {style}",
    "a {noun} with a {mood} mood",
    "a {era_adj} {style} {noun}",
    "something {tempo} from {era}",
    "a {tempo} {noun} in a {mode} key",
    "a {noun} from {era}",
    "something with lyrics that mention {theme}",
    "a {tempo} {noun}, somewhere around {bpm} BPM",
    "something with {instrument}",
    "a {style} {noun} with lots of {instrument}",
    "{mood} {style} with {instrument} up front",
    "a {noun} built around {instrument}",
    "a {style} {noun} with {vocals}",
    "something {mood} with {vocals}",
    "a {noun} with {vocals} from {era}",
]
