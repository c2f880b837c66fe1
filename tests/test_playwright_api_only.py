"""The project's own browser tests and benchmarks read the page through its documented API
(``window.edgesight.api``, docs/page-api.md) and, where a test must reach inside, through the
one named test seam (``window.edgesight.testing``), never through scattered internals (issue
19). The Firefox/WebKit page functions (``playwright/page_state.py``) and their tests use the
API alone. Pure text, no browser."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("playwright", "bench", "scripts")  # everything that drives a page
API = "api"
SEAM = "testing"
API_ONLY = ("playwright/page_state.py", "playwright/test_other_browsers.py")

# Every way a script reaches the page's object: window.edgesight, globalThis.edgesight,
# self.edgesight (with ?. too) and window["edgesight"]; then what follows it.
REACH = re.compile(
    r"""\b(?:window|globalThis|self)\s*(?:\??\.\s*edgesight\b|\[\s*["'`]edgesight["'`]\s*\])"""
)
# What may follow: a member named in ``allowed``, or `&&` (a guard before such a member).
GUARD = re.compile(r"\s*&&")
# In a page function, the bare global (``edgesight.client``) is window.edgesight too.
BARE = re.compile(r"(?<![\w.$/:@`'\"-])edgesight\s*\??\.\s*([A-Za-z_$][\w$]*)")


def internal_reads(text: str, allowed: tuple[str, ...] = (API, SEAM)) -> list[str]:
    """Each place in ``text`` that reaches ``window.edgesight`` other than through a member
    in ``allowed`` (an alias such as ``const e = window.edgesight`` counts: it hides what
    is read), as the line it is on."""
    member = re.compile(r"\s*\??\.\s*(?:" + "|".join(allowed) + r")\b")
    found = []
    for reach in REACH.finditer(text):
        rest = text[reach.end() :]
        if member.match(rest) or GUARD.match(rest):
            continue
        start = text.rfind("\n", 0, reach.start()) + 1
        end = text.find("\n", reach.end())
        found.append(text[start : end if end != -1 else len(text)].strip())
    return found


def bare_reads(source: str, allowed: tuple[str, ...] = (API, SEAM)) -> list[str]:
    """Page functions (string constants with ``=>``) in Python ``source`` that read the bare
    global ``edgesight`` other than through a member in ``allowed``."""
    return [
        node.value.strip()
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "=>" in node.value
        for match in BARE.finditer(node.value)
        if match.group(1) not in allowed
    ]


@pytest.mark.parametrize(
    "snippet",
    [
        "() => window.edgesight.api.state()",
        "() => window.edgesight?.api.lastDetections",
        "() => Boolean(window.edgesight && window.edgesight.api)",
        "(code) => window.edgesight.testing.pyodide.runPython(code)",
        "window . edgesight . api",
        "from edgesight.serving import ServerThread",  # the Python package, not the page
    ],
)
def test_the_api_and_the_seam_are_allowed(snippet: str) -> None:
    assert internal_reads(snippet) == []


@pytest.mark.parametrize(
    "snippet",
    [
        "() => window.edgesight.timings.length",
        "() => window.edgesight?.client.node_name",
        "() => window.edgesight.overlay.lastDrawn.labels",
        "const e = window.edgesight;\nreturn e.lastBoxes.node;",
        "const { client } = window.edgesight;",
        "() => window['edgesight'].readies",
        "() => globalThis.edgesight.pyodide",
        "() => self.edgesight.local.loseDevice()",
        "() => window.edgesight.apiary",  # a name that only starts like the API
    ],
)
def test_internals_are_found(snippet: str) -> None:
    assert internal_reads(snippet) != []


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ('page.evaluate("() => edgesight.client.mode")', True),
        ('page.evaluate("() => edgesight?.timings.length")', True),
        ('page.evaluate("() => edgesight.api.state()")', False),
        ('HOST = "edgesight.test"', False),  # a host name, not a page function
        ("f(x=\"() => location.host === 'edgesight.test'\")", False),
    ],
)
def test_the_bare_global_is_found_in_page_functions(source: str, found: bool) -> None:
    assert bool(bare_reads(source)) is found


def test_the_seam_is_refused_where_only_the_api_may_be_used() -> None:
    assert internal_reads("window.edgesight.testing.client", allowed=(API,)) != []


def scanned_files() -> list[Path]:
    files = sorted(path for folder in SCANNED for path in (ROOT / folder).rglob("*.py"))
    assert any(path.name == "test_page_api.py" for path in files)  # the scan sees the tests
    return files


def test_browser_tests_and_benchmarks_read_only_the_api_and_the_seam() -> None:
    offenders = {}
    for path in scanned_files():
        text = path.read_text(encoding="utf-8")
        if reads := internal_reads(text) + bare_reads(text):
            offenders[str(path.relative_to(ROOT))] = reads
    assert offenders == {}, "read window.edgesight.api (docs/page-api.md) or .testing"


@pytest.mark.parametrize("name", API_ONLY)
def test_the_other_browsers_use_the_api_alone(name: str) -> None:
    text = (ROOT / name).read_text(encoding="utf-8")
    assert "edgesight.api" in text or "page_state" in text  # it does read the page
    assert internal_reads(text, allowed=(API,)) + bare_reads(text, allowed=(API,)) == []
