"""What users read is self-contained: no pointers to files they lack, and README links that work anywhere.

* README.md, CHANGELOG.md, docs/**/*.md and benchmarks/*.md, and the comments and string literals (docstrings,
  error messages) of the package, the example DAGs, the system tests, the benchmarks and the scripts, cite no
  internal reference: the maintainers' reference files (``API.md``, the Airflow ``NOTES``), their sections
  (``§ 18``), their "lessons", or the numbers and wording of internal issues. Users have none of them; the
  docs state the fact.
  CHANGELOG.md is checked too: it is read by users deciding to upgrade, and history is told by what changed.
* README.md is the package's long description on a package index, where relative links lead nowhere: every
  link in it is absolute.
* The API reference pages render only the public modules (mkdocstrings reads whatever ``:::`` names, private
  modules included, and those change without notice).

``make docs`` (``mkdocs build --strict``, run by CI) checks the links between pages and the references.
"""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REPO = "https://github.com/airflow-provider-posthog/airflow-provider-posthog"

#: Internal references, each with why it is one. Tuned so that legitimate text passes: ``benchmarks/NOTES.md``
#: is a file of this repository (also as a bare name); "issues" in general and GitHub issue URLs are fine.
FORBIDDEN: dict[str, re.Pattern[str]] = {
    "the maintainers' API reference file": re.compile(r"\bAPI\.md\b"),
    # A relative path that climbs out of the repository into a folder of reference files (two folders deep;
    # the docs' own links such as ``../destinations/s3.md`` are one deep), or such a folder named bare.
    "a path outside the repository": re.compile(
        r"\.\./[\w-]+/[\w-]+/|(?<![\w./])[\w-]+/(?:posthog|airflow)/[\w-]+\.(?:md|json)\b"
    ),
    "a section number of a reference file": re.compile(r"§\s*\d"),
    "the maintainers' Airflow notes": re.compile(
        r"airflow/NOTES\.md|\b(?:the|Airflow)\s+NOTES\.md|\bNOTES\.md\s*(?:lessons?|sections?)\b"
        r"|\bNOTES\b(?!\.md)"
    ),
    "a numbered lesson": re.compile(r"\blessons?\s+#?\d", re.I),
    "an internal issue number": re.compile(r"\bissues?\s+#?\d+", re.I),
    "wording of an internal issue": re.compile(
        r"\bthe issue(?:'s|\s+(?:asks|says|wants|requires|requests))\b|\b(?:in|for|by|of) this issue\b", re.I
    ),
}

MARKDOWN_FILES = sorted(
    {
        ROOT / "README.md",
        ROOT / "CHANGELOG.md",
        *(ROOT / "docs").rglob("*.md"),
        *(ROOT / "benchmarks").glob("*.md"),
    }
)
PYTHON_FILES = sorted(
    p
    for folder in ("airflow_provider_posthog", "example_dags", "system_tests", "benchmarks", "scripts")
    for p in (ROOT / folder).rglob("*.py")
    if "__pycache__" not in p.parts
)

#: Modules whose docstrings the API reference may render.
PUBLIC_MODULES = (
    "airflow_provider_posthog.hooks.posthog",
    "airflow_provider_posthog.hooks.posthog_async",
    "airflow_provider_posthog.api.jobs",
    "airflow_provider_posthog.api.decisions",
    "airflow_provider_posthog.operators.backfill",
    "airflow_provider_posthog.operators.batch_export",
    "airflow_provider_posthog.operators.retry_failed",
    "airflow_provider_posthog.notifications.posthog",
    "airflow_provider_posthog.sensors.batch_export",
    "airflow_provider_posthog.triggers.batch_export",
    "airflow_provider_posthog.links.posthog",
    "airflow_provider_posthog.destinations",
    "airflow_provider_posthog.lineage.assets",
    "airflow_provider_posthog.lineage.outlets",
    "airflow_provider_posthog.exceptions",
    "airflow_provider_posthog.emulator.control",
    "airflow_provider_posthog.emulator.server",
    "airflow_provider_posthog.emulator.settings",
)


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def internal_references(text: str, first_line: int = 1) -> list[str]:
    """``"<line>: <why>: <match>"`` for every forbidden pattern in ``text``."""
    found = []
    for why, pattern in FORBIDDEN.items():
        for match in pattern.finditer(text):
            line = first_line + text.count("\n", 0, match.start())
            found.append(f"{line}: {why}: {match.group(0)!r}")
    return found


def python_prose(source: str) -> list[tuple[int, str]]:
    """The comments and string literals of ``source`` with their first line (docstrings, messages)."""
    # Python 3.12+ tokenizes the text of an f-string as FSTRING_MIDDLE pieces.
    prose = {tokenize.COMMENT, tokenize.STRING, getattr(tokenize, "FSTRING_MIDDLE", tokenize.STRING)}
    return [
        (token.start[0], token.string)
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type in prose
    ]


