"""Load and validate `grading.yml`, the one place where points, thresholds and limits live."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_serializer, model_validator

ASSIGNMENT_ID = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
QUESTION_ID = re.compile(r"^q\d+(_\d+)?[a-z]?$")
# cuda: a GPU, or refuse to grade; cpu: GPUs hidden; auto: a GPU when the machine has one, else the CPU.
Device = Literal["cuda", "cpu", "auto"]
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "grading.yml"


class ConfigError(Exception):
    """grading.yml is missing, unreadable or invalid; the message names the key path."""


class Strict(BaseModel):
    # Reject unknown keys: a typo such as `point:` must not silently become a default.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Limits(Strict):
    """Resource limits for one notebook execution."""

    cell_timeout_s: float = Field(gt=0, description="wall-clock seconds one cell may run")
    notebook_timeout_s: float = Field(gt=0, description="wall-clock seconds the whole notebook may run")
    memory_mb: int = Field(ge=512, description="address-space cap of the student process, MiB")
    max_processes: int = Field(ge=1, description="processes/threads the sandbox user may own")
    max_open_files: int = Field(ge=16)
    max_file_size_mb: int = Field(ge=1, description="largest file student code may write, MiB")
    max_notebook_mb: float = Field(gt=0, description="largest submission accepted, MiB")
    disk_mb: int = Field(default=512, ge=16, description="all files of one submission together (working "
                                                         "folder, private tmp, /dev/shm), MiB")
    max_files: int = Field(default=20000, ge=100, description="files and folders one submission may create")


class LimitsOverride(Strict):
    """Per-assignment overrides; unset keys fall back to `defaults.limits`."""

    cell_timeout_s: float | None = Field(default=None, gt=0)
    notebook_timeout_s: float | None = Field(default=None, gt=0)
    memory_mb: int | None = Field(default=None, ge=512)
    max_processes: int | None = Field(default=None, ge=1)
    max_open_files: int | None = Field(default=None, ge=16)
    max_file_size_mb: int | None = Field(default=None, ge=1)
    max_notebook_mb: float | None = Field(default=None, gt=0)
    disk_mb: int | None = Field(default=None, ge=16)
    max_files: int | None = Field(default=None, ge=100)


class Defaults(Strict):
    limits: Limits
    seed: int = Field(ge=0, lt=2**32)
    device: Device = "cpu"
    jobs: int | None = Field(default=None, ge=1, description="parallel submissions; default: CPU count")
    min_free_disk_mb: int = Field(default=1024, ge=0, description="a batch stops before a submission when "
                                                                  "less disk than this is free")


class Question(Strict):
    points: float = Field(ge=0)
    manual: bool = False
    visibility: Literal["visible", "hidden", "after_due_date", "after_published"] = "visible"
    scoring: Literal["all", "partial"] = Field(
        default="all", description="all: the points need every check to pass; partial: each passed check earns "
                                   "its share of the points, by weight")
    weights: list[float] | None = Field(default=None, description="with scoring: partial, one weight per check "
                                                                  "in verdicts.py's order (default: equal)")

    @model_validator(mode="after")
    def _weights(self) -> "Question":
        if self.weights is not None:
            if self.scoring != "partial":
                raise ValueError("weights only apply with scoring: partial")
            if not self.weights or any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
                raise ValueError("weights must be non-negative numbers with a positive sum, one per check")
        return self


class Assignment(Strict):
    title: str = Field(min_length=1)
    notebook: str = Field(description="master notebook, relative to the repository root")
    questions: dict[str, Question] = Field(min_length=1)
    thresholds: dict[str, float] = Field(default_factory=dict)
    budget: dict[str, int | float] = Field(default_factory=dict)
    limits: LimitsOverride = Field(default_factory=LimitsOverride)
    data: list[str] = Field(default_factory=list, description="files under datasets/ that the notebook or its "
                                                              "checks read; shipped with it and fingerprinted")
    canvas_id: int | None = Field(default=None, ge=1, description="the Canvas assignment's id (the number in its "
                                  "URL): the gradebook export then updates that column instead of adding one")
    device: Device | None = Field(default=None, description="overrides defaults.device for this assignment")

    @model_serializer(mode="wrap")
    def _omit_unset_device(self, handler):
        # The grader's fingerprint hashes this dump: an assignment without its own device must dump
        # as it did before the key existed, so results graded then stay valid.
        data = handler(self)
        if isinstance(data, dict) and self.device is None:
            data.pop("device", None)
        return data

    @field_validator("data")
    @classmethod
    def _data_files(cls, value: list[str]) -> list[str]:
        for name in value:
            if Path(name).is_absolute() or ".." in Path(name).parts:
                raise ValueError(f"data file {name!r} must be a path inside datasets/, e.g. spiral.csv")
        return value

    @field_validator("notebook")
    @classmethod
    def _relative_notebook(cls, value: str) -> str:
        if Path(value).is_absolute() or not value.endswith(".ipynb"):
            raise ValueError("must be a relative path to an .ipynb file, e.g. solutions/spiral/spiral.ipynb")
        return value

    @field_validator("questions")
    @classmethod
    def _question_ids(cls, value: dict) -> dict:
        for qid in value:
            if not QUESTION_ID.match(qid):
                raise ValueError(f"question id {qid!r} must look like q1, q2_1 or q3b")
        return value

    @field_validator("thresholds", "budget")
    @classmethod
    def _constant_names(cls, value: dict) -> dict:
        for name in value:
            if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
                raise ValueError(f"name {name!r} must be lower_snake_case (it becomes a constant in the notebook)")
        return value

    @property
    def max_points(self) -> float:
        """Points the autograder can award (manually graded questions excluded)."""
        return sum(q.points for q in self.questions.values() if not q.manual)

    @property
    def points_possible(self) -> float:
        """Every question's points, hand-graded ones included: a result's `max_total`."""
        return sum(q.points for q in self.questions.values())

    @property
    def manual_questions(self) -> list[str]:
        """The ids of the questions graded by hand, in the notebook's order."""
        return [qid for qid, q in self.questions.items() if q.manual]

    def constants(self) -> dict[str, int | float]:
        """Thresholds and budget as the notebook's constants cell spells them (UPPER_CASE)."""
        merged = {**self.thresholds, **self.budget}
        return {name.upper(): value for name, value in sorted(merged.items())}


