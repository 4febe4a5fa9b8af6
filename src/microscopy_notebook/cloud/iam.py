"""Who is granted which role on which resource (``book/iam.yaml``), and the checks that keep it
least privilege, as measured.

Each person's grants are per resource *kind*: the project, the raw-data bucket, the output
bucket, a reader's own bucket, the site's bucket, the service accounts, the image repository.
Their needs are the permissions the tests recorded their code using on each kind (``measured``),
and what only Google's side uses and no emulator sees (``platform``). Three checks, which the
``{roles-table}`` directive runs at every build and the tests run for everyone:

* `ungranted`: a need that no grant covers (a grant on the project covers every resource in it);
* `unused`: a permission a grant gives on its resource that no need there uses, unless the grant
  lists it under ``unused`` and says ``why`` (the narrowest predefined role is wider);
* `rule_breaks`: the house rules: no storage role project-wide and no Storage Admin for anyone
  but the site's maintainer, only read roles on the raw-data bucket for everyone but the
  uploader, Service Account User only on a service account.

`policy` turns a person's grants into concrete ones for a test, given the names the test's
resources have (a bucket of its own for the raw data, another for the output, ...): the storage
emulator's front and the Batch stand-in refuse every call outside them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

import yaml

IAM = Path(__file__).resolve().parents[1] / "book" / "iam.yaml"
PROJECT = "project"  # the kind whose grants cover every resource of the project
RAW_DATA = "raw-data"
UPLOADER = "uploader"  # the one person who may write to the raw-data bucket (never delete)
ADMINS = ("maintainer",)  # who may hold storage roles project-wide (the site's bucket is made)
SERVICE_ACCOUNT = "service-account"
# What "read" means on the raw-data bucket: permissions that change nothing.
READ_VERBS = ("get", "list", "listEffectiveTags", "listTagBindings")


@dataclass(frozen=True)
class Grant:
    at: str  # a resource kind of iam.yaml's ``resources``
    role: str
    unused: tuple[str, ...] = ()  # permissions (or fnmatch patterns) never used there
    why: str = ""  # why the role all the same (needed when ``unused`` is not empty)


@dataclass(frozen=True)
class Person:
    name: str
    title: str
    grants: tuple[Grant, ...]
    needs: dict[tuple[str, str], str]  # (kind, permission) -> "measured" or the platform's why
    pages: tuple[str, ...] = ()  # the book's pages whose commands this person runs
    account: str | None = None  # for a service account: its resource kind (its email there)
    member: str = ""  # how a grant names this person (group:..., serviceAccount:...)

    @property
    def roles(self) -> list[str]:
        return [g.role for g in self.grants]

    def measured(self) -> set[tuple[str, str]]:
        return {need for need, why in self.needs.items() if why == "measured"}

    def without(self, role: str, on: str | None = None) -> Person:
        """The same person without one role (on one kind, or everywhere): for tests."""
        grants = tuple(g for g in self.grants if not (g.role == role and on in (None, g.at)))
        return Person(
            self.name, self.title, grants, self.needs, self.pages, self.account, self.member
        )


@dataclass(frozen=True)
class Model:
    roles: dict  # role id -> {title, source, permissions}
    resources: dict  # kind -> {title, example, type}
    people: dict[str, Person] = field(default_factory=dict)

    def permissions(self, role: str) -> set[str]:
        return set(self.roles[role]["permissions"])

    def email(self, kind: str) -> str:
        """The example address of a service-account kind (what the profiles name)."""
        return self.resources[kind]["example"]


def load(path: Path = IAM) -> Model:
    data = yaml.safe_load(path.read_text())
    people = {}
    for name, entry in data["people"].items():
        grants = tuple(
            Grant(g["at"], g["role"], tuple(g.get("unused", ())), g.get("why", ""))
            for g in entry["grants"]
        )
        needs: dict[tuple[str, str], str] = {}
        for kind, permissions in (entry.get("measured") or {}).items():
            needs.update({(kind, p): "measured" for p in permissions})
        for kind, reasons in (entry.get("platform") or {}).items():
            needs.update({(kind, p): why for p, why in reasons.items()})
        account = entry.get("account")
        member = entry.get("member") or (
            f"serviceAccount:{data['resources'][account]['example']}" if account else ""
        )
        people[name] = Person(
            name, entry["title"], grants, needs, tuple(entry.get("pages", ())), account, member
        )
    return Model(data["roles"], data["resources"], people)


def _covers(grant: Grant, kind: str) -> bool:
    return grant.at in (kind, PROJECT)


def ungranted(model: Model, person: Person) -> list[str]:
    """The person's needs no grant covers, and grants the model cannot read."""
    problems = [
        f"{g.role} on {g.at}: {'no such role' if g.role not in model.roles else 'no such kind'}"
        for g in person.grants
        if g.role not in model.roles or g.at not in model.resources
    ]
    problems += sorted(
        {f"{kind}: not a resource of iam.yaml" for kind, _ in person.needs}
        - {f"{kind}: not a resource of iam.yaml" for kind in model.resources}
    )
    known = [g for g in person.grants if g.role in model.roles]
    for kind, permission in sorted(person.needs):
        if not any(_covers(g, kind) and permission in model.permissions(g.role) for g in known):
            problems.append(f"{permission} on {kind}")
    return problems


