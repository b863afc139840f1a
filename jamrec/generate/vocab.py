"""Word lists the name synthesiser draws from (data only).

The English words, first names and syllables are generic; the non-Latin inventories
(Hangul is composed arithmetically, see ``names.py``) cover the scripts seen in the real
TIMJ sample: accented Latin, Korean, Japanese, Chinese, Cyrillic and a little Greek.
"""

from __future__ import annotations


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


SYLLABLES = _words(
    "ba be bi bo ca co da de di do el en fa fe ga go ha ja ka ki ko la le li lo lu ma me mi "
    "mo na ne ni no pa pe po ra re ri ro ru sa se si so ta te ti to va ve vi wa ya zo an ar "
    "on or ul nic ton ber ley son ver mor lan dra tri ster bel mar vin dor gan kel rin tho "
    "phe qui sha zan bri cle fro glo pri sto tre vor wen xa yu"
)

FIRST_NAMES = _words(
    "Adam Alice Amy Anna Ben Beth Bill Billy Bob Bobby Brian Carl Chloe Clare Dan David "
    "Donald Ella Emma Eric Ethel Frank Gayle George Grace Hank Harry Ian Iris Jack Jake James "
    "Jane Jenny Jerry Jim Jimmy Joe John Johnny Josh Judy Julia Kate Kevin Laura Leon Liz Lou "
    "Lucy Marc Maria Mark Mary Max Mike Nick Nina Noah Otis Pat Paul Pete Ray Rose Roy Russ "
    "Ruth Ryan Sam Sara Sean Skip Sly Sonny Sue Ted Tim Tom Tony Tori Van Walt Will Willie "
    "Zoe Marcel Natalie Tobias Susanne Maurice Nils Serge France Louis Koko Junior Arvo "
    "Amadou"
)
LAST_NAMES = _words(
    "Adams Allen Baker Bell Bond Brown Byrd Campbell Carter Clark Cole Cooper Davis Evans "
    "Fisher Ford Foster Gray Green Hall Harris Hayes Hill Holland Hopkins Hughes Jackson "
    "James Johnson Jones Jordan Kelly King Knight Lane Lee Lewis Marsh Martin Mason Miller "
    "Mills Moore Morgan Morris Murphy Nelson Owen Parker Perry Phillips Porter Price Reed "
    "Reilly Rice Roberts Ross Scott Shaw Shelley Simone Smith Stone Taylor Thomas Turner "
    "Vaughn Walker Ward Watson Wells White Wilson Wood Wright Young Orton Runga Jesso Columbo "
    "Bland"
)
NOUNS = _words(
    "Antler Arrow Bell Bird Bone Bridge Bunny Cake Castle Cloud Coast Crow Crystal Diamond "
    "Dog Dream Drum Echo Engine Eye Field Fire Flower Fox Garden Ghost Girl Glass Heart Hill "
    "Horse Island Jewel Key Knife Lake Light Lion Machine Mirror Moon Mountain Night Ocean "
    "Orange Owl Palace Pilot Queen Radio Rain River Road Rocket Rose Sailor Sea Shadow Ship "
    "Sister Sky Smoke Snake Star Stone Storm Sun Tiger Tower Train Tree Valley Wave Wheel "
    "Wind Window Wolf Year Boy Chamber Circle Garden Mandolin Room Summer Winter Season"
)
ADJECTIVES = _words(
    "Big Black Blue Broken Bright Burning Cold Crazy Dark Dead Deep Electric Empty Final Free "
    "Golden Good Great Green Grey Happy Heavy Hidden Holy Hot Last Little Lonely Lost Loud "
    "Lucky Mad Magic Modern New Old Pale Perfect Pretty Quiet Red Sad Secret Silver Simple "
    "Slow Soft Strange Sweet Tender True Velvet White Wild Young Crystal Neon Gentle Savage"
)

TITLE_WORDS = _words(
    "Love Night Heart Baby Time Home Day Light Life Dream World Fire Rain Girl Boy Moon Sun "
    "Summer Blue Gold Road Song Dance Tonight Forever Again Away Back Down Up Over Under Into "
    "Alive Lost Found Run Fall Stay Go Come Hold Feel Know Want Need Take Make Break Shake "
    "Sway Wait Wild Free Young Old Sweet Cold Hot Crazy Lonely Happy Sad Slow Fast High Low "
    "Tomorrow Yesterday Sunday Monday December July Paris London California Memphis Ocean "
    "River Sky Star Stars Eyes Hands Kiss Tears Wings Bones Ghosts Secrets Closing Teenage "
    "Kicks Positively Crystallized Hollywood Director Flaws Venus Fear Wheel Think Twice Call "
    "Breeze Sailor Theme Prelude Blues Boogie Shuffle Waltz Lullaby Anthem Lovin' Nothin' "
    "Rockin' Goin' Dancin' 9 11 19 99 1979 2000 Two Three"
)
VERBS = _words(
    "Hold Take Call Kiss Love Leave Save Tell Show Hurt Need Want Give Let Wake Find Bring "
    "Help Break Set Meet Miss Follow Touch Trust Forget Remember Teach Drive Walk Dance"
)
OBJECTS = _words("Me You Us Her Him It Away Down Up Home Back Tonight Again Forever Now Slowly")
CONTRACTIONS = _words("Don't I'm You're Ain't Won't It's Let's Can't I'll We're Didn't")

