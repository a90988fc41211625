"""Rules for every write of a joint assessment (a QuestionnaireResponse to the joint assessment form).

Applied to plain REST writes and to the operations alike (service.workflows.writes):
- the response keeps the Questionnaire it pinned (`url|version`) and its subject (a Patient);
- answers are validated against that version (service validator: types, answer options, enableWhen,
  and every enabled required item when the status is completed or amended); errors give a 422
  OperationOutcome whose diagnostics name each linkId;
- status changes follow R4's meaning: in-progress -> completed | stopped | entered-in-error;
  completed -> amended | entered-in-error; amended -> amended | entered-in-error; answers may not
  change while the status stays completed (that is an amendment);
- authorship is the server's: each answer unit that changed gets an answer-author extension naming the
  caller (Practitioner, organisation, profession, time, the response version); unchanged units keep
  theirs, so a client cannot forge or drop who said what. Other server-owned extensions (pre-filled
  count, completion time) are kept from the stored version.
"""

from __future__ import annotations

from typing import Any

from fhir_profiles.questionnaire_validation import validate_response
from service.fhir.outcome import Issue, OperationOutcomeError
from service.repository import Change, Repository
from service.workflows import actors, answers, forms
from service.workflows.codes import ANSWER_AUTHOR, COMPLETED, EPISODE, PREFILLED_ITEMS, ext_value, set_ext

STATUS_FLOW = {
    None: {"in-progress", "completed"},
    "in-progress": {"in-progress", "completed", "stopped", "entered-in-error"},
    "completed": {"completed", "amended", "entered-in-error"},
    "amended": {"amended", "entered-in-error"},
    "stopped": {"stopped", "entered-in-error"},
    "entered-in-error": {"entered-in-error"},
}
FINISHED = ("completed", "amended")
PERSON_SECTIONS = ("about-me",)  # what the person (or their proxy) may answer


def _refuse(status: int, text: str, code: str = "business-rule", expression: str | None = None) -> OperationOutcomeError:
    return OperationOutcomeError(status, code, text, expression=(expression,) if expression else ())


def check_status(rid: str | None, old: str | None, new: Any) -> None:
    allowed = STATUS_FLOW.get(old, set())
    if new not in allowed:
        what = f"QuestionnaireResponse/{rid}" if rid else "A new joint assessment"
        if old is None:
            raise _refuse(422, f"{what} must start as in-progress or completed, not {new!r}",
                          expression="QuestionnaireResponse.status")
        raise _refuse(409, f"{what} is {old}; it cannot become {new!r} (from {old} it can become: "
                           f"{', '.join(sorted(allowed - {old})) or 'nothing'})",
                      expression="QuestionnaireResponse.status")


def validation_error(issues: list[Any]) -> OperationOutcomeError:
    errors = [i for i in issues if i.severity in ("error", "fatal")]
    out = [Issue(i.severity, i.code, i.message, (i.expression,)) for i in errors]
    summary = "The assessment's answers are invalid: " + "; ".join(i.message for i in errors[:10])
    if len(errors) > 10:
        summary += f"; and {len(errors) - 10} more"
    return OperationOutcomeError(422, "processing", summary, issues=out)


def author_extension(repo: Repository, revision: int, source: str | None = None) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"url": "author", "valueReference": actors.who(repo)}]
    org = actors.organisation(repo)
    if org is not None:
        parts.append({"url": "organisation", "valueReference": org})
    prof = actors.profession(repo)
    if prof is not None:
        parts.append({"url": "profession", "valueCode": prof})
    parts += [{"url": "recorded", "valueDateTime": actors.now()},
              {"url": "revision", "valueInteger": revision},
              {"url": "source", "valueCode": "prefilled" if source else "entered"}]
    if source:
        parts.append({"url": "sourceReference", "valueReference": {"reference": source}})
    return {"url": ANSWER_AUTHOR, "extension": parts}