def used_by(person: Person, grant: Grant) -> set[str]:
    """The permissions of the person's needs a grant can serve."""
    return {p for kind, p in person.needs if _covers(grant, kind)}


def unused(model: Model, person: Person) -> list[str]:
    """Permissions a grant gives that none of the person's needs on its resource uses, and that
    the grant does not list (with a why) as knowingly unused; and stale ``unused`` lists."""
    problems = []
    for grant in person.grants:
        if grant.role not in model.roles:
            continue
        spare = model.permissions(grant.role) - used_by(person, grant)
        where = f"{grant.role} on {grant.at}"
        if spare == model.permissions(grant.role):
            problems.append(f"{where}: grants nothing this person was measured to use")
            continue
        unlisted = {p for p in spare if not any(fnmatchcase(p, u) for u in grant.unused)}
        if unlisted:
            problems.append(
                f"{where} also grants {', '.join(sorted(unlisted))}, which no measured call "
                f"uses: narrow the grant, or list them under unused and say why"
            )
        stale = [u for u in grant.unused if not any(fnmatchcase(p, u) for p in spare)]
        if stale:
            problems.append(
                f"{where} lists as unused {', '.join(stale)}, which it does not grant or which "
                f"is used: remove it from unused"
            )
        used_anyway = {
            p
            for p in used_by(person, grant) & model.permissions(grant.role)
            if any(fnmatchcase(p, u) for u in grant.unused)
        }
        if used_anyway:
            problems.append(
                f"{where} lists as unused {', '.join(sorted(used_anyway))}, which a measured "
                f"call uses"
            )
        if grant.unused and not grant.why.strip():
            problems.append(f"{where}: lists unused permissions without saying why")
    return problems


def rule_breaks(model: Model, person: Person) -> list[str]:
    """The guide's least-privilege rules, whatever the measurements say."""
    problems = []
    for grant in person.grants:
        if grant.role not in model.roles or grant.at not in model.resources:
            continue
        granted = model.permissions(grant.role)
        storage = {p for p in granted if p.startswith("storage.")}
        where = f"{grant.role} on {grant.at}"
        if person.name not in ADMINS:
            if grant.role == "roles/storage.admin":
                problems.append(f"{where}: only the site's maintainer may hold Storage Admin")
            if grant.at == PROJECT and storage:
                problems.append(f"{where}: a storage role project-wide reaches every bucket")
        if grant.at == RAW_DATA:
            writes = {p for p in storage if p.rsplit(".", 1)[-1] not in READ_VERBS}
            allowed = {"storage.objects.create"} if person.name == UPLOADER else set()
            if person.name == UPLOADER:
                allowed |= {p for p in writes if p.startswith("storage.multipartUploads.")}
                allowed |= {"storage.folders.create", "storage.managedFolders.create"}
            if writes - allowed:
                problems.append(
                    f"{where}: the raw-data bucket is read-only for {person.name} "
                    f"(it would grant {', '.join(sorted(writes - allowed))})"
                )
        acts_as = grant.role == "roles/iam.serviceAccountUser"
        if acts_as and model.resources[grant.at].get("type") != SERVICE_ACCOUNT:
            problems.append(
                f"{where}: Service Account User on {grant.at} lets one act as every "
                f"service account there; grant it on the one account"
            )
    return problems


def problems(model: Model, person: Person) -> list[str]:
    return ungranted(model, person) + unused(model, person) + rule_breaks(model, person)


# -- concrete grants for the tests ------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """What one identity may do, on concrete resources (``projects/P``, ``buckets/B``,
    ``serviceAccounts/EMAIL``, ``projects/P/locations/R/repositories/REPO``)."""

    member: str  # as Google names the caller in its messages
    granted: frozenset[tuple[str, str]]  # (permission, resource)
    project: str  # projects/P: its grants cover every resource

    def allows(self, permission: str, resource: str) -> bool:
        return (permission, resource) in self.granted or (permission, self.project) in self.granted


def policy(model: Model, person: Person, places: Mapping[str, str], member: str) -> Policy:
    """The person's grants on the concrete resources ``places`` names for each kind."""
    granted = set()
    for grant in person.grants:
        if grant.at not in places:
            continue  # a resource this test does not have
        granted |= {(p, places[grant.at]) for p in model.permissions(grant.role)}
    return Policy(member, frozenset(granted), places[PROJECT])


def by_kind(needs: Iterable[tuple[str, str]], places: Mapping[str, str]) -> set[tuple[str, str]]:
    """Concrete (permission, resource) needs as (kind, permission), by the test's ``places``;
    a resource the test did not name is an error, never silently dropped."""
    kinds = {resource: kind for kind, resource in places.items()}
    out = set()
    for permission, resource in needs:
        if resource not in kinds:
            raise KeyError(f"{permission} on {resource}: which resource of iam.yaml is that?")
        out.add((kinds[resource], permission))
    return out
