"""Guards on the project's shape that the gates alone would let drift."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path, PurePosixPath
from typing import Literal

import msgspec
import msgspec.inspect as mi

from common.protocol import Stats
from common.settings import SETTINGS_HELP

ROOT = Path(__file__).resolve().parents[2]


def _sidecar_modules() -> set[str]:
    out = set()
    for entry in (ROOT / "sidecar").iterdir():
        if entry.name in ("__init__.py", "__main__.py", "simulator", "__pycache__"):
            continue
        if entry.suffix == ".py" or (entry / "__init__.py").exists():
            out.add(f"sidecar.{entry.stem}")
    return out


def test_simulator_contracts_cover_every_sidecar_module() -> None:
    """A new sidecar module must be listed, or the simulator could start sharing code with the client."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = {c["name"]: c for c in config["tool"]["importlinter"]["contracts"]}
    listed_out = set(contracts["the simulator imports nothing of the project"]["forbidden_modules"])
    listed_in = set(contracts["nothing imports the simulator"]["source_modules"])
    assert _sidecar_modules() <= listed_out
    assert _sidecar_modules() <= listed_in


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [name for name, _ in SETTINGS_HELP if f"`{name}`" not in readme]
    assert not missing, f"README lacks {missing}"


# --- typed stats: no JSON document carried as text --------------------------------------------------------------

_JSON_TEXT_NAME = re.compile(r"(?:^|_)(?:json|raw|blob|payload|document|doc|body)(?:_|$)")
"""Field names that say "a serialized document" (``json``, ``stats_json``, ``raw_body`` ...)."""


def json_text_fields(root: type[msgspec.Struct]) -> list[str]:
    """Every field, in ``root`` and in each Struct reachable from it, that carries a JSON document as text:
    a ``str`` or ``bytes`` named for one, or a ``msgspec.Raw``."""
    found: list[str] = []
    seen: set[type] = set()

    def visit(info: mi.Type, where: str, name: str) -> None:
        if isinstance(info, mi.RawType):
            found.append(f"{where}: msgspec.Raw")
        elif isinstance(info, (mi.StrType, mi.BytesType, mi.ByteArrayType)) and _JSON_TEXT_NAME.search(name):
            found.append(f"{where}: {type(info).__name__.removesuffix('Type').lower()}")
        elif isinstance(info, mi.StructType):
            if info.cls in seen:
                return
            seen.add(info.cls)
            for field in info.fields:
                visit(field.type, f"{info.cls.__name__}.{field.name}", field.name)
        elif isinstance(info, mi.UnionType):
            for member in info.types:
                visit(member, where, name)
        elif isinstance(info, (mi.ListType, mi.SetType, mi.FrozenSetType, mi.VarTupleType)):
            visit(info.item_type, where, name)
        elif isinstance(info, mi.TupleType):
            for item in info.item_types:
                visit(item, where, name)
        elif isinstance(info, mi.DictType):
            visit(info.value_type, where, name)

    visit(mi.type_info(root), root.__name__, "")
    return found


class _Inner(msgspec.Struct):
    detail_json: str
    name: str = ""


class _Deep(msgspec.Struct):
    payload: bytes | None = None


class _Outer(msgspec.Struct):
    items: list[_Inner]
    by_key: dict[str, tuple[int, _Deep]]
    passthrough: msgspec.Raw = msgspec.Raw(b"{}")


class _OldStats(msgspec.Struct, tag="stats"):
    json: str


class _Clean(msgspec.Struct):
    id: str
    jsonl_lines: int
    state: Literal["ready", "stopped"]
    counters: dict[str, int]
    nested: list[_Clean] | None = None


def test_json_text_fields_are_caught() -> None:
    """Planted: the 1.x stats frame, and JSON text hidden in a list, a dict of tuples and a union."""
    assert json_text_fields(_OldStats) == ["_OldStats.json: str"]
    assert sorted(json_text_fields(_Outer)) == [
        "_Deep.payload: bytes",
        "_Inner.detail_json: str",
        "_Outer.passthrough: msgspec.Raw",
    ]
    assert json_text_fields(_Clean) == []


