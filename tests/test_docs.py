"""The documentation against the tree: README.md's configuration table
has a row for every key of the reference configuration, in its order,
and no other; every `make TARGET` README.md names is a target of the
Makefile; every relative link of README.md and docs/*.md leads to a file
that exists.

The keys are read as tests/unit/test_cfg.c's test_reference_config reads
them: conf/gatewayd.ini's headings, "; KEY: type, bounds, default" lines.
Where a key may be set comes from the option table of gatewayd/cfg.c (the
unit test keeps the reference in step with that table).  Nothing here
runs the daemon."""
import glob
import os
import re

import pytest

from conftest import ROOT

README = os.path.join(ROOT, "README.md")
REFERENCE = os.path.join(ROOT, "conf", "gatewayd.ini")
CFG_C = os.path.join(ROOT, "gatewayd", "cfg.c")
MAKEFILES = [os.path.join(ROOT, "Makefile"),
             os.path.join(ROOT, "tests", "bench", "bench.mk")]

# The "where" column of README's table, by the section of cfg.c's row.
WHERE = {"GATEWAY": "gateway", "RESOURCE": "resource", "BOTH": "both",
         "STATIC": "[static PREFIX]", "TLS": "[tls NAME]",
         "CLUSTER": "[cluster]"}


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def reference_headings():
    """[(key, rest of its heading line)] in the reference's order."""
    out = []
    for line in read(REFERENCE).splitlines():
        m = re.match(r"; ([a-z_]+): (.*)$", line)
        if m:
            out.append((m.group(1), m.group(2)))
    return out


def cfg_table():
    """[(key, section)] of gatewayd/cfg.c's cfg_options, in its order."""
    text = read(CFG_C)
    table = text[text.index("cfg_options[] = {"):]
    table = table[:table.index("\n};")]
    return re.findall(r'"([a-z_]+)", CFG_IN_([A-Z]+)', table)


def readme_config_rows():
    """[(key, where, default, meaning)] of README's configuration table:
    the rows of the section "## Configuration" whose first cell is one
    key in backquotes."""
    text = read(README)
    start = text.index("\n## Configuration\n")
    end = text.find("\n## ", start + 1)
    rows = []
    for line in text[start:end if end != -1 else None].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if (line.startswith("|") and len(cells) == 4 and
                re.fullmatch(r"`[a-z_]+`", cells[0])):
            rows.append((cells[0].strip("`"), cells[1], cells[2], cells[3]))
    return rows


def test_reference_is_read():
    """The headings are found, and agree with cfg.c's table: the reading
    below is not vacuous."""
    keys = [k for k, _ in reference_headings()]
    assert len(keys) >= 50, keys
    assert keys == [k for k, _ in cfg_table()]


def test_readme_has_a_row_for_every_key():
    """One row per heading of the reference, in its order (a key that may
    go in two kinds of section, such as max_rooms, has a heading and a
    row for each), and no row for a key the reference does not have."""
    want = [k for k, _ in reference_headings()]
    have = [r[0] for r in readme_config_rows()]
    missing = [k for k in want if have.count(k) < want.count(k)]
    unknown = [k for k in have if have.count(k) > want.count(k)]
    assert not missing, f"README.md has no row for {missing}"
    assert not unknown, f"README.md has rows for unknown keys {unknown}"
    assert have == want, "README.md's rows are not in the reference's order"


def test_readme_rows_say_where_and_default():
    """Each row's section is cfg.c's, and its default the reference's."""
    rows = readme_config_rows()
    for (key, heading), (_, section), (rkey, where, default, meaning) in zip(
            reference_headings(), cfg_table(), rows):
        assert rkey == key
        assert where == WHERE[section], (key, where, WHERE[section])
        assert meaning, key
        m = re.search(r"(?<!no )\bdefault (\S+?)[,;)]?(\s|$)", heading)
        if m:
            word = r"(?<![\w.])" + re.escape(m.group(1)) + r"(?![\w.])"
            assert re.search(word, default.replace("`", "")), \
                (key, default, m.group(1))
        elif "required" in heading or "at least one" in heading:
            assert default == "(required)", (key, default)
        else:
            assert default.startswith("(none") or \
                default.startswith("(the "), (key, default)


def make_targets():
    targets = set()
    for path in MAKEFILES:
        for line in read(path).splitlines():
            m = re.match(r"([^\s:#=$][^:#=]*?)\s*:(?!=)", line)
            if m and not line.startswith("\t"):
                targets.update(m.group(1).split())
    return targets


def test_make_targets_exist():
    """Every make TARGET of README.md (make VAR=... TARGET, make TARGET
    VAR=...) is a target of the Makefile or of what it includes."""
    targets = make_targets()
    assert {"all", "run", "test", "install"} <= targets
    named = set()
    for m in re.finditer(r"\bmake((?:\s+[A-Z_]+=\S+)*)\s+([a-z][\w-]*)\b",
                         read(README)):
        named.add(m.group(2))
    assert {"run", "test"} <= named
    assert not named - targets, f"no such make target: {named - targets}"


def markdown_links(path):
    """The targets of the inline links of a Markdown file, outside code
    blocks and code spans."""
    text = re.sub(r"^```.*?^```", "", read(path), flags=re.S | re.M)
    text = re.sub(r"`[^`\n]*`", "", text)
    return re.findall(r"\]\(([^)\s]+)\)", text)


DOCS = [README] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))


@pytest.mark.parametrize("path", DOCS, ids=lambda p: os.path.relpath(p, ROOT))
def test_relative_links_lead_to_files(path):
    links = [link for link in markdown_links(path)
             if not re.match(r"[a-z][a-z0-9+.-]*:", link) and
             not link.startswith("#")]
    broken = [link for link in links
              if not os.path.exists(os.path.join(os.path.dirname(path),
                                                 link.split("#")[0]))]
    assert not broken, f"{os.path.relpath(path, ROOT)}: no such file: {broken}"
