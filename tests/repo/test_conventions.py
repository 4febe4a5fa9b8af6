"""What a reader and a contributor look for: the licences, how to cite, the issue forms."""

from __future__ import annotations

import hashlib
import tomllib

import yaml

from microscopy_notebook.book import hosted_site
from microscopy_notebook.paths import BOOK, ROOT

# sha256 of https://creativecommons.org/licenses/by/4.0/legalcode.txt, the legal code as published
# pragma: allowlist nextline secret (a digest, not a secret)
CC_BY_4_LEGALCODE = "9ba9550ad48438d0836ddab3da480b3b69ffa0aac7b7878b5a0039e7ab429411"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
FORMS = ROOT / ".github" / "ISSUE_TEMPLATE"


def test_the_code_is_bsd_3_clause_and_the_guides_text_cc_by_4() -> None:
    assert PYPROJECT["license"] == "BSD-3-Clause"
    assert (ROOT / "LICENSE").read_text().startswith("BSD 3-Clause License\n")
    legalcode = (BOOK / "LICENSE").read_bytes()
    assert hashlib.sha256(legalcode).hexdigest() == CC_BY_4_LEGALCODE, "the text as published"


def test_the_citation_names_this_version_and_both_licences() -> None:
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0"
    assert citation["version"] == PYPROJECT["version"]
    assert citation["license"] == ["BSD-3-Clause", "CC-BY-4.0"]
    config = yaml.safe_load((BOOK / "_config.yml").read_text())
    assert citation["repository-code"] == config["repository"]["url"]


def test_every_issue_starts_from_a_form_and_the_guides_has_the_page_field() -> None:
    assert yaml.safe_load((FORMS / "config.yml").read_text())["blank_issues_enabled"] is False
    forms = {
        p.name: yaml.safe_load(p.read_text()) for p in FORMS.glob("*.yml") if p.stem != "config"
    }
    assert hosted_site.ISSUE_FORM in forms, "the guide's issue button opens this form"
    for name, form in forms.items():
        assert form["name"] and form["description"], name
        ids = [field["id"] for field in form["body"]]
        assert len(ids) == len(set(ids)), f"{name}: field ids are what a link can fill in"
        assert any(f.get("validations", {}).get("required") for f in form["body"]), name
    guide = {field["id"]: field for field in forms[hosted_site.ISSUE_FORM]["body"]}
    assert guide["page"]["type"] == "input"