def test_stats_carry_no_json_as_text() -> None:
    """The stats frame is typed all the way down (docs/architecture.md §3.3)."""
    assert json_text_fields(Stats) == []


# --- references: nothing outside the repository, every section reference resolvable -------------------------

SECTION_SIGN = "\u00a7"
"""Spelled as an escape so that this file's own examples are not references."""

_OUTSIDE_NOTES = ("wire", "gateway-spec", "clients", "style", "lingma-protocol")
"""Reference notes that are kept beside a checkout, never in it; only ``docs/lingma-protocol.md`` is ours."""

_OUTSIDE = (
    (re.compile(r"(?:\.\./)+shared\b"), "the shared notes beside the checkout"),
    (re.compile(r"(?<![\w.-])shared/+captures\b"), "captures outside tests/fixtures"),
    (re.compile(r"(?<![\w/.-])(?:" + "|".join(map(re.escape, _OUTSIDE_NOTES)) + r")\.md\b"), "a note outside docs/"),
    (re.compile(r"(?<![\w.~-])/(?:work|home|root|Users|mnt)/"), "an absolute path on a developer's machine"),
    (re.compile(r"\b[A-Z_]*ROOT\.parents?\b"), "the directory above the repository"),
)
_UPWARD = re.compile(r"(?<![\w.])((?:\.\./)+)")
_FILE_PARENTS = re.compile(r"Path\(__file__\)(?:\.resolve\(\)|\.absolute\(\))?((?:\.parent\b)*)(?:\.parents\[(\d+)\])?")


def outside_references(rel: str, text: str) -> list[str]:
    """What in ``text`` (the file at ``rel``, relative to the root) points outside the repository."""
    found = [f"{rel}: {m.group(0)!r} ({why})" for pattern, why in _OUTSIDE for m in pattern.finditer(text)]
    depth = len(PurePosixPath(rel).parts) - 1
    # A relative path that climbs above the root from the file's own directory.
    found += [f"{rel}: {m.group(0)!r} climbs out" for m in _UPWARD.finditer(text) if m.group(1).count("../") > depth]
    if rel.endswith(".py"):
        for m in _FILE_PARENTS.finditer(text):
            levels = m.group(1).count(".parent") + (int(m.group(2)) + 1 if m.group(2) is not None else 0)
            if levels > depth + 1:
                found.append(f"{rel}: {m.group(0)!r} climbs out of the repository")
    return found


VENDORED = ("handlers/docs/static/swagger-ui/",)
"""Third-party files shipped unchanged (with their licenses): not the project's own text."""


