"""The joint assessment and the person's care plan: rules, pre-fill, plan building, Provenance.

`install(services)` (called by `build_services`) wires it in:
- registers the operations (service/operations/assessment_*.py, careplan_*.py, careteam_members.py,
  workflow_queries.py, assessment_metrics.py);
- adds the per-type write hooks crud calls for QuestionnaireResponse, CarePlan, Goal and CareTeam
  (rules and Provenance on plain REST writes too: service.workflows.writes), and the rule for the
  service's own forms on Questionnaire writes (a published version never changes: forms.FormHooks);
- adds the publication of the packaged Questionnaires to `sharedcare demo load`, and publishes them
  now (best effort: a database that is not migrated yet gets them on first use).
"""

from __future__ import annotations

from typing import Any

_OPERATIONS = (
    "service.operations.assessment_start",
    "service.operations.assessment_answers",
    "service.operations.assessment_complete",
    "service.operations.careplan_generate",
    "service.operations.careplan_transition",
    "service.operations.careteam_members",
    "service.operations.workflow_queries",
    "service.operations.assessment_metrics",
)


def install(services: Any) -> None:
    import importlib

    from service.demo import loader
    from service.workflows import forms, provenance, writes

    for module in _OPERATIONS:
        importlib.import_module(module)
    hooks = services.extras.setdefault("write_hooks", {})
    hook = writes.WorkflowHooks()
    for rtype in provenance.TRACKED:
        if not any(isinstance(h, writes.WorkflowHooks) for h in hooks.get(rtype, ())):
            hooks.setdefault(rtype, []).append(hook)
    if not any(isinstance(h, forms.FormHooks) for h in hooks.get("Questionnaire", ())):
        hooks.setdefault("Questionnaire", []).append(forms.FormHooks())
    if forms.ensure_questionnaires not in loader.LOADERS:
        loader.LOADERS.append(forms.ensure_questionnaires)
    forms.ensure_questionnaires(services)