def prepare(repo: Repository, before: dict[str, Any] | None, after: dict[str, Any], change: Change) -> None:
    canonical = after.get("questionnaire")
    rid = after.get("id") or (before or {}).get("id")
    if before is not None and before.get("questionnaire") != canonical and (
            forms.is_joint(before.get("questionnaire")) or forms.is_joint(canonical)):
        raise _refuse(422, f"QuestionnaireResponse/{rid} answers {before.get('questionnaire')!r}; "
                           "the questionnaire of a response cannot change", expression="QuestionnaireResponse.questionnaire")
    if not forms.is_joint(canonical):
        return
    q = forms.resolve(repo, canonical)
    subject = (after.get("subject") or {}).get("reference")
    if not isinstance(subject, str) or not subject.startswith("Patient/"):
        raise _refuse(422, "A joint assessment's subject must be the Patient it is about (subject.reference "
                           "'Patient/<id>')", code="required", expression="QuestionnaireResponse.subject")
    if before is not None and (before.get("subject") or {}).get("reference") != subject:
        raise _refuse(422, f"QuestionnaireResponse/{rid} is about {before['subject'].get('reference')}; "
                           "its subject cannot change", expression="QuestionnaireResponse.subject")
    old_status, new_status = (before or {}).get("status"), after.get("status")
    check_status(rid, old_status, new_status)

    issues = validate_response(q, after, completing=new_status in FINISHED)
    if any(i.severity in ("error", "fatal") for i in issues):
        raise validation_error(issues)

    old_units = answers.collect(q, before) if before is not None else {}
    new_units = answers.collect(q, after)
    if old_status == "completed" and new_status == "completed" and any(
            answers.content(new_units.get(u)) != answers.content(old_units.get(u)) for u in set(old_units) | set(new_units)):
        raise _refuse(409, f"QuestionnaireResponse/{rid} is completed: changing its answers is an amendment "
                           "(use $amend with a reason, or set status 'amended')", expression="QuestionnaireResponse.status")
    _person_may_change(repo, rid, old_units, new_units)
    revision = int((before or {}).get("meta", {}).get("versionId", 0)) + 1
    for unit, items in list(new_units.items()):
        if before is not None and answers.content(items) == answers.content(old_units.get(unit)):
            new_units[unit] = old_units[unit]  # unchanged: keeps who said it
        else:
            new_units[unit] = answers.stamp(items, author_extension(repo, revision, change.prefilled.get(unit)))
    items = answers.build(q, new_units)
    if items:
        after["item"] = items
    else:
        after.pop("item", None)

    # server-owned resource-level extensions
    for url in (PREFILLED_ITEMS, COMPLETED):
        set_ext(after, url, None)
        for ext in (before or {}).get("extension") or ():
            if isinstance(ext, dict) and ext.get("url") == url:
                after.setdefault("extension", []).append(ext)
    if before is None and change.activity == "start-assessment":
        set_ext(after, PREFILLED_ITEMS, {"valueInteger": _prefilled_count(new_units, change)})
    if new_status in FINISHED and ext_value(after, COMPLETED) is None:
        set_ext(after, COMPLETED, {"valueDateTime": actors.now()})
    if before is not None:
        if before.get("author"):
            after["author"] = before["author"]
        episode = ext_value(before, EPISODE)
        set_ext(after, EPISODE, {"valueReference": episode} if episode else None)
    elif not after.get("author"):
        after["author"] = actors.who(repo)
    after["authored"] = actors.now()


def _person_may_change(repo: Repository, rid: Any, old: answers.Units, new: answers.Units) -> None:
    """The person (and a proxy acting for them) tells their own story, "about me" and what matters to them; the
    professionals' answers (health, Care Act outcomes, risks, ...) are theirs to give: 403 naming them."""
    p = repo.principal
    if p is None or p.kind not in ("patient", "relatedPerson"):
        return
    changed = sorted(u for u in set(old) | set(new) if answers.content(new.get(u)) != answers.content(old.get(u))
                     and answers.section(u) not in PERSON_SECTIONS)
    if changed:
        raise _refuse(403, f"You may change your own answers in 'About me and what matters to me' ({', '.join(PERSON_SECTIONS)}"
                           f"), not the professionals' answers: {', '.join(changed[:10])}"
                           + (f" and {len(changed) - 10} more" if len(changed) > 10 else ""), code="forbidden",
                      expression="QuestionnaireResponse.item")


def _prefilled_count(units: answers.Units, change: Change) -> int:
    return sum(answers.answered_questions(units[u]) for u in change.prefilled if u in units)