def _tree_texts() -> list[tuple[str, str]]:
    """Every tracked or new (not ignored) text file but vendored ones, as (path relative to the root, text)."""
    try:
        listing = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout.decode()
        paths = [ROOT / name for name in listing.split("\0") if name]
    except (OSError, subprocess.CalledProcessError):
        skipped = {".git", ".venv", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", "node_modules"}
        paths = [p for p in ROOT.rglob("*") if not skipped & set(p.relative_to(ROOT).parts)]
    out = []
    for path in sorted(paths):
        if path.relative_to(ROOT).as_posix().startswith(VENDORED):
            continue
        try:
            out.append((path.relative_to(ROOT).as_posix(), path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError):
            continue  # a directory, a deleted file, binary data
    return out


def test_outside_references_are_caught() -> None:
    up = "../"
    planted = {
        ("tests/conftest.py", "CAPTURES = ROOT" + '.parent / "shared" / "captures"'),
        ("tests/conftest.py", "Path(__file__).resolve()" + ".parent" * 3 + ' / "shared"'),
        ("tests/lingma/helpers.py", "Path(__file__).parents" + "[3]"),
        ("README.md", "see " + up + "shared/wire" + ".md"),
        ("tests/conftest.py", 'ROOT / "shared' + '/captures"'),
        ("handlers/errors.py", "The table of gateway-spec" + ".md"),
        ("sidecar/lingma/rpc.py", "(lingma-protocol" + ".md, the quirk)"),
        ("bench/run.py", '"/wo' + 'rk/wt/x/captures/a.json"'),
        ("docs/x.md", "[notes](" + up * 2 + "notes.md)"),
    }
    missed = [(rel, text) for rel, text in planted if not outside_references(rel, text)]
    assert not missed, f"not caught: {missed}"
    clean = {
        ("tests/conftest.py", 'Path(__file__).resolve().parent / "fixtures" / "captures"'),
        ("tests/e2e/bench/test_bench_smoke.py", "ROOT_DIR = Path(__file__).resolve()" + ".parents[3]"),
        ("README.md", "[docs/lingma-protocol.md](docs/lingma-protocol.md#9-behaviours)"),
        ("sidecar/lingma/discover.py", '"~/.lingma/bin" or "/Applications/Lingma.app/Contents"'),
        ("infra/compose.split.yaml", "build: {context: .., dockerfile: infra/Dockerfile}"),
        ("docs/architecture.md", "see [the README](" + up + "README.md)"),
    }
    flagged = [outside_references(rel, text) for rel, text in clean]
    assert not any(flagged), flagged


def test_nothing_refers_outside_the_repository() -> None:
    found = [problem for rel, text in _tree_texts() for problem in outside_references(rel, text)]
    assert not found, "\n".join(found)


_SECTION_REF = re.compile(SECTION_SIGN + r"(\d+(?:\.\d+)*)?")
_DOC_NAME = re.compile(r"(?<![\w/.-])docs/([\w.-]+\.md)")
_NUMBERED_HEADING = re.compile(r"^#{1,6}[ \t]+(\d+(?:\.\d+)*)\.?[ \t]", re.MULTILINE)


def doc_sections(text: str) -> list[str]:
    """The numbers of a document's numbered headings (``## 3. Anthropic`` is 3, ``### 3.2 Order`` is 3.2)."""
    return _NUMBERED_HEADING.findall(text)


def section_problems(rel: str, text: str, sections: dict[str, set[str]]) -> list[str]:
    """Every section reference in ``text`` that does not resolve.

    A reference is a section sign and a number; it names the last ``docs/<file>.md`` before it in the same
    paragraph, or, inside a docs file, that file itself. ``<...>`` after the sign is a placeholder.
    """
    own = rel.removeprefix("docs/") if rel.startswith("docs/") and "/" not in rel[5:] else None
    problems: list[str] = []
    for paragraph in re.split(r"\n[ \t]*\n", text):
        for m in _SECTION_REF.finditer(paragraph):
            number = m.group(1)
            if number is None:
                if not paragraph.startswith("<", m.end()):
                    problems.append(f"{rel}: a section sign without a number: {paragraph[m.start() : m.end() + 20]!r}")
                continue
            names = _DOC_NAME.findall(paragraph, 0, m.start())
            doc = names[-1] if names else own
            if doc is None:
                problems.append(f"{rel}: section {number} names no docs/ file")
            elif doc not in sections:
                problems.append(f"{rel}: docs/{doc} (section {number}) does not exist")
            elif number not in sections[doc]:
                problems.append(f"{rel}: docs/{doc} has no section {number}")
    return problems


def _docs_sections() -> dict[str, set[str]]:
    return {path.name: set(doc_sections(path.read_text(encoding="utf-8"))) for path in (ROOT / "docs").glob("*.md")}


def test_section_references_are_checked() -> None:
    sign = SECTION_SIGN
    sections = {"dialects.md": {"1", "1.5", "3", "3.3", "3.5"}}
    assert doc_sections("# Dialects\n## 1. Rules\n### 1.5 The error table\n#### 1.5.2 Deep\nnot ## 2. here\n") == [
        "1",
        "1.5",
        "1.5.2",
    ]
    good = f"the table (docs/dialects.md {sign}1.5) and the stream\n(docs/dialects.md {sign}3.3-{sign}3.5)"
    assert section_problems("handlers/errors.py", good, sections) == []
    assert section_problems("docs/dialects.md", f"as {sign}1.5 says", sections) == []
    assert section_problems("README.md", f"cite `docs/<file>.md {sign}<section>`", sections) == []
    bad = {
        f"docs/dialects.md {sign}9.9": "has no section 9.9",
        f"docs/dialects.md {sign}3.3-{sign}3.6": "has no section 3.6",
        f"docs/wire.md {sign}2.9": "does not exist",
        f"the error table ({sign}7.4)": "names no docs/ file",
        f"docs/dialects.md\n\nand then {sign}1.5": "names no docs/ file",
        f"docs/dialects.md {sign} 1.5": "without a number",
    }
    for text, why in bad.items():
        problems = section_problems("handlers/errors.py", text, sections)
        assert len(problems) == 1 and why in problems[0], (text, problems)


def test_every_section_reference_exists() -> None:
    sections = _docs_sections()
    for name in ("architecture", "dialects", "lingma-protocol", "operations"):
        assert sections.get(name + ".md"), f"docs/{name}.md is missing or has no numbered sections"
    duplicated = {
        path.name: sorted({n for n in numbers if numbers.count(n) > 1})
        for path in (ROOT / "docs").glob("*.md")
        if len(numbers := doc_sections(path.read_text(encoding="utf-8"))) != len(set(numbers))
    }
    assert not duplicated, f"section numbers used twice: {duplicated}"
    problems = [problem for rel, text in _tree_texts() for problem in section_problems(rel, text, sections)]
    assert not problems, "\n".join(problems)


_MD_LINK = re.compile(r"\]\(((?:docs/)?[\w.-]+\.md)(?:#([\w-]+))?\)")
_HEADING_TEXT = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*$", re.MULTILINE)


def heading_anchors(text: str) -> set[str]:
    """GitHub's anchors for a document's headings: lower case, punctuation dropped, spaces as hyphens."""
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in _HEADING_TEXT.findall(text)}


def test_markdown_links_into_docs_resolve() -> None:
    assert heading_anchors("## 9. Behaviours that rest on readings\n### 1.5 The `error` table\n") == {
        "9-behaviours-that-rest-on-readings",
        "15-the-error-table",
    }
    problems = []
    for rel, text in _tree_texts():
        if not rel.endswith(".md") or rel.startswith("tests/"):
            continue
        for target, anchor in _MD_LINK.findall(text):
            path = (ROOT / rel).parent / target
            if not path.is_file():
                problems.append(f"{rel}: link to missing {target}")
            elif anchor and anchor not in heading_anchors(path.read_text(encoding="utf-8")):
                problems.append(f"{rel}: {target} has no heading #{anchor}")
    assert not problems, "\n".join(problems)


# --- one dialect template: every dialect folder holds the same four modules ------------------------------------

DIALECT_MODULES = frozenset({"__init__.py", "routes.py", "schema.py", "translate.py", "encoder.py"})
"""routes (HTTP), schema (request, answer and event types), translate (request to conversation), encoder (the
stream and the non-stream fold); docs/dialects.md §7 says how to add one."""


def dialect_problems(packages: dict[str, dict[str, str]]) -> list[str]:
    """What breaks the template in ``packages`` (name to its modules' file names and texts).

    A dialect is a package that runs turns (its routes use ``handlers.streaming``) or that has a translator
    or an encoder; it must hold exactly the template's modules.
    """
    problems = []
    for name, modules in sorted(packages.items()):
        runs_turns = "handlers.streaming" in modules.get("routes.py", "")
        if not (runs_turns or {"translate.py", "encoder.py"} & modules.keys()):
            continue
        missing, extra = sorted(DIALECT_MODULES - modules.keys()), sorted(modules.keys() - DIALECT_MODULES)
        if missing:
            problems.append(f"handlers/{name} lacks {', '.join(missing)}")
        if extra:
            problems.append(f"handlers/{name} has modules outside the template: {', '.join(extra)}")
    return problems


def _handler_packages() -> dict[str, dict[str, str]]:
    return {
        entry.name: {module.name: module.read_text(encoding="utf-8") for module in entry.glob("*.py")}
        for entry in (ROOT / "handlers").iterdir()
        if (entry / "__init__.py").exists()
    }


def test_the_dialect_template_check_catches_a_drifted_folder() -> None:
    template = dict.fromkeys(DIALECT_MODULES, "") | {"routes.py": "from handlers.streaming import open_turn"}
    assert dialect_problems({"good": template, "models": {"__init__.py": "", "routes.py": "", "schema.py": ""}}) == []
    no_encoder = {k: v for k, v in template.items() if k != "encoder.py"}
    with_blocks = template | {"blocks.py": ""}
    quiet_routes = {k: "" for k in template if k != "schema.py"}  # no streaming import, but a translator
    assert dialect_problems({"a": no_encoder, "b": with_blocks, "c": quiet_routes}) == [
        "handlers/a lacks encoder.py",
        "handlers/b has modules outside the template: blocks.py",
        "handlers/c lacks schema.py",
    ]


def test_every_dialect_folder_follows_the_template() -> None:
    packages = _handler_packages()
    with_encoder = {name for name, modules in packages.items() if "encoder.py" in modules}
    assert {"openai_chat", "openai_responses", "anthropic_messages"} <= with_encoder
    assert dialect_problems(packages) == []


# --- small modules: no module of handlers/ or sidecar/ over MAX_MODULE_LINES, declarative schemas aside --------

MAX_MODULE_LINES = 320
LONG_SCHEMAS = frozenset({"handlers/openai_responses/schema.py"})
"""Declarative Struct definitions only (the Responses request, output items and events); splitting them
would scatter one wire format over several files."""


def long_modules(lengths: dict[str, int], allowed: frozenset[str] = LONG_SCHEMAS) -> list[str]:
    """Modules (path to line count) over the limit and not on the allowlist, longest first."""
    over = [(n, path) for path, n in lengths.items() if n > MAX_MODULE_LINES and path not in allowed]
    return [f"{path}: {n} lines (limit {MAX_MODULE_LINES})" for n, path in sorted(over, reverse=True)]


def _module_lengths() -> dict[str, int]:
    return {
        path.relative_to(ROOT).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for top in ("handlers", "sidecar")
        for path in (ROOT / top).rglob("*.py")
    }


def test_the_module_length_check_catches_a_long_module() -> None:
    lengths = {
        "sidecar/a.py": 320,
        "sidecar/b.py": 321,
        "handlers/c.py": 900,
        "handlers/openai_responses/schema.py": 500,
    }
    assert long_modules(lengths) == ["handlers/c.py: 900 lines (limit 320)", "sidecar/b.py: 321 lines (limit 320)"]
    assert long_modules(lengths, allowed=frozenset()) == [
        "handlers/c.py: 900 lines (limit 320)",
        "handlers/openai_responses/schema.py: 500 lines (limit 320)",
        "sidecar/b.py: 321 lines (limit 320)",
    ]


def test_no_module_of_handlers_or_sidecar_is_over_the_limit() -> None:
    lengths = _module_lengths()
    assert "sidecar/pool.py" in lengths and "handlers/streaming.py" in lengths
    assert long_modules(lengths) == []
    assert lengths.keys() >= LONG_SCHEMAS, "the allowlist names only modules that exist"
