"""The one compat module: version flag and async extras on any Airflow 3.x connection."""

from __future__ import annotations

import json
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pytest

from airflow_provider_posthog import compat


def test_version_flags_match_the_installed_airflow() -> None:
    import airflow

    major, minor = (int(x) for x in airflow.__version__.split(".")[:2])
    assert (major, minor) == compat.AIRFLOW_VERSION
    assert compat.TRIGGER_ON_KILL_SUPPORTED is ((major, minor) >= (3, 3))


async def test_aextra_dejson_uses_the_async_method_or_falls_back() -> None:
    class New:
        async def aextra_dejson(self) -> dict[str, str]:
            return {"project_id": "7"}

    class Old:
        extra = json.dumps({"project_id": "8"})

        @property
        def extra_dejson(self) -> dict[str, str]:
            return dict(json.loads(self.extra))

    assert await compat.aextra_dejson(New()) == {"project_id": "7"}
    assert await compat.aextra_dejson(Old()) == {"project_id": "8"}


def test_on_kill_flag_matches_what_this_airflow_triggerer_has() -> None:
    """The flag drives the operator's warning (tests/operators); it must match the installed BaseTrigger."""
    from airflow.triggers.base import BaseTrigger

    assert compat.TRIGGER_ON_KILL_SUPPORTED is ("on_kill" in vars(BaseTrigger))


def test_exceptions_are_the_ones_airflow_raises_and_catches() -> None:
    """3.1 keeps them in airflow.exceptions, 3.2+ in airflow.sdk.exceptions; both paths give one class."""
    import warnings

    with warnings.catch_warnings():  # the legacy path is read on purpose; Airflow 3.3 warns about it
        warnings.simplefilter("ignore")
        import airflow.exceptions as legacy

        for name in ("AirflowException", "AirflowFailException", "AirflowSkipException", "TaskDeferred"):
            assert getattr(compat, name) is getattr(legacy, name), name
        assert compat.AirflowSensorTimeout is legacy.AirflowSensorTimeout
        assert compat.AirflowRescheduleException is legacy.AirflowRescheduleException


def test_airflow_conf_reads_config() -> None:
    assert compat.airflow_conf().getboolean("core", "load_examples") is False


def test_connection_form_in_the_ui_on_this_airflow() -> None:
    """What Airflow's UI shows for a posthog connection: declarative on 3.2+, the hook's methods on 3.1.

    3.2+ warns about a hook that defines the form methods, so they exist only where they are needed.
    """
    import sys
    import warnings

    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService
    from airflow.providers_manager import ProvidersManager

    from airflow_provider_posthog.hooks.posthog import PostHogHook

    defines = {"get_ui_field_behaviour", "get_connection_form_widgets"} & set(vars(PostHogHook))
    assert bool(defines) is not compat.DECLARATIVE_CONNECTION_FORM_SUPPORTED
    before = set(sys.modules)
    # A fresh manager, as in the API server: an earlier test may have loaded the hooks without wtforms, and
    # Airflow 3.1 then skips their form methods. The UI stubs wtforms/FAB into sys.modules: undone after.
    ProvidersManager()._cleanup()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            HookMetaService.hook_meta_data.cache_clear()
            meta = {m.connection_type: m for m in HookMetaService.hook_meta_data()}["posthog"]
    finally:
        ProvidersManager()._cleanup()
        for name in set(sys.modules) - before:
            if name.split(".")[0] in {"wtforms", "flask_babel", "flask_appbuilder"}:
                del sys.modules[name]
    fields = meta.standard_fields
    assert fields is not None and fields.host is not None and fields.password is not None
    assert fields.host.title == "PostHog host" and fields.password.title == "Personal API key"
    assert fields.login is not None and fields.login.hidden
    extra = meta.extra_fields or {}
    assert extra["project_id"]["schema"]["title"] == "Project ID"
    # A non-null integer: the UI renders a number input with a minimum and treats the field as required.
    assert extra["project_id"]["schema"]["type"] in ("integer", ["integer", "null"])
    assert "e.g. 12345" in extra["project_id"]["description"]
    assert extra["timeout"]["schema"]["title"] == "Request timeout (seconds)"


def test_project_id_is_a_required_number_field_in_the_api_format_the_ui_receives() -> None:
    """What ``ProvidersManager().connection_form_widgets`` hands the UI (the FlexibleForm param format)."""
    import warnings

    from airflow.providers_manager import ProvidersManager

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        widgets = ProvidersManager().connection_form_widgets
    if not compat.DECLARATIVE_CONNECTION_FORM_SUPPORTED:
        # Airflow 3.1 builds widgets from the hook's wtforms fields, only where flask_appbuilder (its UI) is
        # installed; the legacy test below checks those fields.
        import importlib.util

        has_fab = importlib.util.find_spec("flask_appbuilder") is not None
        assert ("extra__posthog__project_id" in widgets) is has_fab
        return
    field = widgets["extra__posthog__project_id"].field
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        behaviour = ProvidersManager().field_behaviours["posthog"]
    assert field["value"] is None
    # "integer" (not a string with a pattern the UI ignores), no "null": the UI renders a number input,
    # enforces the minimum, marks it required and disables Save while it is empty.
    assert field["schema"] == {"type": "integer", "minimum": 1, "title": "Project ID"}
    assert "e.g. 12345" in field["description"] and "Settings > Project" in field["description"]
    # Extra fields sit in a collapsed section and show no placeholder: a visible field points there.
    assert "Project ID under Extra Fields" in behaviour["placeholders"]["host"]
    assert "extra__posthog__project_id" not in behaviour["placeholders"]
    timeout = widgets["extra__posthog__timeout"].field
    assert timeout["schema"]["type"] == ["number", "null"] and timeout["value"] == 30


def test_legacy_form_widgets_make_project_id_an_integer_field(monkeypatch: pytest.MonkeyPatch) -> None:
    """Airflow 3.1 reads the hook's widgets: the project id is an IntegerField with a minimum of 1.

    wtforms/FAB are not installed with Airflow 3.x core, so minimal stand-ins record what is built.
    """

    class Field:
        def __init__(self, label: str, **kwargs: Any) -> None:
            self.label, self.kwargs = label, kwargs

    class IntegerField(Field): ...

    class StringField(Field): ...

    class NumberRange:
        def __init__(self, min: int) -> None:
            self.min = min

    modules = {
        "wtforms": types.SimpleNamespace(IntegerField=IntegerField, StringField=StringField),
        "wtforms.validators": types.SimpleNamespace(NumberRange=NumberRange, Optional=lambda: None),
        "flask_babel": types.SimpleNamespace(lazy_gettext=str),
        "flask_appbuilder": types.SimpleNamespace(),
        "flask_appbuilder.fieldwidgets": types.SimpleNamespace(BS3TextFieldWidget=lambda: None),
    }
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    widgets = compat.legacy_connection_form_widgets("posthog")
    project = widgets["project_id"]
    assert type(project) is IntegerField and project.label == "Project ID"
    ranges = [v for v in project.kwargs["validators"] if isinstance(v, NumberRange)]
    assert len(ranges) == 1 and ranges[0].min == 1
    assert "e.g. 12345" in project.kwargs["description"]
    assert type(widgets["timeout"]) is StringField
