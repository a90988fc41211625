"""The joint assessment and the person's care plan: rules, pre-fill, plan building, Provenance.

The bootstrap (service.bootstrap) wires it in with `add_rules`: the write rules the repository runs for
QuestionnaireResponse, CarePlan, Goal and CareTeam (rules and Provenance on every path: service.workflows.writes)
and the rule for the service's own forms on Questionnaire writes (a published version never changes:
forms.FormHooks). Its operations are modules of service/operations (assessment_*, careplan_*,
careteam_members, workflow_queries); its forms are published by `forms.ensure_questionnaires` (at start and
by `sharedcare demo load`).
"""

from __future__ import annotations

from service.repository import WriteRules


def add_rules(rules: WriteRules) -> None:
    from service.workflows import forms, provenance, writes

    workflow = writes.WorkflowRules()
    for rtype in provenance.TRACKED:
        rules.add(rtype, workflow)
    rules.add("Questionnaire", forms.FormHooks())
