"""Markus Kuhn's "UTF-8 decoder capability and stress test" as byte
strings, numbered like the Autobahn TestSuite's 6.x cases that are built
from it, each with its section in Kuhn's file.

Validity is UTF-8 as RFC 3629 defines it (which RFC 6455 8.1 requires of
text): no overlong forms, no UTF-16 surrogates (U+D800-U+DFFF), nothing
above U+10FFFF, no 5- or 6-byte forms.  Noncharacters (U+FFFE, U+FFFF,
U+FDD0-U+FDEF, U+nFFFE and U+nFFFF) are valid code points and must pass.

CASES is a list of Case(id, section, title, data, valid).
"""
import collections

Case = collections.namedtuple("Case", "id section title data valid")

KOSME = "\u03ba\u1f79\u03c3\u03bc\u03b5".encode()      # κόσμε, Kuhn 1
assert KOSME == b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"


def _spaced(first, last):
    """Every byte from first to last, each followed by a space."""
    return b"".join(bytes([b]) + b" " for b in range(first, last + 1))


CASES = []


def _add(group, section, title, data, valid):
    n = sum(1 for c in CASES if c.id.startswith(f"6.{group}.")) + 1
    CASES.append(Case(f"6.{group}.{n}", section, title, data, valid))


# 6.5: some correct UTF-8 text (Kuhn 1, and friends)
_add(5, "1", "kosme", KOSME, True)
_add(5, "1", "kosme in a sentence", b"Greek: " + KOSME + b", done.", True)
_add(5, "-", "first 4-byte character U+10000", b"\xf0\x90\x80\x80", True)
_add(5, "-", "musical symbol G clef U+1D11E", b"\xf0\x9d\x84\x9e", True)
_add(5, "-", "mixed scripts",
     "\u00c0 la carte, \u0436\u0443\u0440\u043d\u0430\u043b, "
     "\u65e5\u672c\u8a9e, \U0001F600\U0001F4A9".encode(), True)

# 6.7: first possible sequence of a certain length (Kuhn 2.1.1-2.1.4)
_add(7, "2.1.1", "1 byte U+0000", b"\x00", True)
_add(7, "2.1.2", "2 bytes U+0080", b"\xc2\x80", True)
_add(7, "2.1.3", "3 bytes U+0800", b"\xe0\xa0\x80", True)
_add(7, "2.1.4", "4 bytes U+10000", b"\xf0\x90\x80\x80", True)

# 6.8: first possible 5- and 6-byte sequences (Kuhn 2.1.5, 2.1.6)
_add(8, "2.1.5", "5 bytes U-00200000", b"\xf8\x88\x80\x80\x80", False)
_add(8, "2.1.6", "6 bytes U-04000000", b"\xfc\x84\x80\x80\x80\x80", False)

# 6.9: last possible sequence of a certain length (Kuhn 2.2.1-2.2.3)
_add(9, "2.2.1", "1 byte U+007F", b"\x7f", True)
_add(9, "2.2.2", "2 bytes U+07FF", b"\xdf\xbf", True)
_add(9, "2.2.3", "3 bytes U+FFFF", b"\xef\xbf\xbf", True)
_add(9, "2.3.4", "4 bytes U+10FFFF, the last code point",
     b"\xf4\x8f\xbf\xbf", True)

# 6.10: last possible 4- (beyond U+10FFFF), 5- and 6-byte sequences
_add(10, "2.2.4", "4 bytes U-001FFFFF", b"\xf7\xbf\xbf\xbf", False)
_add(10, "2.2.5", "5 bytes U-03FFFFFF", b"\xfb\xbf\xbf\xbf\xbf", False)
_add(10, "2.2.6", "6 bytes U-7FFFFFFF", b"\xfd\xbf\xbf\xbf\xbf\xbf", False)

# 6.11: other boundary conditions (Kuhn 2.3)
_add(11, "2.3.1", "U+D7FF, before the surrogates", b"\xed\x9f\xbf", True)
_add(11, "2.3.2", "U+E000, after the surrogates", b"\xee\x80\x80", True)
_add(11, "2.3.3", "U+FFFD", b"\xef\xbf\xbd", True)
_add(11, "2.3.4", "U+10FFFF", b"\xf4\x8f\xbf\xbf", True)
_add(11, "2.3.5", "U+110000", b"\xf4\x90\x80\x80", False)