class Course(Strict):
    name: str
    code: str
    term: str


class GradingConfig(Strict):
    course: Course
    defaults: Defaults
    assignments: dict[str, Assignment]

    @model_validator(mode="after")
    def _assignment_ids(self) -> "GradingConfig":
        for aid, assignment in self.assignments.items():
            if not ASSIGNMENT_ID.match(aid):
                raise ValueError(f"assignment id {aid!r} must be lower-case words joined by hyphens, e.g. spiral "
                                 "or perceptron-xor")
            if Path(assignment.notebook).name != f"{aid}.ipynb":
                raise ValueError(f"assignments.{aid}.notebook must be named {aid}.ipynb, in the folder that holds "
                                 f"its checks (e.g. solutions/{aid}/{aid}.ipynb)")
        return self

    def assignment(self, aid: str) -> Assignment:
        try:
            return self.assignments[aid]
        except KeyError:
            known = ", ".join(self.assignments) or "none"
            raise ConfigError(f"grading.yml has no assignment {aid!r} (configured: {known})") from None

    def limits_for(self, aid: str) -> Limits:
        override = self.assignment(aid).limits.model_dump(exclude_none=True)
        return self.defaults.limits.model_copy(update=override)

    def device_for(self, aid: str) -> str:
        """The assignment's own `device`, else `defaults.device`."""
        return self.assignment(aid).device or self.defaults.device


def _format_errors(path: Path, error: ValidationError) -> str:
    lines = [f"{path}: {error.error_count()} problem(s):"]
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see the comments in grading.yml)"
        elif item["type"] == "missing":
            message = "required key is missing"
        lines.append(f"  - {where}: {message}")
    return "\n".join(lines)


def load_config(path: Path | str = DEFAULT_CONFIG) -> GradingConfig:
    """Read and validate a grading.yml; raise ConfigError naming the key path on any problem."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found. Copy grading.yml from the repository root.") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        return GradingConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(path, exc)) from None