@pytest.mark.parametrize("path", MARKDOWN_FILES, ids=_rel)
def test_user_docs_cite_no_internal_reference(path: Path) -> None:
    found = internal_references(path.read_text(encoding="utf-8"))
    assert not found, f"{_rel(path)} cites internal references; state the fact instead:\n" + "\n".join(found)


@pytest.mark.parametrize("path", PYTHON_FILES, ids=_rel)
def test_code_comments_and_strings_cite_no_internal_reference(path: Path) -> None:
    found = [
        hit
        for line, text in python_prose(path.read_text(encoding="utf-8"))
        for hit in internal_references(text, line)
    ]
    assert not found, f"{_rel(path)} cites internal references; state the fact instead:\n" + "\n".join(found)


# Inline links and images ``[text](target "title")``, reference definitions ``[id]: target``, HTML attributes.
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEFINITION = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
HTML_LINK = re.compile(r"\b(?:href|src)\s*=\s*[\"']([^\"']+)[\"']", re.I)
FENCED_BLOCK = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")
ABSOLUTE = re.compile(r"^(?:https?://|mailto:)", re.I)


def link_targets(markdown: str) -> list[str]:
    """Every link target of ``markdown`` outside code blocks and code spans."""
    prose = CODE_SPAN.sub("", FENCED_BLOCK.sub("", markdown))
    patterns = (INLINE_LINK, REFERENCE_DEFINITION, HTML_LINK)
    return [m.group(1) for pattern in patterns for m in pattern.finditer(prose)]


def test_readme_links_are_absolute() -> None:
    targets = link_targets((ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(targets) >= 10, f"expected the README's links, found {targets}"
    relative = [t for t in targets if not ABSOLUTE.match(t)]
    assert not relative, (
        "README.md is the package description on a package index, where relative links and bare #anchors "
        f"break; use {REPO}/blob/main/...: {relative}"
    )


def test_readme_says_how_to_install_without_a_release() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    install = readme.split("## Install", 1)[1].split("\n## ", 1)[0]
    assert f"git+{REPO}" in install
    assert re.search(r"pip install \./airflow-provider-posthog\b", install)
    assert re.search(r"pip install \S+\.whl", install)


def test_api_reference_renders_only_public_modules() -> None:
    identifiers = [
        (_rel(page), m.group(1))
        for page in sorted((ROOT / "docs").rglob("*.md"))
        for m in re.finditer(r"^:::\s*(\S+)", page.read_text(encoding="utf-8"), re.M)
    ]
    assert identifiers, "the API reference pages should render the public modules with ::: directives"
    private = [(page, ident) for page, ident in identifiers if not ident.startswith(PUBLIC_MODULES)]
    assert not private, f"the API reference renders non-public modules: {private}"
    rendered = {ident for _, ident in identifiers}
    missing = [m for m in PUBLIC_MODULES if not any(i.startswith(m) for i in rendered)]
    assert not missing, f"public modules missing from the API reference: {missing}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("See ../reference/posthog/API.md §18 for the facts.", 3),
        ("The spec sits in notes/posthog/openapi.json.", 1),
        ("Read [the hook](../hook.md) and [S3](../destinations/s3.md).", 0),
        ("NOTES lesson 4 says so.", 2),
        ("As the issue asks for, and as issue 3 said.", 2),
        ("Fixed in this issue.", 1),
        ("(API.md §7)", 2),
        ("benchmarks/NOTES.md holds the hand-written analysis.", 0),
        ('notes = ROOT / "benchmarks" / "NOTES.md"', 0),
        ("Measured in the Airflow NOTES.md, section 3.", 1),
        ("See https://github.com/apache/airflow/issues/58567 and open issues upstream.", 0),
        ("Fairness notes: the notes column; one lesson learned.", 0),
    ],
)
def test_the_patterns_catch_internal_references_and_pass_legitimate_text(text: str, expected: int) -> None:
    assert len(internal_references(text)) == expected, internal_references(text)


def test_readme_link_check_sees_relative_links() -> None:
    sample = (
        "[a](docs/x.md) [b](#install) ![c](img.png) [d](https://example.com)\n"
        '[e]: docs/y.md\n<a href="z.html">z</a>\n`[not](a-link.md)`\n```\n[nor](this.md)\n```\n'
    )
    targets = link_targets(sample)
    assert sorted(t for t in targets if not ABSOLUTE.match(t)) == sorted(
        ["docs/x.md", "#install", "img.png", "docs/y.md", "z.html"]
    )