# 6.12: unexpected continuation bytes (Kuhn 3.1)
_add(12, "3.1.1", "first continuation byte 0x80", b"\x80", False)
_add(12, "3.1.2", "last continuation byte 0xbf", b"\xbf", False)
for _n in range(2, 8):
    _add(12, f"3.1.{_n + 1}", f"{_n} continuation bytes",
         (b"\x80\xbf" * 4)[:_n], False)
_add(12, "3.1.9", "all 64 continuation bytes", bytes(range(0x80, 0xc0)),
     False)

# 6.13: lonely start characters, each followed by a space (Kuhn 3.2)
_add(13, "3.2.1", "32 first bytes of 2-byte sequences",
     _spaced(0xc0, 0xdf), False)
_add(13, "3.2.2", "16 first bytes of 3-byte sequences",
     _spaced(0xe0, 0xef), False)
_add(13, "3.2.3", "8 first bytes of 4-byte sequences",
     _spaced(0xf0, 0xf7), False)
_add(13, "3.2.4", "4 first bytes of 5-byte sequences",
     _spaced(0xf8, 0xfb), False)
_add(13, "3.2.5", "2 first bytes of 6-byte sequences",
     _spaced(0xfc, 0xfd), False)

# 6.14: sequences with the last continuation byte missing (Kuhn 3.3)
INCOMPLETE = [
    ("3.3.1", "2-byte sequence, U+0000", b"\xc0"),
    ("3.3.2", "3-byte sequence, U+0000", b"\xe0\x80"),
    ("3.3.3", "4-byte sequence, U+0000", b"\xf0\x80\x80"),
    ("3.3.4", "5-byte sequence, U+0000", b"\xf8\x80\x80\x80"),
    ("3.3.5", "6-byte sequence, U+0000", b"\xfc\x80\x80\x80\x80"),
    ("3.3.6", "2-byte sequence, U-000007FF", b"\xdf"),
    ("3.3.7", "3-byte sequence, U-0000FFFF", b"\xef\xbf"),
    ("3.3.8", "4-byte sequence, U-001FFFFF", b"\xf7\xbf\xbf"),
    ("3.3.9", "5-byte sequence, U-03FFFFFF", b"\xfb\xbf\xbf\xbf"),
    ("3.3.10", "6-byte sequence, U-7FFFFFFF", b"\xfd\xbf\xbf\xbf\xbf"),
]
for _section, _title, _data in INCOMPLETE:
    _add(14, _section, _title, _data, False)
# the same at the end of otherwise valid text, and of valid characters
_add(14, "3.3.6", "2-byte sequence cut at the end of text",
     KOSME + b"\xce", False)
_add(14, "3.3.7", "3-byte sequence cut at the end of text",
     KOSME + b"\xe1\xbd", False)
_add(14, "3.3.8", "4-byte sequence cut at the end of text",
     KOSME + b"\xf0\x9f\x98", False)

# 6.15: concatenation of incomplete sequences (Kuhn 3.4)
_add(15, "3.4", "all ten incomplete sequences in a row",
     b"".join(d for _, _, d in INCOMPLETE), False)

# 6.16: impossible bytes (Kuhn 3.5)
_add(16, "3.5.1", "fe", b"\xfe", False)
_add(16, "3.5.2", "ff", b"\xff", False)
_add(16, "3.5.3", "fe fe ff ff", b"\xfe\xfe\xff\xff", False)

# 6.17: overlong forms of "/" U+002F (Kuhn 4.1)
_add(17, "4.1.1", "2 bytes", b"\xc0\xaf", False)
_add(17, "4.1.2", "3 bytes", b"\xe0\x80\xaf", False)
_add(17, "4.1.3", "4 bytes", b"\xf0\x80\x80\xaf", False)
_add(17, "4.1.4", "5 bytes", b"\xf8\x80\x80\x80\xaf", False)
_add(17, "4.1.5", "6 bytes", b"\xfc\x80\x80\x80\x80\xaf", False)

# 6.18: maximum overlong sequences (Kuhn 4.2)
_add(18, "4.2.1", "U-0000007F in 2 bytes", b"\xc1\xbf", False)
_add(18, "4.2.2", "U-000007FF in 3 bytes", b"\xe0\x9f\xbf", False)
_add(18, "4.2.3", "U-0000FFFF in 4 bytes", b"\xf0\x8f\xbf\xbf", False)
_add(18, "4.2.4", "U-001FFFFF in 5 bytes", b"\xf8\x87\xbf\xbf\xbf", False)
_add(18, "4.2.5", "U-03FFFFFF in 6 bytes", b"\xfc\x83\xbf\xbf\xbf\xbf",
     False)

