from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.options import IS_POPUP_VAR, TO_FIELD_VAR
from django.contrib.auth.models import User
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from review.keys import label_keys_check
from rollout.services import deployment_create

from .admin_readonly import ReadOnlyAdminMixin
from .errors import ServiceError
from .models import (
    ApiKey,
    Case,
    Decision,
    Deployment,
    GoldCase,
    Region,
    Review,
    ReviewTask,
    WithdrawnAnswer,
)
from .services import case_gold_mark, case_gold_unmark


class RegionInlineForm(forms.ModelForm):
    class Meta:
        model = Region
        fields = ["code", "name", "timezone"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            # Cases, scope rules and reports name a region by its code.
            self.fields["code"].disabled = True


class RegionInline(admin.TabularInline):
    model = Region
    form = RegionInlineForm
    extra = 0


class DeploymentChangeForm(forms.ModelForm):
    """A deployment's settings; its label keys are checked as the review page reads them."""

    class Meta:
        model = Deployment
        fields = ["name", "label_keys", "urgent_labels", "review_mode", "second_opinion_rate",
                  "gold_rate", "image_retention_days", "guidelines"]

    def clean_label_keys(self) -> object:
        chosen = self.cleaned_data.get("label_keys") or {}
        errors = label_keys_check(self.instance.labels or [], chosen)
        if errors:
            raise forms.ValidationError(errors)
        return chosen


class DeploymentAddForm(forms.ModelForm):
    """The inputs of `deployment_create`: a deployment starts with its regions and its first
    (shadow) policy version, or not at all."""

    labels = forms.CharField(help_text="comma-separated, in display order, e.g. grizzly, black")
    regions = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="one per line: code,name,Time/Zone, e.g. north,North,Europe/Oslo")

    class Meta:
        model = Deployment
        fields = ["slug", "name", "labels"]

    def clean_labels(self) -> list[str]:
        return [label.strip() for label in self.cleaned_data["labels"].split(",")
                if label.strip()]

    def clean_regions(self) -> list[tuple[str, str, str]]:
        regions: list[tuple[str, str, str]] = []
        errors: list[str] = []
        for number, line in enumerate(self.cleaned_data["regions"].splitlines(), start=1):
            if not line.strip():
                continue
            parts = [part.strip() for part in line.split(",")]
            if len(parts) < 3:
                errors.append(f"line {number}: expected code,name,Time/Zone, got {line!r}")
                continue
            code, name, tz = parts[0], ",".join(parts[1:-1]), parts[-1]
            # The same checks as the service makes, reported here line by line.
            try:
                Region(code=code, name=name, timezone=tz).full_clean(exclude=["deployment"])
            except ValidationError as exc:
                errors.extend(f"line {number}: {message}" for message in exc.messages)
                continue
            regions.append((code, name, tz))
        codes = [code for code, _, _ in regions]
        errors.extend(f"region {code!r} is given twice" for code in sorted(set(codes))
                      if codes.count(code) > 1)
        if errors:
            raise ValidationError(errors)
        if not regions:
            raise ValidationError("a deployment needs at least one region")
        return regions


class _AddRefused(Exception):
    """The service refused what the add form accepted: the form carries the reasons."""

    def __init__(self, form: forms.ModelForm) -> None:
        super().__init__("deployment_create refused the add form")
        self.form = form


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    """A deployment is created only through `deployment_create`, which also publishes its
    first policy version: routing needs one for every deployment."""

    list_display = ["slug", "name", "review_mode", "second_opinion_rate", "gold_rate",
                    "created_at"]
    fields = ["slug", "name", "labels", "label_keys", "urgent_labels", "review_mode",
              "second_opinion_rate", "gold_rate", "image_retention_days", "guidelines",
              "created_at"]
    form = DeploymentChangeForm
    add_form = DeploymentAddForm
    add_fieldsets = [(None, {"fields": ["slug", "name", "labels", "regions"]})]

    def get_fieldsets(self, request: HttpRequest, obj: Deployment | None = None) -> Any:
        if obj is None:
            return self.add_fieldsets
        return super().get_fieldsets(request, obj)

    def get_form(self, request: HttpRequest, obj: Deployment | None = None,
                 change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = self.add_form
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: Deployment | None = None
                            ) -> list[str]:
        return ["slug", "labels", "created_at"] if obj is not None else []

    def get_inlines(self, request: HttpRequest, obj: Deployment | None) -> Any:
        # On the add page the regions are a field of the add form.
        return [RegionInline] if obj is not None else []

    def save_model(self, request: HttpRequest, obj: Deployment, form: Any, change: bool
                   ) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        data = form.cleaned_data
        try:
            created = deployment_create(slug=data["slug"], name=data["name"],
                                        labels=data["labels"], regions=data["regions"],
                                        actor=cast(User, request.user))
        except ServiceError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
            raise _AddRefused(form) from exc
        except ValidationError as exc:
            for field, found in exc.message_dict.items():
                if field in form.fields:
                    form.add_error(field, found)
                else:
                    prefix = "" if field == NON_FIELD_ERRORS else f"{field}: "
                    form.add_error(None, [f"{prefix}{message}" for message in found])
            raise _AddRefused(form) from exc
        obj.pk = created.pk
        obj.created_at = created.created_at

    def add_view(self, request: HttpRequest, form_url: str = "",
                 extra_context: dict[str, Any] | None = None) -> HttpResponse:
        try:
            return super().add_view(request, form_url, extra_context)
        except _AddRefused as refused:
            # The view's transaction was rolled back: nothing was created.
            return self._add_form_render(request, refused.form, form_url)

    def _add_form_render(self, request: HttpRequest, form: forms.ModelForm, form_url: str
                         ) -> HttpResponse:
        admin_form = helpers.AdminForm(form, list(self.get_fieldsets(request)), {},
                                       model_admin=self)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Add {self.opts.verbose_name}",
            "adminform": admin_form,
            "object_id": None,
            "original": None,
            "is_popup": IS_POPUP_VAR in request.POST or IS_POPUP_VAR in request.GET,
            "to_field": request.POST.get(TO_FIELD_VAR, request.GET.get(TO_FIELD_VAR)),
            "media": self.media + admin_form.media,
            "inline_admin_formsets": [],
            "errors": helpers.AdminErrorList(form, []),
            "preserved_filters": self.get_preserved_filters(request),
        }
        return self.render_change_form(request, context, add=True, form_url=form_url)