SUFFIXES = (
    " (Live)",
    " (Remastered)",
    " - Remastered 2011",
    " (Acoustic)",
    " (Radio Edit)",
    " (Official Video)",
    " (Extended Mix)",
    " (Demo)",
    " - Live",
    " (Instrumental)",
    " - Single Version",
    " (Mono)",
    " (Live 2003)",
    ' (7" Edit)',
)

ACCENTED_WORDS = _words(
    "Café Mañana Über Déjà Vu Niño Señorita Ísland Ágúst Ðrauma Ýmsar Ïle Corazón Für Canción "
    "São Noël Révolution Fantástico Águas Março Cortège Ça Été Öga Ære Ñandú Ídolo Árbol Ýr "
    "Ðiðo Ïnès Málaga Pequeñas Città Poupée"
)

# Capitals whose UTF-8 holds a byte cp1252 leaves undefined (Á C3 81, Í C3 8D, Ï C3 8F,
# Ð C3 90, Ý C3 9D) are over-represented: they are the ones a naive repair gets wrong.
ACCENT_MAP = {
    "a": "áàäåãâ",
    "e": "éèëê",
    "i": "íïî",
    "o": "óöøô",
    "u": "úüû",
    "n": "ñ",
    "c": "ç",
    "A": "ÁÁÄÅ",
    "E": "ÉÉ",
    "I": "ÍÍÏÏ",
    "O": "ÓÖØ",
    "U": "ÜÚ",
    "D": "ÐÐ",
    "Y": "ÝÝ",
}

HIRAGANA = (
    "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらり"
    "るれろわをんがぎぐげごばびぶべぼぱぴぷぺぽ"
)
KATAKANA = (
    "アイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリ"
    "ルレロワンガギグゲゴバビブベボパピプペポー"
)
KANJI = (
    "日月火水木金土山川空海花雪風雨夜星光愛恋心夢歌声音君僕私約束放課後翼少年近片想麗蓬莱失踪現代"
)
HANZI = "周杰倫王力宏李香蘭聽見下雨的聲音愛就是你我他們天地人山水月光明心中國風雲龍鳳春夏秋冬歌手"
CYRILLIC = dict(zip("abcdefghijklmnopqrstuvwyz", "абцдефгхийклмнопкрстуввыз"), x="кс")
CYRILLIC_WORDS = _words("группа Кино Девять восьмых Звезда Ночь Лето Песня Любовь Город")

GENRES = (
    # (SpotifyFeatures name, lower-case name of dataset.csv / spotify_data.csv, weight)
    ("Pop", "pop", 12),
    ("Rock", "rock", 12),
    ("Indie", "indie", 9),
    ("Alternative", "alternative", 8),
    ("Hip-Hop", "hip-hop", 7),
    ("Rap", "rap", 4),
    ("R&B", "r-n-b", 5),
    ("Soul", "soul", 5),
    ("Jazz", "jazz", 5),
    ("Blues", "blues", 3),
    ("Electronic", "electronic", 7),
    ("Dance", "dance", 5),
    ("Folk", "folk", 5),
    ("Country", "country", 4),
    ("Classical", "classical", 3),
    ("Opera", "opera", 1),
    ("Reggae", "reggae", 2),
    ("Reggaeton", "reggaeton", 1),
    ("Ska", "ska", 1),
    ("World", "world-music", 3),
    ("Soundtrack", "soundtrack", 2),
    ("Anime", "anime", 1),
    ("Children's Music", "children", 1),
    ("Comedy", "comedy", 1),
)

BARE_SITES = (
    "http://queuebik.com",
    "http://a.tumblr.com",
    "http://stream.song365.co",
    "http://files.blupawradio.com",
    "http://vozmimp3.com",
    "http://dl.dropboxusercontent.com",
    "http://pizzapyramid.com",
    "http://odessacastle.org",
)