# 6.19: overlong forms of NUL (Kuhn 4.3)
_add(19, "4.3.1", "2 bytes", b"\xc0\x80", False)
_add(19, "4.3.2", "3 bytes", b"\xe0\x80\x80", False)
_add(19, "4.3.3", "4 bytes", b"\xf0\x80\x80\x80", False)
_add(19, "4.3.4", "5 bytes", b"\xf8\x80\x80\x80\x80", False)
_add(19, "4.3.5", "6 bytes", b"\xfc\x80\x80\x80\x80\x80", False)

# 6.20: single UTF-16 surrogates (Kuhn 5.1)
for _section, _cp in [("5.1.1", 0xD800), ("5.1.2", 0xDB7F),
                      ("5.1.3", 0xDB80), ("5.1.4", 0xDBFF),
                      ("5.1.5", 0xDC00), ("5.1.6", 0xDF80),
                      ("5.1.7", 0xDFFF)]:
    _add(20, _section, f"U+{_cp:04X}",
         chr(_cp).encode("utf-8", "surrogatepass"), False)

# 6.21: paired UTF-16 surrogates (Kuhn 5.2)
for _i, (_hi, _lo) in enumerate([(0xD800, 0xDC00), (0xD800, 0xDFFF),
                                 (0xDB7F, 0xDC00), (0xDB7F, 0xDFFF),
                                 (0xDB80, 0xDC00), (0xDB80, 0xDFFF),
                                 (0xDBFF, 0xDC00), (0xDBFF, 0xDFFF)]):
    _add(21, f"5.2.{_i + 1}", f"U+{_hi:04X} U+{_lo:04X}",
         (chr(_hi) + chr(_lo)).encode("utf-8", "surrogatepass"), False)

# 6.22: noncharacters (Kuhn 5.3): valid
for _plane in range(17):
    for _low in (0xFFFE, 0xFFFF):
        _cp = _plane << 16 | _low
        _add(22, "5.3.4" if _plane else "5.3.1" if _low == 0xFFFE
             else "5.3.2", f"U+{_cp:04X}", chr(_cp).encode(), True)
_add(22, "5.3.3", "U+FDD0 to U+FDEF",
     "".join(chr(c) for c in range(0xFDD0, 0xFDF0)).encode(), True)

# 6.23: special code points: valid
for _cp, _name in [(0xFFF9, "interlinear annotation anchor"),
                   (0xFFFA, "interlinear annotation separator"),
                   (0xFFFB, "interlinear annotation terminator"),
                   (0xFFFC, "object replacement character"),
                   (0xFFFD, "replacement character"),
                   (0xFEFF, "byte order mark"),
                   (0x2028, "line separator"), (0x2029,
                                                "paragraph separator"),
                   (0x0000, "NUL between text")]:
    _add(23, "-", f"U+{_cp:04X} {_name}",
         b"a" + chr(_cp).encode() + b"z", True)

# Autobahn 6.2 (valid text in fragments) and 6.3 (invalid text in
# fragments): the strings those cases use
AUTOBAHN_VALID = "Hello-\u00b5@\u00df\u00f6\u00e4\u00fc\u00e0\u00e1-UTF-8!!"\
    .encode()
AUTOBAHN_INVALID = KOSME + b"\xed\xa0\x80" + b"edited"
_add(2, "-", "Autobahn 6.2 text", AUTOBAHN_VALID, True)
_add(3, "5.1.1", "Autobahn 6.3 text with a surrogate", AUTOBAHN_INVALID,
     False)

# the prefixes of kosme, one byte more each time (Autobahn 6.6): valid
# exactly at character boundaries
for _n in range(1, len(KOSME) + 1):
    _prefix = KOSME[:_n]
    try:
        _prefix.decode()
        _valid = True
    except UnicodeDecodeError:
        _valid = False
    _add(6, "1", f"kosme, first {_n} bytes", _prefix, _valid)


def _check():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    for c in CASES:
        try:
            c.data.decode("utf-8")          # Python's decoder: RFC 3629
            ok = True
        except UnicodeDecodeError:
            ok = False
        assert ok == c.valid, c


_check()
VALID = [c for c in CASES if c.valid]
INVALID = [c for c in CASES if not c.valid]
