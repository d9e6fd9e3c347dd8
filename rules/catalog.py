"""The alarm-kind catalog: default grade, response time per grade, and the texts of each kind.

The numbers and words live in config/alarm_kinds.yaml, not here: grades are a site's policy
and texts are edited by people who do not read Python. A Raise names its kind; the catalog
turns it into a grade (unless the rule passed one) and a text in Chinese or English.

Values in texts: text() renders each parameter with format_value(), which drops a float's
noise (26.0 -> "26", 0.1 + 0.2 -> "0.3") but cannot know the precision a quantity deserves.
Where that matters, pass the value already formatted, e.g. value=f"{temp:.1f}" for a
temperature with one decimal; strings are used as they are.
"""

from __future__ import annotations

import logging
import math
import re
import string
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from core.config_types import Duration
from core.data_dir import data_dir
from core.once import ProblemCounter
from core.yaml_load import UniqueKeyLoader
from rules.model import Grade

log = logging.getLogger(__name__)

DEFAULT_PATH = data_dir() / "alarm_kinds.yaml"

Lang = Literal["zh", "en"]
GRADES: tuple[Grade, ...] = ("red", "orange", "yellow", "blue")
COMMON_PARAMS: tuple[str, ...] = ("place", "device", "value", "limit", "unit")
"""Fields any template may use; a kind's own fields are listed in its `params`."""

MISSING = "?"
"""Shown for a template field the caller did not give: a text with a gap beats no alarm."""

_KIND_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def template_fields(template: str) -> list[str]:
    """The field names of a template; only plain {name} fields are allowed.

    A format spec ({value:.1f}) would raise on the "?" put in for a missing value, and an
    attribute or index ({device.id}) would reach into objects; both are refused at load time so
    that text() can never fail on a template.
    """
    names: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"{template!r}: {exc} (write {{{{ and }}}} for literal braces)") from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not _FIELD_NAME.match(name):
            raise ValueError(f"{template!r}: field {{{name}}} must be a plain lower-case name")
        if spec or conversion:
            raise ValueError(
                f"{template!r}: field {{{name}}} has a format; pass the value formatted instead"
            )
        names.append(name)
    return names


def format_value(value: object) -> str:
    """A parameter as text. Floats lose their binary noise: at most two decimals, trailing
    zeros dropped, and two significant digits for tiny values so that 0.004 is not "0"."""
    if value is None:
        return MISSING
    if isinstance(value, float) and math.isfinite(value):
        text = f"{value:.2f}".rstrip("0").rstrip(".")
        if text in ("0", "-0"):
            text = "0" if value == 0 else f"{value:.2g}"
        return text
    return str(value)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Texts(_Strict):
    """A pair of templates, Chinese and English."""

    zh: str = Field(min_length=1, description="Chinese text template (str.format, plain fields).")
    en: str = Field(min_length=1, description="English text template (str.format, plain fields).")