@admin.register(Region)
class RegionAdmin(admin.ModelAdmin):
    list_display = ["deployment", "code", "name", "timezone"]
    list_filter = ["deployment"]

    def get_readonly_fields(self, request: HttpRequest, obj: Region | None = None
                            ) -> list[str]:
        # Cases, scope rules and reports name a region by its deployment and code.
        return ["deployment", "code"] if obj is not None else []


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "user", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["prefix", "hashed_key", "last_used_at"]
    filter_horizontal = ["deployments"]


@admin.register(Case)
class CaseAdmin(admin.ModelAdmin):
    list_display = ["id", "deployment", "region", "external_id", "status", "captured_at",
                    "created_at"]
    list_filter = ["deployment", "status", "region"]
    search_fields = ["external_id"]
    readonly_fields = ["image_sha256", "width", "height"]
    actions = ["mark_gold_from_decision", "unmark_gold"]

    def has_mark_gold_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("reviewplatform.mark_gold")

    @admin.action(description="Mark as gold, with the human decision as the known answer",
                  permissions=["mark_gold"])
    def mark_gold_from_decision(self, request: HttpRequest, queryset: QuerySet[Case]) -> None:
        marked = 0
        for case in queryset.select_related("decision", "deployment"):
            decision = getattr(case, "decision", None)
            if decision is None or decision.source != Decision.Source.HUMAN:
                self.message_user(request, f"{case}: no human decision to use as the answer",
                                  messages.WARNING)
                continue
            try:
                case_gold_mark(case=case, label=decision.label, actor=request.user)  # type: ignore[arg-type]
            except ServiceError as exc:
                self.message_user(request, f"{case}: {exc.message}", messages.ERROR)
                continue
            marked += 1
        self.message_user(request, f"{marked} case(s) marked gold")

    @admin.action(description="Stop serving as gold", permissions=["mark_gold"])
    def unmark_gold(self, request: HttpRequest, queryset: QuerySet[Case]) -> None:
        for case in queryset:
            case_gold_unmark(case=case)


@admin.register(GoldCase)
class GoldCaseAdmin(admin.ModelAdmin):
    list_display = ["case", "label", "is_active", "is_example", "marked_by", "created_at"]
    list_filter = ["is_active", "is_example", "case__deployment"]
    raw_id_fields = ["case"]
    readonly_fields = ["marked_by"]

    def save_model(self, request: HttpRequest, obj: GoldCase, form, change: bool) -> None:  # type: ignore[no-untyped-def]
        gold = case_gold_mark(case=obj.case, label=obj.label, actor=request.user)  # type: ignore[arg-type]
        obj.pk = gold.pk
        GoldCase.objects.filter(pk=gold.pk).update(is_example=obj.is_example)
        if not obj.is_active:
            case_gold_unmark(case=obj.case)


@admin.register(ReviewTask)
class ReviewTaskAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Review tasks, reviews and decisions are written by the review services only."""

    list_display = ["id", "case", "reason", "urgent", "reason_rank", "priority", "status",
                    "claimed_by", "lease_expires_at", "created_at"]
    list_filter = ["status", "reason", "urgent"]
    raw_id_fields = ["case", "follows", "claimed_by"]


@admin.register(Review)
class ReviewAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "case", "reviewer", "answer", "blind_answer", "mode", "seconds",
                    "created_at"]
    list_filter = ["mode", "reviewer"]


@admin.register(WithdrawnAnswer)
class WithdrawnAnswerAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Answers taken back within their undo window: kept, never edited."""

    list_display = ["id", "case", "reviewer", "answer", "answered_at", "withdrawn_at"]
    list_filter = ["reviewer"]


@admin.register(Decision)
class DecisionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["case", "label", "source", "policy_version", "decided_at"]
    list_filter = ["source"]
