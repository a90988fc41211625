"""SMART scopes in plain words, for the sign-in and consent screen (raw scopes stay available to the curious)."""

from __future__ import annotations

from service.auth.scopes import ScopeError, ScopeSet

WHOSE = {"patient": "your record (or the record of the person you are signed in for)",
         "user": "the records of the people you care for", "system": "every record this system may reach"}
THINGS = {"*": "", "Consent": "sharing choices in ", "Goal": "goals in ", "QuestionnaireResponse": "assessments in ",
          "CarePlan": "care plans in ", "Patient": "personal details in ", "Observation": "test results in ",
          "AuditEvent": "the access log of "}
OTHER = {"openid": "Know who you are", "fhirUser": "Know your name and role",
         "launch/patient": "Know whose record is open", "online_access": "Stay signed in while you use it",
         "offline_access": "Keep access after you close it, until you sign out or withdraw it"}


def _verbs(perms: frozenset[str]) -> str:
    words = [w for p, w in (("r", "see"), ("s", "search"), ("c", "add to"), ("u", "change"), ("d", "remove from"))
             if p in perms]
    if "s" in perms and "r" in perms:
        words.remove("search")
    if not words:
        return "use"
    return ", ".join(words[:-1]) + (" and " if len(words) > 1 else "") + words[-1]


def describe(scope_text: str) -> list[str]:
    """One plain sentence per permission asked for, in the order asked."""
    try:
        scopes = ScopeSet.parse(scope_text)
    except ScopeError:
        return ["Permissions this service does not recognise: " + scope_text]
    out: list[str] = []
    for s in scopes.resource:
        thing = THINGS.get(s.rtype, f"{s.rtype} records in ")
        sentence = f"{_verbs(s.perms)} {thing}{WHOSE.get(s.context, 'records')}"
        sentence = sentence[:1].upper() + sentence[1:]
        if sentence not in out:
            out.append(sentence)
    out += [OTHER[o] for o in sorted(scopes.other) if o in OTHER]
    return out