class AlarmKind(_Strict):
    """One kind of alarm: its default grade and its texts."""

    grade: Grade = Field(description="Default grade: red, orange, yellow or blue.")
    zh: str = Field(min_length=1, description="Chinese text template (str.format, plain fields).")
    en: str = Field(min_length=1, description="English text template (str.format, plain fields).")
    description: str = Field(
        min_length=1,
        description="When the kind is raised, why its grade, and what its own fields hold.",
    )
    params: list[str] = Field(
        default_factory=list,
        description="The kind's own template fields, besides place, device, value, limit, unit.",
    )
    fallback: Texts | None = Field(
        default=None,
        description="Texts for an alarm that lacks a field of zh/en (a held door whose opening "
        "the gateway did not see has no duration): used instead of showing '?'.",
    )

    @field_validator("params")
    @classmethod
    def _params(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _FIELD_NAME.match(name):
                raise ValueError(f"param {name!r} must be a plain lower-case name")
            if name in COMMON_PARAMS:
                raise ValueError(f"param {name!r} is common to every kind; do not list it")
        return value

    @model_validator(mode="after")
    def _templates_use_known_fields(self) -> AlarmKind:
        # A typo in a template ({devcie}) would otherwise show "?" in every alarm of the kind;
        # catching it when the catalog loads makes it a startup error instead.
        known = set(COMMON_PARAMS) | set(self.params)
        templates = [("zh", self.zh), ("en", self.en)]
        if self.fallback is not None:
            templates += [("fallback.zh", self.fallback.zh), ("fallback.en", self.fallback.en)]
        for lang, template in templates:
            for name in template_fields(template):
                if name not in known:
                    raise ValueError(
                        f"{lang}: field {{{name}}} is neither common "
                        f"({', '.join(COMMON_PARAMS)}) nor in params"
                    )
        return self

    def fields(self) -> list[str]:
        """Every field this kind's templates may use: the common ones, then its own."""
        return [*COMMON_PARAMS, *self.params]


class Catalog(_Strict):
    """Every alarm kind a rule may raise, and the response time of each grade."""

    response_times: dict[Grade, Duration] = Field(
        description="How soon an alarm of each grade wants a response: 5m, 1h, 1d or seconds."
    )
    kinds: dict[str, AlarmKind] = Field(description="Alarm kinds by name.")

    # Which (kind, field) gaps were already logged: a rule raising every tick with the same
    # missing field must not fill the log.
    _problems: ProblemCounter = PrivateAttr(default_factory=lambda: ProblemCounter(log))

    @field_validator("response_times")
    @classmethod
    def _every_grade(cls, value: dict[Grade, float]) -> dict[Grade, float]:
        missing = [g for g in GRADES if g not in value]
        if missing:
            raise ValueError(f"no response time for {', '.join(missing)}")
        return value

    @field_validator("kinds")
    @classmethod
    def _kind_names(cls, value: dict[str, AlarmKind]) -> dict[str, AlarmKind]:
        for name in value:
            if not _KIND_NAME.match(name):
                raise ValueError(f"kind name {name!r} must be lower case letters, digits and _")
        return value

    @classmethod
    def load(cls, path: Path | str | None = None) -> Catalog:
        """The catalog in a YAML file, by default the shipped config/alarm_kinds.yaml.

        Raises OSError, yaml.YAMLError or pydantic.ValidationError; the gateway's loader turns
        the last into file:line messages like the site file's.
        """
        with open(path or DEFAULT_PATH, encoding="utf-8") as f:
            data = yaml.load(f, Loader=UniqueKeyLoader)  # a kind given twice is refused
        return cls.model_validate(data)

    def kind(self, kind: str) -> AlarmKind:
        try:
            return self.kinds[kind]
        except KeyError:
            raise KeyError(f"unknown alarm kind {kind!r}: add it to the alarm catalog") from None

    def grade_of(self, kind: str, override: Grade | None = None) -> Grade:
        """The grade of an alarm: the rule's own (Raise.grade) if it gave one, else the
        kind's default. An unknown kind raises KeyError even with an override: it is a bug
        in a rule, and the site should learn it at startup, not from a text full of gaps."""
        default = self.kind(kind).grade
        return override if override is not None else default

    def response_time(self, grade: Grade) -> float:
        """Seconds within which an alarm of this grade should get a response."""
        return self.response_times[grade]

    def text(self, kind: str, lang: Lang, /, **params: object) -> str:
        """The kind's text in `lang` with the parameters filled in.

        `kind` and `lang` are positional-only so that a template field of any name (even one
        called kind) can be passed as a keyword, e.g. text(k, "zh", **raise_.details).

        A parameter given as None counts as missing. When a field of the text is missing and
        the kind has `fallback` texts whose fields are all given, those are used. Otherwise it
        never raises on a missing parameter: the field shows "?" and the gap is logged once per
        kind and field. Parameters the template does not use are ignored (Raise.details may
        carry more than the text needs). Values are rendered with format_value().
        """
        if lang not in ("zh", "en"):
            raise ValueError(f"language {lang!r}: use zh or en")
        spec = self.kind(kind)
        template: str = getattr(spec, lang)
        given = {k for k, v in params.items() if v is not None}
        if spec.fallback is not None and not set(template_fields(template)) <= given:
            other: str = getattr(spec.fallback, lang)
            if set(template_fields(other)) <= given:
                template = other
        values = _Fill({k: format_value(v) for k, v in params.items() if v is not None})
        text = template.format_map(values)
        for name in values.missing:
            self._problems.report(
                f"{kind}:{name}",
                f"alarm text for {kind} got no {{{name}}}; shown as {MISSING!r}",
            )
        return text

    def with_overrides(
        self,
        grades: dict[str, Grade] | None = None,
        response_times: dict[Grade, float] | None = None,
    ) -> Catalog:
        """A copy with a site's own default grades and response times.

        An unknown kind in `grades` raises KeyError: a misspelt override would silently leave
        the default in place.
        """
        kinds = dict(self.kinds)
        for name, grade in (grades or {}).items():
            # Validated again, not model_copy'd: a grade from a site file must be a real grade.
            kinds[name] = AlarmKind.model_validate({**self.kind(name).model_dump(), "grade": grade})
        times = {**self.response_times, **(response_times or {})}
        return Catalog(response_times=times, kinds=kinds)


class _Fill(dict[str, str]):
    """format_map's mapping: a missing field becomes "?" and is remembered for the log."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.missing: list[str] = []

    def __missing__(self, key: str) -> str:
        self.missing.append(key)
        return MISSING
